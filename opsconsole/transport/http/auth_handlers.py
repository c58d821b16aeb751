"""Login, logout and whoami. Thin: the Authenticator decides, these translate to HTTP.

Runs on the console IO loop.
"""

from __future__ import annotations

import ipaddress
import urllib.parse
from typing import ClassVar

from opsconsole.auth.principal import Role
from opsconsole.errors import AuthError
from opsconsole.transport.http.base import ApiError, BaseHandler
from opsconsole.transport.http.request_gate import COOKIE


class ChallengeHandler(BaseHandler):
    required_role: ClassVar[Role | None] = None

    def post(self) -> None:
        user = self.json_body("user")["user"]
        challenge = self.auth.challenge(user, origin=self.origin, source=self.source)
        expires_in = max(0, round(challenge.expires_at - self.auth.clock()))
        self.send_json({"nonce": challenge.nonce, "message": challenge.message, "expires_in": expires_in})


class LoginHandler(BaseHandler):
    required_role: ClassVar[Role | None] = None

    def post(self) -> None:
        body = self.json_body("user", "nonce", "signature", "totp")
        try:
            login = self.auth.login(
                user=body["user"],
                nonce=body["nonce"],
                signature=body["signature"],
                totp=body["totp"],
                source=self.source,
            )
        except AuthError as exc:
            # One answer for every failure: nothing tells a wrong key from an unknown user.
            raise ApiError(
                401, "authentication_failed", "authentication failed", log_message=exc.reason
            ) from None
        self.send_json(
            {
                "token": login.token,
                "expires_in": round(login.session.expires_in),
                "role": login.session.principal.role,
            }
        )


class LogoutHandler(BaseHandler):
    def post(self) -> None:
        token = self.bearer_token()
        assert token is not None  # prepare() checked it
        self.auth.logout(token, source=self.source)
        self.clear_cookie(COOKIE, path="/ops/")
        self.send_json({"ok": True})


class TicketHandler(BaseHandler):
    """``POST /ops/auth/ticket``: a one-time link that logs a browser in (``opsconsole open``)."""

    def post(self) -> None:
        token = self.bearer_token()
        assert token is not None
        ticket, ttl = self.auth.ticket(token, source=self.source)
        # The ticket rides in the fragment: browsers never send it, so no server logs it.
        self.send_json(
            {"url": f"{self.origin}/ops/ui/#ticket={ticket}", "ticket": ticket, "expires_in": round(ttl)}
        )


class RedeemHandler(BaseHandler):
    """``POST /ops/auth/redeem {"ticket"}``: the page trades the ticket for an HttpOnly cookie."""

    required_role: ClassVar[Role | None] = None

    def post(self) -> None:
        origin = self.request.headers.get("Origin")
        if origin is not None and origin not in self.svc.allowed_origins:
            self.auth.refuse("redeem_cross_origin", source=self.source, origin=origin)
            raise ApiError(403, "forbidden", "cross-origin request refused")
        ticket = self.json_body("ticket")["ticket"]
        try:
            login = self.auth.redeem(ticket, source=self.source)
        except AuthError as exc:
            raise ApiError(
                401, "authentication_failed", "authentication failed", log_message=exc.reason
            ) from None
        self.set_cookie(
            COOKIE,
            login.token,
            path="/ops/",
            httponly=True,
            samesite="Strict",
            secure=not _loopback_http(self.origin),  # Secure is dropped only for http on loopback
        )
        p = login.session.principal
        self.send_json({"user": p.user, "role": p.role, "expires_in": round(login.session.expires_in)})


def _loopback_http(origin: str) -> bool:
    parts = urllib.parse.urlsplit(origin)
    if parts.scheme != "http":
        return False
    host = parts.hostname or ""
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class WhoamiHandler(BaseHandler):
    def get(self) -> None:
        assert self.session is not None
        p = self.session.principal
        self.send_json({"user": p.user, "role": p.role, "expires_in": round(self.session.expires_in)})
