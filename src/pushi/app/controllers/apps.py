"""Apps: registration and the session's own app."""

from __future__ import annotations

import appier

from ..models import App
from .base import PushiController


class AppsController(PushiController):
    """Creates apps; reads and updates the session's app (never another)."""

    @appier.route("/apps", "POST", json=True)
    def create(self):
        """Registers an app; the only answer that ever carries its secret."""
        if self.owner.settings.registration == "admin" and not appier.check_login(
            self, token="admin"
        ):
            raise appier.AppierException(
                message="registration needs an admin login", code=403
            )
        (name,) = self.required(self.body(), "name")
        app = App(name=name)
        app.save()
        self.owner.state.call(self.owner.state.app_changed, app.credentials())
        return app.public(secret=True)

    @appier.route("/apps", "GET", json=True)
    def list(self):
        """The session's app, as a list (an app sees only itself)."""
        return [self._app(self.session_app()).public()]

    @appier.route("/apps/<str:ident>", "GET", json=True)
    def show(self, ident):
        """One app: the session's own."""
        return self._app(self.own_app(ident)).public()

    @appier.route("/apps/<str:ident>", "PUT", json=True)
    def update(self, ident):
        """Changes the app's settings (its name)."""
        app = self._app(self.own_app(ident))
        fields = self.body()
        if "name" in fields:
            if not isinstance(fields["name"], str):
                raise appier.AppierException(message="name must be a string", code=400)
            app.name = fields["name"]
        app.save()
        self.owner.state.call(self.owner.state.app_changed, app.credentials())
        return app.public()

    @staticmethod
    def _app(ident: str) -> App:
        app = App.get(ident=ident, rules=False, raise_e=False)
        if app is None:
            raise appier.AppierException(message="app not found", code=404)
        return app
