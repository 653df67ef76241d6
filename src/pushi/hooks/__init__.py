"""Outbound deliveries, off the event loop: Pusher-style webhooks."""

from .webhooks import Webhooks, post_json, signature

__all__ = ["Webhooks", "post_json", "signature"]
