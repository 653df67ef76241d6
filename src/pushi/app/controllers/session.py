"""Login and logout: a session is bound to one app by its credentials."""

from __future__ import annotations

import hmac

import appier

from ..models import App
from .base import PushiController


class SessionController(PushiController):
    """`/login` answers a session token for an app's id, key and secret."""

    @appier.route("/login", ("GET", "POST"), json=True)
    def login(self):
        """Checks the credentials (constant time) and opens a session."""
        fields = self.body()
        app_id, app_key, app_secret = self.required(
            fields, "app_id", "app_key", "app_secret"
        )
        app = App.get(ident=app_id, rules=False, raise_e=False)
        valid = (
            app is not None
            and hmac.compare_digest(app.key.encode(), app_key.encode())
            and hmac.compare_digest(app.secret.encode(), app_secret.encode())
        )
        if not valid:
            raise appier.AppierException(message="invalid app credentials", code=403)
        self.session["app_id"] = app.ident
        return dict(token=self.session.sid)

    @appier.route("/logout", ("GET", "POST"), json=True)
    def logout(self):
        """Ends the session."""
        if self.session:
            self.session.pop("app_id", None)
            # forget the session itself: a token is never reused
            self.owner.session_c.expire(self.session.sid)
        return dict(logout=True)
