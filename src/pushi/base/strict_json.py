"""JSON as every client and store can read it back: the one parser for input.

Python's json module reads more than JSON: NaN and Infinity, numbers that overflow
to infinity, integers of any size, lone UTF-16 surrogates, any nesting. Browsers
cannot parse the first two when echoed, BSON cannot encode the others, SQLite
refuses deep documents; an event accepted with them would be delivered broken or
silently lost by the store. Input is refused up front instead.

Cost: the C parser does the work (its scanner called directly, without the
Python wrapper of `json.loads`), with cheap hooks: `parse_constant` only runs for
NaN and Infinity, which are refused; `parse_float` refuses an overflow to
infinity; `parse_int` (the 64-bit range) is only given for texts with 19 digits in
a row. What the parser cannot check is checked on the text, by C-level scans that
only run when the text could hold the fault:

- depth: at most 32 `[`/`{` in the text cannot nest deeper than 32; otherwise the
  brackets outside strings are stripped to a skeleton, whose innermost pairs are
  removed one level per pass while that shrinks it much, and whose remaining runs
  of `[` and `]` are then summed up (`re.findall`, `itertools.accumulate`);
- lone surrogates: only when the text holds a `\\ud` escape; a few are searched
  with one regular expression, many (a text mostly of escaped emoji) are checked
  on the decoded value, serialised once by the C encoder.

So a parse costs `json.loads` plus a few `str.count`-like scans (see
scripts/bench_json.py), and a text built to reach a slow check pays C-level passes
over it or one C-level serialisation, never a Python walk over its values.
"""

from __future__ import annotations

import itertools
import json
import json.encoder
import operator
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
# digits as 0, D as d, curly brackets as square ones: `0` x 19 is a long
# number, `\\ud` maybe a surrogate escape, `[` counts the openings
_SCAN = bytes.maketrans(b"123456789D{}", b"000000000d[]")
_LONG_DIGITS = b"0" * 19
# at most one escape per this many bytes: searched with the regular expression;
# more: the decoded value is serialised (see _lone_surrogate)
_SURROGATE_SPACING = 16
# runs of openings and closings in a skeleton of brackets
_RUNS = re.compile(rb"\[+|\]+")
# a skeleton with fewer innermost pairs than one per this many bytes is measured
# by its runs (few of them) rather than by more passes over it
_LEAF_SPACING = 32


def _refuse_constant(name: str) -> typing.NoReturn:
    raise ValueError("%s is not JSON" % name)


def _finite_float(text: str) -> float:
    # called by the C parser for every number with a fraction or an exponent
    # (about 0.1 us each, cheaper than a scan for long exponents on every text)
    value = float(text)
    if value - value:
        # inf - inf is nan, the only difference that is not 0.0
        raise ValueError("number out of range")
    return value


def _bounded_int(text: str) -> int:
    # called for every integer, but only for texts with 19 digits in a row
    value = int(text)
    if -INT64 <= value < INT64:
        return value
    raise ValueError("integer out of 64-bit range")


_decoder = json.JSONDecoder(parse_constant=_refuse_constant, parse_float=_finite_float)
_bounded_decoder = json.JSONDecoder(
    parse_constant=_refuse_constant, parse_float=_finite_float, parse_int=_bounded_int
)
_SPACE = " \t\n\r"


def _decode(text: str, decoder: json.JSONDecoder) -> typing.Any:
    """`decoder.decode` without its Python wrapper (two regular-expression
    matches per call, most of the cost of a small message): the C scanner is
    called directly, the wrapper only for what the scanner leaves (leading
    space, anything after the value, an error to report)."""
    try:
        value, end = decoder.scan_once(text, 0)
    except StopIteration:
        return decoder.decode(text)
    if end != len(text) and text[end:].strip(_SPACE):
        return decoder.decode(text)
    return value


def _outside_strings(masked: bytes) -> bytes:
    """What lies outside the strings of valid JSON whose escapes are masked."""
    if b'"' not in masked:
        return masked
    return b"".join(masked.split(b'"')[::2])


def _depth_of_runs(brackets: bytes) -> int:
    """The nesting of a non-empty skeleton of brackets, from its runs: after
    the n-th run of `[` it is the sum of the runs of `[` so far less the runs of
    `]` before it."""
    lengths = list(map(len, _RUNS.findall(brackets)))
    opened = lengths[::2]
    closed = itertools.chain((0,), lengths[1::2])
    return max(itertools.accumulate(map(operator.sub, opened, closed)))


def _too_deep(masked: bytes) -> bool:
    """Whether the brackets outside strings nest deeper than MAX_DEPTH (`{}`
    already as `[]`)."""
    brackets = masked.translate(None, _ONLY_BRACKETS)
    # strings without brackets leave `""`; taking two adjacent quotes out keeps
    # the rest alternating (open, close), so what is left splits as strings
    brackets = _outside_strings(brackets.replace(b'""', b""))
    # valid JSON: every bracket is matched; each pass removes exactly the
    # innermost level (bytes.replace does not rescan what it joined), so the
    # nesting is the passes made plus that of what is left
    passes = 0
    while brackets:
        if brackets.count(b"[") <= MAX_DEPTH - passes:
            return False
        if passes == MAX_DEPTH:
            return True
        if brackets.count(b"[]") * _LEAF_SPACING < len(brackets):
            # few innermost pairs: a pass would remove little, and there are
            # few runs (two per innermost pair at most) to sum up instead
            return passes + _depth_of_runs(brackets) > MAX_DEPTH
        brackets = brackets.replace(b"[]", b"")
        passes += 1
    return False


def _masked(encoded: bytes, quotes: bool) -> bytes:
    """The text with escaped backslashes (and quotes) masked: every `\\` left
    starts an escape (and every `"` left opens or closes a string)."""
    if b"\\\\" in encoded:
        encoded = encoded.replace(b"\\\\", b"__")
    if quotes and b'\\"' in encoded:
        encoded = encoded.replace(b'\\"', b"__")
    return encoded


def _structure(encoded: bytes, escapes: bool) -> bytes:
    """The brackets (`{}` as `[]`) and the quotes that open and close strings,
    with, if the text has `escapes`, the characters of every escape but its hex
    digits (`\\ud` stays), escaped backslashes and quotes masked."""
    if not escapes:
        # no escape (most texts a browser sends): every quote is one
        return encoded.translate(_STRUCTURE_MAP, _ONLY_BRACKETS)
    return _masked(encoded.translate(_STRUCTURE_MAP, _NOT_STRUCTURE), True)


def _lone_surrogate(value: typing.Any, encoded: bytes, escapes: int) -> bool:
    """Whether a string escape is a surrogate without its other half (the
    text holds at most `escapes` escapes)."""
    # the regular expression costs about 0.12 us an escape, the C encoder about
    # what decoding cost, but twice that for floats (their repr is slow): so
    # the escapes are searched when sparse, or at most one per float
    if escapes * _SURROGATE_SPACING <= len(encoded) or escapes <= encoded.count(b"."):
        return _LONE_SURROGATE.search(_masked(encoded, False)) is not None
    # escapes everywhere: the decoder paired what it could, so any surrogate
    # left in a decoded string is a lone one, which UTF-8 cannot encode
    try:
        _serialise(value).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _unserialisable(value: typing.Any) -> typing.NoReturn:
    raise TypeError("%r is not JSON" % type(value))


if json.encoder.c_make_encoder is not None:
    # the C encoder itself, made once: `json.dumps` with options builds a new
    # encoder per call, most of the cost of a small value
    _c_encoder = json.encoder.c_make_encoder(
        None,
        _unserialisable,
        json.encoder.encode_basestring,
        None,
        ":",
        ",",
        False,
        False,
        True,
    )

    def _serialise(value: typing.Any) -> str:
        return "".join(_c_encoder(value, 0))

else:  # pragma: no cover (Python without the C accelerator)

    def _serialise(value: typing.Any) -> str:
        return json.dumps(value, ensure_ascii=False, check_circular=False)


def loads(text: str | bytes) -> typing.Any:
    """Decodes JSON text, raising ValueError for anything unfit (see the module)."""
    if type(text) is not str:
        # strict: an encoded surrogate is no character either
        text = bytes(text).decode(json.detect_encoding(text))
    elif text.startswith("\ufeff"):
        raise ValueError("Unexpected UTF-8 BOM")
    # strict: a raw lone surrogate has no UTF-8 form either
    encoded = text.encode("utf-8")
    scan = encoded.translate(_SCAN)
    # 19 digits in a row (maybe in a string): the integers are checked too
    long_digits = scan.find(_LONG_DIGITS) >= 0
    try:
        value = _decode(text, _bounded_decoder if long_digits else _decoder)
    except RecursionError:
        raise ValueError("nested too deep") from None
    # no backslash: no escape, so no surrogate escape either (most texts a
    # browser sends); the skeleton of brackets, when made, is a smaller text to
    # look for surrogate escapes in (it keeps every `\\ud`)
    escapes = b"\\" in encoded
    structure = None
    if scan.count(b"[") > MAX_DEPTH:
        structure = _structure(encoded, escapes)
        if _too_deep(structure):
            raise ValueError("nested too deep")
    if escapes:
        hint = scan if structure is None else structure
        if hint.find(b"\\ud") >= 0 and _lone_surrogate(
            value, encoded, hint.count(b"\\")
        ):
            raise ValueError("lone surrogate in a string")
    return value
