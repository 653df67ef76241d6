"""Assembles one Pushi process: store worker, State, WebSocket server, API app."""

from __future__ import annotations

import logging
import signal
import threading
import typing

import appier

from .base.config import ConfigError, Settings
from .base.state import State
from .hooks import Webhooks
from .store import Store

LOGGER = logging.getLogger("pushi")


class Process:
    """The parts of a running Pushi and their start and stop order."""

    def __init__(self, settings: Settings | None = None) -> None:
        from .app import PushiApp
        from .net.server import PushiServer

        self.settings = settings or Settings.from_env()
        self.store = Store(self.settings.store_queue)
        # State's observer: webhooks posted off the loop by their own threads
        self.webhooks = Webhooks.from_settings(self.settings)
        self.state = State(self.settings, self.store, self.webhooks)
        self.app = PushiApp(self.state, self.store, self.settings)
        self.server = PushiServer(self.state, self.settings)
        self.api = None
        self.stopped = threading.Event()
        self._threads: list[threading.Thread] = []

    def describe_store(self) -> str:
        """One line saying where data lives."""
        if self.settings.mongo_url:
            return "store: MongoDB (MONGO_URL)"
        return "store: embedded, in %s" % self.settings.data_dir

    def start(self) -> None:
        """Starts every part; returns once both servers listen."""
        from .app.models import App

        settings = self.settings
        self.app.start()
        LOGGER.info(self.describe_store())
        if settings.registration == "open" and settings.app_host not in (
            "127.0.0.1",
            "localhost",
            "::1",
        ):
            LOGGER.warning(
                "open registration on %s: anyone who reaches the API can create "
                "apps (set PUSHI_REGISTRATION=admin)",
                settings.app_host,
            )
        # before State learns the apps: every app has its numeric app_id, and
        # the declared ones are as their declaration says
        App.starting = True
        try:
            App.ensure_app_ids()
            App.declare(settings.apps)
        finally:
            App.starting = False
        if settings.apps:
            LOGGER.info("declared apps: %d (PUSHI_APPS)", len(settings.apps))
        self.state.load_apps(app.credentials() for app in App.find(rules=False))
        self.store.start()
        self.webhooks.start()
        self._serve(
            self.server,
            "ws",
            settings.server_host,
            settings.server_port,
            settings.server_ssl,
            settings.server_ssl_key,
            settings.server_ssl_cer,
        )
        self._serve_api()
        LOGGER.info(
            "listening: WebSocket %s:%d, API %s:%d",
            settings.server_host,
            settings.server_port,
            settings.app_host,
            settings.app_port,
        )

    def _thread(self, target, name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _serve(self, server, name: str, host, port, ssl, key, cer) -> None:
        """Runs a netius server on a thread of its own; returns once it listens."""
        ready = threading.Event()
        server.bind("start", lambda *args, **kwargs: ready.set())

        def serve() -> None:
            try:
                server.serve(host=host, port=port, ssl=ssl, key_file=key, cer_file=cer)
            finally:
                self.stopped.set()

        self._thread(serve, "pushi-" + name)
        self._wait(ready, name)

    def _serve_api(self) -> None:
        settings = self.settings
        if settings.app_server != "netius":
            # any other Appier server, plain HTTP only
            self.app.serve(
                server=settings.app_server,
                host=settings.app_host,
                port=settings.app_port,
                conf=False,
                threaded=True,
            )
            return
        from .app.http import BoundedWSGIServer

        self.api = BoundedWSGIServer(
            self.app.application,
            settings.max_message,
            line_limit=settings.max_request_line,
            headers_limit=settings.max_request_headers,
            headers_count=settings.max_header_lines,
            name="pushi-api",
        )
        self._serve(
            self.api,
            "api",
            settings.app_host,
            settings.app_port,
            settings.app_ssl,
            settings.app_ssl_key,
            settings.app_ssl_cer,
        )

    def _wait(self, ready: threading.Event, name: str) -> None:
        """Waits for a server to listen; fails fast when its thread died."""
        for _ in range(300):
            if ready.wait(0.1):
                return
            if self.stopped.is_set():
                break
        raise RuntimeError("%s server did not start (see the log above)" % name)

    def stop(self) -> None:
        """Closes sockets with 1001, stops both servers, flushes the store."""
        LOGGER.info("stopping")
        self.server.shutdown()
        if self.api is not None:
            self.api.delay_s(self.api.stop)
        for thread in self._threads:
            thread.join(10)
        # after the sockets closed: their channel_vacated may still go out
        self.webhooks.stop()
        self.store.stop()
        self.app.stop()
        if not isinstance(self.app.adapter, appier.MongoAdapter):
            # Appier's Mongo adapter keeps one global client and cannot close
            self.app.adapter.close()
        LOGGER.info("stopped")


def run(settings: Settings | None = None) -> None:
    """Runs Pushi until SIGINT or SIGTERM, then stops it cleanly."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    try:
        process = Process(settings)
    except ConfigError as error:
        _refuse_to_start(error)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    try:
        process.start()
    except ConfigError as error:
        # nothing serves yet: the store worker and both servers start later
        _refuse_to_start(error)
    while not stop.is_set() and not process.stopped.is_set():
        stop.wait(0.5)
    process.stop()


def _refuse_to_start(error: ConfigError) -> typing.NoReturn:
    """One line saying what is wrong with the configuration; exit status 2."""
    LOGGER.error("bad configuration: %s", error)
    raise SystemExit(2)
