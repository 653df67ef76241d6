#!/usr/bin/env python3
"""Write throughput of the embedded store (pushi.store.embedded), in documents/s.

Measures, each on a fresh store in a temporary directory, through a real Appier
app whose adapter is the embedded store:

- single inserts through a model's ``save()`` (with Appier's integer ``id``
  counter, one counter update per document, as the REST-created models have;
  and without one);
- ``insert_many`` in batches of 100;
- the persistence worker's own write (``pushi.store.write_events``) with the
  real models, in batches of 100 triggers of one event each, on a channel two
  users follow (so each event also writes two associations);

at 1,000 and 10,000 documents (``--sizes`` to change). The design asks for at
least 2,000 event writes a second.

Usage: ``python scripts/bench_store.py [--sizes 1000 10000] [--batch 100]``

``--server N`` measures instead the whole path of a persisted publish: it
starts the real server (``python -m pushi.base``, embedded store in a temporary
directory, or ``MONGO_URL`` if set), registers an app, and runs N concurrent
publishers (keep-alive HTTP connections, spread over ``--processes``
processes) that each ``POST /events`` (``persist`` on) one after the other for
``--seconds``. Every publish answers only once its event is committed, so the
rate is of acknowledged, stored events; it prints events/s, the answer
latencies and the store worker's batch sizes (from the server's log at stop).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable

try:
    from pushi.store.embedded import EmbeddedAdapter, insert_many
except ImportError:  # run from a checkout without installing
    sys.path.insert(
        0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")
    )
    from pushi.store.embedded import EmbeddedAdapter, insert_many
import appier

from pushi.app.models import Association, PushiEvent, Subscription
from pushi.store import write_events


class BenchPlain(appier.Model):
    """An event-shaped model, like a stored event, without a counter."""

    app_id = appier.field(index=True)
    channel = appier.field(index=True)
    event = appier.field()
    mid = appier.field(index=True)
    data = appier.field(type=dict)
    timestamp = appier.field(type=float, index=True)


class BenchEvent(BenchPlain):
    """The same shape with an Appier counter, as the stored events have."""

    id = appier.field(type=int, index=True, increment=True)


def document(index: int) -> dict:
    """One event-like document (about 200 bytes of JSON)."""
    return dict(
        app_id="app%d" % (index % 4),
        channel="presence-room-%d" % (index % 50),
        event="message",
        mid="%032x" % index,
        data={"text": "hello number %d" % index, "from": "user%d" % (index % 97)},
        timestamp=1_700_000_000.0 + index,
    )


def run(count: int, work: Callable[[int], None], model: type[appier.Model]) -> float:
    """Documents/s of ``work(count)`` on a fresh store in a temporary directory;
    checks that ``model`` then holds ``count`` documents."""
    directory = tempfile.mkdtemp(prefix="pushi-bench-")
    previous = appier.base.APP
    adapter = EmbeddedAdapter(os.path.join(directory, "store"))
    app = appier.App(
        name="bench_store", adapter_c=lambda: adapter, session_c=appier.MemorySession
    )
    try:
        for setup in (BenchEvent, BenchPlain, PushiEvent, Association, Subscription):
            setup.setup()
        started = time.perf_counter()
        work(count)
        elapsed = time.perf_counter() - started
        if model.count() != count:
            raise RuntimeError(
                "%s holds %d documents" % (model.__name__, model.count())
            )
        return count / elapsed
    finally:
        app.unload()
        adapter.close()
        appier.base.APP = previous
        shutil.rmtree(directory, ignore_errors=True)


def save_with_counter(count: int) -> None:
    """``count`` model saves, each taking the next ``id`` from the counter."""
    for index in range(count):
        BenchEvent(**document(index)).save()


def save_plain(count: int) -> None:
    """``count`` model saves, no counter."""
    for index in range(count):
        BenchPlain(**document(index)).save()


def batches(size: int) -> Callable[[int], None]:
    """``count`` documents through ``insert_many``, ``size`` per batch."""

    def work(count: int) -> None:
        collection = BenchEvent._collection()
        for start in range(0, count, size):
            stop = min(start + size, count)
            insert_many(
                collection,
                [dict(document(index), id=index + 1) for index in range(start, stop)],
            )

    return work


def triggers(size: int) -> Callable[[int], None]:
    """``count`` events through ``write_events``, ``size`` triggers per batch."""

    def work(count: int) -> None:
        for user_id in ("alice", "bob"):
            Subscription(instance="app0", user_id=user_id, event="news").save()
        for start in range(0, count, size):
            stop = min(start + size, count)
            write_events(
                [("app0", [message(index)], None) for index in range(start, stop)]
            )
        links = Association.count()
        if links != 2 * count:
            raise RuntimeError("expected %d associations, got %d" % (2 * count, links))

    return work


def message(index: int) -> dict:
    """One delivered message, as State hands it to the store."""
    return dict(
        data='{"text": "hello number %d"}' % index,
        channel="news",
        event="message",
        mid="%032x" % index,
        timestamp=1_700_000_000.0 + index,
    )


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _cpu_seconds(pid: int, at: float | None = None) -> float:
    """User + system CPU seconds of a process so far (at `at` if given)."""
    if at is not None:
        while time.time() < at:
            time.sleep(0.001)
    with open("/proc/%d/stat" % pid) as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _publisher(args: tuple) -> tuple[int, int, list[float]]:
    """One process of publishers: (committed, refused, latencies in s)."""
    import http.client
    import json
    import threading

    port, sid, threads, seconds, start_at = args
    path = "/events?sid=" + sid
    results: list[tuple[int, int, list[float]]] = []

    def publish() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        done, refused, latencies = 0, 0, []
        while time.time() < start_at:
            time.sleep(0.001)
        end = start_at + seconds
        while time.time() < end:
            body = json.dumps({"channel": "bench", "data": "x" * 64, "event": "e"})
            began = time.perf_counter()
            connection.request("POST", path, body, {"Content-Type": "application/json"})
            response = connection.getresponse()
            response.read()
            latencies.append(time.perf_counter() - began)
            if response.status == 200:
                done += 1
            else:
                refused += 1
        connection.close()
        results.append((done, refused, latencies))

    workers = [threading.Thread(target=publish) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return (
        sum(r[0] for r in results),
        sum(r[1] for r in results),
        [x for r in results for x in r[2]],
    )


def serve_bench(clients: int, processes: int, seconds: float) -> None:
    """Persisted REST publishes/s against the real server, N concurrent clients."""
    import multiprocessing
    import re
    import signal
    import subprocess

    import requests

    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    data = tempfile.mkdtemp(prefix="pushi-bench-")
    app_port, ws_port = _free_port(), _free_port()
    env = dict(os.environ)
    env.update(
        APP_HOST="127.0.0.1",
        APP_PORT=str(app_port),
        SERVER_HOST="127.0.0.1",
        SERVER_PORT=str(ws_port),
        PUSHI_DATA=os.path.join(data, "store"),
        PYTHONPATH=os.path.join(root, "src"),
        LEVEL="INFO",
    )
    log_path = os.path.join(data, "server.log")
    with open(log_path, "wb") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "pushi.base"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    api = "http://127.0.0.1:%d/" % app_port
    try:
        for _ in range(300):
            try:
                if requests.get(api + "health/ready", timeout=1).ok:
                    break
            except requests.RequestException:
                pass
            time.sleep(0.1)
        created = requests.post(api + "apps", json={"name": "bench"}).json()
        sid = requests.get(
            api + "login",
            params=dict(
                app_id=created["ident"],
                app_key=created["key"],
                app_secret=created["secret"],
            ),
        ).json()["token"]
        processes = max(1, min(processes, clients))
        shares = [
            clients // processes + (i < clients % processes) for i in range(processes)
        ]
        start_at = time.time() + 1.0
        import resource

        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        with multiprocessing.Pool(processes) as pool:
            cpu_before = _cpu_seconds(server.pid, start_at)
            parts = pool.map(
                _publisher,
                [(app_port, sid, share, seconds, start_at) for share in shares],
            )
            cpu_used = _cpu_seconds(server.pid) - cpu_before
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        client_cpu = (after.ru_utime + after.ru_stime) - (
            children.ru_utime + children.ru_stime
        )
        done = sum(p[0] for p in parts)
        refused = sum(p[1] for p in parts)
        latencies = sorted(x for p in parts for x in p[2])
        stored = requests.get(api + "events", params=dict(sid=sid, count=1)).json()[
            "events"
        ]
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(60)
    with open(log_path, encoding="utf-8", errors="replace") as log:
        text = log.read()
    store = "MongoDB" if os.environ.get("MONGO_URL") else "embedded"
    print(
        "real server, %s store, %d concurrent publishers, %.0f s"
        % (store, clients, seconds)
    )
    print(
        "persisted REST events: %d committed (%.0f events/s), %d refused"
        % (done, done / seconds, refused)
    )
    if done:
        print(
            "server CPU: %.0f µs per committed event (%.0f%% of one core)"
            % (cpu_used / done * 1e6, cpu_used / seconds * 100)
        )
        print(
            "publishers' CPU: %.0f%% of one core (the load generator shares the "
            "machine)" % (client_cpu / seconds * 100)
        )
    if latencies:

        def pick(q: float) -> float:
            return latencies[min(len(latencies) - 1, int(q * len(latencies)))]

        print(
            "answer latency: p50 %.1f ms, p99 %.1f ms, max %.1f ms"
            % (pick(0.5) * 1e3, pick(0.99) * 1e3, latencies[-1] * 1e3)
        )
    print("newest stored id: %s" % (stored[0]["id"] if stored else None))
    found = re.findall(r"store batches: (.*)", text)
    print("batch sizes (triggers per commit): %s" % (found[-1] if found else "?"))
    shutil.rmtree(data, ignore_errors=True)


def main() -> None:
    """Prints one line per measure: what, how many documents, documents/s."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--server", type=int, metavar="N", default=0)
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=10.0)
    options = parser.parse_args()
    if options.server:
        serve_bench(options.server, options.processes, options.seconds)
        return
    measures = [
        ("save() with id counter", save_with_counter, BenchEvent),
        ("save() without counter", save_plain, BenchPlain),
        (
            "insert_many, batches of %d" % options.batch,
            batches(options.batch),
            BenchEvent,
        ),
        (
            "write_events, batches of %d" % options.batch,
            triggers(options.batch),
            PushiEvent,
        ),
    ]
    print("embedded store (neosqlite %s, SQLite %s)" % _versions())
    for label, work, model in measures:
        for count in options.sizes:
            rate = run(count, work, model)
            print("%-28s %7d documents  %9.0f documents/s" % (label, count, rate))


def _versions() -> tuple[str, str]:
    import sqlite3

    import neosqlite

    return neosqlite.__version__, sqlite3.sqlite_version


if __name__ == "__main__":
    main()
