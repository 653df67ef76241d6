#!/usr/bin/env python3
"""Fan-out benchmark of a Pushi server: S subscribers on one channel, M publishes.

By default it starts its own server (`python -m pushi.base`) on free loopback ports
with a temporary data directory (the embedded store, or MongoDB when `MONGO_URL` is
set), opens S WebSocket subscribers on one channel (asyncio + the `websockets`
client, so 1,000 sockets fit in this one process) and publishes M messages:

- `rest`: `POST /events`, one request at a time, from a thread of this process;
- `client`: one more socket sends `client-bench` client events (echo off), back to
  back (`--rate` paces them);
- `both`: one phase after the other.

Each payload carries its send time (`time.perf_counter()`, shared by every thread of
this process), so each delivery gives a publish→deliver latency. It prints, per
phase: deliveries/s, latency p50/p99, and the server's CPU time per delivery
(utime+stime of the server pid from /proc/<pid>/stat, before and after, divided by
the deliveries; the store writes of persisted events are included). The bench's own
CPU time is printed too: when it is close to the wall time, this process (one core
parsing every delivery) and not the server bounds deliveries/s.

Usage (from the repo root, after `pip install -e '.[test]'`):

    python scripts/bench.py           # 1000 subscribers, 200 messages, both modes
    python scripts/bench.py --subscribers 200 --messages 500 --mode rest
    python scripts/bench.py --url-api http://127.0.0.1:8080/ \\
        --url-ws ws://127.0.0.1:9090/ --pid 1234         # an already running server

Every wait is bounded (`--timeout`); it stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import sys
import tempfile
import time

import requests
from websockets.asyncio.client import connect

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHANNEL = "bench"
CLIENT_EVENT = "client-bench"
REST_EVENT = "bench"


# -- the server --------------------------------------------------------------------


def start_server(env: dict):
    """Starts a private server with the test fixtures' class (tests/conftest.py)."""
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    try:
        from conftest import Server
    finally:
        sys.path.pop(0)
    data_dir = tempfile.mkdtemp(prefix="pushi-bench-")
    server = Server(data_dir, env=env)
    try:
        server.start()
    except BaseException:
        shutil.rmtree(data_dir, ignore_errors=True)
        raise
    return server, data_dir


def cpu_seconds(pid: int | None) -> float | None:
    """utime + stime of a process, in seconds (None when unknown)."""
    if pid is None:
        return None
    try:
        with open("/proc/%d/stat" % pid, encoding="ascii") as file:
            stat = file.read()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # fields from 3 (state) on
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def raise_fd_limit(needed: int) -> None:
    """Lets this process (and the server it starts) hold `needed` descriptors."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return
    target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    if target < needed:
        print("warning: fd limit %d < %d needed" % (target, needed), file=sys.stderr)


# -- REST --------------------------------------------------------------------------


class Api:
    """A logged-in REST session of one app."""

    def __init__(self, base: str, app: dict | None) -> None:
        self.base = base if base.endswith("/") else base + "/"
        self.http = requests.Session()
        if app is None:
            response = self.http.post(
                self.base + "apps", json={"name": "bench"}, timeout=30
            )
            response.raise_for_status()
            app = response.json()
        self.app = app
        response = self.http.get(
            self.base + "login",
            params=dict(
                app_id=app["ident"], app_key=app["key"], app_secret=app["secret"]
            ),
            timeout=30,
        )
        response.raise_for_status()
        self.http.params = {"sid": response.json()["token"]}

    def publish(self, channel: str, data: str, persist: bool) -> None:
        response = self.http.post(
            self.base + "events",
            json=dict(channel=channel, event=REST_EVENT, data=data, persist=persist),
            timeout=30,
        )
        if response.status_code != 200:
            raise RuntimeError(
                "POST /events: %d %s" % (response.status_code, response.text)
            )


# -- measuring ---------------------------------------------------------------------


class Phase:
    """What one publishing phase delivered, as the subscribers saw it."""

    def __init__(self, name: str, expected: int) -> None:
        self.name = name
        self.expected = expected
        self.received = 0
        self.latencies: list[float] = []
        self.first_sent: float | None = None
        self.last_received: float | None = None
        self.errors: list[str] = []
        self.done = asyncio.Event()

    def record(self, sent: float, now: float) -> None:
        self.received += 1
        self.latencies.append(now - sent)
        self.last_received = now
        if self.received >= self.expected:
            self.done.set()


class Subscribers:
    """S sockets on one channel; each message is credited to the current phase."""

    def __init__(self, url: str, count: int, timeout: float) -> None:
        self.url = url
        self.count = count
        self.timeout = timeout
        self.sockets: list = []
        self.readers: list[asyncio.Task] = []
        self.phase: Phase | None = None
        self.stray = 0

    async def open(self, parallel: int = 100) -> None:
        limit = asyncio.Semaphore(parallel)

        async def one() -> None:
            async with limit:
                ws = await open_subscribed(self.url, self.timeout)
            self.sockets.append(ws)
            self.readers.append(asyncio.create_task(self.read(ws)))

        await asyncio.wait_for(
            asyncio.gather(*(one() for _ in range(self.count))), self.timeout * 4
        )

    async def read(self, ws) -> None:
        try:
            async for raw in ws:
                now = time.perf_counter()
                message = json.loads(raw)
                data = message.get("data")
                phase = self.phase
                if not isinstance(data, str) or not data.startswith("bench|"):
                    if message.get("event") == "pusher:error" and phase is not None:
                        phase.errors.append(str(message.get("data")))
                    continue
                _, name, _, sent = data.split("|", 3)
                if phase is None or name != phase.name:
                    self.stray += 1
                    continue
                phase.record(float(sent), now)
        except Exception:  # a closed socket ends its reader
            return

    async def close(self) -> None:
        for task in self.readers:
            task.cancel()
        await asyncio.wait_for(
            asyncio.gather(
                *(ws.close() for ws in self.sockets), return_exceptions=True
            ),
            self.timeout,
        )


async def open_subscribed(url: str, timeout: float):
    """A socket that has joined CHANNEL (awaits the subscription reply)."""
    ws = await connect(
        url,
        open_timeout=timeout,
        close_timeout=2,
        ping_interval=None,
        compression=None,
        max_size=None,
        max_queue=None,
    )

    async def until(event: str) -> dict:
        while True:
            message = json.loads(await ws.recv())
            if message.get("event") == event:
                return message
            if message.get("event") == "pusher:error":
                raise RuntimeError("server refused: %r" % (message,))

    await asyncio.wait_for(until("pusher:connection_established"), timeout)
    await ws.send(
        json.dumps({"event": "pusher:subscribe", "data": {"channel": CHANNEL}})
    )
    await asyncio.wait_for(until("pusher_internal:subscription_succeeded"), timeout)
    return ws


def payload(phase: Phase, sequence: int) -> str:
    return "bench|%s|%d|%.9f" % (phase.name, sequence, time.perf_counter())


async def run_rest(api: Api, phase: Phase, messages: int, persist: bool) -> None:
    def publish_all() -> None:
        phase.first_sent = time.perf_counter()
        for sequence in range(messages):
            api.publish(CHANNEL, payload(phase, sequence), persist)

    await asyncio.to_thread(publish_all)


async def run_client(
    url: str, phase: Phase, messages: int, rate: float, persist: bool, timeout: float
) -> None:
    sender = await open_subscribed(url, timeout)

    async def drain() -> None:  # rate-limit or other errors come back to the sender
        try:
            async for raw in sender:
                message = json.loads(raw)
                if message.get("event") == "pusher:error":
                    phase.errors.append(str(message.get("data")))
        except Exception:
            return

    draining = asyncio.create_task(drain())
    phase.first_sent = time.perf_counter()
    for sequence in range(messages):
        if rate > 0:
            delay = phase.first_sent + sequence / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)  # pacing the sender, not synchronisation
        await sender.send(
            json.dumps(
                {
                    "event": CLIENT_EVENT,
                    "channel": CHANNEL,
                    "data": payload(phase, sequence),
                    "echo": False,
                    "persist": persist,
                }
            )
        )
    phase.sender = (sender, draining)


async def measure(
    name: str, args, subscribers: Subscribers, api: Api, pid: int | None, url_ws: str
) -> dict:
    phase = Phase(name, args.subscribers * args.messages)
    subscribers.phase = phase
    cpu_before, own_before = cpu_seconds(pid), time.process_time()
    wall_before = time.perf_counter()
    if name == "rest":
        await run_rest(api, phase, args.messages, not args.no_persist)
    else:
        await run_client(
            url_ws, phase, args.messages, args.rate, not args.no_persist, args.timeout
        )
    try:
        await asyncio.wait_for(phase.done.wait(), args.timeout)
    except asyncio.TimeoutError:
        pass  # reported as delivered < expected
    cpu_after, own_after = cpu_seconds(pid), time.process_time()
    wall = time.perf_counter() - wall_before
    sender = getattr(phase, "sender", None)
    if sender is not None:
        sender[1].cancel()
        await asyncio.wait_for(sender[0].close(), args.timeout)
    latencies = sorted(phase.latencies)
    span = (phase.last_received or time.perf_counter()) - (
        phase.first_sent or wall_before
    )
    cpu = None if cpu_before is None or cpu_after is None else cpu_after - cpu_before
    return dict(
        mode=name,
        delivered=phase.received,
        expected=phase.expected,
        rate=phase.received / span if span > 0 else 0.0,
        p50=percentile(latencies, 0.50),
        p99=percentile(latencies, 0.99),
        cpu_us=(
            cpu * 1e6 / phase.received if cpu is not None and phase.received else None
        ),
        cpu=cpu,
        own=own_after - own_before,
        wall=wall,
        errors=phase.errors,
    )


def percentile(ordered: list[float], fraction: float) -> float | None:
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def table(rows: list[dict], subscribers: int, messages: int) -> str:
    def ms(value):
        return "-" if value is None else "%.1f" % (value * 1000)

    head = (
        "mode",
        "subs",
        "msgs",
        "delivered",
        "deliv/s",
        "p50 ms",
        "p99 ms",
        "srv µs/deliv",
        "srv CPU s",
        "bench CPU s",
        "wall s",
    )
    lines = [head]
    for row in rows:
        lines.append(
            (
                row["mode"],
                str(subscribers),
                str(messages),
                "%d/%d" % (row["delivered"], row["expected"]),
                "%.0f" % row["rate"],
                ms(row["p50"]),
                ms(row["p99"]),
                "-" if row["cpu_us"] is None else "%.2f" % row["cpu_us"],
                "-" if row["cpu"] is None else "%.2f" % row["cpu"],
                "%.2f" % row["own"],
                "%.2f" % row["wall"],
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    out = [
        "  ".join(cell.rjust(w) for cell, w in zip(line, widths, strict=True))
        for line in lines
    ]
    out.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(out)


async def bench(
    args, url_api: str, url_ws: str, pid: int | None, app: dict | None
) -> None:
    api = await asyncio.to_thread(Api, url_api, app)
    ws_url = url_ws.rstrip("/") + "/" + api.app["key"]
    for _ in range(3):  # warm-up: first requests, imports, store files
        await asyncio.to_thread(api.publish, "bench-warmup", "warm-up", True)

    subscribers = Subscribers(ws_url, args.subscribers, args.timeout)
    started = time.perf_counter()
    try:
        await subscribers.open()
        print(
            "%d subscribers on %r in %.2f s"
            % (args.subscribers, CHANNEL, time.perf_counter() - started),
            flush=True,
        )
        modes = ["rest", "client"] if args.mode == "both" else [args.mode]
        rows = []
        for mode in modes:
            rows.append(await measure(mode, args, subscribers, api, pid, ws_url))
            print(
                "phase %s: %d/%d delivered"
                % (mode, rows[-1]["delivered"], rows[-1]["expected"]),
                flush=True,
            )
    finally:
        await subscribers.close()
    print()
    print(table(rows, args.subscribers, args.messages))
    for row in rows:
        if row["errors"]:
            print(
                "%s: %d server errors, first: %s"
                % (row["mode"], len(row["errors"]), row["errors"][0])
            )
    if subscribers.stray:
        print("messages outside their phase: %d" % subscribers.stray)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url-api", help="REST base URL of a running server")
    parser.add_argument("--url-ws", help="WebSocket base URL of a running server")
    parser.add_argument("--pid", type=int, help="pid of that server (for CPU figures)")
    parser.add_argument(
        "--app",
        help="JSON {ident, key, secret} of an existing app "
        "(default: POST /apps creates one)",
    )
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--mode", choices=("rest", "client", "both"), default="both")
    parser.add_argument(
        "--rate",
        type=float,
        default=0.0,
        help="client events per second (0: back to back)",
    )
    parser.add_argument(
        "--no-persist", action="store_true", help="publish persist=false"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        help="seconds to wait for each phase's deliveries",
    )
    args = parser.parse_args()
    if bool(args.url_api) != bool(args.url_ws):
        parser.error("--url-api and --url-ws go together")

    raise_fd_limit(2 * args.subscribers + 256)  # inherited by the server we start
    server = data_dir = None
    if args.url_api:
        url_api, url_ws, pid = args.url_api, args.url_ws, args.pid
    else:
        # the server must let one socket send M client events back to back
        env = {"PUSHI_CLIENT_EVENT_RATE": str(max(1000, args.messages * 10))}
        server, data_dir = start_server(env)
        url_api, url_ws, pid = server.api, server.ws_url(""), server.process.pid
        store = "MongoDB (MONGO_URL)" if os.environ.get("MONGO_URL") else "embedded"
        print("server pid %d, store %s, API %s, WS %s" % (pid, store, url_api, url_ws))
    try:
        app = json.loads(args.app) if args.app else None
        asyncio.run(bench(args, url_api, url_ws, pid, app))
    finally:
        if server is not None:
            code = server.stop()
            if code not in (0, None):
                print(
                    "server exited with %s; log tail:\n%s"
                    % (code, server.log()[-2000:])
                )
            shutil.rmtree(data_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
