"""The client dialects: how a WebSocket URL names its app and dialect."""

from __future__ import annotations

import urllib.parse

from .pushi import PUSHI, Dialect, dumps


def resolve(target: str) -> tuple[Dialect, str]:
    """The dialect and app key named by a WebSocket request target.

    `/<key>` speaks the Pushi dialect; the query string is never part of the key.
    """
    path = urllib.parse.urlsplit(target).path
    return PUSHI, path.strip("/")


__all__ = ["PUSHI", "Dialect", "dumps", "resolve"]
