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


PUSHER_CHANNEL_NAME = re.compile(r"[A-Za-z0-9_\-=@,.;]{1,164}")
""" Pusher's channel names (its HTTP API and dialect): `[A-Za-z0-9_-=@,.;]`, ≤164 """

API_TIMESTAMP_SECONDS = 600
""" How far a signed Pusher HTTP API request's `auth_timestamp` may be from now """


def valid_pusher_channel(channel: object) -> bool:
    """Whether a value is a channel name by Pusher's rules (`#server-to-user-`
    channels included, as its SDKs' send-to-user publishes on them)."""
    if not isinstance(channel, str):
        return False
    if channel.startswith(USER_PREFIX):
        channel = channel[len(USER_PREFIX) :]
    return PUSHER_CHANNEL_NAME.fullmatch(channel) is not None


def api_string_to_sign(method: str, path: str, params: list[tuple[str, str]]) -> str:
    """What a Pusher HTTP API request signs: `METHOD\\nPATH\\nquery`, the query
    being every parameter but `auth_signature`, keys lower-cased, sorted by
    key, as `key=value` (values unescaped) joined by `&`."""
    pairs = sorted(
        ((name.lower(), value) for name, value in params if name != "auth_signature"),
        key=lambda pair: pair[0],
    )
    query = "&".join("%s=%s" % pair for pair in pairs)
    return "%s\n%s\n%s" % (method.upper(), path, query)


def verify_api_request(
    key: str,
    secret: str,
    method: str,
    path: str,
    params: list[tuple[str, str]],
    body: bytes,
    now: float,
) -> str | None:
    """Checks a signed Pusher HTTP API request as Pusher does.

    `params` are the query's decoded `(name, value)` pairs. Returns None when
    the request is good, else the reason it is not (for a 401): `auth_key` not
    the app's key, `auth_version` not 1.0, `auth_timestamp` more than 600 s
    away, `body_md5` missing (with a body) or not the body's, or
    `auth_signature` not the HMAC-SHA256 of the request (constant time).
    """
    given: dict[str, str] = {}
    for name, value in params:
        given.setdefault(name, value)
    for name in ("auth_key", "auth_timestamp", "auth_version", "auth_signature"):
        if name not in given:
            return "missing %s" % name
    if not hmac.compare_digest(given["auth_key"].encode(), key.encode()):
        return "auth_key is not the app's key"
    if given["auth_version"] != "1.0":
        return "auth_version must be 1.0"
    try:
        stamp = int(given["auth_timestamp"])
    except ValueError:
        return "auth_timestamp must be an integer"
    if abs(now - stamp) > API_TIMESTAMP_SECONDS:
        return "auth_timestamp expired: must be within %d s of the server time" % (
            API_TIMESTAMP_SECONDS
        )
    if body or "body_md5" in given:
        digest = hashlib.md5(body).hexdigest()
        if not hmac.compare_digest(given.get("body_md5", "").encode(), digest.encode()):
            return "body_md5 is missing or is not the body's"
    expected = sign(secret, api_string_to_sign(method, path, params))
    signature = given["auth_signature"].encode("utf-8", "replace")
    if not hmac.compare_digest(signature, expected.encode()):
        return "invalid auth_signature"
    return None


def new_socket_id() -> str:
    """A random socket id of the Pushi dialect: a uuid4 string."""
    return str(uuid.uuid4())
