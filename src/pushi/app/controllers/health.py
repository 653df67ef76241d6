"""Health: liveness and readiness for load balancers and orchestrators."""

from __future__ import annotations

import appier

from ... import __version__
from .base import PushiController


class HealthController(PushiController):
    """`/health` and `/health/live` say the process answers; `/health/ready`
    that it can work. None of them tells more (no counts, no versions of the
    runtime): they answer anyone."""

    @appier.route("/health", "GET", json=True)
    def health(self):
        """The service and its version."""
        return dict(status="ok", service="pushi", version=__version__)

    @appier.route("/health/live", "GET", json=True)
    def live(self):
        """The API thread answers."""
        return dict(status="ok")

    @appier.route("/health/ready", "GET", json=True)
    def ready(self):
        """The event loop and the store worker both answer (503 otherwise)."""
        state, store = self.owner.state, self.owner.store
        try:
            state.call(state.stats, timeout=2.0)
            store.call(lambda: None, timeout=5.0)
        except Exception as exception:
            raise appier.OperationalError(
                message="Not ready: %s" % type(exception).__name__, code=503
            ) from None
        return dict(status="ok", ready=True)
