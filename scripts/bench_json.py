#!/usr/bin/env python3
"""Cost of the input parser (`pushi.base.strict_json.loads`) against `json.loads`.

Times both on the same texts and prints the ratio (the design asks for at most
1.5x on ordinary input): a 63 KB client event (a page of records: strings,
numbers, nested objects, a few escapes), small client events as pushi.js sends
them, and texts built to reach each of the parser's slow checks (many brackets,
long numbers, surrogate escapes), so the worst a client can make it cost shows too.

Usage (from the repo root): python scripts/bench_json.py [--seconds 0.5] [--check]
`--check` exits 1 when an ordinary input is over 1.5x.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import timeit

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "src"))

from pushi.base import strict_json  # noqa: E402

LIMIT = 1.5


def record(index: int) -> dict:
    return {
        "id": index,
        "user": {"id": "user-%d" % index, "name": "User number %d" % index},
        "text": 'Hello, this is message %d of the page \u00e9\u4e16 "quoted"\n' % index,
        "score": index * 1.25,
        "tags": ["news", "sport", "tag-%d" % (index % 7)],
        "seen": index % 2 == 0,
        "reply": None,
    }


def big_message() -> str:
    records, index = [], 0
    while True:
        candidate = {
            "event": "client-page",
            "channel": "presence-room",
            "data": records,
        }
        text = json.dumps(candidate)
        if len(text) > 63 * 1024:
            records.pop()
            return json.dumps(candidate)
        records.append(record(index))
        index += 1


ORDINARY = {
    "63 KB client event": big_message(),
    "small client event": json.dumps(
        {"event": "client-typing", "channel": "private-chat", "data": {"typing": True}}
    ),
    "small client event (object data)": json.dumps(
        {"event": "client-x", "channel": "private-a", "data": {"k": "v"}}
    ),
    "small chat message": json.dumps(
        {
            "event": "client-message",
            "channel": "presence-room",
            "data": {"text": "hi there \U0001f600", "at": 1733112000123, "n": 3},
        }
    ),
    "subscribe": json.dumps(
        {
            "event": "pusher:subscribe",
            "data": {"channel": "private-orders", "auth": "a" * 64 + ":" + "b" * 64},
        }
    ),
    "emoji escapes (Python back end)": json.dumps(
        {"channel": "c", "data": {"text": "\U0001f600 ok " * 50}}
    ),
}

ADVERSARIAL = {
    "63 KB of small arrays": "[" + ",".join(["[[1],[2]]"] * 7000) + "]",
    "63 KB nested 32 deep, repeated": "["
    + ",".join(["[" * 31 + "]" * 31] * 1000)
    + "]",
    "63 KB of 19-digit integers": "[" + ",".join(["1234567890123456789"] * 3200) + "]",
    "63 KB of floats, 3-digit exponents": "[" + ",".join(["1.5e100"] * 8000) + "]",
    "63 KB of surrogate pairs": json.dumps(["\U0001f600" * 5000]),
    "63 KB of one-character escapes": json.dumps(['\n\t"\\' * 8000]),
    "63 KB of digits in strings": json.dumps(["1234567890123456789012"] * 2400),
    "63 KB of floats, a pair in 16 bytes": json.dumps([1.5, 2.25, "\U0001f600"] * 2350),
    "63 KB of brackets in strings": json.dumps(["[[[[{{{{]]]]}}}}"] * 3200),
}


def per_call(text: str, seconds: float) -> tuple[float, float]:
    """Seconds per call of json.loads and strict_json.loads, timed in turns
    (the best of many rounds each), so that load on the machine hits both."""
    timers = [
        timeit.Timer(lambda f=f: f(text)) for f in (json.loads, strict_json.loads)
    ]
    number, taken = timers[1].autorange()
    rounds = max(5, int(seconds / max(taken, 1e-9)))
    best = [float("inf"), float("inf")]
    for _ in range(rounds):
        for index, timer in enumerate(timers):
            best[index] = min(best[index], timer.timeit(number) / number)
    return best[0], best[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=0.5)
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    over = []
    print("%-36s %8s %10s %10s %6s" % ("input", "bytes", "json", "strict", "ratio"))
    for group, texts in (("ordinary", ORDINARY), ("adversarial", ADVERSARIAL)):
        print("-- %s" % group)
        for name, text in texts.items():
            assert strict_json.loads(text) == json.loads(text), name
            base, strict = per_call(text, args.seconds)
            ratio = strict / base
            print(
                "%-36s %8d %8.1fus %8.1fus %5.2fx"
                % (name, len(text), base * 1e6, strict * 1e6, ratio)
            )
            if group == "ordinary" and ratio > LIMIT:
                over.append(name)
    if over:
        print("over %.1fx: %s" % (LIMIT, ", ".join(over)))
    return 1 if args.check and over else 0


if __name__ == "__main__":
    sys.exit(main())
