"""The client dialects: how a WebSocket URL names its app and dialect."""

from __future__ import annotations

import urllib.parse

from .pushi import PUSHI, Dialect, dumps


def resolve(target: str) -> tuple[Dialect, str]:
    """The dialect and app key named by a WebSocket request target.

    The Pushi dialect takes the text after the last `/` of the path as the key
    (`/<key>`, or any prefix before it); the query string is never part of it.
    """
    path = urllib.parse.urlsplit(target).path
    return PUSHI, path.rsplit("/", 1)[-1]


__all__ = ["PUSHI", "Dialect", "dumps", "resolve"]
