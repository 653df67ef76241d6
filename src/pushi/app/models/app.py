"""App: one tenant of the server, with its credentials and settings."""

from __future__ import annotations

import secrets

import appier

from .base import PushiBase

SETTINGS = (
    "name",
    "apn_sandbox",
    "apn_key",
    "apn_cer",
    "vapid_key",
    "vapid_email",
    "smtp_url",
)
""" What a caller may set on an app; the credentials are always generated """


def new_credential() -> str:
    """A fresh ident, key or secret: 64 lowercase hex characters (256 bits)."""
    return secrets.token_hex(32)


class App(PushiBase):
    """An application: its ident, WebSocket key, secret and push settings."""

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

    @classmethod
    def validate(cls) -> list:
        """A name is required and unique across the server."""
        return super().validate() + [
            appier.not_null("name"),
            appier.not_empty("name"),
            appier.not_duplicate("name", cls._name()),
        ]

    @classmethod
    def list_names(cls) -> list[str]:
        """Columns of the back-office listing."""
        return ["name", "ident", "apn_sandbox"]

    @classmethod
    def settings(cls, fields: dict) -> dict:
        """The fields of a request an app takes: its settings, never credentials."""
        return {name: fields[name] for name in SETTINGS if name in fields}

    def pre_create(self) -> None:
        """Generates the credentials of a new app (caller values are ignored)."""
        super().pre_create()
        self.ident = new_credential()
        self.key = new_credential()
        self.secret = new_credential()
        self.instance = self.ident

    def post_save(self) -> None:
        """Live sockets learn of a new or renamed app at once."""
        super().post_save()
        self.tell_state("app_changed", self.credentials())

    def credentials(self) -> dict:
        """What State needs to know of the app."""
        return dict(ident=self.ident, key=self.key, secret=self.secret, name=self.name)
