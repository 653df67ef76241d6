"""App: one tenant of the server, with its credentials and settings."""

from __future__ import annotations

import logging
import secrets

import appier

from ...base.config import APP_SETTINGS, ConfigError, check_setting
from .base import PushiBase

LOGGER = logging.getLogger("pushi")

SETTINGS = (
    "name",
    "apn_sandbox",
    "apn_key",
    "apn_cer",
    "vapid_key",
    "vapid_email",
    "smtp_url",
) + tuple(APP_SETTINGS)
""" What a caller may set on an app; the credentials are always generated """

APP_ID_LOW, APP_ID_HIGH = 100_000_000, 999_999_999
""" Generated app ids: 9 digits, no leading zero """


def new_credential() -> str:
    """A fresh ident, key or secret: 64 lowercase hex characters (256 bits)."""
    return secrets.token_hex(32)


class App(PushiBase):
    """An application: its ident, WebSocket key, secret and push settings."""

    starting = False
    """ Set while the runner prepares the stored apps, before State serves """

    name = appier.field(index=True, default=True, observations="""Display name""")
    ident = appier.field(index=True, safe=True, immutable=True)
    key = appier.field(index=True, safe=True, immutable=True)
    secret = appier.field(index=True, safe=True, immutable=True)
    apn_sandbox = appier.field(type=bool, description="APN Sandbox")
    apn_key = appier.field(meta="longtext", description="APN Key")
    apn_cer = appier.field(meta="longtext", description="APN Cer")
    vapid_key = appier.field(meta="longtext", description="VAPID Private Key")
    vapid_email = appier.field(description="VAPID Email")
    smtp_url = appier.field(description="SMTP URL")
    app_id = appier.field(
        index=True,
        safe=True,
        immutable=True,
        description="App ID",
        observations="""Numeric id of the Pusher HTTP API (/apps/<app_id>/...)""",
    )
    client_events = appier.field(type=bool, initial=True, description="Client Events")
    max_payload = appier.field(
        type=int,
        initial=APP_SETTINGS["max_payload"],
        description="Max Payload",
        observations="""Largest event payload in bytes (Pusher's 10 KB)""",
    )
    persist = appier.field(
        type=bool,
        initial=False,
        observations="""Whether Pusher HTTP API publishes are stored""",
    )
    webhooks = appier.field(
        type=list, initial=[], observations="""[{"url", "event_types"}]"""
    )
    declared = appier.field(
        type=bool,
        private=True,
        safe=True,
        observations="""Declared in configuration (PUSHI_APPS)""",
    )

    @classmethod
    def validate(cls) -> list:
        """A name is required and unique across the server; the Pusher
        settings are checked on every save (the back-office's too)."""
        return super().validate() + [
            appier.not_null("name"),
            appier.not_empty("name"),
            appier.not_duplicate("name", cls._name()),
            _pusher_settings,
        ]

    @classmethod
    def cast(cls, name, value, safe=True):
        """Appier's cast, but a boolean a store hands back as 0 or 1 is false
        or true (Appier reads any number as true); a MongoDB wire server on
        SQLite (nx-27017, in CI) stores booleans set by an update so."""
        if type(value) is int and cls.definition().get(name, {}).get("type") is bool:
            return value != 0
        return super().cast(name, value, safe=safe)

    @classmethod
    def list_names(cls) -> list[str]:
        """Columns of the back-office listing."""
        return ["name", "ident", "app_id", "apn_sandbox"]

    @classmethod
    def settings(cls, fields: dict) -> dict:
        """The fields of a request an app takes: its settings, never credentials.

        The Pusher settings are checked here (Appier's casts would turn a bad
        value into a default silently): a bad one is a 400 ValidationError
        naming the field.
        """
        settings = {name: fields[name] for name in SETTINGS if name in fields}
        errors = {}
        for name in APP_SETTINGS:
            if name in settings:
                try:
                    settings[name] = check_setting(name, settings[name])
                except ValueError as error:
                    errors[name] = [str(error)]
        if errors:
            raise appier.ValidationError(errors, None)
        return settings

    @classmethod
    def new_app_id(cls) -> str:
        """A fresh numeric app id that no app has (random, 9 digits)."""
        while True:
            app_id = str(APP_ID_LOW + secrets.randbelow(APP_ID_HIGH - APP_ID_LOW + 1))
            if not cls.count(app_id=app_id, rules=False):
                return app_id

    @classmethod
    def ensure_app_ids(cls) -> int:
        """Gives every stored app without an app id one (apps of older
        versions); returns how many got one."""
        count = 0
        for app in cls.find(rules=False):
            if app.app_id:
                continue
            app.app_id = cls.new_app_id()
            app.save(immutables_a=False, validate=False)
            count += 1
        if count:
            LOGGER.info("gave %d stored app(s) a numeric app_id", count)
        return count

    @classmethod
    def declare(cls, specs) -> None:
        """Creates or updates the apps declared in configuration (by app id).

        A declared app keeps the ident it got when first declared; its key,
        secret, name and settings follow the declaration at every start.

        :raises ConfigError: An app id that belongs to an app not declared
            (made through `POST /apps`), or a name another app has.
        """
        for spec in specs:
            app = cls.get(app_id=spec["app_id"], rules=False, raise_e=False)
            if app is not None and not getattr(app, "declared", False):
                raise ConfigError(
                    "PUSHI_APPS: app_id %s belongs to an app created through the "
                    "API (%s)" % (spec["app_id"], app.name)
                )
            if app is None:
                app = cls(declared=True)
            other = cls.get(key=spec["key"], rules=False, raise_e=False)
            if other is not None and other.ident != app.ident:
                raise ConfigError(
                    "PUSHI_APPS: key of app_id %s is another app's" % spec["app_id"]
                )
            for name, value in spec.items():
                setattr(app, name, value)
            app.declared = True
            try:
                app.save(immutables_a=False)
            except appier.ValidationError as error:
                raise ConfigError(
                    "PUSHI_APPS: app_id %s: %s"
                    % (spec["app_id"], _reasons(error.errors))
                ) from None

    def pre_create(self) -> None:
        """Generates the credentials of a new app (caller values are ignored).

        A declared app (`declare`) keeps the key, secret and app id of its
        declaration; only its ident is generated.
        """
        super().pre_create()
        self.ident = new_credential()
        if not getattr(self, "declared", False):
            self.key = new_credential()
            self.secret = new_credential()
            self.app_id = self.new_app_id()
        self.instance = self.ident

    def post_save(self) -> None:
        """Live sockets learn of a new or renamed app at once.

        Not while the process starts (`ensure_app_ids`, `declare`): State is
        not serving yet and learns every app from the store right after.
        """
        super().post_save()
        if not App.starting:
            self.tell_state("app_changed", self.credentials())

    def credentials(self) -> dict:
        """What State needs to know of the app: credentials and Pusher settings."""
        return dict(
            ident=self.ident,
            key=self.key,
            secret=self.secret,
            name=self.name,
            app_id=getattr(self, "app_id", None) or "",
            # records of older versions may lack the settings: their defaults
            **{
                name: getattr(self, name, default)
                for name, default in APP_SETTINGS.items()
            },
        )


def _pusher_settings(values: dict, ctx=None) -> bool:
    """Validator: the Pusher settings of a record about to be saved."""
    failed = appier.ValidationMultipleError()
    for name in APP_SETTINGS:
        if name not in values:
            continue
        try:
            check_setting(name, values[name])
        except ValueError as error:
            failed.add_error(name, str(error))
    if failed.errors:
        raise failed
    return True


def _reasons(errors: dict) -> str:
    """Appier's validation errors as one line."""
    return "; ".join(
        "%s %s" % (name, ", ".join(messages)) for name, messages in errors.items()
    )
