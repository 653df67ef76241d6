"""Settings of a Pushi process, read once at start from the environment."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import typing

import appier

DEFAULT_DATA = "./pushi-data"

APP_ID = re.compile(r"[0-9]{1,20}")
""" A Pusher app id: digits only (the Python SDK refuses anything else) """
DECLARED_KEY = re.compile(r"[A-Za-z0-9_-]{1,64}")
""" Keys of apps declared in configuration (Pusher-style keys included) """
SECRET_MOST = 256
""" Characters of a declared secret, at most """
MAX_PAYLOAD_MOST = 16 * 1024 * 1024
""" Largest `max_payload` an app may ask for (the message limits still apply) """
WEBHOOKS_MOST = 20
""" Webhooks one app may have """
URL_MOST = 2048
WEBHOOK_EVENTS = (
    "channel_occupied",
    "channel_vacated",
    "member_added",
    "member_removed",
    "client_event",
    "cache_miss",
)
""" The event types a webhook may ask for (Pusher's names) """

APP_SETTINGS = {
    "client_events": True,
    "max_payload": 10240,
    "persist": False,
    "webhooks": [],
}
""" The per-app settings of the Pusher dialect and HTTP API, with their defaults """

DECLARED_FIELDS = ("app_id", "key", "secret", "name") + tuple(APP_SETTINGS)
""" The fields of a declared app (`PUSHI_APPS`); app_id, key, secret required """


class ConfigError(ValueError):
    """A setting the process cannot start with (one line, shown as it is)."""


def check_setting(name: str, value: typing.Any) -> typing.Any:
    """One per-app setting (`APP_SETTINGS`), checked and normalised.

    Booleans and integers may come as the strings of a form (`"true"`,
    `"0"`, `"20000"`); webhooks as a JSON string. Raises ValueError with a
    short reason on anything else.
    """
    if name in ("client_events", "persist"):
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "false", "0"):
            return value.lower() in ("true", "1")
        raise ValueError("expected true or false")
    if name == "max_payload":
        if isinstance(value, str) and value.isdigit():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError("expected an integer")
        if not 1 <= value <= MAX_PAYLOAD_MOST:
            raise ValueError("expected 1 to %d bytes" % MAX_PAYLOAD_MOST)
        return value
    if name == "webhooks":
        return _webhooks(value)
    raise ValueError("unknown setting")


def _webhooks(value: typing.Any) -> list[dict]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise ValueError("expected a JSON list of webhooks") from None
    if not isinstance(value, list):
        raise ValueError("expected a list of {url, event_types}")
    if len(value) > WEBHOOKS_MOST:
        raise ValueError("at most %d webhooks" % WEBHOOKS_MOST)
    hooks = []
    for hook in value:
        if not isinstance(hook, dict) or set(hook) - {"url", "event_types"}:
            raise ValueError("a webhook is {url, event_types}")
        url = hook.get("url")
        if (
            not isinstance(url, str)
            or not url.startswith(("http://", "https://"))
            or len(url) > URL_MOST
            or any(c.isspace() for c in url)
        ):
            raise ValueError("a webhook url must be an http(s) URL")
        types = hook.get("event_types", list(WEBHOOK_EVENTS))
        if (
            not isinstance(types, list)
            or not types
            or any(kind not in WEBHOOK_EVENTS for kind in types)
        ):
            raise ValueError(
                "event_types: a non-empty list of %s" % ", ".join(WEBHOOK_EVENTS)
            )
        hooks.append({"url": url, "event_types": list(dict.fromkeys(types))})
    return hooks


def parse_apps(text: str, source: str = "PUSHI_APPS") -> tuple[dict, ...]:
    """The apps declared in configuration: a JSON array of objects.

    Each has `app_id` (digits), `key` ([A-Za-z0-9_-]{1,64}), `secret`,
    optionally `name` (default `app-<app_id>`) and the `APP_SETTINGS` (their
    defaults when absent). App ids, keys and names are unique.

    :raises ConfigError: One line naming `source`, the app and the fault.
    """
    try:
        apps = json.loads(text)
    except ValueError as error:
        raise ConfigError("%s is not valid JSON: %s" % (source, error)) from None
    if not isinstance(apps, list):
        raise ConfigError("%s must be a JSON array of apps" % source)
    declared: list[dict] = []
    seen: dict[str, set] = {"app_id": set(), "key": set(), "name": set()}
    for index, app in enumerate(apps):
        where = "%s[%d]" % (source, index)
        spec = _declared_app(app, where)
        for field, values in seen.items():
            if spec[field] in values:
                raise ConfigError("%s: duplicate %s %r" % (where, field, spec[field]))
            values.add(spec[field])
        declared.append(spec)
    return tuple(declared)


def _declared_app(app: typing.Any, where: str) -> dict:
    if not isinstance(app, dict):
        raise ConfigError("%s: an app must be a JSON object" % where)
    unknown = sorted(set(app) - set(DECLARED_FIELDS))
    if unknown:
        raise ConfigError("%s: unknown field(s) %s" % (where, ", ".join(unknown)))
    missing = [name for name in ("app_id", "key", "secret") if name not in app]
    if missing:
        raise ConfigError("%s: missing field(s) %s" % (where, ", ".join(missing)))
    app_id = app["app_id"]
    if isinstance(app_id, int) and not isinstance(app_id, bool) and app_id >= 0:
        app_id = str(app_id)
    if not isinstance(app_id, str) or not APP_ID.fullmatch(app_id):
        raise ConfigError("%s: app_id must be 1 to 20 digits" % where)
    key = app["key"]
    if not isinstance(key, str) or not DECLARED_KEY.fullmatch(key):
        raise ConfigError("%s: key must be 1 to 64 of A-Z a-z 0-9 _ -" % where)
    secret = app["secret"]
    if (
        not isinstance(secret, str)
        or not 1 <= len(secret) <= SECRET_MOST
        or not secret.isprintable()
    ):
        raise ConfigError(
            "%s: secret must be 1 to %d printable characters" % (where, SECRET_MOST)
        )
    name = app.get("name", "app-" + app_id)
    if not isinstance(name, str) or not name.strip():
        raise ConfigError("%s: name must be a non-empty string" % where)
    spec = dict(app_id=app_id, key=key, secret=secret, name=name)
    for setting, default in APP_SETTINGS.items():
        value = app.get(setting, default)
        if setting in ("client_events", "persist") and not isinstance(value, bool):
            raise ConfigError("%s: %s must be true or false" % (where, setting))
        try:
            spec[setting] = check_setting(setting, value)
        except ValueError as error:
            raise ConfigError("%s: %s: %s" % (where, setting, error)) from None
    return spec


def declared_apps(inline: str | None, path: str | None) -> tuple[dict, ...]:
    """`PUSHI_APPS` (JSON text) or `PUSHI_APPS_FILE` (a path to it); not both."""
    if inline and path:
        raise ConfigError("set PUSHI_APPS or PUSHI_APPS_FILE, not both")
    if path:
        try:
            with open(path, encoding="utf-8") as file:
                text = file.read()
        except (OSError, UnicodeDecodeError) as error:
            raise ConfigError(
                "PUSHI_APPS_FILE: cannot read %s: %s" % (path, error)
            ) from None
        return parse_apps(text, "PUSHI_APPS_FILE " + path)
    if inline:
        return parse_apps(inline)
    return ()


def _flag(name: str, default: bool = False) -> bool:
    """Reads a boolean variable, accepting the usual spellings of true."""
    value = appier.conf(name, None)
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("1", "true", "yes", "on")


@dataclasses.dataclass(frozen=True)
class Settings:
    """Every knob of the process, with the defaults the README documents."""

    app_server: str = "netius"
    app_host: str = "127.0.0.1"
    app_port: int = 8080
    app_ssl: bool = False
    app_ssl_key: str | None = None
    app_ssl_cer: str | None = None
    server_host: str = "127.0.0.1"
    server_port: int = 9090
    server_ssl: bool = False
    server_ssl_key: str | None = None
    server_ssl_cer: str | None = None
    mongo_url: str | None = None
    data_dir: str = DEFAULT_DATA
    registration: str = "open"
    legacy_presence_auth: bool = False
    admin_password: str | None = None
    max_message: int = 64 * 1024
    max_send_buffer: int = 4 * 1024 * 1024
    # the REST API's request head: request line, header section, header lines
    max_request_line: int = 8192
    max_request_headers: int = 16384
    max_header_lines: int = 100
    handshake_timeout: float = 10.0
    latest_max: int = 100
    personal_events: int = 10
    client_event_rate: int = 100
    request_rate: int = 50
    max_channels: int = 200
    # 0: max_channels + request_rate (a reconnect resubscribing every channel,
    # and a second's worth of other requests); never below max_channels
    request_burst: int = 0
    max_presence_members: int = 100
    max_peer_channels: int = 1000
    max_pending_reads: int = 2
    store_queue: int = 100_000
    event_ttl: float = 0.0
    max_events: int = 0
    # liveness: a connection silent this long is pinged, closed (4201) when no
    # pong follows within pong_timeout
    activity_timeout: int = 120
    pong_timeout: float = 30.0
    # webhooks: ms of events gathered into one request per URL (0: one request
    # an event), events waiting per URL, seconds a request may take, senders
    webhook_batch_ms: int = 0
    webhook_queue: int = 10_000
    webhook_timeout: float = 5.0
    webhook_workers: int = 8
    # apps declared in configuration (PUSHI_APPS / PUSHI_APPS_FILE), checked;
    # dicts, so left out of the hash
    apps: tuple = dataclasses.field(default=(), hash=False)

    @property
    def request_bucket(self) -> int:
        """The request burst a socket has: at least every channel it may join."""
        burst = self.request_burst or self.max_channels + self.request_rate
        return max(burst, self.max_channels, self.request_rate)

    @classmethod
    def from_env(cls, **overrides) -> "Settings":
        """Builds the settings from environment variables (through appier.conf)."""
        conf = appier.conf
        values = dict(
            app_server=conf("APP_SERVER", "netius"),
            app_host=conf("APP_HOST", "127.0.0.1"),
            app_port=conf("APP_PORT", 8080, cast=int),
            app_ssl=_flag("APP_SSL"),
            app_ssl_key=conf("APP_SSL_KEY", None),
            app_ssl_cer=conf("APP_SSL_CER", None),
            server_host=conf("SERVER_HOST", "127.0.0.1"),
            server_port=conf("SERVER_PORT", 9090, cast=int),
            server_ssl=_flag("SERVER_SSL"),
            server_ssl_key=conf("SERVER_SSL_KEY", None),
            server_ssl_cer=conf("SERVER_SSL_CER", None),
            mongo_url=conf("MONGO_URL", None) or conf("MONGOHQ_URL", None),
            data_dir=conf("PUSHI_DATA", DEFAULT_DATA),
            registration=conf("PUSHI_REGISTRATION", "open"),
            legacy_presence_auth=_flag("PUSHI_LEGACY_PRESENCE_AUTH"),
            admin_password=conf("ADMIN_PASSWORD", None),
            max_message=conf("PUSHI_MAX_MESSAGE", 64 * 1024, cast=int),
            max_send_buffer=conf("PUSHI_MAX_SEND_BUFFER", 4 * 1024 * 1024, cast=int),
            max_request_line=conf("PUSHI_MAX_REQUEST_LINE", 8192, cast=int),
            max_request_headers=conf("PUSHI_MAX_REQUEST_HEADERS", 16384, cast=int),
            max_header_lines=conf("PUSHI_MAX_HEADER_LINES", 100, cast=int),
            handshake_timeout=conf("PUSHI_HANDSHAKE_TIMEOUT", 10.0, cast=float),
            client_event_rate=conf("PUSHI_CLIENT_EVENT_RATE", 100, cast=int),
            request_rate=conf("PUSHI_REQUEST_RATE", 50, cast=int),
            max_channels=conf("PUSHI_MAX_CHANNELS", 200, cast=int),
            request_burst=conf("PUSHI_REQUEST_BURST", 0, cast=int),
            max_presence_members=conf("PUSHI_MAX_PRESENCE_MEMBERS", 100, cast=int),
            max_peer_channels=conf("PUSHI_MAX_PEER_CHANNELS", 1000, cast=int),
            store_queue=conf("PUSHI_STORE_QUEUE", 100_000, cast=int),
            event_ttl=conf("PUSHI_EVENT_TTL", 0.0, cast=float),
            max_events=conf("PUSHI_MAX_EVENTS", 0, cast=int),
            activity_timeout=conf("PUSHI_ACTIVITY_TIMEOUT", 120, cast=int),
            pong_timeout=conf("PUSHI_PONG_TIMEOUT", 30.0, cast=float),
            webhook_batch_ms=conf("PUSHI_WEBHOOK_BATCH_MS", 0, cast=int),
            webhook_queue=conf("PUSHI_WEBHOOK_QUEUE", 10_000, cast=int),
            webhook_timeout=conf("PUSHI_WEBHOOK_TIMEOUT", 5.0, cast=float),
            webhook_workers=conf("PUSHI_WEBHOOK_WORKERS", 8, cast=int),
            apps=declared_apps(conf("PUSHI_APPS", None), conf("PUSHI_APPS_FILE", None)),
        )
        values.update(overrides)
        if values["registration"] not in ("open", "admin"):
            raise ConfigError("PUSHI_REGISTRATION must be 'open' or 'admin'")
        values["data_dir"] = os.path.abspath(values["data_dir"])
        return cls(**values)
