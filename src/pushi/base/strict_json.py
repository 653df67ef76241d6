"""JSON as every client and store can read it back: the one parser for input.

Python's json module reads more than JSON: NaN and Infinity, numbers that overflow
to infinity, integers of any size, lone UTF-16 surrogates, any nesting. Browsers
cannot parse the first two when echoed, BSON cannot encode the others, SQLite
refuses deep documents; an event accepted with them would be delivered broken or
silently lost by the store. Input is refused up front instead.
"""

from __future__ import annotations

import json
import math
import re
import typing

MAX_DEPTH = 32
""" Nesting an input may have """

INT64 = 2**63

_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _refuse_constant(name: str) -> typing.NoReturn:
    raise ValueError("%s is not JSON" % name)


def _bounded_int(text: str) -> int:
    value = int(text)
    if not -INT64 <= value < INT64:
        raise ValueError("integer out of 64-bit range")
    return value


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError("number out of range")
    return value


def depth(value: typing.Any) -> int:
    """How deeply lists and objects nest in a decoded value (iteratively)."""
    deepest, pending = 0, [(value, 1)]
    while pending:
        value, level = pending.pop()
        if isinstance(value, (dict, list)):
            deepest = max(deepest, level)
            children = value.values() if isinstance(value, dict) else value
            pending.extend((child, level + 1) for child in children)
    return deepest


def loads(text: str | bytes) -> typing.Any:
    """Decodes JSON text, raising ValueError for anything unfit (see the module)."""
    try:
        value = json.loads(
            text,
            parse_constant=_refuse_constant,
            parse_int=_bounded_int,
            parse_float=_finite_float,
        )
    except RecursionError:
        raise ValueError("nested too deep") from None
    if depth(value) > MAX_DEPTH:
        raise ValueError("nested too deep")
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    if _SURROGATE_ESCAPE.search(text):
        # escapes of surrogates are fine in pairs; a lone one cannot be UTF-8
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("lone surrogate in a string") from None
    return value
