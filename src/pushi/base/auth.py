"""Signatures, identifiers and channel kinds: small pure functions."""

from __future__ import annotations

import hashlib
import hmac
import re
import uuid

CHANNEL_NAME = re.compile(r"[^\s\x00-\x1f\x7f-\x9f]{1,200}")
""" Pushi channel names: what apps use today (`+`, `/`, `#`, non-ASCII letters...),
1 to 200 characters with no whitespace and no control character (contract §4.14) """
APP_KEY = re.compile(r"[0-9a-f]{64}")
""" Keys of apps created through `POST /apps` """
ANY_APP_KEY = re.compile(r"[A-Za-z0-9_-]{1,64}")
""" Keys an app may have: generated ones and those of apps declared in configuration """

PUBLIC = "public"
PRIVATE = "private"
PRESENCE = "presence"
PERSONAL = "personal"
PEER = "peer"
USER = "user"

USER_PREFIX = "#server-to-user-"
""" The channel of a signed-in user's own events (Pusher's send-to-user) """

_PREFIXES = (
    ("private-", PRIVATE),
    ("presence-", PRESENCE),
    ("personal-", PERSONAL),
    ("peer-", PEER),
    (USER_PREFIX, USER),
)

_CACHE_PREFIXES = (
    "cache-",
    "private-cache-",
    "private-encrypted-cache-",
    "presence-cache-",
)


def channel_kind(channel: str) -> str:
    """The kind of a channel, decided by the prefix of its name."""
    for prefix, kind in _PREFIXES:
        if channel.startswith(prefix):
            return kind
    return PUBLIC


def is_cache(channel: str) -> bool:
    """Whether a channel keeps its last event for new subscribers: Pusher's
    cache channels, `cache-`, `private-cache-`, `private-encrypted-cache-` and
    `presence-cache-`."""
    return channel.startswith(_CACHE_PREFIXES)


def is_encrypted(channel: str) -> bool:
    """Whether a channel carries end-to-end encrypted payloads (never read here)."""
    return channel.startswith("private-encrypted-")


def user_channel(user_id: str) -> str:
    """The channel a signed-in user's sockets receive their own events on."""
    return USER_PREFIX + user_id


def valid_channel(channel: object) -> bool:
    """Whether a value is an acceptable channel name."""
    return isinstance(channel, str) and CHANNEL_NAME.fullmatch(channel) is not None


def personal_user(channel: str) -> str:
    """The user id a personal channel belongs to."""
    return channel[len("personal-") :]


def peer_channel(base: str, user_a: str, user_b: str) -> str | None:
    """The chat channel of two members of `presence-<base>` (None: name unfit)."""
    first, second = sorted((user_a, user_b))
    name = f"peer-{base}:{first}&{second}"
    return name if valid_channel(name) else None


def in_peer_channel(name: str, base: str, user_id: str) -> bool:
    """Whether `name` is a pair channel of `presence-<base>` that names `user_id`."""
    prefix = f"peer-{base}:"
    if not name.startswith(prefix):
        return False
    pair = name[len(prefix) :]
    if pair.startswith(user_id + "&"):
        other = pair[len(user_id) + 1 :]
    elif pair.endswith("&" + user_id):
        other = pair[: -len(user_id) - 1]
    else:
        return False
    return bool(other) and peer_channel(base, user_id, other) == name


def sign(secret: str, message: str) -> str:
    """Hex HMAC-SHA256 of a message under an app secret."""
    return hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()


def string_to_sign(socket_id: str, channel: str, channel_data: str | None) -> str:
    """What a channel auth signs: socket, channel and, for presence, its data."""
    if channel_data is None:
        return f"{socket_id}:{channel}"
    return f"{socket_id}:{channel}:{channel_data}"


def channel_auth(
    key: str, secret: str, socket_id: str, channel: str, channel_data: str | None = None
) -> str:
    """The `auth` value a client sends to join a protected channel."""
    signature = sign(secret, string_to_sign(socket_id, channel, channel_data))
    return f"{key}:{signature}"


def verify_channel_auth(
    key: str,
    secret: str,
    socket_id: str,
    channel: str,
    auth: object,
    channel_data: str | None = None,
) -> bool:
    """Checks a client's `auth` value in constant time."""
    if not isinstance(auth, str):
        return False
    expected = channel_auth(key, secret, socket_id, channel, channel_data)
    return hmac.compare_digest(expected.encode(), auth.encode())


def user_auth(key: str, secret: str, socket_id: str, user_data: str) -> str:
    """The `auth` value of a `pusher:signin`: signs `<socket_id>::user::<user_data>`."""
    return f"{key}:{sign(secret, f'{socket_id}::user::{user_data}')}"


def verify_user_auth(
    key: str, secret: str, socket_id: str, user_data: str, auth: object
) -> bool:
    """Checks a `pusher:signin`'s `auth` value in constant time."""
    if not isinstance(auth, str):
        return False
    expected = user_auth(key, secret, socket_id, user_data)
    return hmac.compare_digest(expected.encode(), auth.encode())


def new_socket_id() -> str:
    """A random socket id of the Pushi dialect: a uuid4 string."""
    return str(uuid.uuid4())
