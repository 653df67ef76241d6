"""State's read-only queries for the Pusher HTTP API, and its publish exclusion.

`pusher_app` (an app by numeric id, with a snapshot of its credentials and
settings), `channel_counts`, `occupied_channels` (prefix filter, users' own
channels left out), `presence_users`, and `publish(..., exclude=)`.
"""

from __future__ import annotations

from fakes import APP, Harness, check_consistent

from pushi.base.state import SIGNIN


def harness_with_id(**settings) -> Harness:
    harness = Harness(**settings)
    harness.state.app_changed(
        dict(APP, app_id="424242", max_payload=99, persist=True, client_events=False)
    )
    return harness


def test_pusher_app_by_numeric_id_with_a_snapshot():
    harness = harness_with_id()
    found = harness.state.pusher_app("424242")
    assert found is not None
    app, snapshot = found
    assert app is harness.app
    assert snapshot == {
        "ident": APP["ident"],
        "key": APP["key"],
        "secret": APP["secret"],
        "max_payload": 99,
        "persist": True,
    }
    assert harness.state.pusher_app("1") is None
    # a snapshot: later changes do not reach one already handed out
    harness.state.app_changed(dict(APP, app_id="424242", secret="c" * 64))
    assert snapshot["secret"] == APP["secret"]
    assert harness.state.pusher_app("424242")[1]["secret"] == "c" * 64


def test_a_changed_app_id_forgets_the_old_one():
    harness = harness_with_id()
    harness.state.app_changed(dict(APP, app_id="777"))
    assert harness.state.pusher_app("424242") is None
    assert harness.state.pusher_app("777")[0] is harness.app


def test_channel_counts_sockets_and_users():
    harness = harness_with_id()
    state, app = harness.state, harness.app
    assert state.channel_counts(app, "presence-room") == {
        "occupied": False,
        "subscription_count": 0,
        "user_count": 0,
    }
    first, second, third = (harness.connect() for _ in range(3))
    harness.join(first, "presence-room", "ann")
    harness.join(second, "presence-room", "ann")
    harness.join(third, "presence-room", "bob")
    assert state.channel_counts(app, "presence-room") == {
        "occupied": True,
        "subscription_count": 3,
        "user_count": 2,
    }
    assert state.presence_users(app, "presence-room") == ["ann", "bob"]
    harness.close(first)
    assert state.channel_counts(app, "presence-room")["user_count"] == 2
    harness.close(second)
    assert state.presence_users(app, "presence-room") == ["bob"]
    harness.close(third)
    assert state.channel_counts(app, "presence-room")["occupied"] is False
    assert state.presence_users(app, "presence-room") == []
    check_consistent(harness)


def test_occupied_channels_by_prefix_without_user_channels():
    harness = harness_with_id()
    state, app = harness.state, harness.app
    assert state.occupied_channels(app) == {}
    socket = harness.connect()
    for channel in ("news-1", "news-2", "sport"):
        harness.subscribe(socket, channel)
    # a signed-in socket is in its user's channel: never listed
    state._join(socket, "#server-to-user-ann", SIGNIN)
    listed = state.occupied_channels(app)
    assert sorted(listed) == ["news-1", "news-2", "sport"], listed
    assert listed["sport"] == {
        "occupied": True,
        "subscription_count": 1,
        "user_count": 0,
    }
    assert sorted(state.occupied_channels(app, "news-")) == ["news-1", "news-2"]
    assert state.occupied_channels(app, "none-") == {}
    harness.unsubscribe(socket, "news-1")
    assert sorted(state.occupied_channels(app, "news-")) == ["news-2"]


def test_publish_excludes_one_socket():
    harness = harness_with_id()
    sender, other = harness.connect(), harness.connect()
    harness.subscribe(sender, "room")
    harness.subscribe(other, "room")
    harness.state.publish(
        APP["ident"], ["room"], "ev", "hi", None, False, sender.socket_id
    )
    assert harness.transport(sender).delivered() == []
    assert harness.transport(other).delivered() == [
        {"channel": "room", "event": "ev", "data": "hi"}
    ]
    assert harness.store.persisted == []
