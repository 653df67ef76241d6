"""MongoDB's value semantics: type kinds, equality, order and object ids."""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any

from neosqlite.objectid import ObjectId as NeoObjectId

from .documents import dumps

try:
    import bson
except ImportError:  # pragma: no cover - pymongo (and bson) is a dependency
    bson = None


def is_object_id(value: Any) -> bool:
    """If ``value`` is an ObjectId, bson's (pymongo) or neosqlite's."""
    return isinstance(value, NeoObjectId) or bool(
        bson and isinstance(value, bson.ObjectId)
    )


def kind_of(value: Any) -> str:
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "text"
    return "other"


def same(first: Any, second: Any) -> bool:
    """MongoDB equality: 1 == 1.0, but True is not 1 and "1" is not 1."""
    kind = kind_of(first)
    if kind != kind_of(second):
        return False
    if isinstance(first, Mapping) and isinstance(second, Mapping):
        return list(first) == list(second) and all(
            same(first[key], second[key]) for key in first
        )
    if isinstance(first, list) and isinstance(second, list):
        return len(first) == len(second) and all(
            same(a, b) for a, b in zip(first, second, strict=True)
        )
    if kind == "other" and type(first) is not type(second):
        return False
    return first == second


def sort_key(value: Any) -> tuple[int, Any]:
    """A sort key following MongoDB's order of types, then the value."""
    kind = kind_of(value)
    if value is None:
        return (0, 0)
    if kind == "number":
        return (1, value)
    if kind == "text":
        return (2, value)
    if isinstance(value, Mapping):
        return (3, dumps(value))
    if isinstance(value, list):
        return (4, dumps(value))
    if kind in ("true", "false"):
        return (5, value)
    if isinstance(value, datetime.datetime):
        return (6, value.timestamp())
    return (7, repr(value))
