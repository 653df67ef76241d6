"""The one error the Python proxy raises."""

from __future__ import annotations

import json

import appier


class PushiError(appier.exceptions.HTTPError):
    """A call to the Pushi server failed.

    `status` is the HTTP status of the answer (None when no answer came: the server
    could not be reached or answered something that is not Pushi), `code` the error
    code of the JSON body (the status when the body has none) and `message` the
    server's own words. It is an `appier.exceptions.HTTPError`, so code written for
    the 0.6.10 client that catches that type (and calls `read_json()`) still works.
    """

    def __init__(
        self,
        message: str,
        status: int | None = None,
        code: int | None = None,
        body: bytes | None = None,
        error: BaseException | None = None,
    ) -> None:
        appier.exceptions.BaseInternalError.__init__(self, message)
        self.status = status
        self.code = status if code is None else code
        self.error = error
        self._data = body if body is not None else b""

    def __str__(self) -> str:
        if self.status is None:
            return self.message
        return "%s (HTTP %d)" % (self.message, self.status)

    @classmethod
    def from_http(cls, error: appier.exceptions.HTTPError) -> "PushiError":
        """The error for an HTTP answer of status 4xx/5xx, read from its JSON body."""
        status = getattr(error, "code", None)
        try:
            body = error.read() or b""
        except Exception:
            body = b""
        if isinstance(body, str):
            body = body.encode("utf-8")
        try:
            fields = json.loads(body.decode("utf-8")) if body else None
        except ValueError:
            fields = None
        message, code = None, None
        if isinstance(fields, dict):
            message = fields.get("message") or fields.get("error")
            code = fields.get("code")
        if not isinstance(message, str) or not message:
            message = body.decode("utf-8", "replace").strip()[:200] or (
                "HTTP error %s" % status
            )
        if not isinstance(code, int) or isinstance(code, bool):
            code = None
        return cls(message, status=status, code=code, body=body, error=error)
