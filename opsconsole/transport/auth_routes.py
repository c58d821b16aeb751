"""Login, logout and whoami. Thin: the Authenticator decides, these translate to HTTP.

Runs on the console IO loop.
"""

from __future__ import annotations

from typing import ClassVar

from opsconsole.auth.principal import Role
from opsconsole.errors import AuthError
from opsconsole.transport.base import ApiError, BaseHandler


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
        self.send_json({"ok": True})


class WhoamiHandler(BaseHandler):
    def get(self) -> None:
        assert self.session is not None
        p = self.session.principal
        self.send_json({"user": p.user, "role": p.role, "expires_in": round(self.session.expires_in)})
