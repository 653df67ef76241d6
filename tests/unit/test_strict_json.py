"""strict_json.loads: every refusal and every acceptance next to it.

Each check of the parser runs only when the text could hold its fault (brackets,
long numbers, surrogate escapes), so each case is also tried where its trigger
sits inside a string, where it must be accepted.
"""

from __future__ import annotations

import json

import pytest

from pushi.base import strict_json


def nested(depth: int, open_: str = "[", close: str = "]") -> str:
    return open_ * depth + close * depth


def objects(depth: int) -> str:
    return '{"k":' * (depth - 1) + "{}" + "}" * (depth - 1)


REFUSED = {
    "nan": '{"a":NaN}',
    "infinity": "[Infinity]",
    "minus-infinity": "[-Infinity]",
    "float-overflow": "[1e400]",
    "float-overflow-plus": "[1E+400]",
    "float-overflow-mantissa": "[" + "9" * 400 + ".5]",
    "float-overflow-long-mantissa-exp": "[" + "9" * 300 + "e10]",
    "int-2**63": "[%d]" % 2**63,
    "int-minus-2**63-1": "[%d]" % (-(2**63) - 1),
    "int-2**64-in-object": '{"n":%d}' % 2**64,
    "lone-high": '["x\\ud800y"]',
    "lone-low": '["x\\udc00"]',
    "lone-high-at-end": '["\\uD83D"]',
    "high-high-low": '["\\ud83d\\ud83d\\ude00"]',
    "low-then-high": '["\\ude00\\ud83d"]',
    "lone-in-key": '{"k\\udfff":1}',
    "lone-after-escaped-backslash": '["\\\\\\ud800"]',
    "pair-split-by-escaped-backslash": '["\\ud800\\\\\\udc00"]',
    "many-pairs-one-lone": json.dumps(["\U0001f600" * 100]).replace(
        "]", ', "\\ud800"]'
    ),
    "depth-33": nested(33),
    "depth-33-objects": objects(33),
    "depth-33-mixed": '{"a":' + "[" * 32 + "]" * 32 + "}",
    "depth-5000": nested(5000),
    "depth-33-among-shallow": "[" + ",".join(["[[1]]"] * 40) + "," + nested(32) + "]",
    "depth-33-with-bracket-strings": '["]]]]",' + nested(32) + ',"[[["]',
    "raw-lone-surrogate-bytes": b'["\xed\xa0\x80"]',
    "bom-str": '\ufeff{"a":1}',
    "not-json": "{'a': 1}",
    "trailing": '{"a":1} x',
}

ACCEPTED = {
    "int-2**63-1": "[%d]" % (2**63 - 1),
    "int-minus-2**63": "[%d]" % -(2**63),
    "long-digits-in-string": '["%s", 1]' % ("9" * 40),
    "long-exponent-in-string": '["1e400"]',
    "float-max": "[1.7976931348623157e308]",
    "float-underflow": "[1e-400]",
    "float-long-fraction": "[0.%s]" % ("1" * 400),
    "float-small-exponent-3-digits": "[1e100, 1E+200, 0.000001e305]",
    "nan-in-string": '["NaN", "Infinity"]',
    "pair": '["\\ud83d\\ude00"]',
    "pair-upper": '["\\uD83D\\uDE00"]',
    "bmp-escapes": '["\\u00e9\\ud7ff\\ue000"]',
    "escaped-backslash-then-ud800-text": '["\\\\ud800"]',
    "many-pairs": json.dumps(["\U0001f600" * 100]),
    "depth-32": nested(32),
    "depth-32-objects": objects(32),
    "depth-32-many": "[" + ",".join([nested(31)] * 50) + "]",
    "brackets-in-strings": json.dumps(["[" * 100, "{" * 100, "]" * 50]),
    "brackets-and-escaped-quotes": json.dumps(['"[[[' * 40, '\\"]' * 40]),
    "json-in-a-string": json.dumps({"data": json.dumps({"k": [[1, 2]] * 40})}),
    "bytes-utf8": '{"a":"é"}'.encode(),
    "bytes-bom": b'\xef\xbb\xbf{"a":1}',
    "bytes-utf16": '{"a":[1]}'.encode("utf-16"),
    "empty-object": "{}",
    "plain": '{"event":"client-x","channel":"c","data":{"n":1,"t":true,"z":null}}',
}


@pytest.mark.parametrize("text", list(REFUSED.values()), ids=list(REFUSED))
def test_refused(text):
    with pytest.raises(ValueError):
        strict_json.loads(text)


@pytest.mark.parametrize("text", list(ACCEPTED.values()), ids=list(ACCEPTED))
def test_accepted_as_json_reads_it(text):
    assert strict_json.loads(text) == json.loads(text)


def test_surrogates_past_the_search_threshold_are_still_checked():
    many = strict_json._FEW_SURROGATES + 1
    good = json.dumps(["\U0001f600" * many, "x"])
    assert strict_json.loads(good) == json.loads(good)
    bad = good.replace('"x"', '"\\udbff"')
    with pytest.raises(ValueError):
        strict_json.loads(bad)


def test_refusals_say_why():
    for text, why in (
        (nested(40), "nested too deep"),
        ("[1e999]", "number out of range"),
        ("[%d]" % 2**70, "integer out of 64-bit range"),
        ('["\\ud800"]', "lone surrogate"),
        ("[NaN]", "NaN is not JSON"),
    ):
        with pytest.raises(ValueError, match=why):
            strict_json.loads(text)
