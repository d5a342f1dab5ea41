"""A raw QUIC client on aioquic: frames no well-behaved client writes, in the packets they must share,
encrypted with the connection's real keys. Each case is the shape of a crash or leak fix in HAProxy's QUIC
code (commit ids of haproxy/haproxy) or nginx's.

aioquic builds the packets; the frames of a case are written where aioquic writes a user PING (a PING
first, so the packet is ack-eliciting, then the raw bytes), or, for the Initial cases, in place of its
CRYPTO frame. Prints one JSON line:
  {"case", "packet": the packet number all the case's frames went in (null for Initial cases),
   "connected": whether the handshake completed, "closed_with": the server's CONNECTION_CLOSE code or
   null, "after": the status of a GET sent after the case on the same connection, or null,
   "crypto_frames": how many CRYPTO frames the Initial cases wrote, "acks_between": for cases that send
   two raw packets, how many 1-RTT ACKs went out between them}
Usage: raw_frames.py --port P --ca CA --case NAME
"""

import argparse
import asyncio
import json
import random

from aioquic.asyncio.client import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.buffer import Buffer
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DataReceived, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import ConnectionTerminated
from aioquic.quic.packet import QuicFrameType
from aioquic.tls import Epoch

CANCELLED = 0x10C
RAW_PING = 0x5EED


def varint(n):
    buf = Buffer(capacity=8)
    buf.push_uint_var(n)
    return buf.data


def stream_frame(sid, offset, data, fin):
    # STREAM with the OFF and LEN bits (0x08 | 0x04 | 0x02), FIN as asked.
    return bytes([0x0E | (1 if fin else 0)]) + varint(sid) + varint(offset) + varint(len(data)) + data


def reset_stream(sid, code, final_size):
    return varint(0x04) + varint(sid) + varint(code) + varint(final_size)


def get_headers(authority):
    """HEADERS of `GET https://AUTHORITY/raw`, QPACK without the dynamic table: static 17 (GET), 23
    (https), `:authority` and `:path` by static name with literal values."""
    auth = authority.encode()
    block = b"\x00\x00\xd1\xd7" + b"\x50" + bytes([len(auth)]) + auth + b"\x51\x04/raw"
    return b"\x01" + varint(len(block)) + block


class Client(QuicConnectionProtocol):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.h3 = H3Connection(self._quic)
        self.closed_with = None
        self.closed = asyncio.Event()
        self.status = {}
        self.done = {}
        self.raw = None
        self.raw_packet = None
        self.acks_sent = 0  # 1-RTT ACK frames written
        self.acks_at_raw = []  # acks_sent when each raw packet was written
        ping = self._quic._write_ping_frame

        def write_ping(builder, uids=[], comment=""):
            if RAW_PING in uids and self.raw is not None:
                buf = builder.start_frame(QuicFrameType.PING, capacity=1 + len(self.raw))
                buf.push_bytes(self.raw)
                self.raw_packet = builder.packet_number
                self.acks_at_raw.append(self.acks_sent)
                self.raw = None
            else:
                ping(builder, uids, comment)

        self._quic._write_ping_frame = write_ping
        # While set, 1-RTT ACKs are held back: the server's packets stay unacknowledged, so a stream it
        # answered is not yet complete in its eyes.
        self.hold_acks = False
        ack = self._quic._write_ack_frame

        def write_ack(builder, space, now):
            if self.hold_acks and space is self._quic._spaces.get(Epoch.ONE_RTT):
                space.ack_at = None  # the ranges stay queued; send_acks arms it again
            else:
                if space is self._quic._spaces.get(Epoch.ONE_RTT):
                    self.acks_sent += 1
                ack(builder=builder, space=space, now=now)

        self._quic._write_ack_frame = write_ack

    def inject(self, frames):
        """Sends `frames` (encoded) together in the next 1-RTT packet."""
        self.raw = b"".join(frames)
        self._quic.send_ping(RAW_PING)
        self.transmit()

    def send_acks(self):
        """Ends any hold and sends, at once, the ACK of every 1-RTT packet received so far."""
        self.hold_acks = False
        self._quic._spaces[Epoch.ONE_RTT].ack_at = 0.0
        self.transmit()

    def open_stream(self):
        """A stream ID aioquic knows as its own (so the server's answers on it are expected) and writes
        nothing on."""
        sid = self._quic.get_next_available_stream_id()
        self._quic._get_or_create_stream_for_send(sid)
        return sid

    def quic_event_received(self, event):
        if isinstance(event, ConnectionTerminated):
            self.closed_with = event.error_code
            self.closed.set()
            return
        for ev in self.h3.handle_event(event):
            if isinstance(ev, HeadersReceived):
                for name, value in ev.headers:
                    if name == b":status":
                        self.status[ev.stream_id] = int(value)
                if ev.stream_ended:
                    self.done.setdefault(ev.stream_id, asyncio.Event()).set()
            elif isinstance(ev, DataReceived) and ev.stream_ended:
                self.done.setdefault(ev.stream_id, asyncio.Event()).set()

    async def get(self, authority, path, limit=5):
        sid = self._quic.get_next_available_stream_id()
        self.h3.send_headers(sid, [
            (b":method", b"GET"), (b":scheme", b"https"),
            (b":authority", authority.encode()), (b":path", path.encode()),
        ], end_stream=True)
        self.transmit()
        done = self.done.setdefault(sid, asyncio.Event())
        closed = asyncio.ensure_future(self.closed.wait())
        finished = asyncio.ensure_future(done.wait())
        await asyncio.wait([closed, finished], timeout=limit, return_when=asyncio.FIRST_COMPLETED)
        closed.cancel()
        finished.cancel()
        return self.status.get(sid) if done.is_set() else None


def chaos_crypto(seed, huge_offset):
    """Replaces aioquic's CRYPTO writer for the Initial: the ClientHello cut into small frames in a shuffled
    order, with PING and PADDING between them (Chrome's and ngtcp2's "chaos protection"), and, when
    asked, one more CRYPTO frame far past any buffer."""
    rng = random.Random(seed)
    written.clear()

    def write(self, builder, space, stream):
        # Every Initial's CRYPTO (also the ClientHello sent again after a Retry); later spaces are
        # aioquic's own.
        if space is not self._spaces[Epoch.INITIAL]:
            return original(self, builder, space, stream)
        frame = stream.sender.get_frame(builder.remaining_flight_space - 200)
        if frame is None:
            return False
        cuts = sorted(rng.sample(range(1, len(frame.data)), 11))
        bounds = list(zip([0] + cuts, cuts + [len(frame.data)]))
        rng.shuffle(bounds)
        for start, stop in bounds:
            buf = builder.start_frame(
                QuicFrameType.CRYPTO,
                capacity=8 + stop - start,
                handler=stream.sender.on_data_delivery,
                handler_args=(frame.offset + start, frame.offset + stop, False),
            )
            buf.push_uint_var(frame.offset + start)
            buf.push_uint_var(stop - start)
            buf.push_bytes(frame.data[start:stop])
            if rng.random() < 0.5:
                builder.start_frame(QuicFrameType.PING)
            else:
                builder.start_frame(QuicFrameType.PADDING).push_bytes(bytes(rng.randrange(1, 8)))
        written.append(len(bounds))
        if huge_offset:
            buf = builder.start_frame(QuicFrameType.CRYPTO, capacity=16)
            buf.push_uint_var(1 << 40)
            buf.push_uint_var(4)
            buf.push_bytes(b"huge")
            written.append(1)
        return True

    from aioquic.quic.connection import QuicConnection

    original = QuicConnection._write_crypto_frame
    QuicConnection._write_crypto_frame = write


# How many CRYPTO frames the chaos writer cut the ClientHello into (the Initial cases' precondition).
written = []

CASES = {}


def case(fn):
    CASES[fn.__name__] = fn
    return fn


@case
async def stream_then_reset(client, authority):
    # 83ae0c250: STREAM data that does not complete an HTTP/3 frame, and RESET_STREAM for it, in one packet.
    sid = client.open_stream()
    head = get_headers(authority)[:7]
    client.inject([stream_frame(sid, 0, head, False), reset_stream(sid, CANCELLED, len(head))])


@case
async def overlong_frame_type(client, authority):
    # 8e16fd2cf: a frame type written in more bytes than it needs (PING as the two-byte varint 0x4001).
    client.inject([b"\x40\x01"])


@case
async def ack_ecn(client, authority):
    # An ACK_ECN frame (type 0x03) for the largest packet received, with ECN counts.
    largest = client._quic._spaces[Epoch.ONE_RTT].largest_received_packet
    client.inject([varint(0x03) + varint(largest) + varint(0) + varint(0) + varint(0)
                   + varint(1) + varint(0) + varint(0)])


@case
async def new_token(client, authority):
    # NEW_TOKEN is a server's frame: from a client, a PROTOCOL_VIOLATION (RFC 9000, 19.7).
    client.inject([varint(0x07) + varint(8) + b"tokentok"])


@case
async def reset_beyond_credit(client, authority):
    # nginx e3548e305: RESET_STREAM whose final size exceeds the stream's flow-control credit.
    sid = client.open_stream()
    client.inject([reset_stream(sid, CANCELLED, 1 << 40)])


@case
async def final_size_change(client, authority):
    # nginx 269cdf780: a stream's final size, once known, changes.
    sid = client.open_stream()
    head = get_headers(authority)
    client.inject([stream_frame(sid, 0, head, True), stream_frame(sid, 0, head + b"\x00\x00", True)])


@case
async def final_size_change_after_close(client, authority):
    # The same once the request is answered but before the server has our ACK of its FIN: the stream is
    # still known, and RESET_STREAM names another final size.
    client.hold_acks = True
    sid = await answered_raw_get(client, authority)
    client.inject([reset_stream(sid, CANCELLED, len(get_headers(authority)) + 10)])
    client.send_acks()


@case
async def final_size_change_after_forgotten(client, authority):
    # The same once the server has our ACK of its FIN: the stream is over on both sides and forgotten;
    # the late RESET_STREAM must not open it again.
    sid = await answered_raw_get(client, authority)
    client.send_acks()
    client.inject([reset_stream(sid, CANCELLED, len(get_headers(authority)) + 10)])


async def answered_raw_get(client, authority):
    """`GET /raw` with its FIN in one STREAM frame, awaited to the response's end: the stream ID."""
    sid = client.open_stream()
    client.inject([stream_frame(sid, 0, get_headers(authority), True)])
    done = client.done.setdefault(sid, asyncio.Event())
    await asyncio.wait_for(done.wait(), 5)
    assert client.status.get(sid) is not None, "the raw request was not answered"
    return sid


@case
async def crypto_chaos(client, authority):
    # 4c1120639: the handshake itself is the case (see chaos_crypto).
    pass


@case
async def crypto_huge_offset(client, authority):
    # c3a4a4d16: the handshake is the case.
    pass


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--ca", required=True)
    parser.add_argument("--case", required=True, choices=sorted(CASES))
    args = parser.parse_args()
    if args.case.startswith("crypto_"):
        chaos_crypto(seed=4, huge_offset=args.case == "crypto_huge_offset")
    config = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN)
    config.load_verify_locations(args.ca)
    config.server_name = "localhost"
    if args.case == "crypto_huge_offset":
        # The server may drop such an Initial without a word: give up on the handshake soon.
        config.idle_timeout = 2.0
    authority = f"localhost:{args.port}"
    report = {"case": args.case, "connected": False, "packet": None, "closed_with": None, "after": None}
    made = []

    def create(*a, **kw):
        made.append(Client(*a, **kw))
        return made[-1]

    try:
        async with connect(args.host, args.port, configuration=config, create_protocol=create) as client:
            report["connected"] = True
            # Let the server's SETTINGS and any first answers in.
            await asyncio.sleep(0.05)
            await CASES[args.case](client, authority)
            report["packet"] = client.raw_packet
            if len(client.acks_at_raw) >= 2:
                report["acks_between"] = client.acks_at_raw[-1] - client.acks_at_raw[-2]
            try:
                await asyncio.wait_for(client.closed.wait(), 0.3)
            except asyncio.TimeoutError:
                pass
            if not client.closed.is_set():
                report["after"] = await client.get(authority, "/after")
            report["closed_with"] = client.closed_with
    except ConnectionError:
        # The handshake failed: the server's close code came as an event.
        report["closed_with"] = made[0].closed_with if made else None
    report["crypto_frames"] = sum(written)
    print(json.dumps(report))


asyncio.run(asyncio.wait_for(main(), 20))
