"""Apps: registration, and the session's own app (with its secret)."""

from __future__ import annotations

import appier

from ..models import App
from .base import PushiController


class AppsController(PushiController):
    """Creates apps; reads and updates the session's app, never another."""

    @appier.route("/apps", "POST", json=True)
    def create(self):
        """Registers an app (`name` from JSON, form or query): the App record."""
        if self.owner.settings.registration == "admin" and not appier.check_login(
            self, token="admin"
        ):
            raise appier.AppierException(message="Not enough permissions", code=403)
        app = App.new(model=App.settings(self.fields()), form=False)
        app.save()
        return app.record()

    @appier.route("/apps", "GET", json=True)
    def list(self):
        """`{"apps": [...]}`: the session's own app, secret included."""
        return dict(apps=[self._own(self.session_app()).record()])

    @appier.route("/apps/<str:ident>", "GET", json=True)
    def show(self, ident):
        """The session's own app (with its secret); any other ident is a 404."""
        return self._own(ident).record()

    @appier.route("/apps/<str:ident>", "PUT", json=True)
    def update(self, ident):
        """Changes the app's settings; answers its name as text/plain.

        That is what the published server answers (the record's string form),
        and what the published client library hands back from `update_app`.
        """
        app = self._own(ident)
        fields = App.settings(self.fields())
        if fields:
            app.apply(fields, form=False)
            app.save()
        return str(app.name)

    def _own(self, ident: str) -> App:
        """The app `ident` when it is the session's own, else a 404."""
        app_id = self.session_app()
        app = None
        if ident == app_id:
            app = App.get(ident=ident, raise_e=False)
        if app is None:
            raise appier.NotFoundError(message="App not found", code=404)
        return app
