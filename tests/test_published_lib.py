"""The published `pushi` 0.6.10 client library from PyPI against the real server.

Applications written for the published Pushi server use that library; they must work
unchanged here (pushi-contract.md). Its distribution owns the top-level package `pushi`,
as ours does, so it lives in a virtualenv of its own, built once per test session, that
never sees our `src/`. Each test runs small scripts in that virtualenv (JSON on stdout)
which call the library against the server of `conftest.py`, and checks what the library
returns against contract §2. A WebSocket client in the test process checks what the
events the library publishes look like on arrival (§1, §3.4) and that the library's
`authenticate()` signatures open protected channels (§3.5).

Left out on purpose (a later issue: the handler routes do not exist yet): `list_apns`,
`create_apn`, `delete_apn`, `delete_apns`, `subscribe_apn`, `unsubscribe_apn`,
`create_web`, `delete_web`, `subscribe_web`, `unsubscribe_web`, `list_smtps`,
`create_smtp`, `delete_smtp`, `delete_smtps`, `subscribe_smtp`, `unsubscribe_smtp`,
`list_web_pushes`, `create_web_push`, `delete_web_push`, `delete_web_pushes`,
`get_vapid_public_key`, `subscribe_web_push`, `unsubscribe_web_push`, `send_messaging`,
`send_messaging_apn`, `send_messaging_email`, `send_messaging_webhook`,
`send_messaging_web_push`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import subprocess
import sys
import textwrap
import uuid

import pytest
import requests
from conftest import AppClient, assert_nothing, unique
from contract import APP_FIELDS, ERROR_FIELDS, EVENT_FIELDS, SUBSCRIPTION_FIELDS

LIB_REQUIREMENT = "pushi==0.6.10"
LIB_VERSION = "0.6.10"
# appier's default HTTP client is netius, which appier would pip-install into the
# environment at the first call: a user's environment ends up with it, ours gets it
# up front so that no test run installs anything behind the fixture's back
HTTP_CLIENT_REQUIREMENT = "netius>=1.64,<2"
INSTALL_SECONDS = 300
SCRIPT_SECONDS = 60
RESULT_MARKER = "PUBLISHED-LIB-RESULT "

HEX64 = re.compile(r"[0-9a-f]{64}")
OBJECT_ID = re.compile(r"[0-9a-f]{24}")
SUCCESS = {"type": "dict", "value": {"result": "success"}}
NOTHING = {"type": "NoneType", "value": None}

# the calls the published library offers: the ones these tests drive, and the
# handler calls (APN, web hooks, SMTP, web push, messaging) left to a later issue
TESTED_CALLS = {
    "login",
    "get_token",
    "logout",
    "authenticate",
    "create_app",
    "update_app",
    "create_event",
    "trigger_event",
    "create_subscription",
    "delete_subscription",
    "subscribe",
    "unsubscribe",
}
HOOKS = {"build", "auth_callback"}
DEFERRED_CALLS = {
    "list_apns",
    "create_apn",
    "delete_apn",
    "delete_apns",
    "subscribe_apn",
    "unsubscribe_apn",
    "create_web",
    "delete_web",
    "subscribe_web",
    "unsubscribe_web",
    "list_smtps",
    "create_smtp",
    "delete_smtp",
    "delete_smtps",
    "subscribe_smtp",
    "unsubscribe_smtp",
    "list_web_pushes",
    "create_web_push",
    "delete_web_push",
    "delete_web_pushes",
    "get_vapid_public_key",
    "subscribe_web_push",
    "unsubscribe_web_push",
    "send_messaging",
    "send_messaging_apn",
    "send_messaging_email",
    "send_messaging_webhook",
    "send_messaging_web_push",
}

# run in the virtualenv before each test's script: the library, its input, and
# helpers that turn what a call returned (or raised) into JSON
PRELUDE = '''
import json
import sys
import urllib.request

import appier
import pushi

INPUT = json.loads(sys.stdin.read())
RESULT = {}


def api_for(**overrides):
    """The library's client, configured as an application would configure it."""
    options = dict(INPUT.get("api") or {})
    options.update(overrides)
    return pushi.API(**options)


def typed(value):
    """A returned value with its Python type (bytes decoded as UTF-8)."""
    if isinstance(value, bytes):
        return {"type": "bytes", "value": value.decode("utf-8")}
    return {"type": type(value).__name__, "value": value}


def attempt(call, *args, **kwargs):
    """What a call returned, or the HTTP error it raised (status, body)."""
    try:
        return typed(call(*args, **kwargs))
    except appier.exceptions.HTTPError as error:
        body = error.read()
        try:
            body = json.loads(body.decode("utf-8"))
        except ValueError:
            body = body.decode("utf-8", "replace")
        return {"type": "HTTPError", "status": error.code, "body": body}


def count_logins(api):
    """Counts the library's logins (its own and those of its 401/403 retry)."""
    logins = []
    login = api.login

    def counting():
        logins.append(1)
        return login()

    api.login = counting
    return logins


def lose_session(token):
    """The server forgets a session behind the library's back."""
    url = INPUT["api"]["base_url"] + "logout?sid=" + token
    with urllib.request.urlopen(url, timeout=10) as response:
        response.read()
'''

EPILOGUE = """
sys.stdout.write("\\n" + %r + json.dumps(RESULT) + "\\n")
""" % (RESULT_MARKER)


class PublishedLib:
    """The published library in its own virtualenv, and a way to run scripts there."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.venv = os.path.join(root, "venv")
        self.python = os.path.join(self.venv, "bin", "python")
        self.home = os.path.join(root, "home")

    def install(self) -> None:
        """Builds the virtualenv and installs the library from PyPI into it."""
        os.makedirs(self.home, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
        # no pip inside the virtualenv: the running pip installs into it (faster,
        # and needs no ensurepip); the index settings are the machine's own
        self.step(
            "create the virtualenv",
            [sys.executable, "-m", "venv", "--without-pip", self.venv],
            env,
        )
        self.step(
            "install %s from PyPI (is PyPI reachable?)" % LIB_REQUIREMENT,
            [sys.executable, "-m", "pip", "--python", self.python, "install"]
            + ["--quiet", "--disable-pip-version-check", "--no-input"]
            + ["--timeout", "30", "--retries", "2"]
            + [LIB_REQUIREMENT, HTTP_CLIENT_REQUIREMENT],
            env,
        )

    def step(self, what: str, command: list, env: dict) -> None:
        try:
            done = subprocess.run(
                command,
                env=env,
                cwd=self.root,
                capture_output=True,
                text=True,
                timeout=INSTALL_SECONDS,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired as error:
            pytest.fail(
                "published library: could not %s within %ds:\n%s"
                % (what, INSTALL_SECONDS, error.stderr or ""),
                pytrace=False,
            )
        if done.returncode != 0:
            pytest.fail(
                "published library: could not %s (exit status %d):\n%s\n%s"
                % (what, done.returncode, done.stdout[-3000:], done.stderr[-3000:]),
                pytrace=False,
            )

    def run(self, script: str, env: dict | None = None, **inputs) -> dict:
        """Runs a script in the virtualenv; returns its `RESULT` (JSON on stdout).

        The interpreter runs isolated (`-I`: no PYTHONPATH, no user site, not the
        current directory) in an empty home with an environment of its own, so
        only the virtualenv's packages are importable.
        """
        program = PRELUDE + textwrap.dedent(script) + EPILOGUE
        environment = dict(PATH=os.environ.get("PATH", "/usr/bin:/bin"))
        environment.update(HOME=self.home, LANG="C.UTF-8")
        environment.update(env or {})
        try:
            done = subprocess.run(
                [self.python, "-I", "-c", program],
                input=json.dumps(inputs),
                env=environment,
                cwd=self.home,
                capture_output=True,
                text=True,
                timeout=SCRIPT_SECONDS,
            )
        except subprocess.TimeoutExpired as error:
            raise AssertionError(
                "published library script ran over %ds:\n%s\nstderr:\n%s"
                % (SCRIPT_SECONDS, script, error.stderr)
            ) from None
        lines = [
            line[len(RESULT_MARKER) :]
            for line in done.stdout.splitlines()
            if line.startswith(RESULT_MARKER)
        ]
        if done.returncode != 0 or not lines:
            raise AssertionError(
                "published library script failed (exit status %d):\n%s\n"
                "stdout:\n%s\nstderr:\n%s"
                % (done.returncode, script, done.stdout[-3000:], done.stderr[-3000:])
            )
        return json.loads(lines[-1])


@pytest.fixture(scope="session")
def lib(tmp_path_factory) -> PublishedLib:
    """The published library, installed once per test session."""
    handle = PublishedLib(str(tmp_path_factory.mktemp("published-lib")))
    handle.install()
    return handle


# -- helpers ---------------------------------------------------------------------------


def api_options(app: AppClient, **overrides) -> dict:
    """The keyword arguments an application passes to `pushi.API`."""
    options = dict(
        app_id=app.ident,
        app_key=app.key,
        app_secret=app.secret,
        base_url=app.server.api,
    )
    options.update(overrides)
    return options


def signature(app: AppClient, socket_id: str, channel: str) -> str:
    """What the library's `authenticate` must answer, computed independently."""
    string = ("%s:%s" % (socket_id, channel)).encode("utf-8")
    digest = hmac.new(app.secret.encode("utf-8"), string, hashlib.sha256)
    return "%s:%s" % (app.key, digest.hexdigest())


def assert_record(record: dict, fields: set, instance: str, what: str) -> None:
    """A record of contract §1: its exact keys and the common field values."""
    assert isinstance(record, dict), "%s: expected a record, got %r" % (what, record)
    assert set(record) == fields, "%s: keys %s, expected %s (missing %s, extra %s)" % (
        what,
        sorted(record),
        sorted(fields),
        sorted(fields - set(record)),
        sorted(set(record) - fields),
    )
    assert OBJECT_ID.fullmatch(str(record["_id"])), (what, record["_id"])
    assert type(record["id"]) is int, (what, record["id"])
    assert record["enabled"] is True, (what, record["enabled"])
    assert record["description"] is None, (what, record["description"])
    assert type(record["created"]) is int, (what, record["created"])
    assert type(record["modified"]) is int, (what, record["modified"])
    assert record["meta"] == {}, (what, record["meta"])
    assert record["instance"] == instance, (what, record["instance"], instance)


def assert_returned(result: dict, expected: dict, what: str) -> None:
    """What a library call returned (its type and value), compared exactly."""
    assert result == expected, "%s: the library returned %r, expected %r" % (
        what,
        result,
        expected,
    )


def assert_error(result: dict, status: int, name: str, message: str, what: str):
    """A call the library raised `appier.exceptions.HTTPError` for, with Appier's
    standard error body (contract §2); returns the body's `errors` (or None)."""
    assert result.get("type") == "HTTPError", "%s: expected HTTP %d, got %r" % (
        what,
        status,
        result,
    )
    body = result["body"]
    assert result["status"] == status, "%s: expected HTTP %d, got %d %r" % (
        what,
        status,
        result["status"],
        body,
    )
    assert isinstance(body, dict), "%s: expected a JSON error, got %r" % (what, body)
    assert set(body) - {"errors"} == ERROR_FIELDS, "%s: error keys %s" % (
        what,
        sorted(body),
    )
    assert body["result"] == "error", (what, body)
    assert body["name"] == name, (what, body)
    assert body["message"] == message, (what, body)
    assert body["code"] == status, (what, body)
    assert uuid.UUID(body["uid"]).version == 4, (what, body)
    assert isinstance(body["session"], str), (what, body)
    return body.get("errors")


def assert_delivered(message: dict, expected: dict, persisted: bool, what: str):
    """A delivered REST event: exactly `expected`, plus `mid`/`timestamp` when
    persisted (contract §3.4)."""
    extra = {"mid", "timestamp"} if persisted else set()
    assert set(message) == set(expected) | extra, "%s: keys %s, expected %s" % (
        what,
        sorted(message),
        sorted(set(expected) | extra),
    )
    got = {k: v for k, v in message.items() if k not in extra}
    assert got == expected, "%s: got %r, expected %r" % (what, got, expected)
    if persisted:
        assert uuid.UUID(message["mid"]).version == 4, (what, message)
        assert type(message["timestamp"]) is float, (what, message)


def stored_events(app: AppClient, until, what: str, count: int = 100) -> list:
    """`GET /events`, checked by `until`.

    A publish is queued for storage before it is answered, and a read runs on
    the store worker after every write queued before it: one read sees it.
    """
    response = app.request("GET", "events", params=dict(count=count))
    assert response.status_code == 200, response.text
    events = response.json()["events"]
    assert until(events), "%s: the store shows only %r" % (what, events)
    return events


# -- the library and its environment ---------------------------------------------------


def test_the_library_is_the_published_one_in_its_own_virtualenv(lib):
    result = lib.run("""
        import importlib.metadata, inspect
        RESULT["file"] = pushi.__file__
        RESULT["version"] = importlib.metadata.version("pushi")
        RESULT["calls"] = sorted(
            name
            for name, member in inspect.getmembers(pushi.API, inspect.isfunction)
            if not name.startswith("_")
            and getattr(member, "__module__", "").startswith("pushi.")
        )
        """)
    assert result["file"].startswith(lib.venv + os.sep), result["file"]
    assert result["version"] == LIB_VERSION
    # every call of the library is either driven below or knowingly deferred
    assert set(result["calls"]) == TESTED_CALLS | HOOKS | DEFERRED_CALLS, result


# -- apps ------------------------------------------------------------------------------


def test_create_app_returns_the_app_record(lib, server):
    name = unique("made-by-the-lib")
    result = lib.run(
        """
        api = api_for()
        RESULT["created"] = attempt(api.create_app, INPUT["name"])
        RESULT["duplicate"] = attempt(api.create_app, INPUT["name"])
        RESULT["empty"] = attempt(api.create_app, "")
        RESULT["token"] = api.token
        """,
        api=dict(base_url=server.api),
        name=name,
    )
    created = result["created"]
    assert created["type"] == "dict", created
    record = created["value"]
    assert_record(record, APP_FIELDS, record.get("ident"), "create_app")
    assert record["name"] == name
    credentials = [record["ident"], record["key"], record["secret"]]
    assert all(HEX64.fullmatch(value) for value in credentials), record
    assert len(set(credentials)) == 3, record
    assert record["apn_sandbox"] is False
    for field in ("apn_key", "apn_cer", "vapid_key", "vapid_email", "smtp_url"):
        assert record[field] is None, (field, record)
    assert result["token"] is None, "create_app needs no session"

    errors = assert_error(
        result["duplicate"],
        400,
        "ValidationError",
        "Validation of submitted data failed",
        "create_app of a taken name",
    )
    assert errors == {"name": ["value is duplicate"]}
    errors = assert_error(
        result["empty"],
        400,
        "ValidationError",
        "Validation of submitted data failed",
        "create_app with an empty name",
    )
    assert errors == {"name": ["value is empty"]}


def test_an_app_created_by_the_library_publishes_with_it(lib, server, connect):
    created = lib.run(
        'RESULT["app"] = api_for().create_app(INPUT["name"])',
        api=dict(base_url=server.api),
        name=unique("lib-publisher"),
    )["app"]
    client = connect(server.ws_url(created["key"]))
    client.subscribe("global")
    options = dict(
        app_id=created["ident"],
        app_key=created["key"],
        app_secret=created["secret"],
        base_url=server.api,
    )
    result = lib.run(
        'RESULT["sent"] = attempt(api_for().trigger_event, "global", "first")',
        api=options,
    )
    assert_returned(result["sent"], SUCCESS, "sent")
    message = client.expect("message", "global", data="first")
    expected = dict(data="first", event="message", channel="global", persist=True)
    assert_delivered(message, expected, True, "first event of a new app")


def test_update_app_answers_the_new_name_as_bytes(lib, server, app):
    other = AppClient(server, name="published-lib-other")
    renamed, again = unique("renamed"), unique("renamed-again")
    result = lib.run(
        """
        api = api_for()
        RESULT["own"] = attempt(api.update_app, name=INPUT["renamed"])
        RESULT["explicit"] = attempt(
            api.update_app,
            INPUT["ident"],
            name=INPUT["again"],
            ident="0" * 64,
            key="1" * 64,
            secret="2" * 64,
        )
        RESULT["other"] = attempt(api.update_app, INPUT["other"], name="not mine")
        RESULT["duplicate"] = attempt(api.update_app, name=INPUT["taken"])
        RESULT["after"] = attempt(api.trigger_event, "global", "still logged in")
        """,
        api=api_options(app),
        ident=app.ident,
        renamed=renamed,
        again=again,
        other=other.ident,
        taken=other.info["name"],
    )
    # PUT answers text/plain: appier hands the library the raw bytes
    assert_returned(result["own"], {"type": "bytes", "value": renamed}, "own")
    assert_returned(result["explicit"], {"type": "bytes", "value": again}, "explicit")
    assert_error(result["other"], 404, "NotFoundError", "App not found", "other app")
    errors = assert_error(
        result["duplicate"],
        400,
        "ValidationError",
        "Validation of submitted data failed",
        "update_app to a taken name",
    )
    assert errors == {"name": ["value is duplicate"]}
    assert_returned(result["after"], SUCCESS, "after")

    shown = app.request("GET", "apps/" + app.ident)
    assert shown.status_code == 200, shown.text
    shown = shown.json()
    assert shown["name"] == again
    assert (shown["ident"], shown["key"], shown["secret"]) == (
        app.ident,
        app.key,
        app.secret,
    ), "ident, key and secret are immutable"
    untouched = other.request("GET", "apps/" + other.ident).json()
    assert untouched["name"] == other.info["name"]


# -- session ---------------------------------------------------------------------------


def test_login_and_get_token_open_one_session(lib, app):
    result = lib.run(
        """
        api = api_for()
        logins = count_logins(api)
        RESULT["login"] = attempt(api.login)
        RESULT["token"] = api.token
        RESULT["get_token"] = attempt(api.get_token)
        RESULT["logins"] = len(logins)
        """,
        api=api_options(app),
    )
    token = result["token"]
    assert_returned(result["login"], {"type": "str", "value": token}, "login")
    assert_returned(result["get_token"], {"type": "str", "value": token}, "get_token")
    assert result["logins"] == 1, "get_token reuses the session"

    # the library's token is a working session of the app
    listed = requests.get(app.server.api + "apps", params=dict(sid=token), timeout=10)
    assert listed.status_code == 200, listed.text
    assert listed.headers["Content-Type"].startswith("application/json")
    apps = listed.json()
    assert list(apps) == ["apps"] and len(apps["apps"]) == 1, apps
    assert_record(apps["apps"][0], APP_FIELDS, app.ident, "GET /apps")
    assert apps["apps"][0]["secret"] == app.secret


def test_logout_ends_the_session(lib, app):
    token = lib.run('RESULT["token"] = api_for().login()', api=api_options(app))[
        "token"
    ]
    result = lib.run(
        """
        api = api_for()
        api.token = INPUT["token"]
        logins = count_logins(api)
        RESULT["logout"] = attempt(api.logout)
        RESULT["token"] = api.token
        RESULT["logins"] = len(logins)
        fresh = api_for()  # no session yet: logs in, then out
        fresh_logins = count_logins(fresh)
        RESULT["fresh"] = attempt(fresh.logout)
        RESULT["fresh_logins"] = len(fresh_logins)
        """,
        api=api_options(app),
        token=token,
    )
    assert_returned(
        result["logout"], NOTHING, "the library returns nothing from logout"
    )
    assert result["token"] is None
    assert result["logins"] == 0
    assert_returned(result["fresh"], NOTHING, "fresh")
    assert result["fresh_logins"] == 1

    stale = requests.get(app.server.api + "apps", params=dict(sid=token), timeout=10)
    assert stale.status_code == 403, stale.text
    assert stale.json()["message"] == "User not authenticated"


def test_login_with_wrong_credentials_is_404(lib, app, server):
    other = AppClient(server, name="published-lib-other")
    result = lib.run(
        """
        for name, options in INPUT["wrong"].items():
            api = api_for(**options)
            RESULT[name] = attempt(api.login)
            RESULT[name + " token"] = api.token
        """,
        api=api_options(app),
        wrong={
            "secret": dict(app_secret="0" * 64),
            "key": dict(app_key="0" * 64),
            "ident": dict(app_id="0" * 64),
            "other app's secret": dict(app_secret=other.secret),
        },
    )
    for name in ("secret", "key", "ident", "other app's secret"):
        assert_error(result[name], 404, "NotFoundError", "App not found", name)
        assert result[name + " token"] is None


def test_lost_session_logs_in_again_once(lib, app, connect):
    client = connect(app)
    client.subscribe("news")
    result = lib.run(
        """
        api = api_for()
        logins = count_logins(api)
        for name, call, args in (
            ("event", api.create_event, ("news", "after a lost session")),
            ("subscription", api.create_subscription, ("ann", "news")),
            ("update", api.update_app, ()),
            ("unsubscription", api.delete_subscription, ("ann", "news")),
        ):
            lose_session(api.get_token())
            before, token = len(logins), api.token
            kwargs = dict(name=INPUT["name"]) if name == "update" else {}
            RESULT[name] = attempt(call, *args, **kwargs)
            RESULT[name + " logins"] = len(logins) - before
            RESULT[name + " new token"] = api.token != token
        api.token = "0" * 64  # a session the server never issued
        RESULT["unknown"] = attempt(api.trigger_event, "news", "after an unknown sid")
        RESULT["unknown logins"] = len(logins)
        """,
        api=api_options(app),
        name=unique("renamed"),
    )
    for name in ("event", "subscription", "update", "unsubscription"):
        assert result[name + " logins"] == 1, (name, result)
        assert result[name + " new token"] is True, (name, result)
    assert_returned(result["event"], SUCCESS, "event")
    assert result["subscription"]["type"] == "dict", result
    assert result["subscription"]["value"]["user_id"] == "ann"
    assert result["update"]["type"] == "bytes", result
    assert result["unsubscription"] == result["subscription"]
    assert_returned(result["unknown"], SUCCESS, "unknown")
    assert result["unknown logins"] == 6  # the first login, then one per retry
    client.expect("message", "news", data="after a lost session")
    client.expect("message", "news", data="after an unknown sid")


# -- events ----------------------------------------------------------------------------


def test_string_data_arrives_with_the_whole_body(lib, app, connect):
    client = connect(app)
    client.subscribe("news")
    result = lib.run(
        """
        api = api_for()
        RESULT["create"] = attempt(api.create_event, "news", "hello", event="greet")
        RESULT["trigger"] = attempt(api.trigger_event, channel="news", data="again")
        """,
        api=api_options(app),
    )
    assert_returned(result["create"], SUCCESS, "create")
    assert_returned(result["trigger"], SUCCESS, "trigger")
    greet = client.expect("greet", "news")
    expected = dict(data="hello", event="greet", channel="news", persist=True)
    assert_delivered(greet, expected, True, "create_event")
    message = client.expect("message", "news")
    expected = dict(data="again", event="message", channel="news", persist=True)
    assert_delivered(message, expected, True, "trigger_event")
    assert greet["mid"] != message["mid"]


@pytest.mark.parametrize(
    "data",
    [
        {"b": [1, 2], "a": {"é": None, "x": 1.5, "t": True}, "s": "ü €"},
        {"z": 1, "y": {"k": [1, 2]}, "a": "order kept"},
        [1, "two", {"three": 3}],
        7,
    ],
    ids=["object", "key-order", "list", "number"],
)
def test_structured_data_arrives_as_python_json_dumps(lib, app, data, connect):
    client = connect(app)
    client.subscribe("news")
    result = lib.run(
        'RESULT["sent"] = attempt(api_for().create_event, "news", INPUT["data"])',
        api=api_options(app),
        data=data,
    )
    assert_returned(result["sent"], SUCCESS, "sent")
    message = client.expect("message", "news")
    # Python's json.dumps defaults: ", " and ": ", \\uXXXX escapes, key order kept
    assert message["data"] == json.dumps(data), message
    expected = dict(data=json.dumps(data), event="message", channel="news")
    assert_delivered(message, dict(expected, persist=True), True, "structured data")


def test_a_channel_list_sends_one_copy_per_socket(lib, app, connect):
    both, beta = connect(app), connect(app)
    both.subscribe("beta")  # joined first, listed second
    both.subscribe("alpha")
    beta.subscribe("beta")
    result = lib.run(
        """
        api = api_for()
        RESULT["sent"] = attempt(
            api.create_event, ["alpha", "beta"], "to both", event="news"
        )
        """,
        api=api_options(app),
    )
    assert_returned(result["sent"], SUCCESS, "sent")
    body = dict(data="to both", event="news", persist=True)
    on_alpha = both.expect("news")
    assert_delivered(on_alpha, dict(body, channel="alpha"), True, "socket of both")
    assert_nothing(both, "a second copy of one trigger")
    on_beta = beta.expect("news")
    assert_delivered(on_beta, dict(body, channel="beta"), True, "socket of beta")
    assert on_alpha["mid"] != on_beta["mid"], "one stored event per channel"

    events = stored_events(
        app, lambda found: len(found) >= 2, "two events of a channel list"
    )
    assert sorted((e["channel"], e["mid"]) for e in events) == [
        ("alpha", on_alpha["mid"]),
        ("beta", on_beta["mid"]),
    ]


def test_extras_are_echoed_and_stored(lib, app, connect):
    client = connect(app)
    client.subscribe("news")
    extras = dict(
        author="ann", n=3, nested={"a": [1, None]}, socket_id=client.socket_id
    )
    result = lib.run(
        """
        api = api_for()
        RESULT["sent"] = attempt(
            api.create_event, "news", "with extras", event="note", **INPUT["extras"]
        )
        """,
        api=api_options(app),
        extras=extras,
    )
    assert_returned(result["sent"], SUCCESS, "sent")
    # `socket_id` is an ordinary key in this API: the socket it names gets the event
    message = client.expect("note", "news")
    body = dict(data="with extras", event="note", channel="news", persist=True)
    assert_delivered(message, dict(body, **extras), True, "event with extras")

    events = stored_events(app, lambda found: len(found) == 1, "the event with extras")
    record = events[0]
    assert_record(record, EVENT_FIELDS, app.ident, "stored event")
    assert record["mid"] == message["mid"]
    assert record["timestamp"] == message["timestamp"]
    assert record["channel"] == "news"
    assert record["owner_id"] is None
    assert record["data"] == dict(body, **extras)


def test_persist_false_is_delivered_and_not_stored(lib, app, connect):
    client = connect(app)
    client.subscribe("news")
    result = lib.run(
        """
        api = api_for()
        RESULT["transient"] = attempt(
            api.create_event, "news", "transient", persist=False
        )
        RESULT["stored"] = attempt(api.create_event, "news", "stored")
        """,
        api=api_options(app),
    )
    assert_returned(result["transient"], SUCCESS, "transient")
    assert_returned(result["stored"], SUCCESS, "stored")
    transient = client.expect("message", "news", data="transient")
    expected = dict(data="transient", event="message", channel="news", persist=False)
    assert_delivered(transient, expected, False, "unpersisted event")
    stored = client.expect("message", "news", data="stored")

    # storage follows publish order: once the second is stored, the first would be
    events = stored_events(
        app,
        lambda found: any(e["mid"] == stored["mid"] for e in found),
        "the persisted event",
    )
    assert [e["data"]["data"] for e in events] == ["stored"]


# -- subscriptions ---------------------------------------------------------------------


def test_subscriptions_create_and_delete(lib, app):
    result = lib.run(
        """
        api = api_for()
        RESULT["created"] = attempt(api.create_subscription, "ann", "news")
        RESULT["again"] = attempt(api.subscribe, "ann", "news")
        RESULT["bob"] = attempt(api.subscribe, user_id="bob", event="news")
        RESULT["deleted"] = attempt(api.delete_subscription, "ann", "news")
        RESULT["missing"] = attempt(api.unsubscribe, "ann", "news")
        RESULT["bob deleted"] = attempt(api.unsubscribe, "bob", "news")
        # the library puts ids in the path as they are: `+` and `@` stay literal
        RESULT["email"] = attempt(api.subscribe, "a+b@x.com", "news")
        RESULT["email deleted"] = attempt(api.unsubscribe, "a+b@x.com", "news")
        RESULT["no user"] = attempt(api.create_subscription, "", "news")
        RESULT["no event"] = attempt(api.create_subscription, "ann", "")
        """,
        api=api_options(app),
    )
    created = result["created"]
    assert created["type"] == "dict", created
    record = created["value"]
    assert_record(record, SUBSCRIPTION_FIELDS, app.ident, "create_subscription")
    assert (record["user_id"], record["event"]) == ("ann", "news")
    assert result["again"] == created, "a known pair answers the existing record"
    bob = result["bob"]["value"]
    assert_record(bob, SUBSCRIPTION_FIELDS, app.ident, "subscribe")
    assert bob["id"] != record["id"]
    assert result["deleted"] == created, "delete answers the deleted record"
    assert_returned(result["missing"], SUCCESS, "a missing subscription is no error")
    assert result["bob deleted"]["value"] == bob
    assert result["email"]["value"]["user_id"] == "a+b@x.com", result["email"]
    assert_returned(result["email deleted"], result["email"], "unsubscribe an email")

    for name, field in (("no user", "user_id"), ("no event", "event")):
        errors = assert_error(
            result[name],
            400,
            "ValidationError",
            "Validation of submitted data failed",
            name,
        )
        assert errors == {field: ["value is empty"]}, (name, errors)

    listed = app.request("GET", "subscriptions")
    assert listed.status_code == 200, listed.text
    assert listed.json() == {"subscriptions": []}


def test_subscriptions_route_events_to_the_personal_channel(lib, app, connect):
    client = connect(app)
    result = lib.run(
        """
        api = api_for()
        RESULT["subscribed"] = attempt(api.subscribe, "ann", "news")
        RESULT["auth"] = api.authenticate("personal-ann", INPUT["socket_id"])
        """,
        api=api_options(app),
        socket_id=client.socket_id,
    )
    assert result["subscribed"]["type"] == "dict", result
    assert result["auth"] == signature(app, client.socket_id, "personal-ann")
    joined = client.subscribe("personal-ann", result["auth"])
    assert joined == {
        "name": "personal-ann",
        "members": {},
        "alias": ["news"],
        "events": [],
    }

    result = lib.run(
        'RESULT["sent"] = attempt(api_for().trigger_event, "news", "for ann")',
        api=api_options(app),
    )
    assert_returned(result["sent"], SUCCESS, "sent")
    message = client.expect("message", "news", data="for ann")
    expected = dict(data="for ann", event="message", channel="news", persist=True)
    assert_delivered(message, expected, True, "event of an alias")

    # a deletion applies at once to the connected personal socket (contract §4.8)
    result = lib.run(
        """
        api = api_for()
        RESULT["deleted"] = attempt(api.unsubscribe, "ann", "news")
        RESULT["sent"] = attempt(api.trigger_event, "news", "after unsubscribe")
        """,
        api=api_options(app),
    )
    deleted = result["deleted"]
    assert deleted["type"] == "dict", deleted
    assert (deleted["value"]["user_id"], deleted["value"]["event"]) == ("ann", "news")
    assert_returned(result["sent"], SUCCESS, "sent")
    assert_nothing(client, "an event of a deleted subscription")


# -- channel auth ----------------------------------------------------------------------


def test_authenticate_opens_a_private_channel(lib, app, connect):
    client, other = connect(app), connect(app)
    result = lib.run(
        """
        api = api_for()
        RESULT["auth"] = attempt(api.authenticate, "private-room", INPUT["socket_id"])
        RESULT["token"] = api.token
        """,
        api=api_options(app),
        socket_id=client.socket_id,
    )
    assert result["token"] is None, "authenticate signs locally"
    auth = result["auth"]
    assert auth["type"] == "str", auth
    assert auth["value"] == signature(app, client.socket_id, "private-room")
    joined = client.subscribe("private-room", auth["value"])
    assert joined == {"name": "private-room", "members": {}, "alias": [], "events": []}

    # the signature is for that socket only
    other.send("pusher:subscribe", {"channel": "private-room", "auth": auth["value"]})
    refused = other.expect("pusher:error")
    assert refused["channel"] == "private-room", refused
    assert refused["data"]["code"] == 4009, refused

    result = lib.run(
        'RESULT["sent"] = attempt(api_for().trigger_event, "private-room", "secret")',
        api=api_options(app),
    )
    assert_returned(result["sent"], SUCCESS, "sent")
    client.expect("message", "private-room", data="secret")
    assert_nothing(other, "an event of a private channel it could not join")


def test_authenticate_without_channel_data_joins_presence_as_a_non_member(
    lib, app, connect
):
    watcher, client = connect(app), connect(app)
    watcher.subscribe_signed("presence-room", {"user_id": "watcher"})
    auth = lib.run(
        'RESULT["auth"] = api_for().authenticate("presence-room", INPUT["socket_id"])',
        api=api_options(app),
        socket_id=client.socket_id,
    )["auth"]
    joined = client.subscribe("presence-room", auth)
    assert joined == {
        "name": "presence-room",
        "members": {"watcher": {"user_id": "watcher"}},
        "alias": [],
        "events": [],
    }
    assert_nothing(watcher, "a member message for a non-member")
    result = lib.run(
        'RESULT["sent"] = attempt(api_for().trigger_event, "presence-room", "hi")',
        api=api_options(app),
    )
    assert_returned(result["sent"], SUCCESS, "sent")
    client.expect("message", "presence-room", data="hi")
    watcher.expect("message", "presence-room", data="hi")


def test_authenticate_with_legacy_presence_members(lib, start_server, connect):
    # the library signs no channel_data: its apps send channel_data as an object,
    # which the server accepts only with PUSHI_LEGACY_PRESENCE_AUTH=1 (contract §4.4)
    server = start_server(env={"PUSHI_LEGACY_PRESENCE_AUTH": "1"})
    app = AppClient(server, name="published-lib-legacy")
    ann, bob = connect(app), connect(app)
    ann_data = {"user_id": "ann", "user_info": {"name": "Ann"}}
    bob_data = {"user_id": "bob", "user_info": {"name": "Bób"}, "peer": False}
    result = lib.run(
        """
        api = api_for()
        RESULT["ann"] = api.authenticate("presence-room", INPUT["ann"])
        RESULT["bob"] = api.authenticate("presence-room", INPUT["bob"])
        """,
        api=api_options(app),
        ann=ann.socket_id,
        bob=bob.socket_id,
    )
    joined = ann.subscribe("presence-room", result["ann"], ann_data)
    assert joined == {
        "name": "presence-room",
        "members": {"ann": ann_data},
        "alias": [],
        "events": [],
    }
    joined = bob.subscribe("presence-room", result["bob"], bob_data)
    assert joined["members"] == {"ann": ann_data, "bob": bob_data}
    added = ann.expect("pusher:member_added", "presence-room")
    assert added == {
        "event": "pusher:member_added",
        "member": json.dumps(bob_data),
        "channel": "presence-room",
    }
    bob.close()
    removed = ann.expect("pusher:member_removed", "presence-room")
    assert removed["member"] == json.dumps(bob_data), removed
