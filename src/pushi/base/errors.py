"""Errors the pure core shares with the parts that serve it."""

from __future__ import annotations


class StoreError(Exception):
    """The store could not take or run a request (its queue is full, say)."""
