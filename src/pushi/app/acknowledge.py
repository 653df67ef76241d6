"""Acknowledging: a persisted publish answers once its event is committed.

Appier handles requests one at a time under its global `REQUEST_LOCK` (and the
API's netius server runs them on its one loop thread), so the wait cannot
happen in the controller: it would hold the lock and serialise every publisher
behind one commit each, defeating group commit. The controller only queues the
event and leaves its storage ticket in the WSGI environ; this WSGI layer around
the Appier app holds Appier's answer (status, headers, body) until the ticket
completes, outside the lock: on netius by yielding a netius future (the server
goes on serving other requests meanwhile), on a threaded server by waiting on
the request's own thread. Committed: Appier's answer goes out as it was; not
committed within `ACK_TIMEOUT`: a 503 in Appier's error shape instead (the event
was delivered and may still be stored later); a write the store refused (after
its retry alone): a 500 (delivered, not stored).
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
import typing

from ..store import StoreError

LOGGER = logging.getLogger("pushi")

ACK_TIMEOUT = 10.0
""" Seconds a persisted publish waits for its commit before answering 503 """

SWEEP_SECONDS = 1.0
""" How often the deadline thread forgets completed tickets """

TICKET = "pushi.ticket"
""" WSGI environ key: the storage ticket a publish's answer waits for """

HANDLER = "pushi.handler"
""" WSGI environ key: who answers a request whose ticket ends `NotServed` """


class Acknowledging:
    """WSGI layer: a request with a storage ticket answers once it is complete.

    Requests without one (everything but publishes) pass through untouched;
    a ticket that ends `NotServed` hands the request to `HANDLER`. Appier's
    error bodies are kept: an error raised in the controller leaves no
    ticket, and the 503 of a missed commit is Appier's shape
    (`pushi.app.base.error_body`).
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
        handler = environ.pop(HANDLER, None)
        if isinstance(outcome, NotServed) and handler is not None:
            # nothing was done: the request is answered as if it came now
            environ.pop(TICKET, None)
            yield from Acknowledging(handler)(environ, start_response)
            return
        from .base import error_body

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


class NotServed(Exception):
    """A ticket's outcome: nothing was done for the request; the handler in
    the environ (`HANDLER`) answers it instead."""


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
            earliest = not self._heap or deadline < self._heap[0][0]
            heapq.heappush(self._heap, (deadline, self._count, ticket))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="pushi-acks", daemon=True
                )
                self._thread.start()
            if earliest:
                # the thread sleeps until the earliest deadline: a later one
                # (the common case: every wait is as long) need not wake it
                self._condition.notify()

    def _run(self) -> None:
        while True:
            with self._condition:
                while not self._heap:
                    self._condition.wait()
                deadline, _, ticket = self._heap[0]
                wait = deadline - time.monotonic()
                if ticket.outcome is None and wait > 0:
                    # wakes at least every SWEEP_SECONDS to forget the tickets
                    # completed meanwhile (most are, long before their deadline)
                    self._condition.wait(min(wait, SWEEP_SECONDS))
                    continue
                heapq.heappop(self._heap)
            ticket.complete(StoreTimeout("store did not commit in time"))


_deadlines = _Deadlines()
