"""The embedded store (pushi.store.embedded), driven through real Appier models.

Every test runs a real ``appier.App`` whose adapter is an ``EmbeddedAdapter``
over a real SQLite file in ``tmp_path``; nothing is mocked. The last test, run
only when ``MONGO_URL`` is set (CI's nx-27017 pass), checks that
``insert_many`` also writes through Appier's Mongo collection.
"""

from __future__ import annotations

import datetime
import json
import os
import secrets
import sqlite3
import threading
import urllib.parse
import uuid

import appier
import pytest

from pushi.store.embedded import (
    EmbeddedAdapter,
    EmbeddedCollection,
    EmbeddedEncoder,
    insert_many,
)


class Gadget(appier.Model):
    """A model with an Appier integer counter, indexed fields and a list."""

    id = appier.field(type=int, index=True, increment=True)
    name = appier.field(index=True)
    kind = appier.field(index=True)
    price = appier.field(type=float)
    tags = appier.field(type=list)
    active = appier.field(type=bool)


class Reading(appier.Model):
    """A plain event-like model, written in batches."""

    sensor = appier.field(index=True)
    value = appier.field(type=int)
    at = appier.field(type=float, index=True)


@pytest.fixture
def data_dir(tmp_path) -> str:
    """Where the store lives (not created: the adapter must create it)."""
    return str(tmp_path / "store")


@pytest.fixture
def app(data_dir):
    """A real Appier app, made current, whose adapter is the embedded store."""
    previous = appier.base.APP
    adapter = EmbeddedAdapter(data_dir)
    app = appier.App(
        name="embedded_store_test",
        adapter_c=lambda: adapter,
        session_c=appier.MemorySession,
    )
    Gadget.setup()
    Reading.setup()
    yield app
    app.unload()
    app.adapter.close()
    appier.base.APP = previous


def reopen(app) -> EmbeddedAdapter:
    """Closes the app's store and opens the same directory with a new adapter."""
    path = app.adapter.path
    app.adapter.close()
    app.adapter = EmbeddedAdapter(path)
    return app.adapter


def make_gadgets() -> list[Gadget]:
    specs = [
        ("hammer", "tool", 12.5, ["red", "heavy"]),
        ("saw", "tool", 20.0, ["blue"]),
        ("drill", "tool", 55.0, ["red"]),
        ("apple", "food", 0.5, []),
        ("bread", "food", 2.0, ["fresh"]),
        ("lamp", "home", 30.0, ["red", "fresh"]),
    ]
    gadgets = []
    for name, kind, price, tags in specs:
        gadget = Gadget(name=name, kind=kind, price=price, tags=tags)
        gadget.save()
        gadgets.append(gadget)
    return gadgets


def names(models) -> list[str]:
    return [model.name for model in models]


def query_plan(adapter: EmbeddedAdapter, run) -> list[str]:
    """The SQLite plan of the SELECT statements ``run()`` makes the store issue."""
    statements: list[str] = []
    db = adapter.get_db().db
    db.set_trace_callback(statements.append)
    try:
        run()
    finally:
        db.set_trace_callback(None)
    selects = [
        sql
        for sql in statements
        if sql.startswith("SELECT _id") and "sqlite_master" not in sql
    ]
    assert selects, statements
    return [row[3] for row in db.execute("EXPLAIN QUERY PLAN " + selects[-1])]


def test_save_get_and_find_with_filters_sort_skip_limit(app, data_dir):
    gadgets = make_gadgets()

    assert os.path.isfile(os.path.join(data_dir, "pushi.db"))
    assert all(len(gadget._id) == 24 for gadget in gadgets)
    assert Gadget.get(name="drill").price == 55.0
    assert Gadget.get(_id=gadgets[1]._id).name == "saw"
    assert Gadget.get(name="nothing", raise_e=False) is None
    with pytest.raises(appier.NotFoundError):
        Gadget.get(name="nothing")

    assert sorted(names(Gadget.find(kind="tool"))) == ["drill", "hammer", "saw"]
    assert names(Gadget.find(kind="food", name="bread")) == ["bread"]
    assert sorted(names(Gadget.find(price={"$gt": 15.0, "$lte": 55.0}))) == [
        "drill",
        "lamp",
        "saw",
    ]
    assert sorted(names(Gadget.find(kind={"$in": ["food", "home"]}))) == [
        "apple",
        "bread",
        "lamp",
    ]
    assert sorted(names(Gadget.find(kind={"$ne": "tool"}))) == [
        "apple",
        "bread",
        "lamp",
    ]
    # MongoDB semantics: a scalar matches inside a list field
    assert sorted(names(Gadget.find(tags="red"))) == ["drill", "hammer", "lamp"]
    # Appier's string filters (find_d) and free-text search (find_s)
    assert sorted(names(Gadget.find(find_d=["price:gte:30"]))) == ["drill", "lamp"]
    assert names(Gadget.find(find_s="DRI", find_i=True, find_n="name")) == ["drill"]

    by_price = Gadget.find(sort=[("price", -1)])
    assert names(by_price) == ["drill", "lamp", "saw", "hammer", "bread", "apple"]
    page = Gadget.find(kind="tool", sort=[("price", 1)], skip=1, limit=1)
    assert names(page) == ["saw"]
    two_keys = Gadget.find(sort=[("kind", 1), ("price", -1)], limit=4)
    assert names(two_keys) == ["bread", "apple", "lamp", "drill"]
    assert names(Gadget.find(sort=[("id", -1)], skip=4)) == ["saw", "hammer"]

    only_names = Gadget._collection().find({"kind": "home"}, ["name"])
    assert only_names == [{"_id": gadgets[5]._id, "name": "lamp"}]


def test_count(app):
    make_gadgets()

    assert Gadget.count() == 6
    assert Gadget.count(kind="tool") == 3
    assert Gadget.count(price={"$lt": 1.0}) == 1
    assert Gadget.count(kind="none") == 0
    assert Gadget._collection().count_documents({"kind": "tool"}, skip=1) == 2


def test_update(app):
    make_gadgets()
    saw = Gadget.get(name="saw")
    saw.price = 25.0
    saw.tags = ["blue", "sharp"]
    saw.save()

    again = Gadget.get(name="saw")
    assert again.price == 25.0
    assert again.id == saw.id
    assert Gadget.count() == 6
    assert names(Gadget.find(tags="sharp")) == ["saw"]

    collection = Gadget._collection()
    result = collection.update(
        {"name": "saw"}, {"$inc": {"price": 1.5}, "$unset": {"tags": ""}}
    )
    assert result.matched_count == 1
    stored = collection.find_one({"name": "saw"})
    assert stored["price"] == 26.5
    assert "tags" not in stored
    assert (
        collection.update({"name": "none"}, {"$set": {"price": 1}}).matched_count == 0
    )
    with pytest.raises(ValueError):
        collection.update({"name": "saw"}, {"price": 1})


def test_update_keeps_booleans_and_datetimes(app):
    # neosqlite's own $set stores False as 0, which Appier then casts to True
    gadget = Gadget(name="switch", active=False)
    gadget.save()
    gadget.price = 3.0
    gadget.save()

    again = Gadget.get(name="switch")
    assert again.active is False
    assert names(Gadget.find(active=False)) == ["switch"]
    assert Gadget.find(active=True) == []

    collection = Gadget._collection()
    when = datetime.datetime(2024, 5, 1, 12, 30, tzinfo=datetime.timezone.utc)
    collection.update({"name": "switch"}, {"$set": {"active": True, "seen": when}})
    stored = collection.find_one({"name": "switch"})
    assert stored["active"] is True and stored["seen"] == when
    assert Gadget.get(name="switch").active is True


def test_delete(app):
    gadgets = make_gadgets()

    gadgets[0].delete()
    assert Gadget.count() == 5
    assert Gadget.get(name="hammer", raise_e=False) is None

    removed = Gadget._collection().remove({"kind": "food"})
    assert removed.deleted_count == 2
    assert sorted(names(Gadget.find())) == ["drill", "lamp", "saw"]


def test_increment_counter_survives_reopen(app):
    first = [Gadget(name="g%d" % index) for index in range(3)]
    for gadget in first:
        gadget.save()
    assert [gadget.id for gadget in first] == [1, 2, 3]

    reopen(app)
    later = Gadget(name="later")
    later.save()
    assert later.id == 4
    # an explicit id raises the counter ($max), never lowers it
    explicit = Gadget(name="explicit", id=10)
    explicit.save()
    after = Gadget(name="after")
    after.save()
    assert after.id == 11
    assert Gadget.get(id=4).name == "later"


def test_find_and_modify_with_upsert(app):
    counters = app.adapter.collection("tallies")

    first = counters.find_and_modify(
        {"_id": "hits", "scope": "site"}, {"$inc": {"seq": 1}}, new=True, upsert=True
    )
    assert first == {"_id": "hits", "scope": "site", "seq": 1}
    second = counters.find_and_modify(
        {"_id": "hits"}, {"$inc": {"seq": 1}}, new=True, upsert=True
    )
    assert second["seq"] == 2
    before = counters.find_and_modify({"_id": "hits"}, {"$inc": {"seq": 5}})
    assert before["seq"] == 2
    assert counters.find_one({"_id": "hits"})["seq"] == 7

    assert counters.find_and_modify({"_id": "nope"}, {"$inc": {"seq": 1}}) is None
    assert counters.count() == 1
    assert (
        counters.find_and_modify({"_id": "quiet"}, {"$inc": {"seq": 1}}, upsert=True)
        is None
    )
    assert counters.find_one({"_id": "quiet"})["seq"] == 1

    raised = counters.find_and_modify(
        {"_id": "hits"}, {"$max": {"seq": 50}}, new=True, upsert=True
    )
    assert raised["seq"] == 50
    kept = counters.find_and_modify(
        {"_id": "hits"}, {"$max": {"seq": 3}}, new=True, upsert=True
    )
    assert kept["seq"] == 50

    made = counters.find_and_modify(
        {"name": "fresh"},
        {"$setOnInsert": {"created": 1}, "$set": {"touched": True}},
        new=True,
        upsert=True,
    )
    assert made["name"] == "fresh" and made["created"] == 1 and made["touched"]
    assert len(made["_id"]) == 24


def test_compound_and_integer_id_indexes_are_created_and_used(app):
    collection = Reading._collection()
    name = collection.ensure_index([("sensor", 1), ("at", -1)])
    insert_many(
        collection,
        [{"sensor": "s%d" % (n % 5), "value": n, "at": float(n)} for n in range(200)],
    )

    sql = (
        app.adapter.get_db()
        .db.execute("SELECT sql FROM sqlite_master WHERE name = ?", (name,))
        .fetchone()[0]
    )
    assert "json_extract(data, '$.sensor')" in sql
    assert "json_extract(data, '$.at') DESC" in sql

    plan = query_plan(
        app.adapter,
        lambda: collection.find({"sensor": "s2"}, sort=[("at", -1)], limit=3),
    )
    assert any(name in step for step in plan), plan
    assert not any("TEMP B-TREE" in step for step in plan), plan
    latest = collection.find({"sensor": "s2"}, sort=[("at", -1)], limit=3)
    assert [reading["value"] for reading in latest] == [197, 192, 187]

    # the model's `index=True` on `id` (neosqlite would name this index like its
    # own unique `_id` index, and silently skip it)
    make_gadgets()
    id_indexes = [
        index for index in Gadget._collection().index_names() if "_id_" in index
    ]
    assert id_indexes
    plan = query_plan(app.adapter, lambda: Gadget.get(id=3))
    assert any(id_indexes[0] in step for step in plan), plan

    collection.drop_indexes()
    assert collection.index_names() == []


def test_insert_many_then_reads(app):
    collection = Reading._collection()
    documents = [
        {"sensor": "s%d" % (n % 3), "value": n, "at": 1000.0 + n} for n in range(250)
    ]

    ids = insert_many(collection, documents)

    assert len(ids) == 250 and len(set(ids)) == 250
    assert [document["_id"] for document in documents] == ids
    assert Reading.count() == 250
    assert Reading.count(sensor="s1") == 83
    newest = Reading.find(sensor="s0", sort=[("at", -1)], limit=2)
    assert [reading.value for reading in newest] == [249, 246]
    assert Reading.get(_id=ids[7]).value == 7

    # one transaction: a duplicate _id rolls the whole batch back
    batch = [{"sensor": "x", "value": 1}, {"_id": ids[0], "sensor": "x", "value": 2}]
    with pytest.raises(sqlite3.IntegrityError):
        insert_many(collection, batch)
    assert Reading.count(sensor="x") == 0
    assert insert_many(collection, []) == []


def test_data_survives_close_and_reopen(app, data_dir):
    make_gadgets()
    insert_many(Reading._collection(), [{"sensor": "a", "value": n} for n in range(5)])
    app.adapter.collection("tallies").find_and_modify(
        {"_id": "k"}, {"$inc": {"seq": 3}}, upsert=True
    )

    adapter = reopen(app)

    assert adapter.path == os.path.abspath(data_dir)
    assert sorted(names(Gadget.find(kind="tool"))) == ["drill", "hammer", "saw"]
    assert Reading.count(sensor="a") == 5
    assert adapter.collection("tallies").find_one({"_id": "k"})["seq"] == 3
    # the list-field knowledge survives too: containment still matches
    assert sorted(names(Gadget.find(tags="fresh"))) == ["bread", "lamp"]


def test_concurrent_writes_from_four_threads(app):
    errors: list[BaseException] = []
    per_thread = 150
    start = threading.Barrier(4)

    def work(worker: int) -> None:
        try:
            start.wait()
            for index in range(per_thread):
                Gadget(name="w%d-%d" % (worker, index), kind="w%d" % worker).save()
                if index % 50 == 0:
                    insert_many(
                        Reading._collection(),
                        [{"sensor": "w%d" % worker, "value": n} for n in range(10)],
                    )
        except BaseException as error:  # noqa: B036 - reported to the main thread
            errors.append(error)

    threads = [threading.Thread(target=work, args=(worker,)) for worker in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert errors == []
    assert Gadget.count() == 4 * per_thread
    assert sorted(gadget.id for gadget in Gadget.find()) == list(
        range(1, 4 * per_thread + 1)
    )
    assert all(Gadget.count(kind="w%d" % worker) == per_thread for worker in range(4))
    assert Reading.count() == 4 * 3 * 10


def test_object_ids_encoder_and_drop_db(app, data_dir):
    adapter = app.adapter
    fresh = adapter.object_id()
    assert len(fresh) == 24 and int(fresh, 16) >= 0
    assert adapter.object_id(fresh.upper()) == fresh
    with pytest.raises(appier.OperationalError):
        adapter.object_id("not-an-id")
    assert adapter.encoder() is EmbeddedEncoder
    assert isinstance(adapter.collection("gadget"), EmbeddedCollection)

    gadget = Gadget(name="x", tags=["a"])
    gadget.save()
    dumped = json.loads(gadget.dumps())
    assert dumped["_id"] == gadget._id and dumped["tags"] == ["a"]

    adapter.drop_db()
    assert Gadget.count() == 0
    Gadget(name="y").save()
    assert Gadget.get(name="y").id == 1


@pytest.mark.skipif(
    not os.environ.get("MONGO_URL"),
    reason="MongoDB path: runs in the MONGO_URL pass of .ci/run",
)
def test_insert_many_through_appier_mongo_collection():
    import pymongo

    url = os.environ["MONGO_URL"]
    database = urllib.parse.urlsplit(url).path.strip("/") or "pushi_test"
    client = pymongo.MongoClient(url, serverSelectionTimeoutMS=10000)
    name = "embedded_probe_" + secrets.token_hex(4)
    try:
        collection = appier.data.MongoCollection(
            appier.MongoAdapter(), name, client[database][name]
        )
        documents = [{"n": n} for n in range(30)]
        ids = insert_many(collection, documents)
        assert len(ids) == 30
        assert collection.count_documents({}) == 30
        assert collection.find_one({"n": 29})["_id"] == ids[29]
    finally:
        client[database].drop_collection(name)
        client.close()


# -- the Pushi models and the store worker on the embedded store ----------------------


@pytest.fixture
def pushi_models(app):
    """The Pushi models set up on the test app's embedded store."""
    from pushi.app.models import App, Association, PushiEvent, Subscription

    for model in (App, PushiEvent, Association, Subscription):
        model.setup()
    return App, PushiEvent, Association, Subscription


def delivered(channel: str, data: str, index: int, **extra) -> dict:
    """A message as State hands it to the store (mid and timestamp set)."""
    return dict(
        data=data,
        channel=channel,
        event="message",
        **extra,
        mid=str(uuid.UUID(int=index)),
        timestamp=1_800_000_000.0 + index,
    )


def test_write_events_stores_records_and_one_link_per_user(pushi_models):
    from pushi.store import Store, write_events

    _, PushiEvent, Association, Subscription = pushi_models
    for user_id, channel in (("alice", "sports"), ("alice", "news"), ("bob", "news")):
        Subscription(instance="app1", user_id=user_id, event=channel).save()
    Subscription(instance="app2", user_id="alice", event="news").save()
    both = [delivered("news", "both", 1, z=1), delivered("sports", "both", 2)]
    alone = delivered("news", "n", 3)
    write_events([("app1", both, None), ("app1", [alone], "s1")])

    records = Store.channel_events("app1", "news", 0, 10)
    assert [(r["mid"], r["owner_id"]) for r in records] == [
        (alone["mid"], "s1"),
        (both[0]["mid"], None),
    ], records
    first = records[1]
    assert "_id" not in first and first["instance"] == "app1", first
    expected = {"data": "both", "channel": "news", "event": "message", "z": 1}
    assert first["data"] == expected, first
    assert list(first["data"]) == list(expected), "key order: %r" % (first,)
    assert (first["enabled"], first["description"], first["meta"]) == (True, None, {})
    assert type(first["created"]) is int and first["created"] == first["modified"]
    assert first["timestamp"] == 1_800_000_001.0, first

    # alice follows both channels of the first trigger: one link, for the first
    links = Association._collection().find({"instance": "app1"})
    assert sorted((link["user_id"], link["mid"]) for link in links) == sorted(
        [
            ("alice", both[0]["mid"]),
            ("bob", both[0]["mid"]),
            ("alice", alone["mid"]),
            ("bob", alone["mid"]),
        ]
    ), list(links)
    history = Store.user_events("app1", "alice", 0, 10)
    assert [r["data"]["data"] for r in history] == ["n", "both"], history
    assert Store.user_events("app2", "alice", 0, 10) == [], "links leaked across apps"
    aliases, events = Store.personal("app1", "alice", 10)
    assert aliases == ["sports", "news"], "aliases in creation order: %r" % aliases
    assert events == history
    assert PushiEvent.count() == 3


def test_store_worker_keeps_the_good_triggers_of_a_failing_batch(pushi_models):
    from pushi.store import Store

    _, PushiEvent, _, _ = pushi_models
    store = Store()
    # queued before the worker starts: the three triggers make one batch
    store.persist("app1", [delivered("news", "good 1", 1)])
    store.persist("app1", [delivered("news", {1, 2}, 2)])  # a set: cannot store
    store.persist("app1", [delivered("news", "good 2", 3)], "socket-1")
    store.start()
    try:
        found = store.call(Store.channel_events, "app1", "news", 0, 10)
    finally:
        store.stop()
    assert [r["data"]["data"] for r in found] == ["good 2", "good 1"], found
    assert (store.written, store.dropped) == (2, 1), (store.written, store.dropped)


def test_pushi_queries_use_their_compound_indexes(app, pushi_models):
    from pushi.store import Store, write_events

    _, PushiEvent, Association, Subscription = pushi_models
    for index in range(20):
        Subscription(instance="app1", user_id="u%d" % index, event="news").save()
    write_events(
        [("app1", [delivered("news", "e%d" % i, i)], None) for i in range(1, 30)]
    )
    for name, run in (
        ("channel events", lambda: Store.channel_events("app1", "news", 0, 10)),
        (
            "app events",
            lambda: PushiEvent._collection().find(
                {"instance": "app1"}, sort=[("id", -1)], limit=10
            ),
        ),
        (
            "user links",
            lambda: Association._collection().find(
                {"instance": "app1", "user_id": "u3"}, sort=[("id", -1)], limit=10
            ),
        ),
        ("aliases", lambda: Store.subscriptions("app1", "u3")),
        (
            "followers",
            lambda: Subscription._collection().find(
                {"instance": "app1", "event": "news"}, ["user_id"]
            ),
        ),
    ):
        plan = query_plan(app.adapter, run)
        assert any("USING INDEX" in step for step in plan), (name, plan)
        assert not any("TEMP B-TREE" in step for step in plan), (name, plan)
