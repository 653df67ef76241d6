"""Pusher-style webhooks: State's channel events POSTed to each app's URLs.

`Webhooks` is State's observer (base/observer.py). On the event loop it only
picks the URLs of the app that asked for the event type and appends the event
to each URL's backlog (a short lock, never I/O); worker threads post.

Each (app, URL) pair is a lane: its own bounded backlog (`queue` events; past
it new events for that URL are dropped, counted and logged) and at most one
request in flight, so a URL sees its events in order (occupied before vacated)
and a dead or hanging URL holds one worker, never the others' events: with
`workers` threads, `workers` URLs must hang at once before anyone else waits.

A request is what Pusher posts: `{"time_ms", "events": [...]}` with
`X-Pusher-Key` and `X-Pusher-Signature` (hex HMAC-SHA256 of the body with the
app's secret). One event a request unless `batch_ms` > 0: then a lane gathers
its events for that long (at most `BATCH_MOST` a request). A request has
`timeout` seconds a socket operation; connection errors and 5xx are tried
again (`TRIES` in all, waits doubling from `BACKOFF`), anything else is not.
"""

from __future__ import annotations

import collections
import hashlib
import heapq
import hmac
import http.client
import itertools
import json
import logging
import ssl
import threading
import time
import typing
import urllib.parse

from ..base.observer import Observer
from ..base.state import encode_data

if typing.TYPE_CHECKING:
    from ..base.channels import AppState
    from ..base.config import Settings

LOGGER = logging.getLogger("pushi")

TRIES = 3
""" Attempts of one request (connection errors and 5xx are tried again) """
BACKOFF = 0.5
""" Seconds before the second attempt; doubled before each later one """
BATCH_MOST = 100
""" Events in one request, at most (a larger backlog takes several) """
REPLY_MOST = 64 * 1024
""" Bytes of a receiver's reply read (and ignored) before closing """
DROP_LOG_SECONDS = 10.0
""" At most one log line this often about dropped events (with the count) """
DRAIN_SECONDS = 2.0
""" How long a stopping process lets queued webhooks go out """

Post = typing.Callable[[str, bytes, dict, float], int]


def signature(secret: str, body: bytes) -> str:
    """`X-Pusher-Signature`: hex HMAC-SHA256 of the body, keyed by the secret."""
    return hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def post_json(url: str, body: bytes, headers: dict, timeout: float) -> int:
    """POSTs a body with the standard library; returns the reply's status.

    http.client rather than urllib: no redirects followed (urllib would turn
    a redirected POST into a GET) and no proxy taken from the environment.
    Raises OSError or http.client.HTTPException when no reply came.
    """
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "https":
        context = ssl.create_default_context()
        connection: http.client.HTTPConnection = http.client.HTTPSConnection(
            parts.hostname, parts.port, timeout=timeout, context=context
        )
    else:
        connection = http.client.HTTPConnection(
            parts.hostname, parts.port, timeout=timeout
        )
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    try:
        connection.request("POST", path, body, headers)
        response = connection.getresponse()
        response.read(REPLY_MOST)
        return response.status
    finally:
        connection.close()


class Lane:
    """One URL of one app: its backlog and whether a worker has it."""

    __slots__ = ("ident", "url", "key", "secret", "events", "busy", "scheduled")

    def __init__(self, ident: str, url: str) -> None:
        self.ident = ident
        self.url = url
        # the app's credentials when its latest event came (an app's secret
        # may change while events wait: the newest signs)
        self.key = ""
        self.secret = ""
        self.events: collections.deque[dict] = collections.deque()
        self.busy = False  # a worker is posting its events
        self.scheduled = False  # waiting in the heap for a worker


class Webhooks(Observer):
    """State's observer that posts Pusher-style webhooks off the event loop."""

    def __init__(
        self,
        batch_ms: int = 0,
        queue: int = 10_000,
        timeout: float = 5.0,
        workers: int = 8,
        post: Post = post_json,
    ) -> None:
        self.batch = max(0, batch_ms) / 1000.0
        self.queue = max(1, queue)
        self.timeout = timeout
        self.workers = max(1, workers)
        self.post = post
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)
        self._lanes: dict[tuple[str, str], Lane] = {}
        # (due, order, lane): lanes with events a worker should take from `due`
        self._heap: list[tuple[float, int, Lane]] = []
        self._order = itertools.count()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        # counters (read by tests and logs)
        self.dropped = 0
        self.sent = 0
        self.failed = 0
        self._drop_logged = 0.0
        self._drops_told = 0

    @classmethod
    def from_settings(cls, settings: Settings) -> "Webhooks":
        """The webhooks of a process (`PUSHI_WEBHOOK_*`)."""
        return cls(
            batch_ms=settings.webhook_batch_ms,
            queue=settings.webhook_queue,
            timeout=settings.webhook_timeout,
            workers=settings.webhook_workers,
        )

    # -- life ----------------------------------------------------------------------

    def start(self) -> None:
        """Starts the worker threads."""
        for index in range(self.workers):
            thread = threading.Thread(
                target=self._work, name="pushi-webhooks-%d" % index, daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def stop(self, drain: float = DRAIN_SECONDS) -> None:
        """Lets queued events go out for up to `drain` seconds, then stops;
        says how many were left unsent."""
        deadline = time.monotonic() + drain
        with self._lock:
            while self._threads and any(
                lane.events or lane.busy for lane in self._lanes.values()
            ):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._ready.wait(min(left, 0.05))
            self._stopping.set()
            left = sum(len(lane.events) for lane in self._lanes.values())
            self._lanes.clear()
            self._heap.clear()
            self._ready.notify_all()
        for thread in self._threads:
            thread.join(self.timeout + 1)
        self._threads.clear()
        if left:
            LOGGER.warning("webhooks: %d event(s) not sent at stop", left)

    def pending(self) -> int:
        """Events waiting in every backlog (not counting those in flight)."""
        with self._lock:
            return sum(len(lane.events) for lane in self._lanes.values())

    # -- the observer (event loop) ---------------------------------------------------

    def channel_occupied(self, app: AppState, channel: str) -> None:
        """`channel_occupied`: `{name, channel}`."""
        self._event(app, {"name": "channel_occupied", "channel": channel})

    def channel_vacated(self, app: AppState, channel: str) -> None:
        """`channel_vacated`: `{name, channel}`."""
        self._event(app, {"name": "channel_vacated", "channel": channel})

    def member_added(self, app: AppState, channel: str, user_id: str) -> None:
        """`member_added`: `{name, channel, user_id}`."""
        event = {"name": "member_added", "channel": channel, "user_id": user_id}
        self._event(app, event)

    def member_removed(self, app: AppState, channel: str, user_id: str) -> None:
        """`member_removed`: `{name, channel, user_id}`."""
        event = {"name": "member_removed", "channel": channel, "user_id": user_id}
        self._event(app, event)

    def client_event(
        self,
        app: AppState,
        channel: str,
        event: str,
        data: typing.Any,
        socket_id: str,
        user_id: str | None,
    ) -> None:
        """`client_event`: `{name, channel, event, data, socket_id}`, and
        `user_id` on presence channels. `data` is encoded by the worker (it
        is the client's decoded frame, which nobody changes)."""
        record = {
            "name": "client_event",
            "channel": channel,
            "event": event,
            "data": data,
            "socket_id": socket_id,
        }
        if user_id is not None:
            record["user_id"] = user_id
        self._event(app, record)

    def cache_miss(self, app: AppState, channel: str) -> None:
        """`cache_miss`: `{name, channel}`."""
        self._event(app, {"name": "cache_miss", "channel": channel})

    def _event(self, app: AppState, event: dict) -> None:
        """Appends an event to the backlog of each URL that wants its type."""
        try:
            name = event["name"]
            urls = [hook["url"] for hook in app.webhooks if name in hook["event_types"]]
            if not urls:
                return
            due = time.monotonic() + self.batch
            dropped = 0
            with self._lock:
                if self._stopping.is_set():
                    return
                for url in urls:
                    lane = self._lanes.get((app.ident, url))
                    if lane is None:
                        lane = self._lanes[(app.ident, url)] = Lane(app.ident, url)
                    lane.key, lane.secret = app.key, app.secret
                    if len(lane.events) >= self.queue:
                        dropped += 1
                        continue
                    lane.events.append(event)
                    if not lane.busy and not lane.scheduled:
                        self._schedule(lane, due)
                self.dropped += dropped
            if dropped:
                self._told_drops()
        except Exception:
            # an observer never breaks State's dispatch
            LOGGER.exception("webhooks: could not queue %r", event.get("name"))

    def _told_drops(self) -> None:
        """One log line per DROP_LOG_SECONDS at most, with the count so far."""
        now = time.monotonic()
        if now - self._drop_logged < DROP_LOG_SECONDS and self._drops_told:
            return
        self._drop_logged = now
        self._drops_told = self.dropped
        LOGGER.warning(
            "webhooks: a URL's backlog is full (%d events): %d event(s) dropped "
            "so far",
            self.queue,
            self.dropped,
        )

    def _schedule(self, lane: Lane, due: float) -> None:
        """Hands a lane to the workers from `due` on (the lock is held)."""
        lane.scheduled = True
        heapq.heappush(self._heap, (due, next(self._order), lane))
        self._ready.notify()

    # -- the workers -------------------------------------------------------------

    def _take(self) -> tuple[Lane, list[dict], str, str] | None:
        """Waits for a lane that is due; takes its next request's events."""
        with self._lock:
            while not self._stopping.is_set():
                wait = None
                if self._heap:
                    wait = self._heap[0][0] - time.monotonic()
                    if wait <= 0:
                        lane = heapq.heappop(self._heap)[2]
                        lane.scheduled = False
                        lane.busy = True
                        count = min(len(lane.events), BATCH_MOST if self.batch else 1)
                        events = [lane.events.popleft() for _ in range(count)]
                        return lane, events, lane.key, lane.secret
                self._ready.wait(wait)
        return None

    def _work(self) -> None:
        while True:
            taken = self._take()
            if taken is None:
                return
            lane, events, key, secret = taken
            try:
                if events:
                    self._send(lane.url, events, key, secret)
            except Exception:
                LOGGER.exception("webhooks: failed posting to %s", lane.url)
            finally:
                with self._lock:
                    lane.busy = False
                    if lane.events:
                        # they waited while the lane was busy: due at once
                        self._schedule(lane, time.monotonic())
                    elif self._lanes.get((lane.ident, lane.url)) is lane:
                        del self._lanes[(lane.ident, lane.url)]  # idle: forgotten
                    self._ready.notify_all()  # a draining stop may be waiting

    def _send(self, url: str, events: list[dict], key: str, secret: str) -> None:
        """One request with retries; logs (once) what could not be delivered."""
        records = [
            (
                dict(event, data=encode_data(event["data"]))
                if "data" in event and not isinstance(event["data"], str)
                else event
            )
            for event in events
        ]
        body = json.dumps(
            {"time_ms": int(time.time() * 1000), "events": records},
            separators=(",", ":"),
        ).encode("utf-8")
        headers = {
            "Content-Type": "application/json",
            "X-Pusher-Key": key,
            "X-Pusher-Signature": signature(secret, body),
            "User-Agent": "pushi-webhooks",
        }
        delay = BACKOFF
        for attempt in range(1, TRIES + 1):
            try:
                status = self.post(url, body, headers, self.timeout)
            except (OSError, http.client.HTTPException) as error:
                reason, again = "%s: %s" % (type(error).__name__, error), True
            except ValueError as error:
                # a URL http.client cannot use (a bad port, say): no retry
                reason, again = "%s: %s" % (type(error).__name__, error), False
            else:
                if 200 <= status < 300:
                    self.sent += 1
                    return
                reason, again = "status %d" % status, status >= 500
            if not again or attempt == TRIES or self._stopping.wait(delay):
                break
            delay *= 2
        self.failed += 1
        LOGGER.warning(
            "webhooks: %d event(s) to %s not delivered after %d attempt(s): %s",
            len(events),
            url,
            attempt,
            reason,
        )
