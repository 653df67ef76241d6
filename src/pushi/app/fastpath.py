"""The hot route without Appier's dispatch: a well-formed `POST /events`.

Back ends publish far more often than they call anything else, and Appier's
generic dispatch (request and session objects, observers, the route scan)
costs several times the publish itself. A publish that is certain to succeed
up to State (a live session of an app, a JSON object body, fields that pass
`publish_fields`) is served here, with the answer Appier gives a successful
publish: the same status, body and headers (a test holds them equal). Every
other request, and every publish this layer is not sure of, goes to Appier
untouched, which then answers it, errors included, exactly as before. On netius
the publish is handed to the event loop without waiting, and the answer waits
for its outcome (`Acknowledging`); when State refuses it (an unknown app, a full
store queue: refused before anything is delivered), Appier answers the request
instead, so no request is ever handled twice.
"""

from __future__ import annotations

import io
import typing
import urllib.parse

import appier

from ..base import strict_json
from ..base.errors import StoreError
from ..base.state import StateError
from ..store import Ticket
from .acknowledge import HANDLER, TICKET, NotServed
from .controllers.events import publish_fields

if typing.TYPE_CHECKING:
    from .base import PushiApp

SUCCESS = b'{"result": "success"}'
""" Appier's body for a route that returns nothing """


class FastPublish:
    """Serves a well-formed `POST /events` itself; hands anything else on."""

    def __init__(self, app: PushiApp, application: typing.Callable) -> None:
        self.app = app
        self.application = application
        self.headers = success_headers(app, len(SUCCESS))

    def __call__(self, environ: dict, start_response: typing.Callable):
        if environ.get("PATH_INFO") != "/events" or (
            environ.get("REQUEST_METHOD") != "POST"
        ):
            return self.application(environ, start_response)
        body = environ["wsgi.input"].read()
        # whatever happens next, Appier may need to read the body again
        environ["wsgi.input"] = io.BytesIO(body)
        publish = self._parse(environ, body)
        if publish is None:
            return self.application(environ, start_response)
        if publish[-1] and environ.get("wsgi.server_name") == "netius":
            # persisted: the loop publishes while this server goes on reading
            # requests, and the answer waits for the commit (`Acknowledging`);
            # an unpersisted publish is answered sooner by waiting for the loop
            environ[TICKET] = self._hand_over(publish)
            environ[HANDLER] = self.application
        elif not self._publish_now(environ, publish):
            return self.application(environ, start_response)
        start_response("200 OK", list(self.headers))
        return [SUCCESS]

    def _parse(self, environ: dict, body: bytes) -> tuple | None:
        """State.publish's arguments when nothing can go wrong before State
        (a live session, a JSON object, fields `publish_fields` takes); None
        to hand the request to Appier."""
        content_type = environ.get("CONTENT_TYPE") or "application/json"
        if "json" not in content_type or not body:
            return None
        app_id = self._session_app(environ)
        if app_id is None:
            return None
        try:
            fields = strict_json.loads(body)
        except ValueError:
            return None
        if not isinstance(fields, dict):
            return None
        try:
            channels, event, data, persist = publish_fields(fields)
        except appier.AppierException:
            return None
        return app_id, channels, event, data, fields, persist

    def _hand_over(self, publish: tuple) -> Ticket:
        """Publishes on the loop without waiting; the ticket completes once the
        event is delivered (and committed, when persisted), or with `NotServed`
        when State refused it before delivering anything."""
        answer = Ticket()
        state = self.app.state

        def run() -> None:
            if answer.outcome is not None:
                return  # the answer gave up waiting: never published
            try:
                stored = state.publish(*publish)
            except (StateError, StoreError):
                answer.complete(NotServed())
                return
            if stored is None:
                answer.complete(True)
            else:
                stored.then(answer.complete)

        state.call_soon(run)
        return answer

    def _publish_now(self, environ: dict, publish: tuple) -> bool:
        """Publishes and waits for the loop (threaded servers); False to hand on."""
        state = self.app.state
        try:
            ticket = state.call(state.publish, *publish)
        except (StateError, StoreError, TimeoutError):
            # refused before anything was delivered: Appier answers it
            return False
        if ticket is not None:
            environ[TICKET] = ticket
        return True

    def _session_app(self, environ: dict) -> str | None:
        """The app of the request's session, found where Appier looks for the
        token, in its order (header, query, cookie; a JSON body has no form)."""
        sid = environ.get("HTTP_X_SESSION_ID")
        if not sid:
            query = environ.get("QUERY_STRING")
            if query:
                sid = urllib.parse.parse_qs(query).get("sid", (None,))[0]
        if not sid and "sid" in environ.get("HTTP_COOKIE", ""):
            sid = appier.util.parse_cookie(environ["HTTP_COOKIE"]).get("sid")
        if not sid:
            return None
        try:
            session = self.app.session_c.get_s(sid)
        except Exception:
            return None
        return session.get("app_id") if session else None


def success_headers(app: appier.App, length: int) -> tuple:
    """The headers Appier sends with a JSON answer of `length` bytes."""
    headers = [
        ("Content-Type", "application/json"),
        ("Cache-Control", app.cache_control),
        ("Content-Length", str(length)),
    ]
    if app.secure_headers:
        optional = (
            ("Access-Control-Allow-Origin", app.allow_origin),
            ("Access-Control-Allow-Headers", app.allow_headers),
            ("Access-Control-Allow-Methods", app.allow_methods),
            ("Content-Security-Policy", app.content_security),
            ("X-Frame-Options", app.frame_options),
            ("X-XSS-Protection", app.xss_protection),
            ("X-Content-Type-Option", app.content_options),
        )
        headers.extend((name, value) for name, value in optional if value)
    if app.sort_headers:
        headers.sort()
    return tuple(headers)
