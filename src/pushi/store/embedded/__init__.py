"""The embedded store: an Appier data adapter over neosqlite (SQLite).

Appier models reach storage through ``app.adapter``; this package gives them a
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
  ``query`` can translate (equality, ``$in``, ``$nin``, ``$ne``, ranges,
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

Modules: ``adapter`` (connection, lock, transactions, ids), ``collection`` (the
calls models make), ``query`` (filters and sorts as SQL), ``updates`` (update
operators), ``documents`` (paths, projection, JSON), ``values`` (MongoDB's
equality and order of values), ``errors`` (the fallback to neosqlite).
"""

from .adapter import (
    ARRAYS_TABLE,
    BUSY_TIMEOUT,
    DB_FILE,
    EmbeddedAdapter,
    EmbeddedEncoder,
)
from .collection import (
    INDEX_PREFIX,
    EmbeddedCollection,
    ensure_table,
    insert_many,
    transaction,
)

__all__ = [
    "ARRAYS_TABLE",
    "BUSY_TIMEOUT",
    "DB_FILE",
    "INDEX_PREFIX",
    "EmbeddedAdapter",
    "EmbeddedCollection",
    "EmbeddedEncoder",
    "ensure_table",
    "insert_many",
    "transaction",
]
