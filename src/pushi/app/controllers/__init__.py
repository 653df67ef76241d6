"""REST controllers: thin, each hands its work to State or the store."""

from .apps import AppsController
from .events import EventsController
from .health import HealthController
from .info import InfoController
from .pusher import PusherController
from .session import SessionController
from .sockets import SocketsController
from .subscriptions import SubscriptionsController

__all__ = [
    "AppsController",
    "EventsController",
    "HealthController",
    "InfoController",
    "PusherController",
    "SessionController",
    "SocketsController",
    "SubscriptionsController",
]
