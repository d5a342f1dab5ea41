"""Chaos client for qproxy's chaos suite (aioquic): many connections, each drawing a fate at random.

Fates: complete (1-5 requests, byte-exact check of every completed /ok/N), reset_upload (RESET_STREAM
mid-upload), stop_download (STOP_SENDING mid-download), close_unacked (CONNECTION_CLOSE right after the
first response bytes), vanish (stop answering: the proxy's idle timeout must clean up), many_aborts
(100 streams opened, then all aborted). Paths are drawn too, so the backend misbehaves at random:
/ok/N, /slow/N, /reset/N (dies mid-body), /malformed, /hang. Prints one JSON summary line.
"""

import argparse
import asyncio
import json
import random
import ssl

from aioquic.asyncio.client import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DataReceived, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import ConnectionTerminated, StreamReset

CANCELLED = 0x10C
PATTERN = bytes(i % 251 for i in range(4 << 20))


class Client(QuicConnectionProtocol):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.h3 = H3Connection(self._quic)
        self.streams = {}
        self.first_data = asyncio.get_running_loop().create_future()
        self.frozen = False

    def quic_event_received(self, event):
        if self.frozen:
            return
        if isinstance(event, StreamReset) and event.stream_id in self.streams:
            s = self.streams[event.stream_id]
            s["reset"] = event.error_code
            self._done(s)
        if isinstance(event, ConnectionTerminated):
            for s in self.streams.values():
                s["error"] = s["error"] or "terminated"
                self._done(s)
        for ev in self.h3.handle_event(event):
            s = self.streams.get(getattr(ev, "stream_id", None))
            if s is None:
                continue
            if isinstance(ev, HeadersReceived) and s["status"] is None:
                s["status"] = int(dict(ev.headers).get(b":status", b"0"))
            elif isinstance(ev, DataReceived):
                s["body"].extend(ev.data)
                if not self.first_data.done():
                    self.first_data.set_result(None)
            if getattr(ev, "stream_ended", False):
                self._done(s)

    @staticmethod
    def _done(s):
        if not s["done"].done():
            s["done"].set_result(None)

    def start(self, method, path, authority, body=None, end=True):
        sid = self._quic.get_next_available_stream_id()
        headers = [(b":method", method.encode()), (b":scheme", b"https"), (b":authority", authority.encode()),
                   (b":path", path.encode())]
        if body is not None:
            headers.append((b"content-length", str(len(body)).encode()))
        s = {"path": path, "status": None, "body": bytearray(), "reset": None, "error": None,
             "done": asyncio.get_running_loop().create_future()}
        self.streams[sid] = s
        self.h3.send_headers(sid, headers, end_stream=body is None)
        if body is not None:
            self.h3.send_data(sid, body, end_stream=end)
        self.transmit()
        return sid, s


def draw_path(rng):
    kind = rng.choices(["ok", "slow", "reset", "malformed", "hang"], [70, 10, 8, 6, 6])[0]
    n = rng.choice([0, 1, 1000, 30000, 300000])
    return {"ok": "/ok/%d", "slow": "/slow/%d", "reset": "/reset/%d"}.get(kind, "/" + kind + "/%d") % n


def check(s, stats):
    path = s["path"]
    if path.startswith("/ok/") and s["status"] == 200 and s["done"].done() and s["reset"] is None and not s["error"]:
        n = int(path.rsplit("/", 1)[1])
        if bytes(s["body"]) == PATTERN[:n]:
            stats["verified"] += 1
        else:
            stats["corrupt"] += 1
    if s["status"]:
        stats["status_%d" % s["status"]] = stats.get("status_%d" % s["status"], 0) + 1


async def one(args, rng, stats, budget):
    config = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN, idle_timeout=5.0)
    config.verify_mode = ssl.CERT_NONE
    fate = rng.choices(["complete", "reset_upload", "stop_download", "close_unacked", "vanish", "many_aborts",
                        "after_goaway"], [53, 10, 10, 10, 5, 10, 2])[0]
    stats["fate_" + fate] = stats.get("fate_" + fate, 0) + 1
    authority = "localhost:%d" % args.port
    try:
        async with connect(args.host, args.port, configuration=config, create_protocol=Client,
                           wait_connected=True) as c:
            if fate == "complete":
                count = min(budget, rng.randint(1, 5))
                streams = []
                for _ in range(count):
                    path = draw_path(rng)
                    body = bytes(rng.randint(0, 255) for _ in range(rng.choice([0, 100]))) if rng.random() < 0.2 else None
                    streams.append(c.start("POST" if body is not None else "GET", path, authority, body)[1])
                await asyncio.wait([s["done"] for s in streams], timeout=args.request_timeout)
                for s in streams:
                    check(s, stats)
                return count
            if fate == "reset_upload":
                sid, s = c.start("POST", "/ok/10", authority, b"x" * 200000, end=False)
                await asyncio.sleep(rng.random() * 0.05)
                c._quic.reset_stream(sid, CANCELLED)
                c.transmit()
                return 1
            if fate == "stop_download":
                sid, s = c.start("GET", "/ok/3000000", authority)
                await asyncio.wait([c.first_data], timeout=args.request_timeout)
                c._quic.stop_stream(sid, CANCELLED)
                c.transmit()
                await asyncio.sleep(0.02)
                return 1
            if fate == "close_unacked":
                c.start("GET", "/ok/3000000", authority)
                c.start("GET", draw_path(rng), authority)
                await asyncio.wait([c.first_data], timeout=args.request_timeout)
                return 2
            if fate == "vanish":
                c.start("GET", "/ok/3000000", authority)
                await asyncio.wait([c.first_data], timeout=args.request_timeout)
                # Stop answering, like a client that lost its network: no CONNECTION_CLOSE reaches qproxy.
                c.frozen = True
                c._transport.close()
                return 1
            if fate == "after_goaway":
                _, s = c.start("GET", "/ok/10", authority)
                await asyncio.wait([s["done"]], timeout=args.request_timeout)
                await asyncio.sleep(args.keep_alive + 0.3)
                _, late = c.start("GET", "/ok/10", authority)
                await asyncio.wait([late["done"]], timeout=2)
                stats["late_refused"] = stats.get("late_refused", 0) + int(late["status"] is None)
                return 2
            # many_aborts
            sids = [c.start("GET", "/ok/100000", authority)[0] for _ in range(min(100, max(budget, 1)))]
            await asyncio.sleep(rng.random() * 0.05)
            for sid in sids:
                c._quic.stop_stream(sid, CANCELLED)
            c.transmit()
            await asyncio.sleep(0.02)
            return len(sids)
    except Exception as e:  # A connection that fails is counted, not fatal: the proxy's health is what is judged.
        stats["client_errors"] = stats.get("client_errors", 0) + 1
        stats["last_error"] = repr(e)[:200]
        return 1


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--requests", type=int, default=1000)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--request-timeout", type=float, default=10)
    p.add_argument("--keep-alive", type=float, default=1.0, help="the proxy's timeout http-keep-alive, in seconds")
    args = p.parse_args()
    rng = random.Random(args.seed)
    stats = {"verified": 0, "corrupt": 0, "requests": 0, "connections": 0}
    left = [args.requests]

    async def worker(wid):
        wrng = random.Random(rng.random())
        while left[0] > 0:
            stats["connections"] += 1
            n = await one(args, wrng, stats, left[0])
            left[0] -= n
            stats["requests"] += n

    await asyncio.gather(*(worker(i) for i in range(args.concurrency)))
    print(json.dumps(stats, sort_keys=True))


asyncio.run(main())
