"""The webhook sender (hooks/webhooks.py) with a fake `post`: no sockets.

Its worker threads are real; every test waits for what it expects through a
condition with a timeout. What it posts is checked end to end with a real
receiver in tests/test_webhooks.py; here the rules around the requests:
which URLs, the backlog bound, retries, batching, stopping.
"""

from __future__ import annotations

import json
import threading

import pytest

from pushi.base.channels import AppState
from pushi.hooks import webhooks
from pushi.hooks.webhooks import Webhooks, signature

WAIT = 5.0


class FakePost:
    """Records posts; answers the statuses given (then 200); can block."""

    def __init__(self, statuses=(), error: Exception | None = None) -> None:
        self.statuses = list(statuses)
        self.error = error
        self.calls: list[tuple] = []
        self.gate = threading.Event()
        self.gate.set()  # open unless a test closes it
        self.changed = threading.Condition()

    def __call__(self, url, body, headers, timeout) -> int:
        with self.changed:
            self.calls.append((url, json.loads(body), headers, body))
            self.changed.notify_all()
        self.gate.wait(WAIT)
        if self.error is not None:
            raise self.error
        with self.changed:
            return self.statuses.pop(0) if self.statuses else 200

    def wait(self, count: int) -> list[tuple]:
        with self.changed:
            assert self.changed.wait_for(
                lambda: len(self.calls) >= count, WAIT
            ), "expected %d posts, got %r" % (count, self.calls)
            return list(self.calls)


def app(*hooks: dict) -> AppState:
    state = AppState("i" * 64, "key", "secret")
    state.webhooks = list(hooks)
    return state


@pytest.fixture
def sender():
    made: list[Webhooks] = []

    def make(post, **kwargs) -> Webhooks:
        hooks = Webhooks(post=post, **kwargs)
        hooks.start()
        made.append(hooks)
        return hooks

    yield make
    for hooks in made:
        hooks.stop(drain=0)


@pytest.fixture(autouse=True)
def quick_backoff(monkeypatch):
    monkeypatch.setattr(webhooks, "BACKOFF", 0.01)


def test_only_the_urls_that_asked_get_an_event(sender):
    post = FakePost()
    hooks = sender(post)
    target = app(
        {"url": "http://a/", "event_types": ["channel_occupied"]},
        {"url": "http://b/", "event_types": ["channel_vacated"]},
    )
    hooks.channel_occupied(target, "news")
    hooks.channel_vacated(target, "news")
    calls = post.wait(2)
    got = sorted((url, payload["events"]) for url, payload, _, _ in calls)
    assert got == [
        ("http://a/", [{"name": "channel_occupied", "channel": "news"}]),
        ("http://b/", [{"name": "channel_vacated", "channel": "news"}]),
    ]
    for _, _, headers, body in calls:
        assert headers["X-Pusher-Key"] == "key"
        assert headers["X-Pusher-Signature"] == signature("secret", body)
        assert headers["Content-Type"] == "application/json"


def test_client_event_data_is_sent_encoded(sender):
    post = FakePost()
    hooks = sender(post)
    target = app({"url": "http://a/", "event_types": ["client_event"]})
    hooks.client_event(target, "private-c", "client-x", {"a": 1}, "1.2", None)
    [(_, payload, _, _)] = post.wait(1)
    assert payload["events"] == [
        {
            "name": "client_event",
            "channel": "private-c",
            "event": "client-x",
            "data": '{"a": 1}',
            "socket_id": "1.2",
        }
    ]


def test_a_full_backlog_drops_and_counts(sender):
    post = FakePost()
    post.gate.clear()  # the first request hangs
    hooks = sender(post, queue=2)
    target = app({"url": "http://a/", "event_types": ["channel_occupied"]})
    hooks.channel_occupied(target, "c0")
    post.wait(1)  # taken: the backlog is empty again
    for index in range(1, 5):
        hooks.channel_occupied(target, "c%d" % index)
    assert hooks.dropped == 2 and hooks.pending() == 2
    post.gate.set()
    calls = post.wait(3)
    sent = [payload["events"][0]["channel"] for _, payload, _, _ in calls]
    assert sent == ["c0", "c1", "c2"], sent


def test_5xx_and_connection_errors_are_retried_4xx_not(sender):
    flaky = FakePost(statuses=[503, 502])
    hooks = sender(flaky)
    target = app({"url": "http://a/", "event_types": ["cache_miss"]})
    hooks.cache_miss(target, "cache-x")
    calls = flaky.wait(3)
    assert len({body for *_, body in calls}) == 1, "a retry changed the body"

    picky = FakePost(statuses=[404])
    hooks = sender(picky)
    hooks.cache_miss(target, "cache-x")
    hooks.cache_miss(target, "cache-y")
    calls = picky.wait(2)
    channels = [payload["events"][0]["channel"] for _, payload, _, _ in calls]
    assert channels == ["cache-x", "cache-y"], "a 4xx was tried again"

    broken = FakePost(error=ConnectionRefusedError("refused"))
    hooks = sender(broken)
    hooks.cache_miss(target, "cache-x")
    assert len(broken.wait(webhooks.TRIES)) == webhooks.TRIES
    hooks.stop(drain=1.0)
    assert len(broken.calls) == webhooks.TRIES and hooks.failed == 1


def test_batching_gathers_a_lanes_events(sender):
    post = FakePost()
    hooks = sender(post, batch_ms=200)
    target = app({"url": "http://a/", "event_types": ["member_added"]})
    for user in ("ann", "bob", "cy"):
        hooks.member_added(target, "presence-r", user)
    [(_, payload, _, _)] = post.wait(1)
    assert [event["user_id"] for event in payload["events"]] == ["ann", "bob", "cy"]


def test_stop_drains_then_nothing_is_queued(sender):
    post = FakePost()
    hooks = sender(post)
    target = app({"url": "http://a/", "event_types": ["channel_occupied"]})
    for index in range(5):
        hooks.channel_occupied(target, "c%d" % index)
    hooks.stop(drain=WAIT)
    assert len(post.calls) == 5
    hooks.channel_occupied(target, "late")
    assert hooks.pending() == 0 and len(post.calls) == 5


def test_an_app_without_webhooks_costs_nothing(sender):
    post = FakePost()
    hooks = sender(post)
    hooks.channel_occupied(app(), "news")
    assert hooks.pending() == 0 and hooks.dropped == 0
