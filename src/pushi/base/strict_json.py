"""JSON as every client and store can read it back: the one parser for input.

Python's json module reads more than JSON: NaN and Infinity, numbers that overflow
to infinity, integers of any size, lone UTF-16 surrogates, any nesting. Browsers
cannot parse the first two when echoed, BSON cannot encode the others, SQLite
refuses deep documents; an event accepted with them would be delivered broken or
silently lost by the store. Input is refused up front instead.

Cost: the C parser does the work, with one hook (`parse_constant`) that only runs
for NaN and Infinity, which are refused. What it cannot check is checked on the
text, by C-level scans that only run when the text could hold the fault:

- depth: at most 32 `[`/`{` in the text cannot nest deeper than 32; otherwise the
  brackets outside strings are stripped to a skeleton whose nesting is measured by
  removing innermost pairs, one level per pass, at most 32 passes;
- numbers: a 64-bit overflow needs 19 digits in a row, an overflow to infinity a
  19-digit mantissa or a 3-digit exponent; only then are the long integers outside
  strings converted and the decoded value serialised with `allow_nan=False`;
- lone surrogates: only when the text holds a `\\ud8`-`\\udf` escape, the valid
  pairs and other escapes are removed and any escape left is a lone one.

So a parse costs `json.loads` plus a few `str.count`-like scans (see
scripts/bench_json.py), and a text built to reach a slow check pays one C-level
regular-expression pass over it, never a Python walk over its values.
"""

from __future__ import annotations

import json
import math
import re
import typing

MAX_DEPTH = 32
""" Nesting an input may have """

INT64 = 2**63

# a surrogate escape without its other half: a high one not followed by a low
# one, a low one not preceded by a high one (escaped backslashes masked first)
_LONE_SURROGATE = re.compile(
    rb"\\u[dD](?:[89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F])"
    rb"|[c-fC-F](?<!\\u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F]))"
)
# brackets, quotes, backslashes and the letters that follow a backslash in an
# escape: every escape keeps its second character, so escapes still pair
_ESCAPE_LETTERS = b"/bfnrtudD"
_STRUCTURE = b'[]{}"\\' + _ESCAPE_LETTERS
# ... with curly brackets as square ones and D as d (`\\ud`: maybe a surrogate)
_STRUCTURE_MAP = bytes.maketrans(b"{}D", b"[]d")
_NOT_STRUCTURE = bytes(b for b in range(256) if b not in _STRUCTURE)
_ONLY_BRACKETS = bytes(b for b in range(256) if b not in b'[]{}"')
# digits as 0, E and + as e, D as d, curly brackets as square ones: `0` x 19 is
# a long number, `e000` a long exponent (`e+400`: `ee000`), `\\ud` maybe a
# surrogate escape, `[` counts the openings
_SCAN = bytes.maketrans(b"123456789E+D{}", b"000000000eed[]")
_FEW_SURROGATES = 64
_LONG_DIGITS = b"0" * 19
_LONG_EXPONENT = b"e000"


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


_decode = json.JSONDecoder(parse_constant=_refuse_constant).decode


def _outside_strings(masked: bytes) -> bytes:
    """What lies outside the strings of valid JSON whose escapes are masked."""
    return b"".join(masked.split(b'"')[::2])


def _too_deep(masked: bytes) -> bool:
    """Whether the brackets outside strings nest deeper than MAX_DEPTH (`{}`
    already as `[]`)."""
    brackets = masked.translate(None, _ONLY_BRACKETS)
    # strings without brackets leave `""`; taking two adjacent quotes out keeps
    # the rest alternating (open, close), so what is left splits as strings
    brackets = brackets.replace(b'""', b"")
    if b'"' in brackets:
        brackets = _outside_strings(brackets)
    if brackets.count(b"[") <= MAX_DEPTH:
        return False
    # valid JSON: every bracket is matched; each pass removes exactly the
    # innermost level (bytes.replace does not rescan what it joined)
    for _ in range(MAX_DEPTH):
        brackets = brackets.replace(b"[]", b"")
        if not brackets:
            return False
    return True


def _masked(encoded: bytes, quotes: bool) -> bytes:
    """The text with escaped backslashes (and quotes) masked: every `\\` left
    starts an escape (and every `"` left opens or closes a string)."""
    if b"\\\\" in encoded:
        encoded = encoded.replace(b"\\\\", b"__")
    if quotes and b'\\"' in encoded:
        encoded = encoded.replace(b'\\"', b"__")
    return encoded


def _lone_surrogate(encoded: bytes) -> bool | None:
    """Whether a string escape is a surrogate without its other half.

    None: too many surrogate escapes to search them one by one (the caller
    checks the decoded strings instead).
    """
    masked = _masked(encoded, False)
    if len(masked) > _FEW_SURROGATES * 12:
        escapes = masked.count(b"\\ud") + masked.count(b"\\uD")
        if not escapes:
            return False
        if escapes > _FEW_SURROGATES:
            return None
    return _LONE_SURROGATE.search(masked) is not None


def loads(text: str | bytes) -> typing.Any:
    """Decodes JSON text, raising ValueError for anything unfit (see the module)."""
    if type(text) is not str:
        # strict: an encoded surrogate is no character either
        text = bytes(text).decode(json.detect_encoding(text))
    elif text.startswith("\ufeff"):
        raise ValueError("Unexpected UTF-8 BOM")
    try:
        value = _decode(text)
    except RecursionError:
        raise ValueError("nested too deep") from None
    # strict: a raw lone surrogate has no UTF-8 form either
    encoded = text.encode("utf-8")
    scan = encoded.translate(_SCAN)
    if scan.find(b"\\ud") >= 0:
        lone = _lone_surrogate(encoded)
        if lone is None:
            try:
                json.dumps(value, ensure_ascii=False).encode("utf-8")
            except UnicodeEncodeError:
                lone = True
        if lone:
            raise ValueError("lone surrogate in a string")
    if scan.count(b"[") > MAX_DEPTH and _too_deep(
        _masked(encoded.translate(_STRUCTURE_MAP, _NOT_STRUCTURE), True)
    ):
        raise ValueError("nested too deep")
    if scan.find(_LONG_DIGITS) >= 0 or scan.find(_LONG_EXPONENT) >= 0:
        # maybe a number out of range: look outside strings, then decode again
        # with the checks the long numbers need (rare: only such texts pay)
        outside = _outside_strings(_masked(encoded, True)).translate(_SCAN)
        long_digits = outside.find(_LONG_DIGITS) >= 0
        if long_digits or outside.find(_LONG_EXPONENT) >= 0:
            json.loads(
                text,
                parse_constant=_refuse_constant,
                parse_int=_bounded_int if long_digits else None,
                parse_float=_finite_float,
            )
    return value
