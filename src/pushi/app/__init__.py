"""The Appier side of Pushi: REST controllers and persistence models."""

from .base import PushiApp

__all__ = ["PushiApp"]
