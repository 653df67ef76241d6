"""Persistence models (Appier) of Pushi."""

from .app import App
from .association import Association
from .base import PushiBase
from .event import PushiEvent
from .subscription import Subscription

__all__ = ["App", "Association", "PushiBase", "PushiEvent", "Subscription"]
