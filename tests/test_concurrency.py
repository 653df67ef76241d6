"""Thread safety: HTTP threads, socket churn and client events hit one State at once.

design.md: one thread (the WebSocket event loop) owns State; HTTP request threads
hand their work to it. These tests drive both sides concurrently and check what
every steady subscriber received: each event exactly once, and the events of one
sequential publisher in the order it published them. Nothing sleeps: threads
await messages and answers with deadlines, and every loop is bounded.
"""

from __future__ import annotations

import collections
import secrets
import threading
import time

import requests
from conftest import WAIT_SECONDS

CHANNEL = "conc"
EVENT = "tick"
STEADY = 20
PUBLISHERS = 8
PER_PUBLISHER = 38  # 8 x 38 = 304 REST publishes
CLIENT_EVENTS = 40  # sent by one socket (below the default client event rate)
CHURN_ROUNDS = 40
DEADLINE_SECONDS = 90.0


class Failures:
    """Exceptions raised in worker threads, reported by the test thread."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.items: list[str] = []

    def add(self, where: str, error: BaseException) -> None:
        with self.lock:
            self.items.append("%s: %s: %s" % (where, type(error).__name__, error))

    def check(self) -> None:
        assert not self.items, "worker threads failed:\n" + "\n".join(self.items[:20])


def run_thread(failures: Failures, name: str, target, *args) -> threading.Thread:
    def body() -> None:
        try:
            target(*args)
        except BaseException as error:  # reported by the test thread
            failures.add(name, error)

    thread = threading.Thread(target=body, name=name, daemon=True)
    thread.start()
    return thread


def join_all(threads: list[threading.Thread], deadline: float) -> None:
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    stuck = [thread.name for thread in threads if thread.is_alive()]
    assert not stuck, "threads still running at the deadline: %r" % (stuck,)


def login_session(app) -> requests.Session:
    """A session of its own for one publisher thread (same app, new token)."""
    http = requests.Session()
    response = http.get(
        app.server.api + "login",
        params=dict(app_id=app.ident, app_key=app.key, app_secret=app.secret),
        timeout=10,
    )
    assert response.status_code == 200, "login: expected 200, got %d %s" % (
        response.status_code,
        response.text,
    )
    http.params = {"sid": response.json()["token"]}
    return http


def test_concurrent_publishes_reach_every_subscriber_once_in_order(app, closing):
    deadline = time.monotonic() + DEADLINE_SECONDS
    failures = Failures()
    expected_total = PUBLISHERS * PER_PUBLISHER + CLIENT_EVENTS

    steady = [app.socket() for _ in range(STEADY)]
    closing.extend(steady)
    for client in steady:
        client.subscribe(CHANNEL)
    # the talker sends client events (echo off) and reads the REST events: it is
    # drained like the others, so its close handshake is not stuck behind them
    talker = app.socket()
    closing.append(talker)
    talker.subscribe(CHANNEL)
    talker_got: list[dict] = []
    sessions = [login_session(app) for _ in range(PUBLISHERS)]

    received: dict[int, list[dict]] = {index: [] for index in range(STEADY)}
    published: set[str] = set()  # data of the publishes the REST side accepted
    published_lock = threading.Lock()
    start = threading.Barrier(PUBLISHERS + 2)
    publishers_done = threading.Event()

    def read(client, got: list, expected: int) -> None:
        while len(got) < expected:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            try:
                message = client.next(timeout=min(left, WAIT_SECONDS * 4))
            except TimeoutError:
                return  # the count check below says what was missing
            if message.get("event") == EVENT and message.get("channel") == CHANNEL:
                got.append(message)

    def publish(number: int) -> None:
        http = sessions[number]
        start.wait(timeout=30)
        for sequence in range(PER_PUBLISHER):
            data = "p%d-%d" % (number, sequence)
            response = http.post(
                app.server.api + "events",
                json=dict(channel=CHANNEL, event=EVENT, data=data),
                timeout=30,
            )
            assert (
                response.status_code == 200
            ), "publish %s: expected 200, got %d %s" % (
                data,
                response.status_code,
                response.text,
            )
            with published_lock:
                published.add(data)

    def talk() -> None:
        start.wait(timeout=30)
        for sequence in range(CLIENT_EVENTS):
            talker.send(EVENT, "c-%d" % sequence, channel=CHANNEL)
        read(talker, talker_got, PUBLISHERS * PER_PUBLISHER)

    def churn() -> None:
        http = login_session(app)
        start.wait(timeout=30)
        for round_ in range(CHURN_ROUNDS):
            if publishers_done.is_set() and round_ >= CHURN_ROUNDS // 4:
                return
            # unbounded receive queue: a churner never reads the channel's events
            client = app.socket(max_queue=None)
            try:
                client.subscribe(CHANNEL)
                client.subscribe("churn-%d" % round_)
                shown = http.post(
                    app.server.api + "sockets/" + client.socket_id, timeout=30
                )
                assert shown.status_code == 200, "POST /sockets/<churner>: %d %s" % (
                    shown.status_code,
                    shown.text,
                )
                channels = shown.json().get("channels")
                assert channels == [
                    CHANNEL,
                    "churn-%d" % round_,
                ], "churn socket: expected its two channels in order, got %r" % (
                    channels,
                )
                if round_ % 2:
                    client.send("pusher:unsubscribe", {"channel": CHANNEL})
                    client.expect("pusher_internal:unsubscription_succeeded", CHANNEL)
            finally:
                client.close()

    readers = [
        run_thread(
            failures,
            "reader-%d" % index,
            read,
            steady[index],
            received[index],
            expected_total,
        )
        for index in range(STEADY)
    ]
    publishers = [
        run_thread(failures, "publisher-%d" % number, publish, number)
        for number in range(PUBLISHERS)
    ]
    others = [
        run_thread(failures, "talker", talk),
        run_thread(failures, "churn", churn),
    ]
    join_all(publishers, deadline)
    publishers_done.set()
    join_all(others + readers, deadline)
    failures.check()
    # a ping answered after everything: any copy delivered late comes before the pong
    for index, client in enumerate(steady):
        before = len(client.seen)
        client.roundtrip()
        received[index].extend(
            m
            for m in client.seen[before:]
            if m.get("event") == EVENT and m.get("channel") == CHANNEL
        )

    assert (
        len(published) == PUBLISHERS * PER_PUBLISHER
    ), "expected %d answered publishes, got %d" % (
        PUBLISHERS * PER_PUBLISHER,
        len(published),
    )
    expected_data = published | {"c-%d" % i for i in range(CLIENT_EVENTS)}
    # every event has one mid, the same for every subscriber (the first one's)
    mid_of = {m.get("data"): m.get("mid") for m in received[0]}

    for index, got in received.items():
        who = "subscriber %d (%s)" % (index, steady[index].socket_id)
        datas = [message.get("data") for message in got]
        counts = collections.Counter(datas)
        duplicates = sorted(d for d, n in counts.items() if n > 1)
        missing = sorted(expected_data - set(counts))
        unexpected = sorted(set(counts) - expected_data)
        assert (
            not (duplicates or missing or unexpected) and len(got) == expected_total
        ), (
            "%s: expected %d events once each, got %d; missing %d %r, duplicated %r, "
            "unexpected %r"
            % (
                who,
                expected_total,
                len(got),
                len(missing),
                missing[:10],
                duplicates[:10],
                unexpected[:10],
            )
        )
        mids = [message.get("mid") for message in got]
        assert (
            len(set(mids)) == len(mids) and None not in mids
        ), "%s: expected distinct mids, got %d distinct of %d" % (
            who,
            len(set(mids)),
            len(mids),
        )
        wrong = [
            (m.get("data"), m.get("mid"), mid_of.get(m.get("data")))
            for m in got
            if m.get("mid") != mid_of.get(m.get("data"))
        ]
        assert not wrong, "%s: mids differ from subscriber 0's: %r" % (who, wrong[:5])
        for source in ["p%d" % n for n in range(PUBLISHERS)] + ["c"]:
            order = [
                int(d.rsplit("-", 1)[1]) for d in datas if d.rsplit("-", 1)[0] == source
            ]
            assert order == sorted(
                order
            ), "%s: events of publisher %s out of order: %r" % (who, source, order)

    talker_data = collections.Counter(message.get("data") for message in talker_got)
    assert set(talker_data) == set(published) and len(talker_got) == len(published), (
        "talker: expected each REST event once and none of its own client events, got "
        "%d events, own %r, duplicated %r"
        % (
            len(talker_got),
            sorted(d for d in talker_data if d.startswith("c-"))[:10],
            sorted(d for d, n in talker_data.items() if n > 1)[:10],
        )
    )

    # the stored events read fine afterwards: newest first, per publisher in order
    stored_response = sessions[0].get(
        app.server.api + "events", params={"count": 100}, timeout=30
    )
    assert stored_response.status_code == 200, "GET /events?count=100: got %d %s" % (
        stored_response.status_code,
        stored_response.text,
    )
    stored = stored_response.json()["events"]
    assert len(stored) == 100, "GET /events?count=100: expected 100, got %d" % len(
        stored
    )
    stored_data = [event["data"]["data"] for event in stored]
    assert [event["mid"] for event in stored] == [
        mid_of[data] for data in stored_data
    ], "GET /events: stored mids differ from the delivered ones"
    assert (
        len(set(stored_data)) == 100 and set(stored_data) <= expected_data
    ), "GET /events: expected 100 distinct published events, got %r" % (stored_data,)
    for source in ["p%d" % n for n in range(PUBLISHERS)] + ["c"]:
        order = [
            int(d.rsplit("-", 1)[1])
            for d in stored_data
            if d.rsplit("-", 1)[0] == source
        ]
        assert order == sorted(
            order, reverse=True
        ), "GET /events: expected publisher %s newest first, got %r" % (source, order)


def test_concurrent_identical_subscriptions_are_stored_once(app):
    deadline = time.monotonic() + DEADLINE_SECONDS
    failures = Failures()
    sessions = [login_session(app) for _ in range(8)]
    start = threading.Barrier(len(sessions))

    def post(http: requests.Session) -> None:
        start.wait(timeout=30)
        for _ in range(5):
            response = http.post(
                app.server.api + "subscriptions",
                json={"user_id": "racer", "event": "finish"},
                timeout=30,
            )
            assert response.status_code == 200, "POST /subscriptions: got %d %s" % (
                response.status_code,
                response.text,
            )

    threads = [
        run_thread(failures, "subscriber-%d" % n, post, http)
        for n, http in enumerate(sessions)
    ]
    join_all(threads, deadline)
    failures.check()
    listed = app.request("GET", "subscriptions", params={"user_id": "racer"})
    assert listed.status_code == 200, "GET /subscriptions: got %d" % listed.status_code
    found = listed.json()["subscriptions"]
    assert [(s["user_id"], s["event"]) for s in found] == [
        ("racer", "finish")
    ], "40 concurrent identical POSTs: expected one subscription, got %r" % (found,)


def test_concurrent_app_creation_gives_distinct_working_apps(server):
    deadline = time.monotonic() + DEADLINE_SECONDS
    failures = Failures()
    created: list[dict] = []
    lock = threading.Lock()
    start = threading.Barrier(8)
    suffix = secrets.token_hex(4)  # app names are unique on a server

    def create(number: int) -> None:
        http = requests.Session()
        start.wait(timeout=30)
        for index in range(5):
            response = http.post(
                server.api + "apps",
                json={"name": "c%d-%d-%s" % (number, index, suffix)},
                timeout=30,
            )
            assert response.status_code == 200, "POST /apps: got %d %s" % (
                response.status_code,
                response.text,
            )
            with lock:
                created.append(response.json())

    threads = [run_thread(failures, "creator-%d" % n, create, n) for n in range(8)]
    join_all(threads, deadline)
    failures.check()
    assert len(created) == 40, "expected 40 apps, got %d" % len(created)
    for field in ("ident", "key", "secret"):
        values = {app[field] for app in created}
        assert len(values) == 40, "expected 40 distinct %ss, got %d" % (
            field,
            len(values),
        )
    for info in created:
        response = requests.get(
            server.api + "login",
            params=dict(
                app_id=info["ident"], app_key=info["key"], app_secret=info["secret"]
            ),
            timeout=10,
        )
        assert response.status_code == 200, "login of %s: got %d %s" % (
            info["name"],
            response.status_code,
            response.text,
        )
        listed = requests.get(
            server.api + "apps", params={"sid": response.json()["token"]}, timeout=10
        ).json()["apps"]
        assert [a.get("name") for a in listed] == [
            info["name"]
        ], "app %s: expected its own listing, got %r" % (info["name"], listed)
