"""The base handlers: JSON in and out, one error shape, sessions (bearer or cookie), roles.

Dependencies arrive through ``initialize(**kwargs)`` from the one URL table in
``routes.py``. Runs on the console IO loop.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

import tornado.web

from opsconsole import log
from opsconsole.auth.authenticator import Authenticator
from opsconsole.auth.principal import Principal, Role
from opsconsole.auth.sessions import SessionInfo
from opsconsole.auth.sources import RequestRate
from opsconsole.config import Settings
from opsconsole.diagnostics import render
from opsconsole.diagnostics.service import Diagnostics
from opsconsole.errors import (
    AuditError,
    AuthError,
    BudgetError,
    BusyError,
    DiagnosticsError,
    InvalidRequestError,
    NotFoundError,
    StateError,
)
from opsconsole.repl.factory import ReplFactory
from opsconsole.transport.admission import Admission
from opsconsole.transport.http import json_body
from opsconsole.transport.http.request_gate import RATE_CODE, RATE_MESSAGE, credentials

_log = log.get("transport")
T = TypeVar("T")
_DIAG_STATUS: dict[type, tuple[int, str]] = {
    BusyError: (429, "busy"),
    InvalidRequestError: (400, "bad_request"),
    NotFoundError: (404, "not_found"),
    StateError: (409, "conflict"),
    BudgetError: (507, "over_budget"),
}

# What a client sees per status; the log keeps the specific reason.
_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    429: "busy",
}


class ApiError(tornado.web.HTTPError):
    """An HTTP error with a stable ``error`` code and a client-facing ``message``."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        log_message: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(status, log_message, reason=None)
        self.code = code
        self.message = message
        self.retry_after = retry_after  # seconds, sent as Retry-After


@dataclass(frozen=True, slots=True)
class Services:
    """What every handler may use; one instance per console, passed through the URL table."""

    auth: Authenticator
    diag: Diagnostics
    record: Callable[..., None]  # the audit log
    settings: Settings
    origin: str  # this console's own origin, e.g. http://127.0.0.1:8780
    allowed_origins: frozenset[str]  # browser Origins the terminal and cookie POSTs accept
    repl: ReplFactory  # opens a REPL session for the websocket terminal
    refusals: log.RefusalLog = field(default_factory=log.RefusalLog)  # every refusal's log line
    admission: Admission | None = None  # the HTTP door's pre-auth connection limits
    request_rate: RequestRate | None = None  # unauthenticated requests per source


class SessionHandler(tornado.web.RequestHandler):
    """Authentication shared by the JSON routes and the terminal websocket.

    A session comes from ``Authorization: Bearer`` (CLI, scripts) or, for the browser,
    from the HttpOnly cookie a one-time ticket set. A cookie never authorises a
    cross-origin state change: unsafe methods must carry an allowed ``Origin``.
    """

    required_role: ClassVar[Role | None] = "viewer"

    def initialize(self, svc: Services) -> None:
        self.svc = svc
        self.auth = svc.auth
        self.origin = svc.origin
        self.diag = svc.diag
        self.record = svc.record
        self.session: SessionInfo | None = None
        self.token: str | None = None
        self.refusal_reason = ""  # why a request was refused, for its (aggregated) access line

    @property
    def source(self) -> str:
        return self.request.remote_ip or "unknown"

    def authenticate(self) -> None:
        """Set ``self.session`` or raise ApiError 401/403 (the reason goes to the log)."""
        if self.required_role is None:
            self.limit_unauthenticated()
            return
        token, via = self.credentials()
        try:
            if token is None:
                raise AuthError("no_token")
            self.session = self.auth.session(token)
        except AuthError as exc:
            self.limit_unauthenticated()
            self.set_header("WWW-Authenticate", 'Bearer realm="opsconsole"')
            raise ApiError(
                401, "unauthorized", "missing, invalid or expired session token", log_message=exc.reason
            ) from None
        self.token = token
        if self.svc.admission is not None:
            # A valid session: this connection no longer counts against its source's pre-auth cap.
            self.svc.admission.authenticated(getattr(self.request.connection, "stream", None))
        unsafe = self.request.method not in ("GET", "HEAD")
        origin_ok = self.request.headers.get("Origin") in self.svc.allowed_origins
        if via == "cookie" and unsafe and not origin_ok:
            self.auth.refuse("cookie_cross_origin", source=self.source, user=self.session.principal.user)
            raise ApiError(403, "forbidden", "cross-origin request refused")
        if not self.session.principal.has(self.required_role):
            raise ApiError(403, "forbidden", f"this needs the {self.required_role} role")

    def limit_unauthenticated(self) -> None:
        """Count a request without a valid session; 429 beyond its source's rate.

        The rule is ``transport.request_gate``'s: the HTTP server's gate refuses an over-rate
        request before it reaches a handler; this counts the ones it let through, and refuses
        where no gate runs. Called before the body is parsed or any signature is checked.
        """
        if self.svc.request_rate is None:
            return
        verdict = self.svc.request_rate.take(self.source)
        if not verdict.allowed:
            self.refusal_reason = "unauthenticated rate"  # goes into the aggregated access line
            raise ApiError(429, RATE_CODE, RATE_MESSAGE, retry_after=verdict.retry_after)

    def credentials(self) -> tuple[str | None, str]:
        """(token, "header" | "cookie" | "none"); tokens are never read from a URL or a query."""
        return credentials(self.request.headers)

    def bearer_token(self) -> str | None:
        return self.token


class BaseHandler(SessionHandler):
    """Every JSON /ops route. ``required_role`` None means no session needed (login routes)."""

    def set_default_headers(self) -> None:
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.set_header("Cache-Control", "no-store")
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Referrer-Policy", "no-referrer")

    def prepare(self) -> None:
        self.authenticate()

    @property
    def principal(self) -> Principal:
        assert self.session is not None, "route without a session asked for the principal"
        return self.session.principal

    def json_body(self, *required: str) -> dict[str, Any]:
        """The request body as a JSON object whose ``required`` keys are strings."""
        try:
            return json_body.parse_object(self.request.body, *required)
        except InvalidRequestError as exc:
            raise ApiError(400, "bad_request", str(exc)) from None

    def send_json(self, data: Any, status: int = 200) -> None:
        self.set_status(status)
        self.finish(json.dumps(data, separators=(",", ":")))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, ApiError):
            code, message = exc.code, exc.message
            if exc.retry_after is not None:
                self.set_header("Retry-After", str(math.ceil(exc.retry_after)))
        elif isinstance(exc, DiagnosticsError):
            status_code, code = _DIAG_STATUS.get(type(exc), (500, "internal_error"))
            message = str(exc)
            self.set_status(status_code)
            if isinstance(exc, BusyError):
                self.set_header("Retry-After", str(math.ceil(exc.retry_after)))
        elif isinstance(exc, AuditError):
            # Nothing that needs a record runs, logins included; the writer logged why, once.
            status_code, code = 503, "audit_unavailable"
            message = "the audit log cannot be written; logins and audited actions are refused until it can"
            self.set_status(status_code)
        else:
            code = _CODES.get(status_code, "error" if status_code < 500 else "internal_error")
            message = self._reason if status_code < 500 else "internal error (see the service log)"
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(json.dumps({"error": code, "message": message}, separators=(",", ":")))

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        # A refused dump (busy, bad name, ...) is the client's business, not a server error.
        # A refused request's reason goes into its access line (transport.http), which is
        # aggregated: Tornado would log a WARNING line per refusal here.
        if isinstance(value, DiagnosticsError):
            _log.info("%s %s: %s", self.request.method, self.request.path, value)
        elif isinstance(value, AuditError):
            pass  # the audit writer logs the first failure and the recovery, not each refusal
        elif isinstance(value, tornado.web.HTTPError) and value.status_code < 500:
            message = value.log_message or ""
            self.refusal_reason = message % value.args if value.args else message
        else:
            super().log_exception(typ, value, tb)

    # -- helpers for the dump routes -------------------------------------------------------

    def int_arg(self, name: str, default: int, low: int, high: int) -> int:
        return int(self.float_arg(name, default, low, high))

    def float_arg(self, name: str, default: float, low: float, high: float) -> float:
        raw = self.get_query_argument(name, None)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise ApiError(400, "bad_request", f"{name} must be a number") from None
        if not low <= value <= high:
            raise ApiError(400, "bad_request", f"{name} must be between {low} and {high}")
        return value

    def choice_arg(self, name: str, choices: tuple[str, ...]) -> str:
        value = self.get_query_argument(name, choices[0])
        if value not in choices:
            raise ApiError(400, "bad_request", f"{name} must be one of {', '.join(choices)}")
        return value

    def send_result(self, result: Any) -> None:
        """A diagnostics result as JSON, or as the readable text with ``?format=text``."""
        if self.choice_arg("format", ("json", "text")) == "text":
            self.set_header("Content-Type", "text/plain; charset=utf-8")
            self.finish(render.to_text(result))
        else:
            self.send_json(render.to_data(result))

    async def expensive(self, what: str, fn: Callable[[], T], *, expected_seconds: float = 1.0) -> T:
        """Run ``fn`` on the dump worker (429 if one is running); the IO loop stays free."""
        return await asyncio.wrap_future(self.diag.expensive(what, fn, expected_seconds=expected_seconds))

    def audit(self, event: str, **fields: Any) -> None:
        """Record what an authenticated operator asked for, before it runs."""
        assert self.session is not None
        self.record(
            event, user=self.principal.user, session=self.session.session_id, source=self.source, **fields
        )


class NotFoundHandler(BaseHandler):
    required_role = None

    def prepare(self) -> None:
        self.limit_unauthenticated()
        raise ApiError(404, "not_found", "no such route")
