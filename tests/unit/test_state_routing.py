"""State routing, with fake transports and a fake store (no sockets, no threads).

Public and private subscriptions, REST publishes (the whole body, one copy per
trigger across a channel list, `json.dumps` default encoding), client events
(shape, echo, exclusion, `data: ""`), `latest`, and refusals: every refusal is
answered with an error and leaves nothing joined, delivered or stored.
Contract: pushi-contract.md §3.2-3.7 and §4.
"""

from __future__ import annotations

import json

import pytest
from fakes import APP, Harness, check_consistent, check_empty

from pushi.base.state import StateError

EMPTY_INFO = {"members": {}, "alias": [], "events": []}


def joined(harness: Harness, session, *channels: str) -> None:
    """Subscribes public channels, asserting each reply."""
    for channel in channels:
        harness.subscribe(session, channel)
        assert harness.transport(session).of("subscribed")[-1] == (
            channel,
            EMPTY_INFO,
        )


def assert_refused(harness: Harness, session, code: int, channel) -> None:
    """The socket got exactly one error (that code and channel) and nothing else."""
    calls = harness.transport(session).calls
    assert len(calls) == 1 and calls[0][0] == "error", calls
    assert calls[0][1] == code and calls[0][3] == channel, calls
    assert harness.store.persisted == [], harness.store.persisted


# -- subscribing ---------------------------------------------------------------------


def test_public_subscription_replies_with_four_keys_and_receives():
    harness = Harness()
    alice = harness.connect()
    harness.subscribe(alice, "news")
    assert harness.transport(alice).calls == [("subscribed", "news", EMPTY_INFO)]
    assert list(alice.channels) == ["news"]
    harness.publish("news", data="hello")
    (event,) = harness.transport(alice).delivered()
    assert (event["channel"], event["event"], event["data"]) == (
        "news",
        "message",
        "hello",
    )
    check_consistent(harness)


def test_names_apps_use_are_accepted():
    harness = Harness()
    alice = harness.connect()
    for name in ("a+b@x.com", "room/1#x!", "sala-é-ü", "x" * 200):
        harness.subscribe(alice, name)
    assert list(alice.channels) == ["a+b@x.com", "room/1#x!", "sala-é-ü", "x" * 200]
    assert harness.transport(alice).errors() == []


@pytest.mark.parametrize("name", ["", "a b", "tab\there", "x" * 201, 7, None, ["a"]])
def test_invalid_channel_names_are_refused(name):
    harness = Harness()
    alice = harness.connect()
    harness.subscribe(alice, name)
    assert_refused(harness, alice, 4000, None)
    assert alice.channels == {} and harness.app.channels == {}


def test_private_channel_needs_a_valid_signature():
    harness = Harness()
    alice, bob = harness.connect(), harness.connect()
    for auth in (None, "", APP["key"] + ":00", harness.auth(bob, "private-x")):
        harness.forget()
        harness.subscribe(alice, "private-x", auth)
        assert_refused(harness, alice, 4009, "private-x")
        assert alice.channels == {} and harness.app.channels == {}
    harness.forget()
    harness.subscribe_signed(alice, "private-x")
    assert harness.transport(alice).calls == [("subscribed", "private-x", EMPTY_INFO)]
    harness.publish("private-x")
    assert len(harness.transport(alice).delivered()) == 1
    assert harness.transport(bob).delivered() == []


def test_subscribing_twice_replies_twice_and_delivers_once():
    harness = Harness()
    alice = harness.connect()
    harness.subscribe(alice, "news")
    harness.subscribe(alice, "news")
    assert [c[0] for c in harness.transport(alice).calls] == ["subscribed"] * 2
    harness.publish("news")
    assert len(harness.transport(alice).delivered()) == 1


def test_unsubscribe_replies_and_stops_delivery():
    harness = Harness()
    alice = harness.connect()
    harness.subscribe(alice, "news")
    harness.unsubscribe(alice, "news")
    assert harness.transport(alice).of("unsubscribed") == [("news", EMPTY_INFO)]
    harness.publish("news")
    assert harness.transport(alice).delivered() == []
    assert harness.app.channels == {}, "an empty channel must be forgotten"


def test_unsubscribing_a_channel_never_joined_gets_the_normal_reply():
    harness = Harness()
    alice = harness.connect()
    harness.unsubscribe(alice, "private-never")
    assert harness.transport(alice).calls == [
        ("unsubscribed", "private-never", EMPTY_INFO)
    ]


def test_channel_limit_refuses_the_extra_channel_only():
    harness = Harness(max_channels=2)
    alice = harness.connect()
    joined(harness, alice, "a", "b")
    harness.forget()
    harness.subscribe(alice, "c")
    assert_refused(harness, alice, 4004, "c")
    harness.forget()
    harness.subscribe(alice, "a")  # again: no new channel
    assert harness.transport(alice).of("subscribed") == [("a", EMPTY_INFO)]
    assert list(alice.channels) == ["a", "b"]


def test_request_rate_refuses_past_the_burst():
    harness = Harness(request_rate=3, request_burst=3, max_channels=3)
    alice = harness.connect()
    for name in ("a", "b", "c", "d"):
        harness.subscribe(alice, name)
    assert [c[0] for c in harness.transport(alice).calls] == [
        "subscribed",
        "subscribed",
        "subscribed",
        "error",
    ]
    assert harness.transport(alice).errors()[0][0] == 4301
    assert list(alice.channels) == ["a", "b", "c"]


# -- REST publishes --------------------------------------------------------------------


def test_rest_event_is_the_whole_body_with_channel_event_data_set():
    harness = Harness()
    alice = harness.connect()
    harness.subscribe(alice, "news")
    body = {
        "data": {"x": 1},
        "channel": "news",
        "persist": True,
        "event": "greet",
        "extra": [1, "two"],
    }
    harness.publish("news", "greet", {"x": 1}, body)
    (event,) = harness.transport(alice).delivered()
    assert list(event) == [
        "data",
        "channel",
        "persist",
        "event",
        "extra",
        "mid",
        "timestamp",
    ], event
    assert event["data"] == '{"x": 1}'
    assert event["persist"] is True and event["extra"] == [1, "two"]
    assert isinstance(event["mid"], str) and isinstance(event["timestamp"], float)
    ((app_id, messages, owner_id),) = harness.store.persisted
    assert (app_id, owner_id) == (APP["ident"], None)
    assert messages == [event], "the stored message is the delivered one"
    assert body["data"] == {"x": 1} and "mid" not in body, "the body was changed"


def test_structured_data_uses_python_json_dumps_defaults():
    harness = Harness()
    alice = harness.connect()
    harness.subscribe(alice, "news")
    cases = [
        (
            {"b": [1, 2], "é": "ü", "n": None},
            '{"b": [1, 2], "\\u00e9": "\\u00fc", "n": null}',
        ),
        ([1, {"a": True}], '[1, {"a": true}]'),
        (5, "5"),
        ("as is {", "as is {"),
    ]
    for data, _ in cases:
        harness.publish("news", data=data, persist=False)
    got = [event["data"] for event in harness.transport(alice).delivered()]
    assert got == [expected for _, expected in cases]


def test_channel_list_gives_one_copy_tagged_with_first_joined_channel():
    harness = Harness()
    both, second, first, none = (harness.connect(n) for n in "ABCD")
    joined(harness, both, "c2", "c1")
    joined(harness, second, "c2")
    joined(harness, first, "c1")
    joined(harness, none, "c3")
    harness.forget()
    harness.publish(["c1", "c2"], "tick", "x")
    assert [e["channel"] for e in harness.transport(both).delivered()] == ["c1"]
    assert [e["channel"] for e in harness.transport(second).delivered()] == ["c2"]
    assert [e["channel"] for e in harness.transport(first).delivered()] == ["c1"]
    assert harness.transport(none).delivered() == []
    ((_, messages, _),) = harness.store.persisted
    assert [m["channel"] for m in messages] == ["c1", "c2"]
    assert len({m["mid"] for m in messages}) == 2, "each channel has its own mid"
    delivered_mid = harness.transport(second).delivered()[0]["mid"]
    assert delivered_mid == messages[1]["mid"]


def test_one_encoding_is_shared_by_every_recipient():
    harness = Harness()
    sessions = [harness.connect() for _ in range(5)]
    for session in sessions:
        harness.subscribe(session, "news")
    harness.publish("news")
    shared = {id(harness.transport(s).outgoing[0]) for s in sessions}
    assert len(shared) == 1, "a publish encodes its message once for all"


def test_unpersisted_publish_has_no_mid_and_stores_nothing():
    harness = Harness()
    alice = harness.connect()
    harness.subscribe(alice, "news")
    harness.publish("news", persist=False)
    (event,) = harness.transport(alice).delivered()
    assert "mid" not in event and "timestamp" not in event
    assert harness.store.persisted == []


def test_publish_to_a_channel_nobody_joined_is_still_stored():
    harness = Harness()
    harness.publish("empty")
    assert len(harness.store.persisted) == 1
    assert harness.app.channels == {}


def test_publish_to_an_unknown_app_raises():
    harness = Harness()
    with pytest.raises(StateError) as raised:
        harness.state.publish("0" * 64, ["news"], "e", "d", {}, True)
    assert raised.value.code == 4001
    assert harness.store.persisted == []


# -- client events ---------------------------------------------------------------------


def test_client_event_shape_exclusion_and_persistence():
    harness = Harness()
    sender, other = harness.connect("sender"), harness.connect("other")
    joined(harness, sender, "room")
    joined(harness, other, "room")
    harness.forget()
    harness.client_event(sender, "room", "client-typing", {"who": "me"})
    assert harness.transport(sender).calls == [], "no echo unless asked"
    (event,) = harness.transport(other).delivered()
    assert list(event) == ["channel", "event", "data", "mid", "timestamp"], event
    assert event["data"] == '{"who": "me"}'
    ((app_id, messages, owner_id),) = harness.store.persisted
    assert owner_id == sender.socket_id and messages == [event]


def test_events_are_queued_for_storage_before_any_delivery():
    # a reader who saw the delivery and asks the store must find the event
    harness = Harness()
    sender, other = harness.connect(), harness.connect()
    joined(harness, sender, "room")
    joined(harness, other, "room")
    stored_when_delivered = []
    transport = harness.transport(other)
    deliver = transport.deliver

    def watching(outgoing):
        stored_when_delivered.append(len(harness.store.persisted))
        deliver(outgoing)

    transport.deliver = watching
    harness.client_event(sender, "room", "say", "hi")
    harness.publish(["room", "other"], data="rest")
    assert stored_when_delivered == [1, 2]


def test_client_event_echo_reaches_the_sender_too():
    harness = Harness()
    sender, other = harness.connect(), harness.connect()
    joined(harness, sender, "room")
    joined(harness, other, "room")
    harness.client_event(sender, "room", "say", "hi", echo=True)
    assert [e["data"] for e in harness.transport(sender).delivered()] == ["hi"]
    assert [e["data"] for e in harness.transport(other).delivered()] == ["hi"]


def test_client_event_with_empty_data_has_no_data_key():
    harness = Harness()
    sender, other = harness.connect(), harness.connect()
    joined(harness, sender, "room")
    joined(harness, other, "room")
    harness.client_event(sender, "room", "poke", "", persist=False)
    assert harness.transport(other).delivered() == [
        {"channel": "room", "event": "poke"}
    ]
    assert harness.store.persisted == []


def test_any_client_event_name_is_relayed_but_protocol_names():
    harness = Harness()
    sender, other = harness.connect(), harness.connect()
    joined(harness, sender, "room")
    joined(harness, other, "room")
    harness.forget()
    harness.client_event(sender, "room", "no-prefix", "x")
    assert len(harness.transport(other).delivered()) == 1
    for name in ("pusher:member_added", "pusher_internal:x", "pusher_subscribe"):
        harness.forget()
        harness.client_event(sender, "room", name, "x")
        assert_refused(harness, sender, 4000, "room")
        assert harness.transport(other).calls == []


@pytest.mark.parametrize("channel", ["elsewhere", "personal-me", "bad name", None])
def test_client_event_on_a_channel_not_joined_is_refused(channel):
    harness = Harness()
    sender, other = harness.connect(), harness.connect()
    joined(harness, other, "elsewhere")
    harness.forget()
    harness.client_event(sender, channel, "say", "x")
    named = channel if channel in ("elsewhere", "personal-me") else None
    assert_refused(harness, sender, 4009, named)
    assert harness.transport(other).calls == []


def test_client_event_rate_refuses_past_the_burst():
    harness = Harness(client_event_rate=2)
    sender, other = harness.connect(), harness.connect()
    joined(harness, sender, "room")
    joined(harness, other, "room")
    harness.forget()
    for _ in range(3):
        harness.client_event(sender, "room", "say", "x")
    assert len(harness.transport(other).delivered()) == 2
    assert [e[0] for e in harness.transport(sender).errors()] == [4301]
    assert len(harness.store.persisted) == 2


# -- latest ----------------------------------------------------------------------------


def test_latest_reads_the_joined_channel_page():
    harness = Harness()
    alice = harness.connect()
    records = [{"mid": str(i), "channel": "news"} for i in range(30)]
    harness.store.channel_records["news"] = records
    harness.subscribe(alice, "news")
    harness.forget()
    harness.latest(alice, "news")
    harness.latest(alice, "news", skip=5, count=2)
    harness.latest(alice, "news", count=1000)
    harness.latest(alice, "news", count=0)
    replies = harness.transport(alice).of("latest")
    assert [len(info["events"]) for _, info in replies] == [10, 2, 30, 1]
    assert replies[1] == (
        "news",
        {"members": {}, "alias": [], "events": records[5:7]},
    )
    reads = [r[1:] for r in harness.store.reads if r[0] == "channel_events"]
    assert reads == [
        (APP["ident"], "news", 0, 10),
        (APP["ident"], "news", 5, 2),
        (APP["ident"], "news", 0, 100),
        (APP["ident"], "news", 0, 1),
    ]


@pytest.mark.parametrize("channel", ["news", "private-x", "personal-me", "peer-r:a&b"])
def test_latest_on_a_channel_not_joined_is_refused_without_a_read(channel):
    harness = Harness()
    alice = harness.connect()
    harness.latest(alice, channel)
    assert_refused(harness, alice, 4009, channel)
    assert harness.store.reads == []


def test_latest_with_bad_paging_is_refused():
    harness = Harness()
    alice = harness.connect()
    harness.subscribe(alice, "news")
    harness.forget()
    harness.latest(alice, "news", skip="x")
    assert_refused(harness, alice, 4000, "news")
    assert harness.store.reads == []


def test_latest_store_failure_is_an_error_reply():
    harness = Harness()
    alice = harness.connect()
    harness.subscribe(alice, "news")
    harness.store.failing.add("channel_events")
    harness.forget()
    harness.latest(alice, "news")
    assert_refused(harness, alice, 4000, "news")
    assert alice.reads == 0, "a failed read is no longer in flight"


def test_reads_in_flight_are_bounded_per_socket():
    harness = Harness(max_pending_reads=2)
    alice = harness.connect()
    harness.subscribe(alice, "news")
    harness.store.manual = True
    harness.forget()
    for _ in range(3):
        harness.latest(alice, "news")
    assert [e[0] for e in harness.transport(alice).errors()] == [4301]
    harness.flush()
    assert len(harness.transport(alice).of("latest")) == 2
    assert alice.reads == 0


def test_a_read_answered_after_the_socket_closed_is_dropped():
    harness = Harness()
    alice = harness.connect()
    harness.subscribe(alice, "news")
    harness.store.manual = True
    harness.forget()
    harness.latest(alice, "news")
    harness.close(alice)
    harness.flush()
    assert harness.transport(alice).calls == []
    check_empty(harness)


# -- closing ---------------------------------------------------------------------


def test_disconnect_leaves_everything_and_is_idempotent():
    harness = Harness()
    alice, bob = harness.connect(), harness.connect()
    joined(harness, alice, "a", "b")
    joined(harness, bob, "b")
    harness.subscribe_signed(alice, "private-c")
    harness.close(alice)
    harness.close(alice)
    assert list(harness.app.channels) == ["b"]
    harness.close(bob)
    check_empty(harness)


def test_sockets_and_socket_channels_report_join_order():
    harness = Harness()
    alice = harness.connect()
    joined(harness, alice, "z", "a", "m")
    assert harness.state.sockets(APP["ident"]) == [
        {"socket_id": alice.socket_id, "channel": ["z", "a", "m"]}
    ]
    assert harness.state.socket_channels(APP["ident"], alice.socket_id) == [
        "z",
        "a",
        "m",
    ]
    assert harness.state.socket_channels(APP["ident"], "nobody") == []
    assert harness.state.sockets("0" * 64) == []
    assert json.dumps(harness.state.stats())
