"""Persistence: the store worker (queue, batches) and the embedded store."""

from .worker import Store, StoreError, write_events

__all__ = ["Store", "StoreError", "write_events"]
