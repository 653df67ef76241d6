"""PushiApp: the Appier application serving the REST API and the back-office."""

from __future__ import annotations

import http
import importlib
import io
import json
import logging
import secrets
import typing
import uuid

import appier
import appier_extras

from ..store import StoreError
from . import speedups
from .acknowledge import Acknowledging
from .fastpath import FastPublish

if typing.TYPE_CHECKING:
    from ..base.config import Settings
    from ..base.state import State
    from ..store import Store

LOGGER = logging.getLogger("pushi")

REFUSED = "pushi.refused"
""" WSGI environ key: a request refused before Appier could parse it """

HIDDEN = ("traceback", "meta")
""" Keys of Appier's error body that only its debug mode fills: never sent """


class PushiApp(appier.APIApp):
    """REST API (HTTP → controller → State) and the admin back-office at /admin."""

    def __init__(self, state: State, store: Store, settings: Settings) -> None:
        speedups.install()
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
        # Appier names itself and its version in X-Powered-By on every answer:
        # nothing about the runtime is told to strangers
        appier.base.BASE_HEADERS = ()
        self.fast_publish = FastPublish(self, self._appier_wsgi)
        # every server Appier or the runner builds takes `self.application`: a
        # persisted publish answers there once its commit is done
        self.application = Acknowledging(self.application)

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

    # -- requests Appier cannot take ----------------------------------------------

    def application_wsgi(self, environ, start_response):
        """Refuses, in Appier's error shape, what Appier would choke on.

        Appier reads and decodes the whole body before any controller runs, so
        the size limit is applied here (413); the API's own server (`http.py`)
        refuses a larger body as it reads it and hands the request here with
        its body dropped and a length over the limit. A request it cannot parse (bad
        encoding, bad multipart, bad credentials header) gets a 400. Either is
        handled again without its body, so that the refusal goes through
        Appier's own error handling (body, `X-Error-Id`, CORS headers).
        """
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = -1
        if length < 0 or length > self.settings.max_message:
            return self._refused(environ, start_response, 413, "Request too large")
        return self.fast_publish(environ, start_response)

    def _appier_wsgi(self, environ, start_response):
        try:
            return appier.APIApp.application_wsgi(self, environ, start_response)
        except Exception as exception:
            self.logger.info("unparseable request: %s", exception)
            return self._refused(environ, start_response, 400, "Malformed request")

    def _refused(self, environ, start_response, code: int, message: str):
        # the query string stays (it may carry the session the error body
        # names); the path is never routed and may be what Appier choked on
        bare = dict(environ)
        bare.update(
            {
                REFUSED: (code, message),
                "PATH_INFO": "/",
                "CONTENT_LENGTH": "0",
                "wsgi.input": io.BytesIO(),
            }
        )
        bare.pop("HTTP_AUTHORIZATION", None)
        try:
            return appier.APIApp.application_wsgi(self, bare, start_response)
        except Exception as exception:
            self.logger.info("request refused without Appier: %s", exception)
            return _error_body(start_response, code, message)

    def handle(self):
        """Raises the refusal of a request marked by `application_wsgi`."""
        refused = self.request.environ.get(REFUSED)
        if refused:
            code, message = refused
            raise appier.OperationalError(message=message, code=code)
        return appier.APIApp.handle(self)

    # -- errors ---------------------------------------------------------------------

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
        """Appier's standard error body, never a stack trace nor internals.

        `{"result": "error", "name", "message", "code", "uid", "session"
        [, "errors"]}` with `X-Error-Id`. Appier adds a traceback in its debug
        mode: that is removed whatever the settings. A busy loop or store is a
        503; any other fault that is no Appier exception is a 500 naming its
        class but not its message (it may tell hosts, paths or queries).
        """
        name = type(exception).__name__
        if isinstance(exception, (TimeoutError, StoreError)):
            name = None
            exception = appier.OperationalError(
                message="Server busy, try again", code=503
            )
        elif not isinstance(exception, appier.AppierException) or not _http_code(
            exception
        ):
            exception = appier.AppierException(
                message="Internal server error", code=500
            )
        else:
            name = None
        result = appier.APIApp.handle_error(self, exception)
        if isinstance(result, dict):
            for key in HIDDEN:
                result.pop(key, None)
            if name is not None and result.get("result") == "error":
                result["name"] = name
        return result


def _http_code(exception) -> bool:
    code = getattr(exception, "code", None)
    return isinstance(code, int) and 400 <= code < 600


def _error_body(start_response, code: int, message: str) -> list[bytes]:
    """Appier's error body, written by hand (when Appier itself failed)."""
    status, headers, body = error_body(code, message)
    start_response(status, headers)
    return [body]


def error_body(code: int, message: str) -> tuple[str, list, bytes]:
    """Appier's error shape without Appier: status line, headers and body."""
    uid = str(uuid.uuid4())
    body = json.dumps(
        dict(
            result="error",
            name="OperationalError",
            message=message,
            code=code,
            uid=uid,
            session=None,
        )
    ).encode()
    try:
        phrase = http.HTTPStatus(code).phrase
    except ValueError:
        phrase = "Error"
    headers = [
        ("Content-Type", "application/json"),
        ("Content-Length", str(len(body))),
        ("X-Error-Id", uid),
        ("Access-Control-Allow-Origin", "*"),
    ]
    return "%d %s" % (code, phrase), headers, body
