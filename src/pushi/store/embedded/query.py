"""MongoDB filters and sorts compiled to SQL over neosqlite's table."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, NamedTuple

from .errors import Unsupported
from .values import is_object_id, kind_of

_FIELD_PART = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_NUMERIC = ("integer", "real")
_RANGES = {"$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}
_REGEX_FLAGS = "imsx"  # MongoDB's $options that Python's re reads the same


class _Target(NamedTuple):
    """Where a filter's field lives in SQL."""

    value: str
    """ The SQL expression of the value (``_id`` or ``json_extract``) """

    kind: str
    """ The SQL expression of its JSON type (empty for ``_id``) """

    path: str
    """ The JSON path literal, quoted (empty for ``_id``) """

    array: bool
    """ If the path has held a list in some document """

    is_id: bool
    """ If this is ``_id``, kept in its own indexed column """


class Compiler:
    """Translates a MongoDB filter into a SQL condition over neosqlite's table.

    Scalar comparisons carry a ``json_type`` guard so that, as in MongoDB, 1
    never matches ``true`` nor "1", and ranges never cross types. Paths known
    to hold lists in some document also match on any element (MongoDB array
    semantics); other paths compare as plain ``json_extract`` expressions,
    which the indexes of ``ensure_index`` serve.
    """

    def __init__(self, arrays: set[str]) -> None:
        self.arrays = arrays
        self.params: list[Any] = []

    def where(self, filter: Mapping[str, Any]) -> tuple[str, list]:
        if not isinstance(filter, Mapping):
            raise Unsupported()
        return self._document(filter), self.params

    def _document(self, filter: Mapping[str, Any]) -> str:
        clauses = [self._item(key, value) for key, value in filter.items()]
        return " AND ".join(clauses) if clauses else "1"

    def _item(self, key: str, value: Any) -> str:
        if key in ("$and", "$or", "$nor"):
            if not isinstance(value, (list, tuple)) or not value:
                raise Unsupported()
            parts = ["(%s)" % self._document(_mapping(item)) for item in value]
            if key == "$and":
                return "(%s)" % " AND ".join(parts)
            joined = "(%s)" % " OR ".join(parts)
            return joined if key == "$or" else "NOT IFNULL(%s, 0)" % joined
        if key.startswith("$"):
            raise Unsupported()
        target = self._target(key)
        if (
            isinstance(value, Mapping)
            and value
            and all(str(name).startswith("$") for name in value)
        ):
            return self._operators(target, value)
        return self._equal(target, value)

    def _target(self, field: str) -> _Target:
        if field == "_id":
            return _Target("_id", "", "", False, True)
        path = json_path(field)
        parts = field.split(".")
        for end in range(1, len(parts)):
            # below a list MongoDB matches inside every element: neosqlite's job
            if ".".join(parts[:end]) in self.arrays:
                raise Unsupported()
        literal = "'%s'" % path
        return _Target(
            extract(path),
            "json_type(data, %s)" % literal,
            literal,
            field in self.arrays,
            False,
        )

    def _operators(self, target: _Target, operators: Mapping[str, Any]) -> str:
        clauses = []
        for name, value in operators.items():
            if name == "$eq":
                clauses.append(self._equal(target, value))
            elif name == "$ne":
                clauses.append("NOT IFNULL(%s, 0)" % self._equal(target, value))
            elif name == "$in":
                clauses.append(self._in(target, value))
            elif name == "$nin":
                clauses.append("NOT IFNULL(%s, 0)" % self._in(target, value))
            elif name in _RANGES:
                clauses.append(self._compare(target, _RANGES[name], value))
            elif name == "$exists":
                clauses.append(self._exists(target, value))
            elif name == "$regex":
                clauses.append(self._regex(target, value, operators.get("$options")))
            elif name == "$options" and "$regex" in operators:
                continue
            elif name == "$not" and isinstance(value, Mapping) and value:
                inner = self._operators(target, value)
                clauses.append("NOT IFNULL(%s, 0)" % inner)
            elif name == "$all" and isinstance(value, (list, tuple)):
                parts = [self._equal(target, item) for item in value]
                clauses.append("(%s)" % " AND ".join(parts) if parts else "0")
            else:
                raise Unsupported()
        return "(%s)" % " AND ".join(clauses)

    def _any(self, target: _Target, scalar: str, element: Any) -> str:
        # a list-valued path matches when the value or any element matches;
        # element() builds the per-element condition (after the scalar one, so
        # the parameters stay in the order of the SQL text)
        if not target.array:
            return scalar
        return (
            "(%s OR (%s = 'array' AND EXISTS (SELECT 1 FROM json_each(data, %s) "
            "AS e WHERE %s)))" % (scalar, target.kind, target.path, element())
        )

    def _equal(self, target: _Target, value: Any) -> str:
        if target.is_id:
            return "_id = %s" % self._param(_id_value(value))
        if value is None:
            # missing or null, or (MongoDB) a list holding a null
            scalar = "%s IS NULL" % target.value
            return self._any(target, scalar, lambda: "e.type = 'null'")
        scalar = self._typed(target.value, target.kind, "=", value)
        return self._any(
            target, scalar, lambda: self._typed("e.value", "e.type", "=", value)
        )

    def _in(self, target: _Target, values: Any) -> str:
        if not isinstance(values, (list, tuple, set)):
            raise Unsupported()
        values = list(values)
        if not values:
            return "0"
        if target.is_id:
            marks = ", ".join(self._param(_id_value(value)) for value in values)
            return "_id IN (%s)" % marks
        scalars = [value for value in values if value is not None]
        kinds = {kind_of(value) for value in scalars}
        if target.array or "true" in kinds or "false" in kinds:
            return "(%s)" % " OR ".join(self._equal(target, value) for value in values)
        clauses = []
        if scalars:
            marks = ", ".join(self._param(value) for value in scalars)
            types = sorted({name for value in scalars for name in _types(value)})
            clauses.append(
                "(%s IN (%s) AND %s IN (%s))"
                % (
                    target.value,
                    marks,
                    target.kind,
                    ", ".join("'%s'" % t for t in types),
                )
            )
        if len(scalars) < len(values):
            clauses.append("%s IS NULL" % target.value)
        return "(%s)" % " OR ".join(clauses)

    def _compare(self, target: _Target, operator: str, value: Any) -> str:
        if target.is_id:
            return "_id %s %s" % (operator, self._param(_id_value(value)))
        if kind_of(value) not in ("number", "text"):
            raise Unsupported()
        scalar = self._typed(target.value, target.kind, operator, value)
        return self._any(
            target, scalar, lambda: self._typed("e.value", "e.type", operator, value)
        )

    def _exists(self, target: _Target, value: Any) -> str:
        if target.is_id:
            return "1" if value else "0"
        # json_type is 'null' for a null field and SQL NULL for a missing one
        return "%s IS %sNULL" % (target.kind, "NOT " if value else "")

    def _regex(self, target: _Target, pattern: Any, options: Any) -> str:
        if not isinstance(pattern, str) or not isinstance(options or "", str):
            raise Unsupported()
        flags = options or ""
        if any(letter not in _REGEX_FLAGS for letter in flags):
            raise Unsupported()
        pattern = ("(?%s)" % flags if flags else "") + pattern
        if target.is_id:
            return "REGEXP(%s, _id)" % self._param(pattern)
        scalar = "(%s = 'text' AND REGEXP(%s, %s))" % (
            target.kind,
            self._param(pattern),
            target.value,
        )
        return self._any(
            target,
            scalar,
            lambda: "(e.type = 'text' AND REGEXP(%s, e.value))" % self._param(pattern),
        )

    def _typed(self, expression: str, kind: str, operator: str, value: Any) -> str:
        # the comparison first, so an index on the expression can serve it
        value_kind = kind_of(value)
        if value_kind in ("true", "false"):
            if operator != "=":
                raise Unsupported()
            return "%s = '%s'" % (kind, value_kind)
        if value_kind not in ("number", "text"):
            raise Unsupported()
        types = ", ".join("'%s'" % name for name in _types(value))
        return "(%s %s %s AND %s IN (%s))" % (
            expression,
            operator,
            self._param(value),
            kind,
            types,
        )

    def _param(self, value: Any) -> str:
        self.params.append(value)
        return "?"


def _mapping(value: Any) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise Unsupported()
    return value


def _types(value: Any) -> tuple[str, ...]:
    return _NUMERIC if kind_of(value) == "number" else ("text",)


def _id_value(value: Any) -> str:
    # ids are kept as strings in neosqlite's _id column
    if isinstance(value, str):
        return value
    if is_object_id(value):
        return str(value)
    raise Unsupported()


def json_path(field: str) -> str:
    parts = field.split(".")
    if not all(_FIELD_PART.match(part) for part in parts):
        raise Unsupported()
    return "$." + field


def extract(path: str) -> str:
    # the exact text of the index expressions: SQLite matches them verbatim
    return "json_extract(data, '%s')" % path


def descending(direction: Any) -> bool:
    if isinstance(direction, str):
        return direction.lower() in ("-1", "desc", "descending")
    return direction == -1


def sort_keys(sort: Any) -> list[tuple[str, int]]:
    if not sort:
        return []
    if isinstance(sort, str):
        return [(sort, 1)]
    if isinstance(sort, Mapping):
        sort = list(sort.items())
    elif len(sort) == 2 and isinstance(sort[0], str) and not isinstance(sort[1], str):
        sort = [sort]
    keys = []
    for item in sort:
        if isinstance(item, str):
            keys.append((item, 1))
        else:
            keys.append((item[0], -1 if descending(item[1]) else 1))
    return keys


def order_by(keys: list[tuple[str, int]]) -> str | None:
    # None: a key the fast path cannot sort on
    terms = []
    for field, direction in keys:
        if field == "_id":
            expression = "_id"
        else:
            try:
                expression = extract(json_path(field))
            except Unsupported:
                return None
        terms.append(expression + (" DESC" if direction == -1 else " ASC"))
    return ", ".join(terms)
