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
    # one surrogate escape per 6 bytes: past _SURROGATE_SPACING, the decoded
    # value is checked instead of the text
    good = json.dumps(["\U0001f600" * 200, "x"])
    assert good.count("\\ud") * strict_json._SURROGATE_SPACING > len(good)
    assert strict_json.loads(good) == json.loads(good)
    for lone in ("\\udbff", "\\udc00", "a\\ud800b"):
        with pytest.raises(ValueError, match="lone surrogate"):
            strict_json.loads(good.replace('"x"', '"%s"' % lone))


def test_surrogates_under_the_search_threshold_are_searched():
    # a few pairs in a long text: the regular expression decides
    padding = json.dumps(["word"] * 2000)
    good = '{"p":%s,"e":"\\ud83d\\ude00 \\uD83D\\uDE00"}' % padding
    assert good.count("\\u") * strict_json._SURROGATE_SPACING < len(good)
    assert strict_json.loads(good) == json.loads(good)
    for bad in ("\\ud83d \\ude00", "\\ude00\\ud83d", "\\ud83d\\\\ude00"):
        with pytest.raises(ValueError, match="lone surrogate"):
            strict_json.loads(good.replace("\\ud83d\\ude00", bad))


@pytest.mark.parametrize(
    "text",
    [
        # the prefilter: 32 openings cannot nest deeper than 32, 33 are scanned
        nested(32),
        "[" + nested(31) + "," + nested(1) + "]",
        # many brackets inside strings, with escaped quotes and backslashes
        json.dumps(["[" * 40 + '\\"' + "{" * 40, "\\", "]]", nested(30)]),
        # few innermost pairs: measured by runs of brackets
        "[" + ",".join([nested(31)] * 300) + "]",
        # many innermost pairs: measured by passes first
        "[" + ",".join(["[[1],[2],{}]"] * 300) + "," + nested(31) + "]",
    ],
)
def test_depth_32_is_accepted_on_every_path(text):
    assert strict_json.loads(text) == json.loads(text)


@pytest.mark.parametrize(
    "text",
    [
        nested(33),
        "[" + nested(32) + "," + nested(1) + "]",
        '["%s\\"",%s,"%s"]' % ("[" * 40, nested(33), "]" * 40),
        "[" + ",".join([nested(31)] * 300) + "," + nested(32) + "]",
        "[" + ",".join(["[[1],[2],{}]"] * 300) + "," + nested(32) + "]",
        "[" + ",".join([nested(31)] * 300) + "," + objects(33) + "]",
    ],
)
def test_depth_33_is_refused_on_every_path(text):
    with pytest.raises(ValueError, match="nested too deep"):
        strict_json.loads(text)


def test_space_around_the_value_and_what_follows_it():
    assert strict_json.loads(' \t\r\n{"a": [1]} \n') == {"a": [1]}
    assert strict_json.loads(b"[1]\n") == [1]
    for text in ("", " ", "[1] [2]", "[1],", "[1]\x0c", "x[1]", "[1]\u00a0"):
        with pytest.raises(ValueError):
            strict_json.loads(text)


def test_integers_are_checked_when_long_digits_are_in_a_string():
    text = '{"id": "%s", "n": %d}' % ("1" * 30, 2**63)
    with pytest.raises(ValueError, match="64-bit"):
        strict_json.loads(text)
    ok = '{"id": "%s", "n": %d, "f": 1.5}' % ("1" * 30, 2**63 - 1)
    assert strict_json.loads(ok) == json.loads(ok)


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


def test_surrogates_among_floats_are_searched_and_still_checked():
    # dense escapes, but at most one per float: the regular expression decides
    good = json.dumps([1.5, 2.5, "\U0001f600"] * 200)
    assert good.count("\\") * strict_json._SURROGATE_SPACING > len(good)
    assert good.count("\\") <= good.count(".")
    assert strict_json.loads(good) == json.loads(good)
    with pytest.raises(ValueError, match="lone surrogate"):
        strict_json.loads(good.replace("\\ude00", "\\u0041", 1))
