"""App: one tenant of the server, with its credentials."""

from __future__ import annotations

import time

import appier

from ...base import auth
from .base import PushiBase


class App(PushiBase):
    """An application: its WebSocket key, its REST credentials and settings."""

    name = appier.field(index=True)
    ident = appier.field(index=True, immutable=True)
    key = appier.field(index=True, immutable=True)
    secret = appier.field(private=True, immutable=True)
    created = appier.field(type=float, immutable=True, safe=True)

    @classmethod
    def validate(cls) -> list:
        """A name is required and bounded."""
        return super().validate() + [
            appier.not_null("name"),
            appier.not_empty("name"),
            appier.string_lt("name", 256),
        ]

    @classmethod
    def create_names(cls) -> list[str]:
        """Callers may only choose the name: credentials are generated."""
        return ["name"]

    @classmethod
    def update_names(cls) -> list[str]:
        """Settings a PUT may change."""
        return ["name"]

    def pre_create(self) -> None:
        """Generates the credentials of a new app."""
        super().pre_create()
        self.ident = auth.new_ident()
        self.key = auth.new_key()
        self.secret = auth.new_key()
        self.created = time.time()

    def credentials(self) -> dict:
        """What State needs to know of the app."""
        return dict(ident=self.ident, key=self.key, secret=self.secret, name=self.name)

    def public(self, secret: bool = False) -> dict:
        """The JSON shape returned by the REST API; the secret only on creation."""
        result = dict(
            name=self.name,
            ident=self.ident,
            key=self.key,
            created=getattr(self, "created", None),
        )
        if secret:
            result["secret"] = self.secret
        return result
