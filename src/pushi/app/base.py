"""PushiApp: the Appier application serving the REST API and the back-office."""

from __future__ import annotations

import importlib
import json
import logging
import secrets
import typing

import appier
import appier_extras

from ..store import StoreError

if typing.TYPE_CHECKING:
    from ..base.config import Settings
    from ..base.state import State
    from ..store import Store

LOGGER = logging.getLogger("pushi")


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
        from ..store.embedded import EmbeddedAdapter

        return lambda: EmbeddedAdapter(settings.data_dir)

    def _import(self, name):
        # Appier imports "controllers" and "models" as top-level modules; load
        # them as parts of this package so each model class exists only once
        if name in ("controllers", "models"):
            return importlib.import_module("pushi.app." + name)
        return appier.APIApp._import(self, name)

    def application_wsgi(self, environ, start_response):
        """Refuses what Appier would choke on before its own handling starts.

        Appier reads and decodes the whole body before any controller runs, so
        the size limit is applied here, and a request it cannot parse (bad
        encoding, bad multipart, bad credentials header) gets a 400, not silence.
        """
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = -1
        if length < 0 or length > self.settings.max_message:
            return self._refuse(start_response, 413, "request body too large")
        try:
            return appier.APIApp.application_wsgi(self, environ, start_response)
        except Exception as exception:
            self.logger.info("unparseable request: %s", exception)
            return self._refuse(start_response, 400, "malformed request")

    @staticmethod
    def _refuse(start_response, code: int, message: str) -> list[bytes]:
        body = json.dumps({"error": message, "message": message, "code": code})
        start_response(
            "%d %s" % (code, "Bad Request" if code == 400 else "Payload Too Large"),
            [
                ("Content-Type", "application/json"),
                ("Content-Length", str(len(body))),
            ],
        )
        return [body.encode()]

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
        if isinstance(exception, (TimeoutError, StoreError)):
            code, message = 503, "server busy, try again"
        elif code >= 500:
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
