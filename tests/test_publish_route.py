"""`POST /events` answers the same whether the fast path or Appier serves it.

A well-formed publish is served without Appier's dispatch (`pushi.app.fastpath`);
anything else goes to Appier. These tests hold the two to one behaviour: the same
headers as any other Appier answer, the session token found where Appier finds it
and in its order, and one delivery per accepted publish, none per refused one.
"""

from __future__ import annotations

import pytest
from test_rest import NOT_AUTHENTICATED, assert_error, assert_ok, call, fresh_token

VARYING = {"content-length", "date", "x-error-id"}
""" Headers that differ between any two answers """


def _fixed_headers(response) -> dict:
    return {
        name.lower(): value
        for name, value in response.headers.items()
        if name.lower() not in VARYING
    }


def test_a_publish_answers_with_appiers_headers_and_no_version(app, connect):
    token = fresh_token(app)
    published = call(
        app.server, "POST", "events", params={"sid": token}, json={"data": "x"}
    )
    assert_ok(published, "POST /events")
    listed = call(app.server, "GET", "subscriptions", params={"sid": token})
    assert_ok(listed, "GET /subscriptions (served by Appier)")
    assert _fixed_headers(published) == _fixed_headers(
        listed
    ), "POST /events headers differ from Appier's: %r vs %r" % (
        dict(published.headers),
        dict(listed.headers),
    )
    for response in (published, listed):
        assert "x-powered-by" not in {
            name.lower() for name in response.headers
        }, "the answer names the framework: %r" % dict(response.headers)


@pytest.mark.parametrize("transport", ["header", "query", "cookie"])
def test_a_publish_finds_the_token_as_appier_does(app, connect, transport):
    token = fresh_token(app)
    subscriber = connect(app)
    subscriber.subscribe("fast-" + transport)
    kwargs = {
        "header": {"headers": {"X-Session-Id": token}},
        "query": {"params": {"sid": token}},
        "cookie": {"cookies": {"sid": token}},
    }[transport]
    body = {"channel": "fast-" + transport, "data": transport, "persist": False}
    reply = assert_ok(
        call(app.server, "POST", "events", json=body, **kwargs), transport
    )
    assert reply == {"result": "success"}, reply
    message = subscriber.expect(event="message")
    assert message["data"] == transport, message
    subscriber.expect_silence()


def test_the_header_token_wins_over_the_query_one(app, connect):
    # Appier reads X-Session-Id before the query's sid: an unknown header token
    # is a 403 even with a good token in the query, on both paths
    token = fresh_token(app)
    subscriber = connect(app)
    subscriber.subscribe("precedence")
    response = call(
        app.server,
        "POST",
        "events",
        params={"sid": token},
        headers={"X-Session-Id": "not-a-session"},
        json={"channel": "precedence", "data": "x"},
    )
    assert_error(response, 403, "header token over query token", *NOT_AUTHENTICATED)
    subscriber.expect_silence()


@pytest.mark.parametrize(
    "body, headers",
    [
        (b'{"channel": "refused", "data": ""}', {}),
        (b'{"channel": "refused", "data": "x", "mid": "m"}', {}),
        (b'{"channel": "refused", "data": "x", "event": 5}', {}),
        (b'["refused"]', {}),
        (b'{"channel": "refused", "data": "x"', {}),
        (b'{"channel": "refused", "data": NaN}', {}),
        (
            b"channel=refused&data=x",
            {"Content-Type": "application/x-www-form-urlencoded"},
        ),
    ],
    ids=["no-data", "mid", "event-type", "not-object", "truncated", "nan", "form"],
)
def test_a_refused_publish_reaches_nobody(app, connect, body, headers):
    token = fresh_token(app)
    subscriber = connect(app)
    subscriber.subscribe("refused")
    headers = {"Content-Type": "application/json", **headers}
    response = call(
        app.server, "POST", "events", params={"sid": token}, data=body, headers=headers
    )
    assert_error(response, 400, "refused publish %r" % body)
    subscriber.expect_silence()
