"""Persistence: the store worker (queue, batches) and the embedded store."""

from .worker import Store, StoreError, Ticket, prune_events, write_events

__all__ = ["Store", "StoreError", "Ticket", "prune_events", "write_events"]
