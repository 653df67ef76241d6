"""Appier work that depends only on code, done once instead of on every request.

A REST publish spends most of its time in Appier's dispatch, and a good part
of that recomputes facts that never change while the process runs: the
underscore form of a class name (for each of the five observer events of a
request) and the argument list of the action method (twice per request).
Both are pure functions of their argument, so remembering them changes no
behaviour. `install()` is idempotent and called by `PushiApp` before Appier
serves anything.
"""

from __future__ import annotations

import functools

import appier.legacy
import appier.util

_installed = False

KNOWN_MAX = 4096
""" Argument lists remembered at most (code objects: far fewer in practice) """


def install() -> None:
    """Replaces Appier's per-request pure computations with remembered ones."""
    global _installed
    if _installed:
        return
    _installed = True
    appier.util.camel_to_underscore = functools.lru_cache(maxsize=4096)(
        appier.util.camel_to_underscore
    )
    appier.legacy.getargspec = _remembered_argspec(appier.legacy.getargspec)


def _remembered_argspec(getargspec):
    # Keyed on what the argument list is made of, the code and the defaults of
    # the plain function: a bound method is a new object on every attribute
    # access, and closures made at run time share their code, so the table
    # stays as small as the program. Anything else is computed as before.
    known: dict = {}

    def remembered(func):
        plain = getattr(func, "__func__", func)
        code = getattr(plain, "__code__", None)
        if code is None or hasattr(plain, "__signature__"):
            return getargspec(func)
        key = (code, getattr(plain, "__defaults__", None))
        try:
            return known[key]
        except KeyError:
            if len(known) >= KNOWN_MAX:
                known.clear()
            spec = known[key] = getargspec(func)
            return spec
        except TypeError:  # unhashable defaults
            return getargspec(func)

    remembered.known = known  # type: ignore[attr-defined]
    return remembered
