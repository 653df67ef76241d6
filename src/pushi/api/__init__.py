"""The Python proxy of Pushi: `pushi.Pushi` (= `pushi.API`) and `pushi.PushiError`.

Importing it loads appier's HTTP client and the pure signing helpers only, never the
server (netius, wsproto, the stores).
"""

from .base import API, BASE_URL, Pushi
from .errors import PushiError

__all__ = ["API", "BASE_URL", "Pushi", "PushiError"]
