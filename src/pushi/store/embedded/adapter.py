"""The adapter: the SQLite connection, its lock, transactions, ids and encoder."""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import re
import struct
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

import appier
import neosqlite
from neosqlite.sql_utils import quote_table_name

from .collection import EmbeddedCollection
from .values import is_object_id

DB_FILE = "pushi.db"
""" The name of the SQLite file inside the data directory """

ARRAYS_TABLE = "_pushi_array_paths"
""" Field paths that have held a list in some document of a collection """

BUSY_TIMEOUT = 30.0
""" Seconds a write waits for another process's write lock before failing """

_HEX_ID = re.compile(r"[0-9a-fA-F]{24}\Z")


class EmbeddedEncoder(json.JSONEncoder):
    """JSON encoder for documents read from the embedded store (or MongoDB).

    Identifiers are plain strings here, but a document may still carry an
    ObjectId (bson or neosqlite's) or a datetime, which neosqlite decodes.
    """

    def default(self, o: Any) -> Any:
        """Encodes object ids as their hex string, datetimes as ISO 8601."""
        if is_object_id(o):
            return str(o)
        if isinstance(o, (datetime.datetime, datetime.date)):
            return o.isoformat()
        if isinstance(o, bytes):
            return o.decode("utf-8")
        return json.JSONEncoder.default(self, o)


class EmbeddedAdapter(appier.data.DataAdapter):
    """Appier data adapter storing every collection in one SQLite file.

    :param path: The data directory (created if missing); defaults to the
        ``PUSHI_DATA`` setting, else ``./pushi-data``. The database opens
        lazily, on first use, so constructing the adapter touches no disk.
    """

    def __init__(self, path: str | None = None, *args: Any, **kwargs: Any) -> None:
        appier.data.DataAdapter.__init__(self, *args, **kwargs)
        path = path or appier.conf("PUSHI_DATA", "./pushi-data")
        self.path = os.path.abspath(str(path))
        self.file_path = os.path.join(self.path, DB_FILE)
        self.lock = threading.RLock()
        self._db: neosqlite.Connection | None = None
        self._db_pid = 0
        self._collections: dict[str, EmbeddedCollection] = {}
        self._arrays: dict[str, set[str]] = {}
        self._jsonb: dict[str, bool] = {}
        self._id_lock = threading.Lock()
        self._id_pid = -1
        self._id_random = b""
        self._id_counter = 0

    def encoder(self) -> type[json.JSONEncoder]:
        """The JSON encoder models use to dump documents of this store."""
        return EmbeddedEncoder

    def collection(self, name: str, *args: Any, **kwargs: Any) -> EmbeddedCollection:
        """The collection called ``name`` (its table is created on first use)."""
        collection = self._collections.get(name)
        if collection is None:
            quote_table_name(name)
            collection = self._collections.setdefault(
                name, EmbeddedCollection(self, name)
            )
        return collection

    def close(self) -> None:
        """Closes the database; the next operation opens it again."""
        with self.lock:
            db, self._db = self._db, None
            self._arrays.clear()
            self._jsonb.clear()
            # a handle inherited through fork() is left alone: closing it in
            # the child could checkpoint or unlink the parent's WAL
            if db is not None and self._db_pid == os.getpid():
                db.close()

    def reset(self) -> None:
        """Drops the connection (Appier calls this around a fork: a SQLite
        handle must never be used by two processes)."""
        self.close()

    def get_db(self) -> neosqlite.Connection:
        """The neosqlite connection, opened if needed.

        Direct use bypasses the adapter's lock: hold ``adapter.lock`` around it
        when other threads may be using the store.
        """
        with self.lock:
            if self._db is not None and self._db_pid != os.getpid():
                self.close()
            if self._db is None:
                self._db = self._open()
                self._db_pid = os.getpid()
            return self._db

    def drop_db(self, *args: Any, **kwargs: Any) -> None:
        """Deletes every collection: the database file and its WAL are removed
        and a fresh, empty database opens on next use."""
        with self.lock:
            self.close()
            for suffix in ("", "-wal", "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    os.remove(self.file_path + suffix)

    def object_id(self, value: Any = None) -> str:
        """A document identifier: a new one without ``value``, else ``value``
        normalised to the 24 lower-case hex digits this store keeps."""
        if not value:
            return self._id()
        text = str(value)
        if not _HEX_ID.match(text):
            raise appier.OperationalError(
                message="Expected object id of 24 hex digits, got %r" % value
            )
        return text.lower()

    def _id(self) -> str:
        # ObjectId layout (time, per-process random, counter) so ids sort by
        # creation time; Appier's base generator leaks its lock on success,
        # which would deadlock a second thread
        with self._id_lock:
            pid = os.getpid()
            if pid != self._id_pid:
                self._id_pid = pid
                self._id_random = os.urandom(5)
                self._id_counter = int.from_bytes(os.urandom(3), "big")
            self._id_counter = (self._id_counter + 1) & 0xFFFFFF
            counter = self._id_counter
        token = struct.pack(">I", int(time.time()) & 0xFFFFFFFF)
        token += self._id_random + counter.to_bytes(3, "big")
        return token.hex()

    # -- internals shared with the collections ---------------------------------

    def _open(self) -> neosqlite.Connection:
        os.makedirs(self.path, exist_ok=True)
        db = neosqlite.Connection(
            self.file_path,
            journal_mode="WAL",
            timeout=BUSY_TIMEOUT,
            # one connection shared by every thread, serialised by self.lock
            check_same_thread=False,
        )
        # WAL + NORMAL: a commit is an append to the WAL (no fsync), the WAL
        # is fsynced at checkpoints; a crash of the process loses nothing, a
        # power cut may lose the last commits but never corrupts the file,
        # and writes stay at thousands per second instead of one fsync each
        db.db.execute("PRAGMA synchronous = NORMAL")
        db.db.execute(
            "CREATE TABLE IF NOT EXISTS %s (collection TEXT NOT NULL, "
            "path TEXT NOT NULL, PRIMARY KEY (collection, path))" % ARRAYS_TABLE
        )
        self._arrays.clear()
        for collection, path in db.db.execute(
            "SELECT collection, path FROM %s" % ARRAYS_TABLE
        ):
            self._arrays.setdefault(collection, set()).add(path)
        return db

    @contextlib.contextmanager
    def _reading(self) -> Iterator[neosqlite.Connection]:
        with self.lock:
            yield self.get_db()

    @contextlib.contextmanager
    def _writing(self) -> Iterator[neosqlite.Connection]:
        # IMMEDIATE takes the write lock up front: a read-modify-write (a
        # counter) cannot interleave with another process's write, and a busy
        # database is waited for (busy timeout) instead of failing mid-way
        with self.lock:
            db = self.get_db()
            if db.db.in_transaction:
                yield db
                return
            db.db.execute("BEGIN IMMEDIATE")
            try:
                yield db
                db.db.execute("COMMIT")
            except BaseException:
                if db.db.in_transaction:
                    db.db.execute("ROLLBACK")
                raise

    def _base(self, name: str) -> neosqlite.Collection:
        return self.get_db()[name]

    def _array_paths(self, name: str) -> set[str]:
        return self._arrays.get(name, set())

    def _note_arrays(self, name: str, paths: Iterable[str]) -> None:
        known = self._arrays.setdefault(name, set())
        fresh = [path for path in paths if path not in known]
        if not fresh:
            return
        self.get_db().db.executemany(
            "INSERT OR IGNORE INTO %s (collection, path) VALUES (?, ?)" % ARRAYS_TABLE,
            [(name, path) for path in fresh],
        )
        known.update(fresh)

    def _is_jsonb(self, name: str) -> bool:
        # neosqlite stores JSONB blobs when SQLite has them (3.45+), and text
        # JSON otherwise; the fast path must decode what is there
        jsonb = self._jsonb.get(name)
        if jsonb is None:
            db = self._base(name).db
            row = db.execute(
                "SELECT type FROM pragma_table_info(?) WHERE name = 'data'", (name,)
            ).fetchone()
            jsonb = self._jsonb[name] = bool(row) and row[0].upper() == "JSONB"
        return jsonb
