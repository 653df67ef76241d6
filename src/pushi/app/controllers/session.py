"""Login and logout: a session is bound to one app by its credentials."""

from __future__ import annotations

import hmac

import appier

from ..models import App
from .base import PushiController

CREDENTIALS = ("app_id", "app_key", "app_secret")


class SessionController(PushiController):
    """`/login` answers a session token for an app's ident, key and secret."""

    @appier.route("/login", ("GET", "POST"), json=True)
    def login(self):
        """Checks the credentials (constant time) and opens a session.

        They come in the query string, as the published clients send them, or
        in a form body. A wrong value is a 404 "App not found", as published.
        `app_id` may also be the app's numeric app id (declared apps).
        """
        fields = {
            name: value for name, value in self.fields().items() if name in CREDENTIALS
        }
        missing = [
            name for name in CREDENTIALS if not isinstance(fields.get(name), str)
        ]
        if missing:
            raise appier.OperationalError(
                message="Missing parameter(s): %s" % ", ".join(missing), code=400
            )
        # `app_id` is the app's ident, or its numeric app id (what a declared
        # app's owner knows): an ident is 64 hex characters, never all digits
        ident = fields["app_id"]
        by = "app_id" if ident.isdigit() and len(ident) <= 20 else "ident"
        app = App.get(raise_e=False, **{by: ident})
        if app is None or not (
            _same(app.key, fields["app_key"]) & _same(app.secret, fields["app_secret"])
        ):
            raise appier.NotFoundError(message="App not found", code=404)
        # always a new session: a token a client held before (maybe handed to
        # it by someone else) never gains an app's rights by a login
        session = self.owner.session_c.new(address=self.request.address)
        self.request.session = session
        self.request.set_cookie = "sid=%s" % session.sid
        session["app_id"] = app.ident
        return dict(token=session.sid)

    @appier.route("/logout", ("GET", "POST"), json=True)
    def logout(self):
        """Ends the session (a token is never reused); succeeds without one."""
        session = self.request.session
        if session is not None and session.is_loaded():
            session.pop("app_id", None)
            self.owner.session_c.expire(session.sid)


def _same(stored: str, given: str) -> bool:
    """Constant-time comparison of a credential."""
    return hmac.compare_digest(stored.encode(), given.encode())
