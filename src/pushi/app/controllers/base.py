"""What every Pushi controller shares: the session's app and request fields."""

from __future__ import annotations

import appier

from ...base import strict_json

RESERVED_PARAMS = ("sid", "session_id", "_sid")
""" Session token parameters: never a field of the record a call makes """

NOT_AUTHENTICATED = "User not authenticated"
""" Appier's message for a missing session (the published server's 403) """


class PushiController(appier.Controller):
    """Thin controllers: parse and check the request, hand the work on."""

    def session_app(self) -> str:
        """The ident of the app logged in on this session, else a 403.

        A session without an app (none, unknown, logged out, or an admin
        sign-in) never reaches app data: every app route is scoped to one app.
        """
        session = self.session
        app_id = session.get("app_id") if session else None
        if not app_id:
            raise appier.AppierException(message=NOT_AUTHENTICATED, code=403)
        return app_id

    def json_body(self) -> dict:
        """The request body as a JSON object (strict parser), else a 400.

        Key order is kept: a publish echoes the body as it came.
        """
        data = self.request.get_data() or b""
        if not data:
            return {}
        try:
            fields = strict_json.loads(data)
        except ValueError as error:
            raise appier.OperationalError(
                message="Body is not valid JSON: %s" % error, code=400
            ) from None
        if not isinstance(fields, dict):
            raise appier.OperationalError(
                message="Body must be a JSON object", code=400
            )
        return fields

    def fields(self) -> dict:
        """The request's fields: query, then form fields, then a JSON object body.

        Later sources win. Session tokens are left out.
        """
        fields = {
            name: value
            for name, value in self.request.params_s.items()
            if name not in RESERVED_PARAMS
        }
        fields.update(
            (name, value)
            for name, value in self.request.post_s.items()
            if name not in RESERVED_PARAMS
        )
        # no Content-Type reads as JSON, as Appier itself assumes
        content_type = self.request.get_header("Content-Type") or "application/json"
        if "json" in content_type:
            body = self.json_body()
            fields.update(
                (name, value)
                for name, value in body.items()
                if name not in RESERVED_PARAMS
            )
        return fields

    @staticmethod
    def integer(value, default: int, low: int, high: int) -> int:
        """A bounded integer parameter (clamped), or a 400 when not an integer."""
        if value in (None, ""):
            return default
        if isinstance(value, bool):
            value = None  # true/false are no counts
        try:
            number = int(value)
        except (TypeError, ValueError, OverflowError):
            raise appier.OperationalError(
                message="Expected an integer, got %r" % (value,), code=400
            ) from None
        return max(low, min(high, number))
