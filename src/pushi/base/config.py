"""Settings of a Pushi process, read once at start from the environment."""

from __future__ import annotations

import dataclasses
import os

import appier

DEFAULT_DATA = "./pushi-data"


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
    activity_timeout: int = 120
    pong_timeout: float = 30.0

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
        )
        values.update(overrides)
        if values["registration"] not in ("open", "admin"):
            raise ValueError("PUSHI_REGISTRATION must be 'open' or 'admin'")
        values["data_dir"] = os.path.abspath(values["data_dir"])
        return cls(**values)
