"""PushiApp: the Appier application serving the REST API and the back-office."""

from __future__ import annotations

import importlib
import json
import logging
import secrets
import typing

import appier
import appier_extras

if typing.TYPE_CHECKING:
    from ..base.config import Settings
    from ..base.state import State
    from ..base.store import Store

LOGGER = logging.getLogger("pushi")

BAD_ENCODING = "request body is not valid UTF-8"


class PushiApp(appier.APIApp):
    """REST API (HTTP → controller → State) and the admin back-office at /admin."""

    def __init__(self, state: State, store: Store, settings: Settings) -> None:
        self.state = state
        self.store = store
        self.settings = settings
        if not appier.conf("ADMIN_PASSWORD", None):
            # the back-office never ships with a guessable password: make one
            # up; appier_extras logs it once, when it creates the root account
            appier.conf_s("ADMIN_PASSWORD", secrets.token_urlsafe(18))
        appier.APIApp.__init__(
            self,
            name="pushi",
            parts=(appier_extras.AdminPart,),
            session_c=appier.MemorySession,
            adapter_c=self._adapter_class(settings),
        )
        appier.error_handler(403)(self.to_signin)

    @staticmethod
    def _adapter_class(settings: Settings):
        if settings.mongo_url:
            return appier.MongoAdapter
        from ..base.embedded import EmbeddedAdapter

        return lambda: EmbeddedAdapter(settings.data_dir)

    def _import(self, name):
        # Appier imports "controllers" and "models" as top-level modules; load
        # them as parts of this package so each model class exists only once
        if name in ("controllers", "models"):
            return importlib.import_module("pushi.app." + name)
        return appier.APIApp._import(self, name)

    def application_wsgi(self, environ, start_response):
        """Answers 400 to a body Appier cannot decode, before its own handling."""
        try:
            return appier.APIApp.application_wsgi(self, environ, start_response)
        except UnicodeDecodeError:
            body = json.dumps(
                {"error": BAD_ENCODING, "message": BAD_ENCODING, "code": 400}
            ).encode()
            start_response(
                "400 Bad Request",
                [
                    ("Content-Type", "application/json"),
                    ("Content-Length", str(len(body))),
                ],
            )
            return [body]

    def to_signin(self, error):
        """Sends a browser that is not signed in to the back-office sign-in page."""
        if self.request.json or not self.request.path.startswith("/admin"):
            return None
        return self.redirect(self.url_for("admin.signin", next=self.request.location_f))

    def log_error(self, exception, message=None):
        """A refused request is one log line; only server faults get a trace."""
        code = getattr(exception, "code", 500)
        if isinstance(code, int) and 400 <= code < 500:
            self.logger.info("refused request (%d): %s", code, exception)
            return
        appier.APIApp.log_error(self, exception, message=message)

    log_warning = log_error

    def handle_error(self, exception):
        """Every error answers JSON `{error, message, code}`, never a stack trace."""
        code = getattr(exception, "code", None)
        if not isinstance(code, int) or not 400 <= code < 600:
            code = 500
        message = getattr(exception, "message", None) or str(exception)
        if code >= 500:
            message = "internal server error"
        self.request.set_code(code)
        handled = self.call_error(
            exception, code=code, scope=self.request.context.__class__, json=True
        )
        if handled:
            return handled
        result = dict(error=message, message=message, code=code)
        errors = getattr(exception, "errors", None)
        if errors and code < 500:
            result["errors"] = errors
        return result
