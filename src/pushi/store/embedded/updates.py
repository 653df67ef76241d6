"""MongoDB update operators, applied to a stored document in Python."""

from __future__ import annotations

import copy
import datetime
from collections.abc import Iterator, Mapping
from typing import Any

from .documents import array_paths, set_path
from .errors import Unsupported
from .values import kind_of, same, sort_key

_ARRAY_UPDATES = ("$push", "$addToSet", "$pushAll")


def update_array_paths(update: Mapping[str, Any]) -> Iterator[str]:
    for operator, fields in update.items():
        if not isinstance(fields, Mapping):
            continue
        if operator in ("$set", "$setOnInsert"):
            for path, value in fields.items():
                if isinstance(value, (list, tuple)):
                    yield path
                elif isinstance(value, Mapping):
                    yield from array_paths(value, path + ".")
        elif operator in _ARRAY_UPDATES:
            yield from fields
        elif operator == "$rename":
            yield from (str(new) for new in fields.values())


def check_update(update: Any) -> None:
    if not isinstance(update, Mapping) or not update:
        raise ValueError("An update needs operators, e.g. {'$set': {...}}")
    if not all(str(key).startswith("$") for key in update):
        raise ValueError("Update keys must all be operators ('$set', '$inc'...)")


def upsert_base(filter: Mapping[str, Any], document: dict[str, Any]) -> None:
    for key, value in (filter or {}).items():
        if key == "$and" and isinstance(value, (list, tuple)):
            for item in value:
                upsert_base(item if isinstance(item, Mapping) else {}, document)
        elif key.startswith("$"):
            continue
        elif (
            isinstance(value, Mapping)
            and value
            and all(str(name).startswith("$") for name in value)
        ):
            if "$eq" in value:
                set_path(document, key, value["$eq"])
        else:
            set_path(document, key, value)


def apply_update(
    document: dict[str, Any], update: Mapping[str, Any], inserting: bool
) -> dict[str, Any]:
    """A copy of ``document`` with MongoDB's update operators applied; raises
    Unsupported for what is left to neosqlite (positional paths, $bit...)."""
    result = copy.deepcopy(document)
    for operator, fields in update.items():
        apply = _UPDATERS.get(operator)
        if apply is None or not isinstance(fields, Mapping):
            raise Unsupported()
        if operator == "$setOnInsert" and not inserting:
            continue
        for path, value in fields.items():
            parts = _update_parts(path)
            if parts[0] == "_id":
                # set once (an upsert whose filter has no _id), never changed
                plain = len(parts) == 1 and operator in ("$set", "$setOnInsert")
                if plain and "_id" not in result:
                    result["_id"] = value
                elif not (plain and same(result["_id"], value)):
                    raise ValueError("The _id of a document cannot change")
                continue
            apply(result, parts, value)
    return result


def _update_parts(path: Any) -> list[str]:
    parts = str(path).split(".")
    for part in parts:
        # array positions ("a.0", "a.$", "a.$[]") are neosqlite's job
        if not part or part.startswith("$") or part.isdigit():
            raise Unsupported()
    return parts


def _walk(
    document: dict[str, Any], parts: list[str], create: bool
) -> dict[str, Any] | None:
    # the dict holding the last part (None when a level is missing)
    current = document
    for part in parts[:-1]:
        child = current.get(part)
        if child is None and part not in current:
            if not create:
                return None
            child = current[part] = {}
        if not isinstance(child, dict):
            if not create:
                return None
            raise ValueError("Cannot create field %r in %r" % (part, child))
        current = child
    return current


def _lookup(document: dict[str, Any], parts: list[str]) -> tuple[bool, Any]:
    parent = _walk(document, parts, create=False)
    if parent is None or parts[-1] not in parent:
        return False, None
    return True, parent[parts[-1]]


def _assign(document: dict[str, Any], parts: list[str], value: Any) -> None:
    _walk(document, parts, create=True)[parts[-1]] = copy.deepcopy(value)


def _op_set(document: dict[str, Any], parts: list[str], value: Any) -> None:
    _assign(document, parts, value)


def _op_unset(document: dict[str, Any], parts: list[str], value: Any) -> None:
    parent = _walk(document, parts, create=False)
    if parent is not None:
        parent.pop(parts[-1], None)


def _number(value: Any, operator: str) -> Any:
    if kind_of(value) != "number":
        raise ValueError("%s needs a number, got %r" % (operator, value))
    return value


def _op_inc(document: dict[str, Any], parts: list[str], value: Any) -> None:
    found, current = _lookup(document, parts)
    current = _number(current, "$inc") if found else 0
    _assign(document, parts, current + _number(value, "$inc"))


def _op_mul(document: dict[str, Any], parts: list[str], value: Any) -> None:
    found, current = _lookup(document, parts)
    current = _number(current, "$mul") if found else 0
    _assign(document, parts, current * _number(value, "$mul"))


def _op_min(document: dict[str, Any], parts: list[str], value: Any) -> None:
    found, current = _lookup(document, parts)
    if not found or sort_key(value) < sort_key(current):
        _assign(document, parts, value)


def _op_max(document: dict[str, Any], parts: list[str], value: Any) -> None:
    found, current = _lookup(document, parts)
    if not found or sort_key(value) > sort_key(current):
        _assign(document, parts, value)


def _op_rename(document: dict[str, Any], parts: list[str], value: Any) -> None:
    found, current = _lookup(document, parts)
    if found:
        _op_unset(document, parts, None)
        _assign(document, _update_parts(value), current)


def _op_current_date(document: dict[str, Any], parts: list[str], value: Any) -> None:
    _assign(document, parts, datetime.datetime.now(datetime.timezone.utc))


def _array_at(document: dict[str, Any], parts: list[str], operator: str) -> list:
    found, current = _lookup(document, parts)
    if not found or current is None:
        current = []
        _assign(document, parts, current)
        current = _lookup(document, parts)[1]
    if not isinstance(current, list):
        raise ValueError("%s needs a list at %r" % (operator, ".".join(parts)))
    return current


def _each(value: Any, allowed: tuple[str, ...]) -> tuple[list, dict]:
    if isinstance(value, Mapping) and "$each" in value:
        if any(key not in allowed for key in value) or not isinstance(
            value["$each"], list
        ):
            raise Unsupported()
        return value["$each"], dict(value)
    return [value], {}


def _op_push(document: dict[str, Any], parts: list[str], value: Any) -> None:
    items, modifiers = _each(value, ("$each", "$position", "$slice"))
    target = _array_at(document, parts, "$push")
    position = modifiers.get("$position")
    items = copy.deepcopy(items)
    if position is None:
        target.extend(items)
    else:
        target[position:position] = items
    limit = modifiers.get("$slice")
    if limit is not None:
        target[:] = target[:limit] if limit >= 0 else target[limit:]


def _op_add_to_set(document: dict[str, Any], parts: list[str], value: Any) -> None:
    items, _modifiers = _each(value, ("$each",))
    target = _array_at(document, parts, "$addToSet")
    for item in items:
        if not any(same(item, present) for present in target):
            target.append(copy.deepcopy(item))


def _op_pull(document: dict[str, Any], parts: list[str], value: Any) -> None:
    if isinstance(value, Mapping):
        raise Unsupported()  # a condition: neosqlite evaluates it
    _op_pull_all(document, parts, [value])


def _op_pull_all(document: dict[str, Any], parts: list[str], value: Any) -> None:
    found, current = _lookup(document, parts)
    if not found:
        return
    if not isinstance(current, list) or not isinstance(value, list):
        raise ValueError("$pull needs a list at %r" % ".".join(parts))
    current[:] = [item for item in current if not any(same(item, v) for v in value)]


def _op_pop(document: dict[str, Any], parts: list[str], value: Any) -> None:
    found, current = _lookup(document, parts)
    if not found or not current:
        return
    if not isinstance(current, list):
        raise ValueError("$pop needs a list at %r" % ".".join(parts))
    current.pop(0 if value == -1 else -1)


_UPDATERS = {
    "$set": _op_set,
    "$setOnInsert": _op_set,
    "$unset": _op_unset,
    "$inc": _op_inc,
    "$mul": _op_mul,
    "$min": _op_min,
    "$max": _op_max,
    "$rename": _op_rename,
    "$currentDate": _op_current_date,
    "$push": _op_push,
    "$addToSet": _op_add_to_set,
    "$pull": _op_pull,
    "$pullAll": _op_pull_all,
    "$pop": _op_pop,
}
