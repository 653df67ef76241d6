"""Info: what the server is, and nothing about what it runs on."""

from __future__ import annotations

import appier

from ... import __version__
from .base import PushiController

API_VERSION = 1


class InfoController(PushiController):
    """`GET /`, `/info` and `/versions` in place of Appier's info document.

    Appier's document names the runtime and its libraries (OpenSSL, CPython,
    PyMongo, appier, netius) and live counts to anyone who asks; these routes
    say only which Pushi this is (contract §4.13).
    """

    @appier.route("/", "GET", json=True)
    @appier.route("/info", "GET", json=True)
    def info(self):
        """The service's name, version and API version."""
        return dict(name="pushi", version=__version__, api_version=API_VERSION)

    @appier.route("/versions", "GET", json=True)
    def versions(self):
        """The service's version and API version."""
        return dict(version=__version__, api_version=API_VERSION)
