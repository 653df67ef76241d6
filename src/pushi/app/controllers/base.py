"""What every Pushi controller shares: the session's app and request bodies."""

from __future__ import annotations

import appier

from ...base import strict_json

RESERVED_PARAMS = ("sid", "session_id", "_sid")


class PushiController(appier.Controller):
    """Thin controllers: parse and check the request, hand the work to State."""

    def session_app(self) -> str:
        """The id of the app logged in on this session (401 when none)."""
        app_id = self.session.get("app_id") if self.session else None
        if not app_id:
            raise appier.AppierException(message="login required", code=401)
        return app_id

    def own_app(self, ident: str) -> str:
        """Checks that a route's app is the session's own (403 otherwise)."""
        app_id = self.session_app()
        if ident != app_id:
            raise appier.AppierException(message="not your app", code=403)
        return app_id

    def body(self) -> dict:
        """The request's fields: a JSON object body, else form and query fields."""
        limit = self.owner.settings.max_message
        data = self.request.get_data() or b""
        if len(data) > limit:
            raise appier.AppierException(message="request body too large", code=413)
        content_type = self.request.get_header("Content-Type") or ""
        if data and "json" in content_type:
            try:
                fields = strict_json.loads(data)
            except ValueError as error:
                raise appier.AppierException(
                    message="body is not valid JSON: %s" % error, code=400
                ) from None
            if not isinstance(fields, dict):
                raise appier.AppierException(message="body must be an object", code=400)
        else:
            fields = dict(self.request.params_s)
            fields.update(self.request.post_s)
        for name in RESERVED_PARAMS:
            fields.pop(name, None)
        return fields

    @staticmethod
    def required(fields: dict, *names: str) -> list:
        """The named string fields, or a 400 naming the missing ones."""
        missing = [n for n in names if not isinstance(fields.get(n), (str, int))]
        if missing:
            raise appier.AppierException(
                message="missing field(s): %s" % ", ".join(missing), code=400
            )
        return [str(fields[n]) for n in names]

    @staticmethod
    def integer(value, default: int, low: int, high: int) -> int:
        """A bounded integer parameter, or a 400."""
        if value in (None, ""):
            return default
        try:
            return max(low, min(high, int(value)))
        except (TypeError, ValueError):
            raise appier.AppierException(
                message="expected an integer", code=400
            ) from None
