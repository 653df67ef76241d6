"""Stored documents: field paths, projection, list paths and their JSON form."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import neosqlite
from neosqlite.collection.json_helpers import (
    neosqlite_json_dumps,
    neosqlite_json_loads,
)


def load(stored_id: Any, text: Any) -> dict[str, Any]:
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    document = neosqlite_json_loads(text)
    if "_id" not in document:
        document["_id"] = stored_id
    return document


def project(document: dict[str, Any], projection: Any) -> dict[str, Any]:
    """MongoDB projection: a list of fields, or a map of 1s (with ``_id`` kept
    unless set to 0) or of 0s (those fields left out)."""
    if not projection:
        return document
    if isinstance(projection, Mapping):
        spec = {key: bool(value) for key, value in projection.items()}
    else:
        spec = {key: True for key in projection}
    keep_id = spec.pop("_id", True)
    if any(spec.values()):
        if not all(spec.values()):
            raise ValueError("Projection cannot mix inclusion and exclusion")
        result: dict[str, Any] = {}
        if keep_id and "_id" in document:
            result["_id"] = document["_id"]
        for path in spec:
            found, value = get_path(document, path)
            if found:
                set_path(result, path, value)
        return result
    result = dict(document)
    if not keep_id:
        result.pop("_id", None)
    for path in spec:
        unset_path(result, path)
    return result


def get_path(document: Mapping[str, Any], path: str) -> tuple[bool, Any]:
    value: Any = document
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return False, None
        value = value[part]
    return True, value


def set_path(document: dict[str, Any], path: str, value: Any) -> None:
    parts = path.split(".")
    for part in parts[:-1]:
        child = document.get(part)
        if not isinstance(child, dict):
            child = document[part] = {}
        document = child
    document[parts[-1]] = value


def unset_path(document: dict[str, Any], path: str) -> None:
    parts = path.split(".")
    for part in parts[:-1]:
        child = document.get(part)
        if not isinstance(child, dict):
            return
        child = document[part] = dict(child)
        document = child
    document.pop(parts[-1], None)


_SCALARS = (str, int, float, bool, type(None))


def array_paths(value: Any, prefix: str = "") -> Iterator[str]:
    # paths holding a list (not descending into lists: any path below one
    # counts as array-bound, which query.Compiler._target checks by prefix)
    if not isinstance(value, Mapping):
        return
    for key, child in value.items():
        if isinstance(child, _SCALARS):
            continue  # most values: one cheap check, no ABC lookup
        if isinstance(child, (list, tuple)):
            yield prefix + str(key)
        elif isinstance(child, Mapping):
            yield from array_paths(child, prefix + str(key) + ".")


def dumps(document: Any) -> str:
    # neosqlite's encoding (ObjectId, Binary, datetime as {"$date": ...}),
    # and never NaN: SQLite would reject the whole row as malformed JSON
    return neosqlite_json_dumps(_binary(document), allow_nan=False)


def _binary(value: Any) -> Any:
    if isinstance(value, bytes):
        return neosqlite.Binary(value)
    if isinstance(value, Mapping):
        return {key: _binary(child) for key, child in value.items()}
    if isinstance(value, list):
        return [_binary(child) for child in value]
    return value


def column_id(value: Any) -> str:
    # neosqlite keeps str(_id) in its _id column
    return str(value)
