"""The client dialects: how a WebSocket URL names its app and dialect."""

from __future__ import annotations

import urllib.parse

from .pusher import PUSHER, PusherDialect, parse_protocol
from .pushi import PUSHI, Dialect, dumps

PUSHER_QUERY = ("protocol", "client", "version")
""" Query parameters every Pusher client sends, one of which marks the dialect """


def resolve(target: str) -> tuple[Dialect, str, tuple[int, str] | None]:
    """The dialect, app key and refusal (`(code, message)` or None) of a
    WebSocket request target.

    `/app/<key>` with Pusher's query parameters (`protocol`, `client`,
    `version`: pusher-js sends all three) is the Pusher dialect, refused
    without a supported protocol version. Anything else is the Pushi dialect,
    whose key is the text after the last `/` of the path (`/<key>`, or any
    prefix before it, `/app/` included: pushi-contract.md §3.1); the query
    string is never part of a key.
    """
    parts = urllib.parse.urlsplit(target)
    segments = parts.path.split("/")
    if len(segments) == 3 and segments[:2] == ["", "app"]:
        query = urllib.parse.parse_qs(parts.query, keep_blank_values=True)
        if any(name in query for name in PUSHER_QUERY):
            return PUSHER, segments[2], parse_protocol(query)
    return PUSHI, parts.path.rsplit("/", 1)[-1], None


__all__ = ["PUSHER", "PUSHI", "Dialect", "PusherDialect", "dumps", "resolve"]
