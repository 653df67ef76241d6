"""The embedded store: an Appier data adapter over neosqlite (SQLite).

Appier models reach storage through ``app.adapter``; this module gives them a
durable, zero-setup store in a data directory, with the MongoDB semantics the
models rely on (see ``appier.data.MongoCollection``), so the models run the
same against MongoDB and against this store.

Layout: one SQLite file (``<dir>/pushi.db``) in WAL mode, one table per
collection, as neosqlite creates it (``id`` rowid, ``_id`` text column with a
unique index, ``data`` JSON). Every write touches one row per document and the
indexes' B-trees: O(log n), never a rewrite of the file.

What neosqlite (1.17) gets wrong for the models is worked around here:

- reads: equality compiles to ``= v OR <v in a list>``, which no index can
  serve (unless an index name happens to end in the field's name), and an
  index on a field named ``id`` is silently not created. Filters
  this module can translate (equality, ``$in``, ``$nin``, ``$ne``, ranges,
  ``$exists``, ``$regex``, ``$not``, ``$all``, ``$and``/``$or``/``$nor`` on plain
  field paths; all of Appier's) become SQL over the same ``json_extract``
  expressions as the indexes ``ensure_index`` creates. List semantics are
  kept by remembering which paths ever held a list (``_pushi_array_paths``):
  only those get the element-wise test. Other filters go to neosqlite.
- updates: its ``$set`` stores True/False as 1/0 (which Appier then reads back
  as True) and datetimes as text, ``new=True`` is ignored and an upsert gets a
  neosqlite ObjectId. Update operators run here on the stored document, which
  is written back whole; exotic ones (positional paths, ``$pull`` with a
  condition, ``$bit``) are left to neosqlite.
- ``insert_many`` is not one transaction there; here it is.

Threading: one connection, guarded by one re-entrant lock, and every write is a
``BEGIN IMMEDIATE`` transaction. Measured on the 2-CPU target (4 writer threads,
neosqlite inserts): ~12,000 writes/s with the lock against ~16,000 with one
connection per thread; with 3 busy readers alongside, the lock kept ~9,500
writes/s while per-thread connections let the readers starve writers to
~2,800/s. Event writes matter more than read concurrency here, and a single
connection also makes ``close``/``reset``/``drop_db`` and atomic
read-modify-write (counters) trivial, so the lock wins.
"""

from __future__ import annotations

import contextlib
import copy
import datetime
import hashlib
import json
import os
import re
import struct
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import appier
import neosqlite
from neosqlite.collection.json_helpers import (
    neosqlite_json_dumps,
    neosqlite_json_loads,
)
from neosqlite.objectid import ObjectId as NeoObjectId
from neosqlite.results import (
    DeleteResult,
    InsertManyResult,
    InsertOneResult,
    UpdateResult,
)
from neosqlite.sql_utils import quote_table_name

try:
    import bson
except ImportError:  # pragma: no cover - pymongo (and bson) is a dependency
    bson = None

DB_FILE = "pushi.db"
""" The name of the SQLite file inside the data directory """

INDEX_PREFIX = "pushi_ix_"
""" Prefix of the indexes this module creates; kept apart from neosqlite's own
``idx_<table>_<field>`` names, whose ``idx_<table>_id`` (the unique ``_id``
column index) would otherwise swallow an index on a field called ``id`` """

ARRAYS_TABLE = "_pushi_array_paths"
""" Field paths that have held a list in some document of a collection """

BUSY_TIMEOUT = 30.0
""" Seconds a write waits for another process's write lock before failing """

_FIELD_PART = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_HEX_ID = re.compile(r"[0-9a-fA-F]{24}\Z")
_NUMERIC = ("integer", "real")
_RANGES = {"$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}
_REGEX_FLAGS = "imsx"  # MongoDB's $options that Python's re reads the same
_ARRAY_UPDATES = ("$push", "$addToSet", "$pushAll")


class EmbeddedEncoder(json.JSONEncoder):
    """JSON encoder for documents read from the embedded store (or MongoDB).

    Identifiers are plain strings here, but a document may still carry an
    ObjectId (bson or neosqlite's) or a datetime, which neosqlite decodes.
    """

    def default(self, o: Any) -> Any:
        """Encodes object ids as their hex string, datetimes as ISO 8601."""
        if isinstance(o, NeoObjectId) or (bson and isinstance(o, bson.ObjectId)):
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


class EmbeddedCollection(appier.data.Collection):
    """One collection of the embedded store, with the calls Appier models make
    (the same as ``appier.data.MongoCollection`` over pymongo).

    ``find`` returns a list (not a cursor): results are read while the store's
    lock is held, so they never straddle another thread's write.
    """

    def __init__(self, owner: EmbeddedAdapter, name: str) -> None:
        appier.data.Collection.__init__(self, owner, name)
        self.owner: EmbeddedAdapter = owner

    @property
    def _base(self) -> neosqlite.Collection:
        """The neosqlite collection (looked up each time: the adapter may have
        reopened its database since)."""
        return self.owner._base(self.name)

    def _table(self) -> str:
        # the quoted table name, once neosqlite has created the table
        self.owner._base(self.name)
        return quote_table_name(self.name)

    def _sql(self, query: str, params: Sequence[Any] = ()) -> Any:
        return self.owner.get_db().db.execute(query, params)

    # -- reads -------------------------------------------------------------------

    def find(
        self,
        filter: Mapping[str, Any] | None = None,
        projection: Any = None,
        *args: Any,
        skip: int = 0,
        limit: int = 0,
        sort: Any = None,
        **kwargs: Any,
    ) -> list[dict[str, Any]]:
        """The documents matching ``filter``, as pymongo's ``find``.

        :param projection: Field names (list) or a ``{field: 0|1}`` map; also
            accepted as ``fields=``.
        :param sort: ``[(field, direction), ...]``, direction 1 or -1.
        """
        self.log("find", filter, projection, skip=skip, limit=limit, sort=sort)
        projection = kwargs.pop("fields", projection)
        with self.owner._reading():
            documents = self._select(filter, sort, skip, limit)
        return [_project(document, projection) for document in documents]

    def find_one(
        self,
        filter: Mapping[str, Any] | None = None,
        projection: Any = None,
        *args: Any,
        skip: int = 0,
        sort: Any = None,
        **kwargs: Any,
    ) -> dict[str, Any] | None:
        """The first document matching ``filter``, or None."""
        kwargs.pop("limit", None)
        found = self.find(filter, projection, skip=skip, limit=1, sort=sort, **kwargs)
        return found[0] if found else None

    def count(self, filter: Mapping[str, Any] | None = None, **kwargs: Any) -> int:
        """How many documents match ``filter`` (as ``count_documents``)."""
        return self.count_documents(filter, **kwargs)

    def count_documents(
        self,
        filter: Mapping[str, Any] | None = None,
        skip: int = 0,
        limit: int = 0,
        **kwargs: Any,
    ) -> int:
        """How many documents match ``filter``, after ``skip``, at most ``limit``."""
        self.log("count_documents", filter)
        with self.owner._reading():
            where = self._where(filter)
            if where is None:
                count = self._base.count_documents(dict(filter or {}))
                count = max(count - (skip or 0), 0)
                return min(count, abs(limit)) if limit else count
            clause, params = where
            query = "SELECT 1 FROM %s WHERE %s" % (self._table(), clause)
            if skip or limit:
                query += " LIMIT ? OFFSET ?"
                params = params + [abs(limit) if limit else -1, skip or 0]
            return self._sql("SELECT COUNT(*) FROM (%s)" % query, params).fetchone()[0]

    # -- writes ------------------------------------------------------------------

    def insert(self, document: Any, *args: Any, **kwargs: Any) -> Any:
        """Inserts one document (a list goes to ``insert_many``); an ``_id`` is
        added to ``document`` when missing, as pymongo does."""
        if isinstance(document, list):
            return self.insert_many(document)
        self.log("insert", document)
        self._ensure_id(document)
        with self.owner._writing():
            result = self._base.insert_one(document)
            self.owner._note_arrays(self.name, _array_paths(document))
        return InsertOneResult(result.inserted_id)

    def insert_many(
        self, documents: Iterable[dict[str, Any]], *args: Any, **kwargs: Any
    ) -> InsertManyResult:
        """Inserts ``documents`` in one transaction: all of them or none (a
        duplicate ``_id`` rolls the whole batch back and raises)."""
        documents = list(documents)
        self.log("insert_many", len(documents))
        for document in documents:
            self._ensure_id(document)
        paths: set[str] = set()
        with self.owner._writing():
            base = self._base
            for document in documents:
                base.insert_one(document)
                paths.update(_array_paths(document))
            self.owner._note_arrays(self.name, paths)
        return InsertManyResult([document["_id"] for document in documents])

    def update(
        self,
        filter: Mapping[str, Any],
        update: Mapping[str, Any],
        *args: Any,
        upsert: bool = False,
        **kwargs: Any,
    ) -> UpdateResult:
        """Applies the ``update`` operators to the first document matching
        ``filter`` (pymongo's ``update_one``), inserting one if ``upsert``."""
        self.log("update", filter, update)
        _check_update(update)
        with self.owner._writing():
            found = self._select(filter, None, 0, 1)
            if not found:
                if not upsert:
                    return UpdateResult(0, 0, None)
                return UpdateResult(0, 0, self._upsert(filter, update)["_id"])
            before = found[0]
            after = self._modify(before, update)
        return UpdateResult(1, 0 if after == before else 1, None)

    def remove(
        self, filter: Mapping[str, Any] | None = None, *args: Any, **kwargs: Any
    ) -> DeleteResult:
        """Deletes every document matching ``filter`` (pymongo's ``delete_many``)."""
        self.log("remove", filter)
        with self.owner._writing():
            where = self._where(filter)
            if where is None:
                return self._base.delete_many(dict(filter or {}))
            clause, params = where
            cursor = self._sql(
                "DELETE FROM %s WHERE %s" % (self._table(), clause), params
            )
            return DeleteResult(cursor.rowcount)

    def find_and_modify(
        self,
        filter: Mapping[str, Any],
        update: Mapping[str, Any] | None = None,
        *args: Any,
        new: bool = False,
        upsert: bool = False,
        sort: Any = None,
        remove: bool = False,
        **kwargs: Any,
    ) -> dict[str, Any] | None:
        """Atomically updates (or removes) the first document matching
        ``filter`` and returns it, as pymongo's ``find_one_and_update``.

        :param new: Return the document after the update (pymongo's
            ``return_document=ReturnDocument.AFTER``, also accepted).
        :param upsert: Insert a document built from ``filter`` when none
            matches; with ``new`` that document is returned, else None.
        """
        self.log("find_and_modify", filter, update, new=new, upsert=upsert)
        new = bool(kwargs.pop("return_document", new))
        projection = kwargs.pop("projection", kwargs.pop("fields", None))
        if not remove:
            _check_update(update)
        with self.owner._writing():
            found = self._select(filter, sort, 0, 1)
            if not found:
                if remove or not upsert:
                    return None
                document = self._upsert(filter, update)
                return _project(document, projection) if new else None
            before = found[0]
            if remove:
                self._sql(
                    "DELETE FROM %s WHERE _id = ?" % self._table(),
                    (_column_id(before["_id"]),),
                )
                return _project(before, projection)
            after = self._modify(before, update)
        return _project(after if new else before, projection)

    # -- indexes -----------------------------------------------------------------

    def ensure_index(
        self,
        index: str | Sequence[Any],
        *args: Any,
        direction: Any = True,
        unique: bool = False,
        **kwargs: Any,
    ) -> str:
        """Creates (if missing) an index, as ``MongoCollection.ensure_index``.

        ``index`` is a field path or a list of ``(field, direction)`` pairs (a
        compound index). For one field, every Appier ``direction`` (True,
        "all", 1, -1, "hashed"...) makes the same index: a SQLite B-tree is
        walked both ways and there are no hashed indexes to add.
        """
        self.log("ensure_index", index, direction=direction)
        if isinstance(index, str):
            keys = [(index, 1)]
        else:
            keys = [
                (key, 1) if isinstance(key, str) else (key[0], key[1]) for key in index
            ]
        if not keys:
            raise ValueError("An index needs at least one field")
        if len(keys) == 1 and keys[0][0] == "_id":
            return "_id"
        columns = []
        for field, order in keys:
            try:
                expression = "_id" if field == "_id" else _extract(_json_path(field))
            except _Unsupported:
                raise ValueError("Cannot index field %r" % field) from None
            # the order only matters between the columns of a compound index
            desc = len(keys) > 1 and _descending(order)
            columns.append(expression + (" DESC" if desc else ""))
        spec = ",".join(columns) + (" unique" if unique else "")
        digest = hashlib.sha1(spec.encode("utf-8")).hexdigest()[:8]
        name = "%s%s_%s_%s" % (
            INDEX_PREFIX,
            self.name,
            "_".join(field.replace(".", "_") for field, _order in keys),
            digest,
        )
        with self.owner._writing():
            self._sql(
                'CREATE %sINDEX IF NOT EXISTS "%s" ON %s (%s)'
                % (
                    "UNIQUE " if unique else "",
                    name,
                    self._table(),
                    ", ".join(columns),
                )
            )
        return name

    create_index = ensure_index

    def drop_indexes(self, *args: Any, **kwargs: Any) -> None:
        """Drops every index of the collection but the one on ``_id``."""
        self.log("drop_indexes")
        with self.owner._writing():
            for name in self._index_names():
                self._sql('DROP INDEX IF EXISTS "%s"' % name)
            self._base.drop_indexes()

    def index_names(self) -> list[str]:
        """The names of the indexes ``ensure_index`` created on the collection."""
        with self.owner._reading():
            return self._index_names()

    # -- internals (called with the adapter's lock held) -------------------------

    def _index_names(self) -> list[str]:
        self._table()
        rows = self._sql(
            "SELECT name FROM sqlite_master WHERE type = 'index' "
            "AND tbl_name = ? AND substr(name, 1, ?) = ? ORDER BY name",
            (self.name, len(INDEX_PREFIX), INDEX_PREFIX),
        )
        return [row[0] for row in rows]

    def _ensure_id(self, document: dict[str, Any]) -> None:
        if document.get("_id") is None:
            document["_id"] = self.owner._id()

    def _where(self, filter: Mapping[str, Any] | None) -> tuple[str, list] | None:
        # None: a filter the fast path does not translate (neosqlite runs it)
        try:
            return _Compiler(self.owner._array_paths(self.name)).where(filter or {})
        except _Unsupported:
            return None

    def _select(
        self,
        filter: Mapping[str, Any] | None,
        sort: Any,
        skip: int,
        limit: int,
    ) -> list[dict[str, Any]]:
        sort = _sort_keys(sort)
        where = self._where(filter)
        order = _order_by(sort) if where is not None else None
        if where is None or order is None:
            cursor = self._base.find(
                dict(filter or {}),
                sort=sort or None,
                skip=skip or None,
                limit=abs(limit) if limit else None,
            )
            return list(cursor)
        clause, params = where
        data = "json(data)" if self.owner._is_jsonb(self.name) else "data"
        query = "SELECT _id, %s FROM %s WHERE %s" % (data, self._table(), clause)
        if order:
            query += " ORDER BY " + order
        if skip or limit:
            query += " LIMIT ? OFFSET ?"
            params = params + [abs(limit) if limit else -1, skip or 0]
        rows = self._sql(query, params).fetchall()
        return [_load(stored_id, text) for stored_id, text in rows]

    def _modify(
        self, document: dict[str, Any], update: Mapping[str, Any]
    ) -> dict[str, Any]:
        # the operators run here, on the stored document, which is written
        # back whole: neosqlite's SQL update path stores True/False as 1/0 and
        # datetimes as text (1.17), which Appier would then read back wrong
        try:
            changed = _apply_update(document, update, inserting=False)
        except _Unsupported:
            self._base.update_one({"_id": document["_id"]}, dict(update))
            self.owner._note_arrays(self.name, _update_array_paths(update))
            return self._select({"_id": document["_id"]}, None, 0, 1)[0]
        self.owner._note_arrays(self.name, _array_paths(changed))
        data = "jsonb(?)" if self.owner._is_jsonb(self.name) else "?"
        self._sql(
            "UPDATE %s SET data = %s WHERE _id = ?" % (self._table(), data),
            (_dumps(changed), _column_id(document["_id"])),
        )
        return changed

    def _upsert(
        self, filter: Mapping[str, Any], update: Mapping[str, Any]
    ) -> dict[str, Any]:
        # MongoDB's upsert: the filter's equalities make the document, the
        # update (with $setOnInsert) is applied to it, then it is inserted;
        # the _id is one of this store's, not a neosqlite ObjectId
        document: dict[str, Any] = {}
        _upsert_base(filter, document)
        try:
            document = _apply_update(document, update, inserting=True)
            self._ensure_id(document)
        except _Unsupported:
            self._ensure_id(document)
            rest = dict(update)
            for path, value in rest.pop("$setOnInsert", {}).items():
                _set_path(document, path, value)
            self._base.insert_one(document)
            self.owner._note_arrays(self.name, _array_paths(document))
            return self._modify(document, rest) if rest else document
        self._base.insert_one(document)
        self.owner._note_arrays(self.name, _array_paths(document))
        return document


def insert_many(collection: appier.data.Collection, documents: Iterable[dict]) -> list:
    """Batch-inserts ``documents`` into an Appier collection of either adapter.

    The embedded store writes them in one transaction; Appier's Mongo adapter
    gets one ``insert_many`` round trip (ordered). Documents without ``_id``
    get one. Any other collection type falls back to one insert each.

    :returns: The ``_id`` of every document, in order.
    """
    documents = list(documents)
    if not documents:
        return []
    if isinstance(collection, EmbeddedCollection):
        return list(collection.insert_many(documents).inserted_ids)
    base = getattr(collection, "_base", None)
    if base is not None and hasattr(base, "insert_many"):
        collection.log("insert_many", len(documents))
        return list(base.insert_many(documents).inserted_ids)
    for document in documents:
        collection.insert(document)
    return [document.get("_id") for document in documents]


# -- filter translation ------------------------------------------------------------


class _Unsupported(Exception):
    """A query shape the SQL fast path leaves to neosqlite."""


class _Target(NamedTuple):
    """Where a filter's field lives in SQL."""

    value: str
    """ The SQL expression of the value (``_id`` or ``json_extract``) """

    kind: str
    """ The SQL expression of its JSON type (empty for ``_id``) """

    path: str
    """ The JSON path literal, quoted (empty for ``_id``) """

    array: bool
    """ If the path has held a list in some document """

    is_id: bool
    """ If this is ``_id``, kept in its own indexed column """


class _Compiler:
    """Translates a MongoDB filter into a SQL condition over neosqlite's table.

    Scalar comparisons carry a ``json_type`` guard so that, as in MongoDB, 1
    never matches ``true`` nor "1", and ranges never cross types. Paths known
    to hold lists in some document also match on any element (MongoDB array
    semantics); other paths compare as plain ``json_extract`` expressions,
    which the indexes of ``ensure_index`` serve.
    """

    def __init__(self, arrays: set[str]) -> None:
        self.arrays = arrays
        self.params: list[Any] = []

    def where(self, filter: Mapping[str, Any]) -> tuple[str, list]:
        if not isinstance(filter, Mapping):
            raise _Unsupported()
        return self._document(filter), self.params

    def _document(self, filter: Mapping[str, Any]) -> str:
        clauses = [self._item(key, value) for key, value in filter.items()]
        return " AND ".join(clauses) if clauses else "1"

    def _item(self, key: str, value: Any) -> str:
        if key in ("$and", "$or", "$nor"):
            if not isinstance(value, (list, tuple)) or not value:
                raise _Unsupported()
            parts = ["(%s)" % self._document(_mapping(item)) for item in value]
            if key == "$and":
                return "(%s)" % " AND ".join(parts)
            joined = "(%s)" % " OR ".join(parts)
            return joined if key == "$or" else "NOT IFNULL(%s, 0)" % joined
        if key.startswith("$"):
            raise _Unsupported()
        target = self._target(key)
        if (
            isinstance(value, Mapping)
            and value
            and all(str(name).startswith("$") for name in value)
        ):
            return self._operators(target, value)
        return self._equal(target, value)

    def _target(self, field: str) -> _Target:
        if field == "_id":
            return _Target("_id", "", "", False, True)
        path = _json_path(field)
        parts = field.split(".")
        for end in range(1, len(parts)):
            # below a list MongoDB matches inside every element: neosqlite's job
            if ".".join(parts[:end]) in self.arrays:
                raise _Unsupported()
        literal = "'%s'" % path
        return _Target(
            "json_extract(data, %s)" % literal,
            "json_type(data, %s)" % literal,
            literal,
            field in self.arrays,
            False,
        )

    def _operators(self, target: _Target, operators: Mapping[str, Any]) -> str:
        clauses = []
        for name, value in operators.items():
            if name == "$eq":
                clauses.append(self._equal(target, value))
            elif name == "$ne":
                clauses.append("NOT IFNULL(%s, 0)" % self._equal(target, value))
            elif name == "$in":
                clauses.append(self._in(target, value))
            elif name == "$nin":
                clauses.append("NOT IFNULL(%s, 0)" % self._in(target, value))
            elif name in _RANGES:
                clauses.append(self._compare(target, _RANGES[name], value))
            elif name == "$exists":
                clauses.append(self._exists(target, value))
            elif name == "$regex":
                clauses.append(self._regex(target, value, operators.get("$options")))
            elif name == "$options" and "$regex" in operators:
                continue
            elif name == "$not" and isinstance(value, Mapping) and value:
                inner = self._operators(target, value)
                clauses.append("NOT IFNULL(%s, 0)" % inner)
            elif name == "$all" and isinstance(value, (list, tuple)):
                parts = [self._equal(target, item) for item in value]
                clauses.append("(%s)" % " AND ".join(parts) if parts else "0")
            else:
                raise _Unsupported()
        return "(%s)" % " AND ".join(clauses)

    def _any(self, target: _Target, scalar: str, element: Any) -> str:
        # a list-valued path matches when the value or any element matches;
        # element() builds the per-element condition (after the scalar one, so
        # the parameters stay in the order of the SQL text)
        if not target.array:
            return scalar
        return (
            "(%s OR (%s = 'array' AND EXISTS (SELECT 1 FROM json_each(data, %s) "
            "AS e WHERE %s)))" % (scalar, target.kind, target.path, element())
        )

    def _equal(self, target: _Target, value: Any) -> str:
        if target.is_id:
            return "_id = %s" % self._param(_id_value(value))
        if value is None:
            # missing or null, or (MongoDB) a list holding a null
            scalar = "%s IS NULL" % target.value
            return self._any(target, scalar, lambda: "e.type = 'null'")
        scalar = self._typed(target.value, target.kind, "=", value)
        return self._any(
            target, scalar, lambda: self._typed("e.value", "e.type", "=", value)
        )

    def _in(self, target: _Target, values: Any) -> str:
        if not isinstance(values, (list, tuple, set)):
            raise _Unsupported()
        values = list(values)
        if not values:
            return "0"
        if target.is_id:
            marks = ", ".join(self._param(_id_value(value)) for value in values)
            return "_id IN (%s)" % marks
        scalars = [value for value in values if value is not None]
        kinds = {_kind(value) for value in scalars}
        if target.array or "true" in kinds or "false" in kinds:
            return "(%s)" % " OR ".join(self._equal(target, value) for value in values)
        clauses = []
        if scalars:
            marks = ", ".join(self._param(value) for value in scalars)
            types = sorted({name for value in scalars for name in _types(value)})
            clauses.append(
                "(%s IN (%s) AND %s IN (%s))"
                % (
                    target.value,
                    marks,
                    target.kind,
                    ", ".join("'%s'" % t for t in types),
                )
            )
        if len(scalars) < len(values):
            clauses.append("%s IS NULL" % target.value)
        return "(%s)" % " OR ".join(clauses)

    def _compare(self, target: _Target, operator: str, value: Any) -> str:
        if target.is_id:
            return "_id %s %s" % (operator, self._param(_id_value(value)))
        if _kind(value) not in ("number", "text"):
            raise _Unsupported()
        scalar = self._typed(target.value, target.kind, operator, value)
        return self._any(
            target, scalar, lambda: self._typed("e.value", "e.type", operator, value)
        )

    def _exists(self, target: _Target, value: Any) -> str:
        if target.is_id:
            return "1" if value else "0"
        # json_type is 'null' for a null field and SQL NULL for a missing one
        return "%s IS %sNULL" % (target.kind, "NOT " if value else "")

    def _regex(self, target: _Target, pattern: Any, options: Any) -> str:
        if not isinstance(pattern, str) or not isinstance(options or "", str):
            raise _Unsupported()
        flags = options or ""
        if any(letter not in _REGEX_FLAGS for letter in flags):
            raise _Unsupported()
        pattern = ("(?%s)" % flags if flags else "") + pattern
        if target.is_id:
            return "REGEXP(%s, _id)" % self._param(pattern)
        scalar = "(%s = 'text' AND REGEXP(%s, %s))" % (
            target.kind,
            self._param(pattern),
            target.value,
        )
        return self._any(
            target,
            scalar,
            lambda: "(e.type = 'text' AND REGEXP(%s, e.value))" % self._param(pattern),
        )

    def _typed(self, expression: str, kind: str, operator: str, value: Any) -> str:
        # the comparison first, so an index on the expression can serve it
        value_kind = _kind(value)
        if value_kind in ("true", "false"):
            if operator != "=":
                raise _Unsupported()
            return "%s = '%s'" % (kind, value_kind)
        if value_kind not in ("number", "text"):
            raise _Unsupported()
        types = ", ".join("'%s'" % name for name in _types(value))
        return "(%s %s %s AND %s IN (%s))" % (
            expression,
            operator,
            self._param(value),
            kind,
            types,
        )

    def _param(self, value: Any) -> str:
        self.params.append(value)
        return "?"


def _mapping(value: Any) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise _Unsupported()
    return value


def _kind(value: Any) -> str:
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "text"
    return "other"


def _types(value: Any) -> tuple[str, ...]:
    return _NUMERIC if _kind(value) == "number" else ("text",)


def _id_value(value: Any) -> str:
    # ids are kept as strings in neosqlite's _id column
    if isinstance(value, str):
        return value
    if isinstance(value, NeoObjectId) or (bson and isinstance(value, bson.ObjectId)):
        return str(value)
    raise _Unsupported()


def _json_path(field: str) -> str:
    parts = field.split(".")
    if not all(_FIELD_PART.match(part) for part in parts):
        raise _Unsupported()
    return "$." + field


def _extract(path: str) -> str:
    # the exact text of the index expressions: SQLite matches them verbatim
    return "json_extract(data, '%s')" % path


def _descending(direction: Any) -> bool:
    if isinstance(direction, str):
        return direction.lower() in ("-1", "desc", "descending")
    return direction == -1


def _sort_keys(sort: Any) -> list[tuple[str, int]]:
    if not sort:
        return []
    if isinstance(sort, str):
        return [(sort, 1)]
    if isinstance(sort, Mapping):
        sort = list(sort.items())
    elif len(sort) == 2 and isinstance(sort[0], str) and not isinstance(sort[1], str):
        sort = [sort]
    keys = []
    for item in sort:
        if isinstance(item, str):
            keys.append((item, 1))
        else:
            keys.append((item[0], -1 if _descending(item[1]) else 1))
    return keys


def _order_by(keys: list[tuple[str, int]]) -> str | None:
    # None: a key the fast path cannot sort on
    terms = []
    for field, direction in keys:
        if field == "_id":
            expression = "_id"
        else:
            try:
                expression = _extract(_json_path(field))
            except _Unsupported:
                return None
        terms.append(expression + (" DESC" if direction == -1 else " ASC"))
    return ", ".join(terms)


def _load(stored_id: Any, text: Any) -> dict[str, Any]:
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    document = neosqlite_json_loads(text)
    if "_id" not in document:
        document["_id"] = stored_id
    return document


def _project(document: dict[str, Any], projection: Any) -> dict[str, Any]:
    """MongoDB projection: a list of fields, or a map of 1s (with ``_id`` kept
    unless set to 0) or of 0s (those fields left out)."""
    if not projection:
        return document
    if isinstance(projection, Mapping):
        spec = {key: bool(value) for key, value in projection.items()}
    else:
        spec = {key: True for key in projection}
    keep_id = spec.pop("_id", True)
    if spec and any(spec.values()):
        if not all(spec.values()):
            raise ValueError("Projection cannot mix inclusion and exclusion")
        result: dict[str, Any] = {}
        if keep_id and "_id" in document:
            result["_id"] = document["_id"]
        for path in spec:
            found, value = _get_path(document, path)
            if found:
                _set_path(result, path, value)
        return result
    result = dict(document)
    if not keep_id:
        result.pop("_id", None)
    for path in spec:
        _unset_path(result, path)
    return result


def _get_path(document: Mapping[str, Any], path: str) -> tuple[bool, Any]:
    value: Any = document
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return False, None
        value = value[part]
    return True, value


def _set_path(document: dict[str, Any], path: str, value: Any) -> None:
    parts = path.split(".")
    for part in parts[:-1]:
        child = document.get(part)
        if not isinstance(child, dict):
            child = document[part] = {}
        document = child
    document[parts[-1]] = value


def _unset_path(document: dict[str, Any], path: str) -> None:
    parts = path.split(".")
    for part in parts[:-1]:
        child = document.get(part)
        if not isinstance(child, dict):
            return
        child = document[part] = dict(child)
        document = child
    document.pop(parts[-1], None)


def _array_paths(value: Any, prefix: str = "") -> Iterator[str]:
    # paths holding a list (not descending into lists: any path below one
    # counts as array-bound, which _Compiler._target checks by prefix)
    if not isinstance(value, Mapping):
        return
    for key, child in value.items():
        path = prefix + str(key)
        if isinstance(child, (list, tuple)):
            yield path
        elif isinstance(child, Mapping):
            yield from _array_paths(child, path + ".")


def _update_array_paths(update: Mapping[str, Any]) -> Iterator[str]:
    for operator, fields in update.items():
        if not isinstance(fields, Mapping):
            continue
        if operator in ("$set", "$setOnInsert"):
            for path, value in fields.items():
                if isinstance(value, (list, tuple)):
                    yield path
                elif isinstance(value, Mapping):
                    yield from _array_paths(value, path + ".")
        elif operator in _ARRAY_UPDATES:
            yield from fields
        elif operator == "$rename":
            yield from (str(new) for new in fields.values())


def _check_update(update: Any) -> None:
    if not isinstance(update, Mapping) or not update:
        raise ValueError("An update needs operators, e.g. {'$set': {...}}")
    if not all(str(key).startswith("$") for key in update):
        raise ValueError("Update keys must all be operators ('$set', '$inc'...)")


def _upsert_base(filter: Mapping[str, Any], document: dict[str, Any]) -> None:
    for key, value in (filter or {}).items():
        if key == "$and" and isinstance(value, (list, tuple)):
            for item in value:
                _upsert_base(_mapping_or_empty(item), document)
        elif key.startswith("$"):
            continue
        elif (
            isinstance(value, Mapping)
            and value
            and all(str(name).startswith("$") for name in value)
        ):
            if "$eq" in value:
                _set_path(document, key, value["$eq"])
        else:
            _set_path(document, key, value)


def _mapping_or_empty(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


# -- update operators ------------------------------------------------------------


def _apply_update(
    document: dict[str, Any], update: Mapping[str, Any], inserting: bool
) -> dict[str, Any]:
    """A copy of ``document`` with MongoDB's update operators applied; raises
    _Unsupported for what is left to neosqlite (positional paths, $bit...)."""
    result = copy.deepcopy(document)
    for operator, fields in update.items():
        apply = _UPDATERS.get(operator)
        if apply is None or not isinstance(fields, Mapping):
            raise _Unsupported()
        if operator == "$setOnInsert" and not inserting:
            continue
        for path, value in fields.items():
            parts = _update_parts(path)
            if parts[0] == "_id":
                # set once (an upsert whose filter has no _id), never changed
                plain = len(parts) == 1 and operator in ("$set", "$setOnInsert")
                if plain and "_id" not in result:
                    result["_id"] = value
                elif not (plain and _same(result["_id"], value)):
                    raise ValueError("The _id of a document cannot change")
                continue
            apply(result, parts, value)
    return result


def _update_parts(path: Any) -> list[str]:
    parts = str(path).split(".")
    for part in parts:
        # array positions ("a.0", "a.$", "a.$[]") are neosqlite's job
        if not part or part.startswith("$") or part.isdigit():
            raise _Unsupported()
    return parts


def _walk(
    document: dict[str, Any], parts: list[str], create: bool
) -> dict[str, Any] | None:
    # the dict holding the last part (None when a level is missing)
    current = document
    for part in parts[:-1]:
        child = current.get(part)
        if child is None and part not in current:
            if not create:
                return None
            child = current[part] = {}
        if not isinstance(child, dict):
            if not create:
                return None
            raise ValueError("Cannot create field %r in %r" % (part, child))
        current = child
    return current


def _lookup(document: dict[str, Any], parts: list[str]) -> tuple[bool, Any]:
    parent = _walk(document, parts, create=False)
    if parent is None or parts[-1] not in parent:
        return False, None
    return True, parent[parts[-1]]


def _assign(document: dict[str, Any], parts: list[str], value: Any) -> None:
    _walk(document, parts, create=True)[parts[-1]] = copy.deepcopy(value)


def _op_set(document: dict[str, Any], parts: list[str], value: Any) -> None:
    _assign(document, parts, value)


def _op_unset(document: dict[str, Any], parts: list[str], value: Any) -> None:
    parent = _walk(document, parts, create=False)
    if parent is not None:
        parent.pop(parts[-1], None)


def _number(value: Any, operator: str) -> Any:
    if _kind(value) != "number":
        raise ValueError("%s needs a number, got %r" % (operator, value))
    return value


def _op_inc(document: dict[str, Any], parts: list[str], value: Any) -> None:
    found, current = _lookup(document, parts)
    current = _number(current, "$inc") if found else 0
    _assign(document, parts, current + _number(value, "$inc"))


def _op_mul(document: dict[str, Any], parts: list[str], value: Any) -> None:
    found, current = _lookup(document, parts)
    current = _number(current, "$mul") if found else 0
    _assign(document, parts, current * _number(value, "$mul"))


def _op_min(document: dict[str, Any], parts: list[str], value: Any) -> None:
    found, current = _lookup(document, parts)
    if not found or _order(value) < _order(current):
        _assign(document, parts, value)


def _op_max(document: dict[str, Any], parts: list[str], value: Any) -> None:
    found, current = _lookup(document, parts)
    if not found or _order(value) > _order(current):
        _assign(document, parts, value)


def _op_rename(document: dict[str, Any], parts: list[str], value: Any) -> None:
    found, current = _lookup(document, parts)
    if found:
        _op_unset(document, parts, None)
        _assign(document, _update_parts(value), current)


def _op_current_date(document: dict[str, Any], parts: list[str], value: Any) -> None:
    _assign(document, parts, datetime.datetime.now(datetime.timezone.utc))


def _array_at(document: dict[str, Any], parts: list[str], operator: str) -> list:
    found, current = _lookup(document, parts)
    if not found or current is None:
        current = []
        _assign(document, parts, current)
        current = _lookup(document, parts)[1]
    if not isinstance(current, list):
        raise ValueError("%s needs a list at %r" % (operator, ".".join(parts)))
    return current


def _each(value: Any, allowed: tuple[str, ...]) -> tuple[list, dict]:
    if isinstance(value, Mapping) and "$each" in value:
        if any(key not in allowed for key in value) or not isinstance(
            value["$each"], list
        ):
            raise _Unsupported()
        return value["$each"], dict(value)
    return [value], {}


def _op_push(document: dict[str, Any], parts: list[str], value: Any) -> None:
    items, modifiers = _each(value, ("$each", "$position", "$slice"))
    target = _array_at(document, parts, "$push")
    position = modifiers.get("$position")
    items = copy.deepcopy(items)
    if position is None:
        target.extend(items)
    else:
        target[position:position] = items
    limit = modifiers.get("$slice")
    if limit is not None:
        target[:] = target[:limit] if limit >= 0 else target[limit:]


def _op_add_to_set(document: dict[str, Any], parts: list[str], value: Any) -> None:
    items, _modifiers = _each(value, ("$each",))
    target = _array_at(document, parts, "$addToSet")
    for item in items:
        if not any(_same(item, present) for present in target):
            target.append(copy.deepcopy(item))


def _op_pull(document: dict[str, Any], parts: list[str], value: Any) -> None:
    if isinstance(value, Mapping):
        raise _Unsupported()  # a condition: neosqlite evaluates it
    _op_pull_all(document, parts, [value])


def _op_pull_all(document: dict[str, Any], parts: list[str], value: Any) -> None:
    found, current = _lookup(document, parts)
    if not found:
        return
    if not isinstance(current, list) or not isinstance(value, list):
        raise ValueError("$pull needs a list at %r" % ".".join(parts))
    current[:] = [item for item in current if not any(_same(item, v) for v in value)]


def _op_pop(document: dict[str, Any], parts: list[str], value: Any) -> None:
    found, current = _lookup(document, parts)
    if not found or not current:
        return
    if not isinstance(current, list):
        raise ValueError("$pop needs a list at %r" % ".".join(parts))
    current.pop(0 if value == -1 else -1)


_UPDATERS = {
    "$set": _op_set,
    "$setOnInsert": _op_set,
    "$unset": _op_unset,
    "$inc": _op_inc,
    "$mul": _op_mul,
    "$min": _op_min,
    "$max": _op_max,
    "$rename": _op_rename,
    "$currentDate": _op_current_date,
    "$push": _op_push,
    "$addToSet": _op_add_to_set,
    "$pull": _op_pull,
    "$pullAll": _op_pull_all,
    "$pop": _op_pop,
}


def _same(first: Any, second: Any) -> bool:
    """MongoDB equality: 1 == 1.0, but True is not 1 and "1" is not 1."""
    kind = _kind(first)
    if kind != _kind(second):
        return False
    if isinstance(first, Mapping) and isinstance(second, Mapping):
        return list(first) == list(second) and all(
            _same(first[key], second[key]) for key in first
        )
    if isinstance(first, list) and isinstance(second, list):
        return len(first) == len(second) and all(
            _same(a, b) for a, b in zip(first, second, strict=True)
        )
    if kind == "other" and type(first) is not type(second):
        return False
    return first == second


def _order(value: Any) -> tuple[int, Any]:
    """A sort key following MongoDB's order of types, then the value."""
    kind = _kind(value)
    if value is None:
        return (0, 0)
    if kind == "number":
        return (1, value)
    if kind == "text":
        return (2, value)
    if isinstance(value, Mapping):
        return (3, _dumps(value))
    if isinstance(value, list):
        return (4, _dumps(value))
    if kind in ("true", "false"):
        return (5, value)
    if isinstance(value, datetime.datetime):
        return (6, value.timestamp())
    return (7, repr(value))


def _dumps(document: Any) -> str:
    # neosqlite's encoding (ObjectId, Binary, datetime as {"$date": ...}),
    # and never NaN: SQLite would reject the whole row as malformed JSON
    return neosqlite_json_dumps(_binary(document), allow_nan=False)


def _binary(value: Any) -> Any:
    if isinstance(value, bytes):
        return neosqlite.Binary(value)
    if isinstance(value, Mapping):
        return {key: _binary(child) for key, child in value.items()}
    if isinstance(value, list):
        return [_binary(child) for child in value]
    return value


def _column_id(value: Any) -> str:
    # neosqlite keeps str(_id) in its _id column
    return str(value)
