"""The persistence worker: the only place the server's hot path meets the database.

The event loop never waits on storage. Event writes are queued (bounded) and
written in batches by one worker thread; reads a socket waits for run on the
same thread, after the writes queued before them, and answer on the loop.

Group commit: the worker takes every trigger queued while it was busy (up to
`BATCH` events) and writes them with one commit (one SQLite transaction on the
embedded store; one acknowledged `insert_many` per collection on MongoDB), then
completes the `Ticket` of every trigger of the batch. A REST publish answers
when its ticket is complete, so callers waiting together share one commit.

Retention (`PUSHI_EVENT_TTL`, `PUSHI_MAX_EVENTS`) runs on the same thread,
between batches, at most every `PRUNE_SECONDS` and `PRUNE_BATCH` events a pass.
"""

from __future__ import annotations

import collections
import logging
import queue
import threading
import time
import typing

from ..base.errors import StoreError

LOGGER = logging.getLogger("pushi")

BATCH = 500
""" The most events written in one batch (one transaction, one counter update) """

GATHER_SECONDS = 0.002
""" How long a batch waits for more triggers before its commit (group commit) """

PRUNE_SECONDS = 1.0
""" Seconds between two retention passes (when retention is set) """

PRUNE_BATCH = 1000
""" The most events one retention pass deletes (their associations go too) """

_EVENT = "event"
_CALL = "call"
_STOP = "stop"


class Ticket:
    """The outcome of one queued trigger: `True` once committed, else an error.

    Completed once, by the worker (after the commit of the trigger's batch, or
    its failure) or by a waiter that gave up (`StoreError`); the first wins.
    """

    __slots__ = ("_callbacks", "_done", "_lock", "outcome")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._callbacks: list[typing.Callable] = []
        self.outcome: typing.Any = None

    def complete(self, outcome: typing.Any) -> None:
        """Sets the outcome (if none yet) and runs the callbacks, on this thread."""
        with self._lock:
            if self._done.is_set():
                return
            self.outcome = outcome
            self._done.set()
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            try:
                callback(outcome)
            except Exception:
                LOGGER.exception("ticket callback failed")

    def then(self, callback: typing.Callable) -> None:
        """Calls `callback(outcome)` once complete (at once if it is already)."""
        with self._lock:
            if not self._done.is_set():
                self._callbacks.append(callback)
                return
        callback(self.outcome)

    def wait(self, timeout: float | None = None) -> typing.Any:
        """The outcome, waiting at most `timeout` (None: still pending)."""
        self._done.wait(timeout)
        return self.outcome

    @property
    def stored(self) -> bool:
        """Whether the trigger is committed."""
        return self.outcome is True


class Store:
    """A bounded queue of event writes and reads, served by one worker thread."""

    def __init__(
        self,
        limit: int = 100_000,
        event_ttl: float | None = None,
        max_events: int | None = None,
    ) -> None:
        if event_ttl is None or max_events is None:
            from ..base.config import Settings

            settings = Settings.from_env()
            event_ttl = settings.event_ttl if event_ttl is None else event_ttl
            max_events = settings.max_events if max_events is None else max_events
        self._queue: queue.Queue = queue.Queue(maxsize=limit)
        self._thread: threading.Thread | None = None
        self._call_soon: typing.Callable | None = None
        self.event_ttl = float(event_ttl or 0)
        self.max_events = int(max_events or 0)
        self._next_prune = 0.0
        self.dropped = 0
        self.written = 0
        self.pruned = 0
        self.batches: collections.Counter = collections.Counter()
        """ Batch sizes written (in triggers) and how many times each """

    # -- life cycle -------------------------------------------------------------

    def attach_loop(self, call_soon: typing.Callable) -> None:
        """Where read results are handed back: the event loop's scheduler."""
        self._call_soon = call_soon

    def start(self) -> None:
        """Starts the worker thread."""
        self._thread = threading.Thread(
            target=self._run, name="pushi-store", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Writes everything queued, then stops the worker."""
        if self._thread is None:
            return
        self._queue.put((_STOP,))
        self._thread.join(timeout)
        self._thread = None
        if self.batches:
            LOGGER.info("store batches: %s", describe_batches(self.batches))

    @property
    def pending(self) -> int:
        """Requests waiting for the worker."""
        return self._queue.qsize()

    @property
    def alive(self) -> bool:
        """Whether the worker runs."""
        return self._thread is not None and self._thread.is_alive()

    # -- requests ---------------------------------------------------------------

    def persist(
        self, app_id: str, messages: list[dict], owner_id: str | None = None
    ) -> Ticket:
        """Queues one trigger's messages for storage (never blocks).

        One call per trigger: a REST publish to a list of channels, or one
        client event. Each message (with its own `mid` and `timestamp`) becomes
        an event record; each user following one of the channels gets one
        association for the trigger (`owner_id`: the sender socket, or None).
        The ticket completes once the trigger is committed (or failed).

        :raises StoreError: The queue is full: nothing was queued (the caller
            refuses the trigger, delivering nothing).
        """
        ticket = Ticket()
        if not messages:
            ticket.complete(True)
            return ticket
        try:
            self._queue.put_nowait((_EVENT, app_id, list(messages), owner_id, ticket))
        except queue.Full:
            self.dropped += len(messages)
            LOGGER.error("store queue full: event %s refused", messages[0].get("mid"))
            raise StoreError("store queue full") from None
        return ticket

    def submit(
        self, function: typing.Callable, args: tuple, callback: typing.Callable
    ) -> None:
        """Runs `function(*args)` on the worker; `callback(result, error)` on loop."""
        try:
            self._queue.put_nowait((_CALL, function, args, callback))
        except queue.Full:
            callback(None, StoreError("store queue full"))

    def call(self, function: typing.Callable, *args, timeout: float = 30.0):
        """Runs `function(*args)` on the worker and waits (never from the loop).

        Running on the worker orders the call after every write queued before it,
        so an HTTP reader sees the events published before its request.
        """
        done = threading.Event()
        outcome: list = [None, None]

        def callback(result, error) -> None:
            outcome[:] = [result, error]
            done.set()

        self._queue.put((_CALL, function, args, callback, True), timeout=timeout)
        if not done.wait(timeout):
            raise StoreError("store did not answer in time")
        if outcome[1] is not None:
            raise outcome[1]
        return outcome[0]

    # -- the worker -------------------------------------------------------------

    def _run(self) -> None:
        pending: collections.deque = collections.deque()
        while True:
            item = pending.popleft() if pending else self._next()
            if item is None:
                self._prune()
                continue
            if item[0] == _STOP:
                self._write(self._drain(pending))
                return
            if item[0] == _EVENT:
                batch, events = [item], len(item[2])
                # group commit: wait a moment for the triggers of concurrent
                # publishers, so that one commit answers all of them
                gather = time.monotonic() + GATHER_SECONDS
                while events < BATCH:
                    try:
                        wait = gather - time.monotonic()
                        if wait > 0:
                            following = self._queue.get(timeout=wait)
                        else:
                            following = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if following[0] != _EVENT:
                        pending.append(following)
                        break
                    batch.append(following)
                    events += len(following[2])
                self.batches[len(batch)] += 1
                self._write(batch)
            else:
                self._call(item)
            if self._next_prune and time.monotonic() >= self._next_prune:
                self._prune()

    def _next(self) -> tuple | None:
        """The next request; None when a retention pass is due first."""
        if not (self.event_ttl > 0 or self.max_events > 0):
            return self._queue.get()
        if not self._next_prune:
            self._next_prune = time.monotonic()
        wait = self._next_prune - time.monotonic()
        try:
            return self._queue.get(timeout=wait) if wait > 0 else None
        except queue.Empty:
            return None

    def _prune(self) -> None:
        """One bounded retention pass (on the worker, between batches)."""
        self._next_prune = time.monotonic() + PRUNE_SECONDS
        try:
            self.pruned += prune_events(self.event_ttl, self.max_events, PRUNE_BATCH)
        except Exception:
            LOGGER.exception("retention pass failed")

    def _drain(self, pending: collections.deque) -> list:
        """Every event still queued at stop; reads are answered with an error."""
        events = []
        items = list(pending)
        while True:
            try:
                items.append(self._queue.get_nowait())
            except queue.Empty:
                break
        for item in items:
            if item[0] == _EVENT:
                events.append(item)
            elif item[0] == _CALL:
                self._answer(item, None, StoreError("store stopped"))
        return events

    def _write(self, batch: list, retry: bool = False) -> None:
        if not batch:
            return
        triggers = [(item[1], item[2], item[3]) for item in batch]
        try:
            write_events(triggers, skip_stored=retry)
        except Exception:
            if len(batch) == 1:
                self.dropped += len(batch[0][2])
                LOGGER.exception(
                    "could not persist event %s", batch[0][2][0].get("mid")
                )
                batch[0][4].complete(StoreError("could not store the event"))
                return
        else:
            # committed: one commit answers every trigger of the batch
            self.written += sum(len(item[2]) for item in batch)
            for item in batch:
                item[4].complete(True)
            return
        # one bad trigger must not cost the others of its batch (other apps'
        # too); MongoDB may have kept the records before the bad one: skip those
        for item in batch:
            self._write([item], retry=True)

    def _call(self, item: tuple) -> None:
        function, args = item[1], item[2]
        try:
            result, error = function(*args), None
        except Exception as exception:
            LOGGER.exception("store request failed")
            result, error = None, exception
        self._answer(item, result, error)

    def _answer(self, item: tuple, result, error) -> None:
        callback = item[3]
        direct = len(item) > 4
        if direct or self._call_soon is None:
            callback(result, error)
        else:
            self._call_soon(lambda: callback(result, error))

    # -- queries (run on the worker, or on HTTP threads through `call`) ----------

    @staticmethod
    def find_app(key: str) -> dict | None:
        """An app's credentials (ident, key, secret, name) by its key."""
        from ..app.models import App

        app = App.get(key=key, rules=False, raise_e=False)
        return app.credentials() if app else None

    @staticmethod
    def channel_events(app_id: str, channel: str, skip: int, count: int) -> list:
        """Stored event records of a channel, newest first, without `_id`."""
        from ..app.models import PushiEvent

        query = {"instance": app_id, "channel": channel}
        return _records(PushiEvent, query, skip, count)

    @staticmethod
    def user_events(app_id: str, user_id: str, skip: int, count: int) -> list:
        """A user's personal history (through associations), newest first."""
        from ..app.models import Association, PushiEvent

        links = Association._collection().find(
            {"instance": app_id, "user_id": user_id},
            sort=[("id", -1)],
            skip=skip,
            limit=count,
        )
        mids = [link["mid"] for link in links]
        if not mids:
            return []
        found = PushiEvent._collection().find(
            {"instance": app_id, "mid": {"$in": mids}}
        )
        by_mid = {document["mid"]: _record(document) for document in found}
        return [by_mid[mid] for mid in mids if mid in by_mid]

    @staticmethod
    def subscriptions(app_id: str, user_id: str) -> list[str]:
        """The channels a user follows, in subscription-creation order."""
        from ..app.models import Subscription

        found = Subscription._collection().find(
            {"instance": app_id, "user_id": user_id}, sort=[("id", 1)]
        )
        # a pair is unique through the API, but the back-office may repeat one
        return list(dict.fromkeys(document["event"] for document in found))

    @classmethod
    def personal(cls, app_id: str, user_id: str, count: int) -> tuple[list, list]:
        """What a personal channel subscription answers: aliases and last events."""
        return cls.subscriptions(app_id, user_id), cls.user_events(
            app_id, user_id, 0, count
        )


def describe_batches(batches: collections.Counter) -> str:
    """Batch sizes in a line: count, mean, largest and the most common sizes."""
    total = sum(batches.values())
    triggers = sum(size * times for size, times in batches.items())
    common = ", ".join(
        "%d×%d" % (size, times) for size, times in batches.most_common(5)
    )
    return "%d commits of %d triggers, mean %.1f, largest %d (most common: %s)" % (
        total,
        triggers,
        triggers / total,
        max(batches),
        common,
    )


def _record(document: dict) -> dict:
    """A stored record as State sends it over WebSocket: no `_id`."""
    record = dict(document)
    record.pop("_id", None)
    return record


def _records(model, query: dict, skip: int, count: int) -> list:
    found = model._collection().find(query, sort=[("id", -1)], skip=skip, limit=count)
    return [_record(document) for document in found]


def write_events(
    triggers: list[tuple[str, list[dict], str | None]], skip_stored: bool = False
) -> None:
    """Stores a batch of triggers and links their events to the users following.

    Each trigger is `(app_id, messages, owner_id)`. A user subscribed to the
    channels of several messages of one trigger gets one association, for the
    first of them (clients get one copy per trigger, too). `skip_stored`
    (a retry) leaves out what is already stored: events by `mid`, and the
    associations of events that already have some.
    """
    from ..app.models import Association, PushiEvent, Subscription
    from .embedded import ensure_table, transaction

    for collection in (
        PushiEvent._collection(),
        Association._collection(),
        Subscription._collection(),
        PushiEvent._collection(name="counters"),
    ):
        ensure_table(collection)
    # one commit for the whole batch on the embedded store (a failure rolls
    # all of it back; the worker then retries trigger by trigger)
    with transaction(PushiEvent._collection()):
        _write_events(triggers, skip_stored)


def _write_events(triggers: list, skip_stored: bool) -> None:
    from ..app.models import Association, PushiBase, PushiEvent, Subscription
    from .embedded import insert_many

    stored: set[str] = set()
    linked: set[str] = set()
    if skip_stored:
        mids = [message["mid"] for _, messages, _ in triggers for message in messages]
        query = {"mid": {"$in": mids}}
        stored = {d["mid"] for d in PushiEvent._collection().find(query, ["mid"])}
        linked = {d["mid"] for d in Association._collection().find(query, ["mid"])}

    now = time.time()
    pending = [
        (app_id, message, owner_id)
        for app_id, messages, owner_id in triggers
        for message in messages
        if message["mid"] not in stored
    ]
    if pending:
        ids = PushiEvent.reserve_ids(len(pending))
        documents = [
            PushiEvent.document(PushiBase.common(app_id, ident, now), message, owner)
            for ident, (app_id, message, owner) in zip(ids, pending, strict=True)
        ]
        insert_many(PushiEvent._collection(), documents)

    followers: dict[tuple[str, str], list[str]] = {}
    links: list[tuple[str, str, str]] = []
    for app_id, messages, _owner in triggers:
        reached: set[str] = set()
        for message in messages:
            key = (app_id, message["channel"])
            if key not in followers:
                found = Subscription._collection().find(
                    {"instance": app_id, "event": key[1]}, ["user_id"]
                )
                followers[key] = list(dict.fromkeys(d["user_id"] for d in found))
            for user_id in followers[key]:
                if user_id in reached:
                    continue
                reached.add(user_id)
                if message["mid"] not in linked:
                    links.append((app_id, user_id, message["mid"]))
    if links:
        ids = Association.reserve_ids(len(links))
        insert_many(
            Association._collection(),
            [
                Association.document(PushiBase.common(app_id, ident, now), user, mid)
                for ident, (app_id, user, mid) in zip(ids, links, strict=True)
            ],
        )


def prune_events(ttl: float, most: int, limit: int = PRUNE_BATCH) -> int:
    """Deletes at most `limit` events past retention, with their associations.

    `ttl` (seconds, 0: none): events stored longer ago go. `most` (per app,
    0: none): an app's events beyond its `most` newest go. Each app's oldest
    go first (ids grow with time); per app, one count and one read of its
    oldest records on the `(instance, id)` index, then two deletes in all.

    :returns: How many events were deleted.
    """
    from ..app.models import App, Association, PushiEvent
    from .embedded import transaction

    events = PushiEvent._collection()
    cutoff = time.time() - ttl if ttl > 0 else None
    doomed: list[tuple[typing.Any, str]] = []
    for app in App._collection().find({}, ["ident"]):
        room = limit - len(doomed)
        if room <= 0:
            break
        query = {"instance": app["ident"]}
        excess = 0
        if most > 0:
            excess = max(0, events.count(query) - most)
        oldest = events.find(
            query, ["_id", "mid", "timestamp"], sort=[("id", 1)], limit=room
        )
        for index, document in enumerate(oldest):
            expired = cutoff is not None and (document.get("timestamp") or 0) < cutoff
            if index >= excess and not expired:
                break
            doomed.append((document["_id"], document["mid"]))
    if not doomed:
        return 0
    with transaction(events):
        mids = [mid for _, mid in doomed]
        Association._collection().remove({"mid": {"$in": mids}})
        events.remove({"_id": {"$in": [ident for ident, _ in doomed]}})
    return len(doomed)
