"""The signal that the fast path leaves a filter or an update to neosqlite."""

from __future__ import annotations


class Unsupported(Exception):
    """A filter or update shape the fast path leaves to neosqlite."""
