"""Events: publishing from back ends and reading what was stored.

A persisted `POST /events` answers once its event is committed. Appier handles
requests one at a time under its global `REQUEST_LOCK` (and the API's netius
server runs them on its one loop thread), so the wait cannot happen in the
controller: it would hold the lock and serialise every publisher behind one
commit each, defeating group commit. The controller only queues the event and
leaves its storage ticket in the WSGI environ; `Acknowledging`, a WSGI layer
around the Appier app, holds Appier's answer (status, headers, body) until the
ticket completes, outside the lock: on netius by yielding a netius future (the
server goes on serving other requests meanwhile), on a threaded server by
waiting on the request's own thread. Committed: Appier's answer goes out as it
was; not committed within `ACK_TIMEOUT`: a 503 in Appier's error shape instead
(the event was delivered and may still be stored later); a write the store
refused (after its retry alone): a 500 (delivered, not stored).
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
import typing

import appier

from ...base import auth
from ...base.state import StateError
from ...store import StoreError
from ..models import PushiEvent
from .base import PushiController

LOGGER = logging.getLogger("pushi")

ACK_TIMEOUT = 10.0
""" Seconds a persisted publish waits for its commit before answering 503 """

TICKET = "pushi.ticket"
""" WSGI environ key: the storage ticket a publish's answer waits for """

MAX_CHANNELS = 100
""" Channels one publish may name """

COUNT_DEFAULT, COUNT_MOST = 10, 100
""" `GET /events?count=`: default and bound (clamped to 1..100, contract §4.10) """


class EventsController(PushiController):
    """`POST /events` publishes through State; `GET /events` reads the store."""

    def __init__(self, owner, *args, **kwargs) -> None:
        PushiController.__init__(self, owner, *args, **kwargs)
        # every server Appier or the runner builds takes `owner.application`:
        # wrap it once, so that a persisted publish answers after its commit
        current = owner.application
        if not isinstance(current, Acknowledging):
            owner.application = Acknowledging(current)

    @appier.route("/events", "POST", json=True)
    def create(self):
        """Publishes `data` as `event` on `channel` (a name or a list of names).

        The body is JSON only and is delivered whole, with `channel`, `event`
        and `data` set, as the published server does. Answers `{"result":
        "success"}` once the event is delivered and, with `persist` (the
        default), committed to the store (see `Acknowledging`); a full store
        queue is a 503 and the event is neither delivered nor stored.
        """
        app_id = self.session_app()
        body = self._publish_body()
        data = body.get("data")
        if not data:
            raise appier.OperationalError(message="No data set for event", code=400)
        for stamp in ("mid", "timestamp"):
            if stamp in body:
                # the server stamps stored events: a caller's stamp would be
                # relayed as if the event had been stored
                raise appier.OperationalError(
                    message="Reserved key in event: %s" % stamp, code=400
                )
        channels = self._channels(body.get("channel"))
        event = body.get("event", "message")
        if not isinstance(event, str) or not event:
            raise appier.OperationalError(
                message="Event name must be a non-empty string", code=400
            )
        persist = bool(body.get("persist", True))
        state = self.owner.state
        try:
            ticket = state.call(
                state.publish, app_id, channels, event, data, body, persist
            )
        except StateError:
            raise appier.NotFoundError(message="App not found", code=404) from None
        if ticket is not None:
            self.request.environ[TICKET] = ticket

    @appier.route("/events", "GET", json=True)
    def list(self):
        """`{"events": [...]}`: the app's stored event records, newest first.

        `count` (default 10) is clamped to 1..100; `skip` and `channel` are
        additions of this project (the published server ignores them).
        """
        app_id = self.session_app()
        count = self.integer(self.field("count"), COUNT_DEFAULT, 1, COUNT_MOST)
        skip = self.integer(self.field("skip"), 0, 0, 10**9)
        query = dict(instance=app_id)
        channel = self.field("channel")
        if channel:
            query["channel"] = channel
        # storage is asynchronous and in publish order: reading on the store
        # worker orders this read after every event published before it
        store = self.owner.store
        found = store.call(_find_events, query, skip, count)
        return dict(events=found)

    def _publish_body(self) -> dict:
        """The JSON object body of a publish (anything else has no data)."""
        content_type = self.request.get_header("Content-Type") or "application/json"
        if "json" not in content_type:
            return {}
        return self.json_body()

    @staticmethod
    def _channels(channel) -> list[str]:
        if not channel:
            # as published: no channel, an empty name or an empty list is global
            return ["global"]
        channels = channel if isinstance(channel, list) else [channel]
        if len(channels) > MAX_CHANNELS:
            raise appier.OperationalError(
                message="Expected at most %d channels" % MAX_CHANNELS, code=400
            )
        for name in channels:
            if not auth.valid_channel(name):
                shown = repr(name)[:80]
                raise appier.OperationalError(
                    message="Invalid channel name: %s" % shown, code=400
                )
        return channels


def _find_events(query: dict, skip: int, count: int) -> list[dict]:
    """Event records as the REST API answers them (with `_id`)."""
    found = PushiEvent.find(skip=skip, limit=count, sort=[("id", -1)], **query)
    return [event.record() for event in found]


class Acknowledging:
    """WSGI layer: a request with a storage ticket answers once it is complete.

    Requests without one (everything but persisted publishes) pass through
    untouched. Appier's error bodies are kept: an error raised in the
    controller leaves no ticket, and the 503 of a missed commit is Appier's
    shape (`pushi.app.base.error_body`).
    """

    def __init__(self, application: typing.Callable) -> None:
        self.application = application

    def __call__(self, environ: dict, start_response: typing.Callable):
        held: list = []

        def hold(status, headers, exc_info=None):
            if TICKET not in environ:
                # netius's start_response takes no exc_info
                if exc_info is None:
                    return start_response(status, headers)
                return start_response(status, headers, exc_info)
            held[:] = [status, headers]
            return _unwritable

        result = self.application(environ, hold)
        ticket = environ.get(TICKET)
        if ticket is None:
            return result
        if not held:
            # Appier did not start its answer (no ticket of ours, then)
            environ.pop(TICKET, None)
            return result
        _deadlines.add(ticket, time.monotonic() + ACK_TIMEOUT)
        return self._answer(environ, ticket, held, result, start_response)

    @staticmethod
    def _answer(environ, ticket, held, result, start_response):
        if ticket.outcome is None and environ.get("wsgi.server_name") == "netius":
            import netius

            future = netius.Future()
            ticket.then(lambda outcome: future.set_result(outcome, force=True))
            yield future  # netius serves other requests until it is done
        outcome = ticket.wait(ACK_TIMEOUT + 1.0)
        if outcome is True:
            start_response(*held)
            yield from result
            return
        if hasattr(result, "close"):
            result.close()
        from ..base import error_body

        if outcome is None or isinstance(outcome, StoreTimeout):
            # not committed in time: it may still be (it was delivered)
            code, message = 503, "Server busy, try again"
        else:
            # the store refused the event itself: retrying cannot help
            code, message = 500, "Event could not be stored"
        LOGGER.warning("publish answered %d: %s", code, outcome or "no commit")
        status, headers, body = error_body(code, message)
        start_response(status, headers)
        yield body


class StoreTimeout(StoreError):
    """A publish's commit did not come in time (it may come later)."""


def _unwritable(data: bytes) -> None:
    raise RuntimeError("a held answer cannot be written to")


class _Deadlines:
    """Gives up on tickets not complete by their deadline (one thread for all)."""

    def __init__(self) -> None:
        self._heap: list = []
        self._count = 0
        self._condition = threading.Condition()
        self._thread: threading.Thread | None = None

    def add(self, ticket, deadline: float) -> None:
        with self._condition:
            self._count += 1
            heapq.heappush(self._heap, (deadline, self._count, ticket))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="pushi-acks", daemon=True
                )
                self._thread.start()
            self._condition.notify()

    def _run(self) -> None:
        while True:
            with self._condition:
                while not self._heap:
                    self._condition.wait()
                deadline, _, ticket = self._heap[0]
                wait = deadline - time.monotonic()
                if ticket.outcome is None and wait > 0:
                    self._condition.wait(wait)
                    continue
                heapq.heappop(self._heap)
            ticket.complete(StoreTimeout("store did not commit in time"))


_deadlines = _Deadlines()
