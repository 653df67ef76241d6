"""One collection of the embedded store: the calls Appier models make."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import appier
import neosqlite
from neosqlite.collection.json_helpers import neosqlite_json_dumps
from neosqlite.results import (
    DeleteResult,
    InsertManyResult,
    InsertOneResult,
    UpdateResult,
)
from neosqlite.sql_utils import quote_table_name

from .documents import array_paths, column_id, dumps, load, project, set_path
from .errors import Unsupported
from .query import Compiler, descending, extract, json_path, order_by, sort_keys
from .updates import apply_update, check_update, update_array_paths, upsert_base

if TYPE_CHECKING:  # the adapter imports this module
    from .adapter import EmbeddedAdapter

INDEX_PREFIX = "pushi_ix_"
""" Prefix of the indexes this module creates; kept apart from neosqlite's own
``idx_<table>_<field>`` names, whose ``idx_<table>_id`` (the unique ``_id``
column index) would otherwise swallow an index on a field called ``id`` """


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
        return [project(document, projection) for document in documents]

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
            self.owner._note_arrays(self.name, array_paths(document))
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
        # the rows neosqlite's insert_one writes, without its per-document
        # copy, walk and validation query: one statement for the batch
        rows = [
            (_encoded(document), column_id(document["_id"])) for document in documents
        ]
        with self.owner._writing():
            table = self._table()
            self.owner.get_db().db.executemany(
                "INSERT INTO %s(data, _id) VALUES (?, ?)" % table, rows
            )
            for document in documents:
                paths.update(array_paths(document))
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
        check_update(update)
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
            check_update(update)
        with self.owner._writing():
            found = self._select(filter, sort, 0, 1)
            if not found:
                if remove or not upsert:
                    return None
                document = self._upsert(filter, update)
                return project(document, projection) if new else None
            before = found[0]
            if remove:
                self._sql(
                    "DELETE FROM %s WHERE _id = ?" % self._table(),
                    (column_id(before["_id"]),),
                )
                return project(before, projection)
            after = self._modify(before, update)
        return project(after if new else before, projection)

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
                expression = "_id" if field == "_id" else extract(json_path(field))
            except Unsupported:
                raise ValueError("Cannot index field %r" % field) from None
            # the order only matters between the columns of a compound index
            desc = len(keys) > 1 and descending(order)
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
            return Compiler(self.owner._array_paths(self.name)).where(filter or {})
        except Unsupported:
            return None

    def _select(
        self,
        filter: Mapping[str, Any] | None,
        sort: Any,
        skip: int,
        limit: int,
    ) -> list[dict[str, Any]]:
        sort = sort_keys(sort)
        where = self._where(filter)
        order = order_by(sort) if where is not None else None
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
        return [load(stored_id, text) for stored_id, text in rows]

    def _modify(
        self, document: dict[str, Any], update: Mapping[str, Any]
    ) -> dict[str, Any]:
        # the operators run here, on the stored document, which is written
        # back whole: neosqlite's SQL update path stores True/False as 1/0 and
        # datetimes as text (1.17), which Appier would then read back wrong
        try:
            changed = apply_update(document, update, inserting=False)
        except Unsupported:
            self._base.update_one({"_id": document["_id"]}, dict(update))
            self.owner._note_arrays(self.name, update_array_paths(update))
            return self._select({"_id": document["_id"]}, None, 0, 1)[0]
        self.owner._note_arrays(self.name, array_paths(changed))
        data = "jsonb(?)" if self.owner._is_jsonb(self.name) else "?"
        self._sql(
            "UPDATE %s SET data = %s WHERE _id = ?" % (self._table(), data),
            (dumps(changed), column_id(document["_id"])),
        )
        return changed

    def _upsert(
        self, filter: Mapping[str, Any], update: Mapping[str, Any]
    ) -> dict[str, Any]:
        # MongoDB's upsert: the filter's equalities make the document, the
        # update (with $setOnInsert) is applied to it, then it is inserted;
        # the _id is one of this store's, not a neosqlite ObjectId
        document: dict[str, Any] = {}
        upsert_base(filter, document)
        try:
            document = apply_update(document, update, inserting=True)
            self._ensure_id(document)
        except Unsupported:
            self._ensure_id(document)
            rest = dict(update)
            for path, value in rest.pop("$setOnInsert", {}).items():
                set_path(document, path, value)
            self._base.insert_one(document)
            self.owner._note_arrays(self.name, array_paths(document))
            return self._modify(document, rest) if rest else document
        self._base.insert_one(document)
        self.owner._note_arrays(self.name, array_paths(document))
        return document


def transaction(
    collection: appier.data.Collection,
) -> contextlib.AbstractContextManager:
    """One transaction (one commit) around several writes on the embedded store.

    Writes inside it (of any collection of the same store) commit together at
    its end, or roll back together if it raises. Elsewhere (MongoDB) a no-op:
    each write there is acknowledged on its own, with the URL's write concern.
    """
    if isinstance(collection, EmbeddedCollection):
        return collection.owner._writing()
    return contextlib.nullcontext()


def ensure_table(collection: appier.data.Collection) -> None:
    """Creates an embedded collection's table now, outside any transaction: a
    table created inside one that rolls back would be gone while neosqlite
    still believes it exists. Elsewhere a no-op."""
    if isinstance(collection, EmbeddedCollection):
        collection._table()


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


def _encoded(document: dict[str, Any]) -> str:
    """A document's stored JSON: neosqlite's encoding, never NaN (`dumps`);
    the walk that turns bytes into Binary only for documents that hold some."""
    try:
        return neosqlite_json_dumps(document, allow_nan=False)
    except TypeError:
        return dumps(document)
