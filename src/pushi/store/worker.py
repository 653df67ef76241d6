"""The persistence worker: the only place the server's hot path meets the database.

The event loop never waits on storage. Event writes are queued (bounded) and
written in batches by one worker thread; reads a socket waits for run on the
same thread, after the writes queued before them, and answer on the loop.
"""

from __future__ import annotations

import collections
import logging
import queue
import threading
import typing

LOGGER = logging.getLogger("pushi")

BATCH = 500
""" The most events written in one batch (one transaction, one counter update) """

_EVENT = "event"
_CALL = "call"
_STOP = "stop"


class StoreError(Exception):
    """The store could not take or run a request."""


class Store:
    """A bounded queue of event writes and reads, served by one worker thread."""

    def __init__(self, limit: int = 100_000) -> None:
        self._queue: queue.Queue = queue.Queue(maxsize=limit)
        self._thread: threading.Thread | None = None
        self._call_soon: typing.Callable | None = None
        self.dropped = 0
        self.written = 0

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

    @property
    def pending(self) -> int:
        """Requests waiting for the worker."""
        return self._queue.qsize()

    @property
    def alive(self) -> bool:
        """Whether the worker runs."""
        return self._thread is not None and self._thread.is_alive()

    # -- requests ---------------------------------------------------------------

    def persist(self, app_id: str, message: dict) -> None:
        """Queues a delivered event for storage (from the loop: never blocks)."""
        try:
            self._queue.put_nowait((_EVENT, app_id, message))
        except queue.Full:
            self.dropped += 1
            LOGGER.error("store queue full: event %s not persisted", message.get("mid"))

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
            item = pending.popleft() if pending else self._queue.get()
            if item[0] == _STOP:
                self._write(self._drain(pending))
                return
            if item[0] == _EVENT:
                batch = [item]
                while len(batch) < BATCH:
                    try:
                        following = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if following[0] != _EVENT:
                        pending.append(following)
                        break
                    batch.append(following)
                self._write(batch)
            else:
                self._call(item)

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
        try:
            items = [(app_id, message) for _, app_id, message in batch]
            write_events(items, skip_stored=retry)
            self.written += len(batch)
            return
        except Exception:
            if len(batch) == 1:
                self.dropped += 1
                LOGGER.exception("could not persist event %s", batch[0][2].get("mid"))
                return
        # one bad event must not cost the others of its batch (other apps' too);
        # MongoDB may have kept the events before the bad one: skip those
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
        """An app's credentials by its key."""
        from ..app.models import App

        app = App.get(key=key, rules=False, raise_e=False)
        return app.credentials() if app else None

    @staticmethod
    def channel_events(app_id: str, channel: str, skip: int, count: int) -> list:
        """Stored events of a channel, newest first."""
        from ..app.models import PushiEvent

        return _events(PushiEvent, {"app_id": app_id, "channel": channel}, skip, count)

    @staticmethod
    def app_events(app_id: str, skip: int, count: int) -> list:
        """Stored events of an app across channels, newest first."""
        from ..app.models import PushiEvent

        return _events(PushiEvent, {"app_id": app_id}, skip, count)

    @staticmethod
    def user_events(app_id: str, user_id: str, skip: int, count: int) -> list:
        """Events stored for a user's personal channel, newest first."""
        from ..app.models import Association, PushiEvent

        links = Association._collection().find(
            {"app_id": app_id, "user_id": user_id},
            sort=[("id", -1)],
            skip=skip,
            limit=count,
        )
        mids = [link["mid"] for link in links]
        if not mids:
            return []
        found = PushiEvent._collection().find({"app_id": app_id, "mid": {"$in": mids}})
        by_mid = {document["mid"]: PushiEvent.message(document) for document in found}
        return [by_mid[mid] for mid in mids if mid in by_mid]

    @staticmethod
    def subscriptions(app_id: str, user_id: str) -> list[str]:
        """The channels a user follows."""
        from ..app.models import Subscription

        found = Subscription._collection().find({"app_id": app_id, "user_id": user_id})
        return sorted({document["event"] for document in found})

    @classmethod
    def personal(cls, app_id: str, user_id: str, count: int) -> tuple[list, list]:
        """What a personal channel subscription answers: aliases and last events."""
        return cls.subscriptions(app_id, user_id), cls.user_events(
            app_id, user_id, 0, count
        )


def _events(model, query: dict, skip: int, count: int) -> list:
    found = model._collection().find(query, sort=[("id", -1)], skip=skip, limit=count)
    return [model.message(document) for document in found]


def write_events(items: list[tuple[str, dict]], skip_stored: bool = False) -> None:
    """Stores a batch of delivered events and links them to their subscribers.

    `skip_stored` leaves out events whose `mid` is already stored (a retry).
    """
    from ..app.models import Association, PushiEvent, Subscription
    from .embedded import insert_many

    if skip_stored:
        mids = [message["mid"] for _, message in items]
        found = PushiEvent._collection().find({"mid": {"$in": mids}})
        stored = {document["mid"] for document in found}
        items = [item for item in items if item[1]["mid"] not in stored]
        if not items:
            return

    ids = PushiEvent.reserve_ids(len(items))
    documents = [
        PushiEvent.document(app_id, ident, message)
        for ident, (app_id, message) in zip(ids, items, strict=True)
    ]
    insert_many(PushiEvent._collection(), documents)

    followers: dict[tuple[str, str], list[str]] = {}
    links = []
    for document in documents:
        key = (document["app_id"], document["channel"])
        if key not in followers:
            found = Subscription._collection().find({"app_id": key[0], "event": key[1]})
            followers[key] = sorted({s["user_id"] for s in found})
        links.extend(
            dict(app_id=key[0], user_id=user_id, mid=document["mid"], id=document["id"])
            for user_id in followers[key]
        )
    if links:
        insert_many(Association._collection(), links)
