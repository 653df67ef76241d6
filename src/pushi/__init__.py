"""Pushi: self-hosted real-time events over WebSocket, with a REST API."""

from __future__ import annotations

import importlib

__version__ = "0.7.0"

_EXPORTS = {
    "State": "pushi.base.state",
    "Settings": "pushi.base.config",
    "PushiServer": "pushi.net.server",
    "PushiApp": "pushi.app.base",
    "models": "pushi.app.models",
    "Pushi": "pushi.api",
    "API": "pushi.api",
    "PushiError": "pushi.api",
}


def __getattr__(name: str):
    # lazy, so `import pushi` in an application pulls in only the proxy it uses
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(name)
    module = importlib.import_module(module)
    return module if name == "models" else getattr(module, name)
