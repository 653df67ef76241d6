"""The Python proxy: a back end's client of the Pushi REST API.

It speaks the REST API of a Pushi server (publish events, manage subscriptions and
apps) over a session opened with the app's credentials, and signs channel
subscriptions locally for the back end's auth endpoint. It never imports the server.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import os
import threading
import urllib.parse
from typing import Any

import appier

from .errors import PushiError

BASE_URL = "http://127.0.0.1:8080/"
""" The server used when neither `base_url` nor `PUSHI_URL` names one """

HTTP_CLIENT = "legacy"
""" The appier HTTP client used by default: the standard library's urllib, which
needs no extra package and opens a fresh connection for each call (so a restarted
server never leaves a stale pooled connection behind) """


def _setting(value: str | None, name: str) -> str | None:
    """An explicit value, else the environment variable, else appier's config."""
    if value:
        return value
    return os.environ.get(name) or appier.conf(name, None) or None


def _normalise_url(url: str) -> str:
    """A base URL that ends with exactly one slash."""
    return url.strip().rstrip("/") + "/"


def _segment(value: str) -> str:
    """A value quoted to be one path segment of a URL."""
    return urllib.parse.quote(str(value), safe="")


def channel_auth(
    key: str, secret: str, socket_id: str, channel: str, channel_data: str | None = None
) -> str:
    """The `auth` value of a protected channel: `"<key>:" + hex HMAC-SHA256 of
    "<socket_id>:<channel>"` (and `":<channel_data>"` for signed presence)."""
    string = "%s:%s" % (socket_id, channel)
    if channel_data is not None:
        string += ":" + channel_data
    digest = hmac.new(secret.encode("utf-8"), string.encode("utf-8"), hashlib.sha256)
    return "%s:%s" % (key, digest.hexdigest())


class API(appier.API):
    """Client of a Pushi server's REST API for one app (also exported as `Pushi`).

    Credentials default to the `PUSHI_ID`, `PUSHI_KEY`, `PUSHI_SECRET` environment
    variables and the server to `PUSHI_URL` (else `http://127.0.0.1:8080/`). The
    first call that needs a session logs in; later calls reuse that session, and a
    call answered 401/403 (the session expired, say after a server restart) logs in
    again once and is retried once. Failures raise `PushiError`.

    The calls the published `pushi` 0.6.10 client also has take the same arguments
    and return what it returns: the server's JSON answer as it is (`update_app` the
    raw bytes of the server's text answer). The other calls follow the same rule.

    An instance may be shared by threads: logins are serialised.
    """

    def __init__(
        self,
        *args: Any,
        app_id: str | None = None,
        app_key: str | None = None,
        app_secret: str | None = None,
        base_url: str | None = None,
        timeout: float | None = None,
        http_client: str = HTTP_CLIENT,
        **kwargs: Any,
    ) -> None:
        appier.API.__init__(self, *args, **kwargs)
        self.app_id = _setting(app_id, "PUSHI_ID")
        self.app_key = _setting(app_key, "PUSHI_KEY")
        self.app_secret = _setting(app_secret, "PUSHI_SECRET")
        self.base_url = _normalise_url(_setting(base_url, "PUSHI_URL") or BASE_URL)
        self.timeout = timeout
        self.http_client = http_client
        self.token: str | None = None
        self._lock = threading.RLock()

    # -- session -------------------------------------------------------------

    def login(self) -> str:
        """Opens a session with the app's credentials and returns its token.

        The credentials travel in a form body (`POST login`), never in the URL,
        so they stay out of access logs.
        """
        if not (self.app_id and self.app_key and self.app_secret):
            raise PushiError(
                "app_id, app_key and app_secret are required to log in "
                "(or set PUSHI_ID, PUSHI_KEY and PUSHI_SECRET)"
            )
        with self._lock:
            result = self.post(
                self._url("login"),
                params=dict(
                    app_id=self.app_id,
                    app_key=self.app_key,
                    app_secret=self.app_secret,
                ),
                callback=False,
                silent=True,
            )
            token = result.get("token") if isinstance(result, dict) else None
            if not isinstance(token, str) or not token:
                raise PushiError("the server's login answer carries no token")
            self.token = token
            return token

    def get_token(self) -> str:
        """The session's token, logging in first when there is no session."""
        with self._lock:
            return self.token or self.login()

    def logout(self) -> None:
        """Ends the session on the server; the next call logs in again."""
        with self._lock:
            if self.token is None:
                return
            try:
                self.get(self._url("logout"), callback=False)
            finally:
                self.token = None

    # -- apps ----------------------------------------------------------------

    def create_app(self, name: str) -> dict:
        """Registers a new app (no session needed) and returns its record, with
        its credentials: `{"name", "ident", "key", "secret", ...}`.

        The proxy keeps its own credentials; build another proxy for the new app.
        """
        result = self.post(self._url("apps"), data_j=dict(name=name), callback=False)
        return self._answer(result, dict)

    def list_apps(self) -> dict:
        """`{"apps": [record]}`: the session's own app (secret included)."""
        return self._answer(self.get(self._url("apps")), dict)

    def get_app(self, app_id: str | None = None) -> dict:
        """The record of the proxy's app (secret included)."""
        url = self._url("apps/" + _segment(app_id or self.app_id))
        return self._answer(self.get(url), dict)

    def update_app(self, app_id: str | None = None, **kwargs: Any) -> bytes:
        """Changes the app's settings (`name=`, ...; its credentials never change)
        and returns the server's text answer, the app's name, as bytes."""
        url = self._url("apps/" + _segment(app_id or self.app_id))
        return self._answer(self.put(url, data_j=kwargs), bytes)

    # -- events --------------------------------------------------------------

    def create_event(
        self,
        channel: str | list[str],
        data: Any,
        event: str = "message",
        persist: bool = True,
        **kwargs: Any,
    ) -> dict:
        """Publishes `data` as `event` on a channel (or a list of channels) and
        returns `{"result": "success"}`.

        Subscribers receive the whole request body: `data` (a string as it is,
        anything else as a JSON string), `channel`, `event`, `persist` and the
        extra keyword arguments, plus `mid` and `timestamp` when it is stored.
        """
        channel = list(channel) if isinstance(channel, (list, tuple)) else channel
        body = dict(data=data, event=event, channel=channel, persist=persist)
        body.update(kwargs)
        return self._answer(self.post(self._url("events"), data_j=body), dict)

    def trigger_event(self, *args: Any, **kwargs: Any) -> dict:
        """The same as `create_event`."""
        return self.create_event(*args, **kwargs)

    def list_events(
        self, count: int = 10, channel: str | None = None, skip: int = 0
    ) -> dict:
        """`{"events": [record]}`: the app's latest stored events (of one channel
        if given), newest first, `skip` of them left out (`count` 1 to 100)."""
        params: dict = dict(count=count)
        if channel is not None:
            params["channel"] = channel
        if skip:
            params["skip"] = skip
        return self._answer(self.get(self._url("events"), params=params), dict)

    # -- subscriptions -------------------------------------------------------

    def create_subscription(self, user_id: str, event: str) -> dict:
        """Subscribes a user to a channel: whatever is published on `event`
        reaches the user's `personal-<user_id>` channel. Returns the subscription
        record (the existing one when the user already had it)."""
        body = dict(user_id=user_id, event=event)
        return self._answer(self.post(self._url("subscriptions"), data_j=body), dict)

    def delete_subscription(
        self, user_id: str, event: str, force: bool = False
    ) -> dict:
        """Removes a user's subscription to a channel and returns its record;
        `{"result": "success"}` when there was none (a 404 error with `force`)."""
        url = self._url("subscriptions/%s/%s" % (_segment(user_id), _segment(event)))
        params = dict(force=1) if force else None
        return self._answer(self.delete(url, params=params), dict)

    def subscribe(self, *args: Any, **kwargs: Any) -> dict:
        """The same as `create_subscription`."""
        return self.create_subscription(*args, **kwargs)

    def unsubscribe(self, *args: Any, **kwargs: Any) -> dict:
        """The same as `delete_subscription`."""
        return self.delete_subscription(*args, **kwargs)

    def list_subscriptions(
        self, user_id: str | None = None, event: str | None = None
    ) -> dict:
        """`{"subscriptions": [record]}`, filtered by user and/or channel."""
        params = {}
        if user_id is not None:
            params["user_id"] = user_id
        if event is not None:
            params["event"] = event
        url = self._url("subscriptions")
        return self._answer(self.get(url, params=params), dict)

    # -- live sockets ----------------------------------------------------------

    def list_sockets(self) -> dict:
        """`{"sockets": [{"socket_id", "channel": [names]}]}`: the app's live
        sockets and the channels each has joined."""
        return self._answer(self.get(self._url("sockets")), dict)

    def get_socket(self, socket_id: str) -> dict:
        """`{"channels": [names]}`: the channels a live socket has joined, in
        join order (`[]` for a socket the server does not know)."""
        url = self._url("sockets/" + _segment(socket_id))
        return self._answer(self.post(url), dict)

    # -- channel auth (local, no call) ---------------------------------------

    def authenticate(
        self, channel: str, socket_id: str, channel_data: Any = None
    ) -> str | dict:
        """Signs a socket's subscription to a protected channel.

        Without `channel_data` (private, personal, peer channels) this returns the
        auth string `"<app_key>:<signature>"`, as the 0.6.10 client did. With it
        (presence channels) it returns `{"auth": ..., "channel_data": <str>}`: a
        dict is serialised to compact JSON once, and that exact string is both
        signed and returned, so the client must send it unchanged.
        """
        if not (self.app_key and self.app_secret):
            raise PushiError("app_key and app_secret are required to sign channels")
        if channel_data is None:
            return channel_auth(self.app_key, self.app_secret, socket_id, channel)
        if not isinstance(channel_data, str):
            channel_data = json.dumps(channel_data, separators=(",", ":"))
        auth = channel_auth(
            self.app_key, self.app_secret, socket_id, channel, channel_data
        )
        return dict(auth=auth, channel_data=channel_data)

    def auth_response(
        self, channel: str, socket_id: str, channel_data: Any = None
    ) -> dict:
        """The JSON object a back end's auth endpoint answers a client with:
        `{"auth": ...}`, or `{"auth": ..., "channel_data": ...}` for presence."""
        result = self.authenticate(channel, socket_id, channel_data)
        return result if isinstance(result, dict) else dict(auth=result)

    # -- appier.API hooks ----------------------------------------------------

    def build(
        self,
        method: str,
        url: str,
        data: Any = None,
        data_j: Any = None,
        data_m: Any = None,
        headers: dict | None = None,
        params: dict | None = None,
        mime: str | None = None,
        kwargs: dict | None = None,
    ) -> None:
        """Adds the session token to every call but the session-less ones,
        logging in first when there is no session yet."""
        if params is None or (method, url) in self._public_calls():
            return
        if url == self._url("logout"):
            if self.token:
                params["sid"] = self.token
            return
        with self._lock:
            if self.token is None:
                self.login()
            params["sid"] = self.token

    def auth_callback(self, params: dict, headers: dict) -> None:
        """Called by appier once when a call is answered 401/403: logs in again
        (unless another thread already did) and puts the new token in the retry."""
        with self._lock:
            if self.token is None or self.token == params.get("sid"):
                self.token = None
                self.login()
            params["sid"] = self.token

    def handle_error(self, error: Exception) -> None:
        """Turns appier's HTTP error into a `PushiError` with the server's message."""
        if isinstance(error, PushiError):
            raise error
        raise PushiError.from_http(error) from error

    def get(self, url: str, **kwargs: Any) -> Any:
        """appier's GET with the proxy's HTTP client and timeout."""
        return super().get(url, **self._options(kwargs))

    def post(self, url: str, **kwargs: Any) -> Any:
        """appier's POST with the proxy's HTTP client and timeout."""
        return super().post(url, **self._options(kwargs))

    def put(self, url: str, **kwargs: Any) -> Any:
        """appier's PUT with the proxy's HTTP client and timeout."""
        return super().put(url, **self._options(kwargs))

    def delete(self, url: str, **kwargs: Any) -> Any:
        """appier's DELETE with the proxy's HTTP client and timeout."""
        return super().delete(url, **self._options(kwargs))

    def request(self, method: Any, *args: Any, **kwargs: Any) -> Any:
        """Runs a call; a server that cannot be reached is a `PushiError` too."""
        try:
            return appier.API.request(self, method, *args, **kwargs)
        except PushiError:
            raise
        except (OSError, http.client.HTTPException) as error:
            url = args[0] if args else kwargs.get("url", self.base_url)
            raise PushiError(
                "cannot reach the Pushi server at %s: %s" % (url, error)
            ) from error

    # -- helpers ---------------------------------------------------------------

    def _url(self, path: str) -> str:
        return self.base_url + path

    def _public_calls(self) -> tuple:
        login = self._url("login")
        return (("GET", login), ("POST", login), ("POST", self._url("apps")))

    def _options(self, kwargs: dict) -> dict:
        extra = dict(kwargs.pop("extra", None) or {})
        extra.setdefault("client", self.http_client)
        kwargs["extra"] = extra
        if kwargs.get("timeout") is None and self.timeout is not None:
            kwargs["timeout"] = self.timeout
        return kwargs

    @staticmethod
    def _answer(result: Any, kind: type) -> Any:
        """The server's answer, checked to be of the expected kind (a JSON object
        decodes to a dict; a text answer stays bytes)."""
        if not isinstance(result, kind):
            expected = "text" if kind is bytes else "a JSON " + kind.__name__
            raise PushiError(
                "unexpected answer from the server (expected %s, got %s)"
                % (expected, type(result).__name__)
            )
        return result


Pushi = API
""" The name the quick start uses: `pushi.Pushi(app_id=..., ...)` """
