"""Personal channels in State, with fake transports and a fake store (no sockets).

`personal-<user>` is never joined itself: the socket joins the user's aliases
(silently), the reply lists them with the user's latest events, subscription
changes apply live (never removing a channel joined directly), a load overtaken
by a change is repeated, and a REST publish to `personal-X` reaches nobody.
Contract: pushi-contract.md §3.3, §3.5 and §4.8.
"""

from __future__ import annotations

from fakes import APP, Harness, check_consistent, check_empty

PERSONAL = "personal-alice"


def records(count: int) -> list[dict]:
    """Stored personal events, newest first."""
    return [{"mid": "m%d" % i, "channel": "news"} for i in range(count)]


def subscribed_personal(harness: Harness, session, channel: str = PERSONAL) -> None:
    """Subscribes a personal channel with a valid auth."""
    harness.subscribe_signed(session, channel)


def test_reply_lists_aliases_and_latest_events_and_no_alias_gets_a_reply():
    harness = Harness()
    harness.store.aliases["alice"] = ["news", "sports"]
    harness.store.user_records["alice"] = records(15)
    alice = harness.connect()
    subscribed_personal(harness, alice)
    assert harness.transport(alice).calls == [
        (
            "subscribed",
            PERSONAL,
            {"members": {}, "alias": ["news", "sports"], "events": records(10)},
        )
    ]
    assert alice.channels == {"news": {PERSONAL}, "sports": {PERSONAL}}
    assert list(alice.personal) == [PERSONAL]
    assert PERSONAL not in harness.app.channels, "never joined itself"
    assert harness.store.reads == [("personal", APP["ident"], "alice", 10)]
    check_consistent(harness)


def test_alias_events_keep_their_real_channel():
    harness = Harness()
    harness.store.aliases["alice"] = ["news"]
    alice = harness.connect()
    subscribed_personal(harness, alice)
    harness.publish("news", data="x")
    assert [e["channel"] for e in harness.transport(alice).delivered()] == ["news"]


def test_personal_needs_auth():
    harness = Harness()
    harness.store.aliases["alice"] = ["news"]
    alice = harness.connect()
    harness.subscribe(alice, PERSONAL)
    harness.subscribe(alice, PERSONAL, harness.auth(harness.connect(), PERSONAL))
    assert [c[:2] for c in harness.transport(alice).calls] == [
        ("error", 4009),
        ("error", 4009),
    ]
    assert alice.channels == {} and alice.personal == {}
    assert harness.store.reads == []
    check_consistent(harness)


def test_rest_publish_to_personal_reaches_nobody_but_is_stored():
    harness = Harness()
    harness.store.aliases["alice"] = ["news"]
    alice = harness.connect()
    subscribed_personal(harness, alice)
    harness.forget()
    harness.publish(PERSONAL)
    assert harness.transport(alice).calls == []
    ((_, messages, _),) = harness.store.persisted
    assert [m["channel"] for m in messages] == [PERSONAL]


def test_client_event_on_personal_is_refused():
    harness = Harness()
    alice, bob = harness.connect(), harness.connect()
    subscribed_personal(harness, alice)
    subscribed_personal(harness, bob)
    harness.forget()
    harness.client_event(alice, PERSONAL, "say", "x")
    assert [c[:2] for c in harness.transport(alice).calls] == [("error", 4009)]
    assert harness.transport(bob).calls == [] and harness.store.persisted == []


def test_unsubscribing_leaves_the_aliases_and_replies_with_them():
    harness = Harness()
    harness.store.aliases["alice"] = ["news"]
    harness.store.user_records["alice"] = records(2)
    alice = harness.connect()
    subscribed_personal(harness, alice)
    harness.forget()
    harness.unsubscribe(alice, PERSONAL)
    assert harness.transport(alice).calls == [
        (
            "unsubscribed",
            PERSONAL,
            {"members": {}, "alias": ["news"], "events": records(2)},
        )
    ]
    assert alice.channels == {} and alice.personal == {}
    check_empty_but(harness, alice)


def check_empty_but(harness: Harness, *sessions) -> None:
    """Nothing but the given (channel-less) sessions is left."""
    check_consistent(harness)
    assert harness.app.channels == {} and harness.app.personal == {}
    assert set(harness.app.sessions) == {s.socket_id for s in sessions}


def test_subscription_changes_apply_live_to_every_personal_socket():
    harness = Harness()
    harness.store.aliases["alice"] = ["news"]
    first, second, other = harness.connect(), harness.connect(), harness.connect()
    subscribed_personal(harness, first)
    subscribed_personal(harness, second)
    subscribed_personal(harness, other, "personal-bob")
    harness.forget()
    harness.state.subscription_added(APP["ident"], "alice", "sports")
    harness.publish("sports")
    assert len(harness.transport(first).delivered()) == 1
    assert len(harness.transport(second).delivered()) == 1
    assert harness.transport(other).delivered() == []
    assert [c[0] for c in harness.log] == ["s0", "s1"], "changes are not replied"
    harness.state.subscription_removed(APP["ident"], "alice", "news")
    harness.forget()
    harness.publish("news")
    assert (
        harness.transport(first).calls == [] and harness.transport(second).calls == []
    )
    assert list(harness.app.channels) == ["sports"]
    check_consistent(harness)


def test_changes_for_a_user_nobody_follows_are_ignored():
    harness = Harness()
    harness.state.subscription_added(APP["ident"], "ghost", "news")
    harness.state.subscription_removed(APP["ident"], "ghost", "news")
    harness.state.subscription_added("0" * 64, "ghost", "news")
    check_empty(harness)


def test_a_deletion_never_removes_a_channel_joined_directly():
    harness = Harness()
    harness.store.aliases["alice"] = ["news"]
    before, after = harness.connect(), harness.connect()
    harness.subscribe(before, "news")  # direct, then alias
    subscribed_personal(harness, before)
    subscribed_personal(harness, after)
    harness.subscribe(after, "news")  # alias, then direct
    harness.state.subscription_removed(APP["ident"], "alice", "news")
    harness.forget()
    harness.publish("news")
    assert len(harness.transport(before).delivered()) == 1
    assert len(harness.transport(after).delivered()) == 1
    harness.unsubscribe(before, PERSONAL)
    assert "news" in before.channels, "leaving the personal channel keeps it too"
    check_consistent(harness)


def test_alias_shared_by_two_personal_channels_is_delivered_once_and_kept():
    harness = Harness()
    harness.store.aliases["alice"] = ["news"]
    harness.store.aliases["bob"] = ["news"]
    both = harness.connect()
    subscribed_personal(harness, both)
    subscribed_personal(harness, both, "personal-bob")
    harness.publish("news")
    assert len(harness.transport(both).delivered()) == 1
    harness.state.subscription_removed(APP["ident"], "alice", "news")
    assert both.channels == {"news": {"personal-bob"}}
    harness.unsubscribe(both, "personal-bob")
    assert both.channels == {}
    check_consistent(harness)


def test_a_load_overtaken_by_an_addition_is_repeated():
    harness = Harness()
    harness.store.manual = True
    harness.store.aliases["alice"] = ["news"]
    alice = harness.connect()
    subscribed_personal(harness, alice)
    # the REST side commits a subscription while the load is in flight
    harness.store.aliases["alice"].append("late")
    harness.state.subscription_added(APP["ident"], "alice", "late")
    harness.flush()
    replies = harness.transport(alice).of("subscribed")
    assert [info["alias"] for _, info in replies] == [["news", "late"]], replies
    assert [r[0] for r in harness.store.reads] == ["personal", "personal"]
    assert alice.channels == {"late": {PERSONAL}, "news": {PERSONAL}}


def test_a_load_overtaken_by_a_removal_is_repeated():
    harness = Harness()
    harness.store.manual = True
    harness.store.aliases["alice"] = ["news", "gone"]
    alice = harness.connect()
    subscribed_personal(harness, alice)
    harness.store.aliases["alice"].remove("gone")
    harness.state.subscription_removed(APP["ident"], "alice", "gone")
    harness.flush()
    replies = harness.transport(alice).of("subscribed")
    assert [info["alias"] for _, info in replies] == [["news"]], replies
    assert list(alice.channels) == ["news"]
    check_consistent(harness)


def test_a_load_answered_after_unsubscribing_joins_nothing():
    harness = Harness()
    harness.store.manual = True
    harness.store.aliases["alice"] = ["news"]
    alice = harness.connect()
    subscribed_personal(harness, alice)
    harness.unsubscribe(alice, PERSONAL)
    harness.flush()
    assert [c[0] for c in harness.transport(alice).calls] == ["unsubscribed"]
    check_empty_but(harness, alice)


def test_a_load_answered_after_closing_joins_nothing():
    harness = Harness()
    harness.store.manual = True
    harness.store.aliases["alice"] = ["news"]
    alice = harness.connect()
    subscribed_personal(harness, alice)
    harness.close(alice)
    harness.flush()
    assert harness.transport(alice).calls == []
    check_empty(harness)


def test_a_failed_load_is_an_error_and_joins_nothing():
    harness = Harness()
    harness.store.failing.add("personal")
    alice = harness.connect()
    subscribed_personal(harness, alice)
    assert [c[:2] for c in harness.transport(alice).calls] == [("error", 4000)]
    assert harness.transport(alice).calls[0][3] == PERSONAL
    check_empty_but(harness, alice)


def test_latest_on_personal_reads_the_users_history():
    harness = Harness()
    harness.store.aliases["alice"] = ["news"]
    harness.store.user_records["alice"] = records(30)
    alice = harness.connect()
    subscribed_personal(harness, alice)
    harness.forget()
    harness.latest(alice, PERSONAL, skip=3, count=4)
    assert harness.transport(alice).calls == [
        (
            "latest",
            PERSONAL,
            {"members": {}, "alias": ["news"], "events": records(30)[3:7]},
        )
    ]
    assert harness.store.reads[-1] == ("user_events", APP["ident"], "alice", 3, 4)


def test_subscribing_personal_twice_replies_twice_delivers_once():
    harness = Harness()
    harness.store.aliases["alice"] = ["news"]
    alice = harness.connect()
    subscribed_personal(harness, alice)
    subscribed_personal(harness, alice)
    assert len(harness.transport(alice).of("subscribed")) == 2
    harness.publish("news")
    assert len(harness.transport(alice).delivered()) == 1
    harness.close(alice)
    check_empty(harness)
