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


def main() -> None:
    """Prints one line per measure: what, how many documents, documents/s."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--batch", type=int, default=100)
    options = parser.parse_args()
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
