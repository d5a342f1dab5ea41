"""A small HTTP/3 client on aioquic (whose wheel ships no example client), for qproxy's end-to-end tests.

Each URL becomes one request; all requests of a connection run concurrently; --connections opens that
many connections in parallel, each sending every request. One JSON line per request on stdout:
{"conn": c, "index": i, "status": 200, "len": n, "reset": code|null, "error": text|null}.
With --out DIR the body of request i on connection c is written to DIR/c-i. --rebind-after N moves the
connection to a new local port once N response bytes arrived and adds {"conn": c, "rebound": true|false}.
Abort modes: --stop-after N sends STOP_SENDING once N response bytes arrived; --reset-after N sends only
N request body bytes, then RESET_STREAM; --close-after N closes the connection once N bytes arrived.
--raw FILE sends, one after the other on one connection, the header sections listed in FILE (JSON: a list
of lists of [name, value] pairs, sent exactly as given, pseudo-headers included), each with no body.
"""

import argparse
import asyncio
import json
import os
import ssl
from urllib.parse import urlparse

from aioquic.asyncio.client import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DataReceived, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.tls import CipherSuite
from aioquic.quic.events import ConnectionTerminated, StreamReset

CANCELLED = 0x10C


class Client(QuicConnectionProtocol):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.h3 = H3Connection(self._quic)
        self.streams = {}
        self.stop_after = None
        self.close_after = None
        self.received = 0

    def _finish(self, s):
        if not s["done"].done():
            s["done"].set_result(None)

    def quic_event_received(self, event):
        if isinstance(event, StreamReset) and event.stream_id in self.streams:
            s = self.streams[event.stream_id]
            s["reset"] = event.error_code
            self._finish(s)
        if isinstance(event, ConnectionTerminated):
            for s in self.streams.values():
                if not s["done"].done():
                    s["error"] = "connection closed (0x%x)" % event.error_code
                    self._finish(s)
        for ev in self.h3.handle_event(event):
            s = self.streams.get(getattr(ev, "stream_id", None))
            if s is None:
                continue
            if isinstance(ev, HeadersReceived):
                fields = dict(ev.headers)
                if s["status"] is None and b":status" in fields:
                    s["status"] = int(fields[b":status"])
                else:
                    s["trailers"] = {k.decode(): v.decode() for k, v in ev.headers}
            elif isinstance(ev, DataReceived):
                s["body"].extend(ev.data)
                self.received += len(ev.data)
                if self.stop_after is not None and len(s["body"]) >= self.stop_after and not s["stopped"]:
                    s["stopped"] = True
                    self._quic.stop_stream(ev.stream_id, CANCELLED)
                    s["error"] = "stopped by client"
                    self._finish(s)
                if self.close_after is not None and self.received >= self.close_after:
                    self._quic.close(error_code=0x100, reason_phrase="client leaves")
                    for other in self.streams.values():
                        other["error"] = other["error"] or "closed by client"
                        self._finish(other)
            if getattr(ev, "stream_ended", False):
                self._finish(s)
        self.transmit()

    def start(self, method, url, body, reset_after):
        u = urlparse(url)
        headers = [(b":method", method.encode()), (b":scheme", b"https"), (b":authority", u.netloc.encode()),
                   (b":path", (u.path or "/").encode() + (b"?" + u.query.encode() if u.query else b""))]
        if body is not None:
            headers.append((b"content-length", str(len(body)).encode()))
        return self.send(headers, body, reset_after)

    def send(self, headers, body=None, reset_after=None):
        stream_id = self._quic.get_next_available_stream_id()
        s = {"status": None, "body": bytearray(), "reset": None, "error": None, "stopped": False,
             "trailers": {}, "done": asyncio.get_running_loop().create_future()}
        self.streams[stream_id] = s
        self.h3.send_headers(stream_id, headers, end_stream=body is None)
        if body is not None:
            if reset_after is not None:
                self.h3.send_data(stream_id, body[:reset_after], end_stream=False)
                self.transmit()
                self._quic.reset_stream(stream_id, CANCELLED)
                s["error"] = "reset by client"
                self._finish(s)
            else:
                self.h3.send_data(stream_id, body, end_stream=True)
        self.transmit()
        return s


async def one_connection(args, conn_index, body, ticket=None, tickets=None):
    config = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN, max_data=256 << 20, max_stream_data=64 << 20)
    if args.chacha20:
        config.cipher_suites = [CipherSuite.CHACHA20_POLY1305_SHA256]
    if ticket is not None:
        config.session_ticket = ticket
    if args.ca:
        config.load_verify_locations(args.ca)
        config.server_name = "localhost"
    else:
        config.verify_mode = ssl.CERT_NONE
    results = []
    handler = tickets.append if tickets is not None else None
    async with connect(args.host, args.port, configuration=config, create_protocol=Client,
                       session_ticket_handler=handler, wait_connected=ticket is None) as client:
        client.stop_after, client.close_after = args.stop_after, args.close_after
        if args.key_update:
            client._quic.request_key_update()
        if args.raw:
            streams = []
            for fields in json.load(open(args.raw)):
                s = client.send([(n.encode(), v.encode()) for n, v in fields])
                streams.append(s)
                try:
                    await asyncio.wait_for(s["done"], args.timeout)
                except asyncio.TimeoutError:
                    s["error"] = "timeout"
        else:
            streams = [client.start(args.method, url, body, args.reset_after) for url in args.urls]
        rebound = asyncio.ensure_future(rebind(client, args.rebind_after)) if args.rebind_after else None
        try:
            await asyncio.wait_for(asyncio.gather(*(s["done"] for s in streams)), args.timeout)
        except asyncio.TimeoutError:
            for s in streams:
                s["error"] = s["error"] or "timeout"
        for i, s in enumerate(streams):
            if args.out:
                with open(os.path.join(args.out, "%d-%d" % (conn_index, i)), "wb") as f:
                    f.write(s["body"])
            results.append({"conn": conn_index, "index": i, "status": s["status"], "len": len(s["body"]),
                            "reset": s["reset"], "error": s["error"], "trailers": s["trailers"]})
        if ticket is not None:
            tls = client._quic.tls
            results.append({"resumed": bool(tls.session_resumed), "early_data": bool(tls.early_data_accepted)})
        if rebound is not None:
            results.append({"conn": conn_index, "rebound": rebound.done() and rebound.result()})
    return results


async def rebind(client, after):
    """NAT rebinding: once `after` response bytes arrived, later packets leave from a new local port (the
    protocol object moves to a new socket; the connection and its keys stay)."""
    while client.received < after:
        await asyncio.sleep(0.005)
    old_transport = client._transport
    old = old_transport.get_extra_info("sockname")
    await asyncio.get_running_loop().create_datagram_endpoint(lambda: client, local_addr=(old[0], 0))
    # The old port is gone for good: the transfer completes only if qproxy follows to the new one.
    old_transport.close()
    client.transmit()
    return client._transport.get_extra_info("sockname")[1] != old[1]


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--ca")
    p.add_argument("--method", default="GET")
    p.add_argument("--data")
    p.add_argument("--out")
    p.add_argument("--connections", type=int, default=1)
    p.add_argument("--stop-after", type=int)
    p.add_argument("--reset-after", type=int)
    p.add_argument("--close-after", type=int)
    p.add_argument("--rebind-after", type=int, help="move to a new local port once this many response bytes arrived")
    p.add_argument("--timeout", type=float, default=30)
    p.add_argument("--chacha20", action="store_true", help="offer only ChaCha20-Poly1305")
    p.add_argument("--key-update", action="store_true", help="update keys right after the handshake")
    p.add_argument("--resume", action="store_true",
                   help="connect once for a session ticket, then again with it (0-RTT requests); reports resumption")
    p.add_argument("--raw", help="JSON file of header sections to send as they are, one after the other")
    p.add_argument("urls", nargs="*")
    args = p.parse_args()
    body = open(args.data, "rb").read() if args.data else None
    if args.resume:
        tickets = []
        await one_connection(args, 0, body, tickets=tickets)
        await asyncio.sleep(0.2)
        if not tickets:
            print(json.dumps({"resumed": False, "early_data": False, "error": "no session ticket"}))
            return
        runs = [await one_connection(args, 1, body, ticket=tickets[-1])]
    else:
        runs = await asyncio.gather(*(one_connection(args, c, body) for c in range(args.connections)))
    for results in runs:
        for r in results:
            print(json.dumps(r))


asyncio.run(main())
