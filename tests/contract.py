"""Shapes of pushi-contract.md that several test files check (§1 records, §2, §3.3)."""

from __future__ import annotations

import uuid

RECORD_FIELDS = {"id", "enabled", "description", "created", "modified", "meta"}
RECORD_FIELDS |= {"instance"}
""" The fields every record has; REST replies add `_id` """

REST_RECORD_FIELDS = RECORD_FIELDS | {"_id"}

APP_FIELDS = REST_RECORD_FIELDS | {"name", "ident", "key", "secret", "apn_sandbox"}
APP_FIELDS |= {"apn_key", "apn_cer", "vapid_key", "vapid_email", "smtp_url"}
APP_FIELDS |= {"app_id", "client_events", "max_payload", "persist", "webhooks"}
""" App records also carry the numeric Pusher `app_id` and the Pusher settings
(additions to the contract's fields, issue 8) """
EVENT_OWN_FIELDS = {"mid", "channel", "owner_id", "timestamp", "data"}
EVENT_FIELDS = REST_RECORD_FIELDS | EVENT_OWN_FIELDS
""" An Event record in a REST reply """
EVENT_RECORD_FIELDS = RECORD_FIELDS | EVENT_OWN_FIELDS
""" An Event record in a WebSocket reply (no `_id`) """
SUBSCRIPTION_FIELDS = REST_RECORD_FIELDS | {"user_id", "event"}

ERROR_FIELDS = {"result", "name", "message", "code", "uid", "session"}
""" Appier's error body (plus `errors` on validation failures) """

INFO_KEYS = ["name", "members", "alias", "events"]
""" ChannelInfo of every channel reply: exactly these keys, in this order """


def is_uuid4(value) -> bool:
    """Whether a value is the canonical string of a version 4 uuid."""
    try:
        parsed = uuid.UUID(str(value))
    except ValueError:
        return False
    return isinstance(value, str) and parsed.version == 4 and str(parsed) == value
