"""Appier's remembered computations answer what the originals answer."""

from __future__ import annotations

import inspect

import appier.legacy
import appier.util

from pushi.app import speedups


def _original_argspec(func):
    return appier.legacy.ArgSpec(*inspect.getfullargspec(func)[:4])


class Handler:
    def route(self, channel, count=10):
        return channel, count


def test_argspec_of_a_bound_method_is_its_functions():
    speedups.install()
    first, second = Handler().route, Handler().route
    assert appier.legacy.getargspec(first) == _original_argspec(first)
    assert appier.legacy.getargspec(second) == _original_argspec(Handler.route)


def test_closures_sharing_code_with_other_defaults_keep_their_own_argspec():
    speedups.install()

    def make(default):
        def callback(value, limit=default):
            return value, limit

        return callback

    small, large = make(1), make(1000)
    assert appier.legacy.getargspec(small).defaults == (1,)
    assert appier.legacy.getargspec(large).defaults == (1000,)


def test_callables_without_code_are_still_described():
    speedups.install()
    described = appier.legacy.getargspec(dict.get)
    assert described == _original_argspec(dict.get)


def test_the_remembered_table_stays_bounded():
    speedups.install()
    for index in range(speedups.KNOWN_MAX + 10):
        # distinct code objects, as exec'd code would make
        namespace: dict = {}
        exec("def f%d(a, b=%d): pass" % (index, index), namespace)
        function = namespace["f%d" % index]
        assert appier.legacy.getargspec(function).defaults == (index,)
    assert 0 < len(appier.legacy.getargspec.known) <= speedups.KNOWN_MAX


def test_camel_to_underscore_answers_as_before():
    speedups.install()
    assert appier.util.camel_to_underscore("PushiApp") == "pushi_app"
    assert appier.util.camel_to_underscore("HTTPServer", separator="-") == (
        "http-server"
    )
    speedups.install()  # idempotent: still one layer of remembering
    assert appier.util.camel_to_underscore("PushiApp") == "pushi_app"
