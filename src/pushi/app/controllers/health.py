"""Health: liveness and readiness for load balancers and orchestrators."""

from __future__ import annotations

import appier

from .base import PushiController


class HealthController(PushiController):
    """`/health/live` says the process answers; `/health/ready` that it can work."""

    @appier.route("/health/live", "GET", json=True)
    def live(self):
        """The API thread answers."""
        return dict(status="ok")

    @appier.route("/health", "GET", json=True)
    @appier.route("/health/ready", "GET", json=True)
    def ready(self):
        """The event loop and the store worker both answer (503 otherwise)."""
        state, store = self.owner.state, self.owner.store
        try:
            stats = state.call(state.stats, timeout=2.0)
            store.call(lambda: None, timeout=5.0)
        except Exception:
            self.request.set_code(503)
            return dict(status="unavailable")
        stats.update(
            status="ok", store_pending=store.pending, store_dropped=store.dropped
        )
        return stats
