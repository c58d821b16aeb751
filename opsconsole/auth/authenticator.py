"""The one Authenticator: SSHSIG over a server-made challenge, then TOTP, then a session.

Every door (HTTP, websocket, SSH) goes through this class, so the rules — single-use
nonces, allowed algorithms, ``from=`` and expiry options, single-use TOTP steps, lockout —
live in one place. Each outcome is recorded through the injected ``record`` callable
(the audit log); the reason stays on the log side, callers only see ``AuthError``.
Thread-safe; called on the console IO loop and on SSH worker threads.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from opsconsole.auth import sshsig
from opsconsole.auth.challenges import Challenge, ChallengeStore
from opsconsole.auth.keys import AuthorizedKey
from opsconsole.auth.lockout import Lockout
from opsconsole.auth.operators import OperatorStore, Recorder
from opsconsole.auth.principal import Principal
from opsconsole.auth.sessions import SessionInfo, SessionStore
from opsconsole.auth.tickets import TicketStore
from opsconsole.auth.totp import TotpGuard
from opsconsole.errors import AuthError, ConfigError

MAX_FIELD = 16 * 1024  # an armored RSA-4096 SSHSIG is ~1.5 KiB


@dataclass(frozen=True, slots=True)
class Login:
    token: str
    session: SessionInfo


class Authenticator:
    def __init__(
        self,
        *,
        operators: OperatorStore,
        challenges: ChallengeStore,
        totp: TotpGuard,
        lockout: Lockout,
        sessions: SessionStore,
        tickets: TicketStore,
        record: Recorder,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._operators = operators
        self._challenges = challenges
        self._totp = totp
        self._lockout = lockout
        self._sessions = sessions
        self._tickets = tickets
        self._record = record
        self.clock = clock

    # -- login -------------------------------------------------------------------------

    def challenge(self, user: str, *, origin: str, source: str) -> Challenge:
        # Not audited: it is pre-auth and free, so recording it would let anyone fill the log.
        return self._challenges.issue(user[:64], origin=origin)

    def login(self, *, user: str, nonce: str, signature: str, totp: str, source: str) -> Login:
        """Both factors in one step (the HTTP door). Raises AuthError on any failure."""
        with self._attempt(user[:64], source):
            for value in (user, nonce, signature, totp):
                if not isinstance(value, str) or not value or len(value) > MAX_FIELD:
                    raise AuthError("malformed_request")
            challenge = self._challenges.take(nonce, user)
            entry = self._first_factor(user, challenge.message.encode(), signature, source)
            self._check_code(user, totp)
        principal = Principal(user, entry.role, entry.fingerprint)
        token, info = self._sessions.create(principal)
        with self._revoked_unless_recorded(token):
            self._record(
                "auth.login",
                user=user,
                role=entry.role,
                source=source,
                key=entry.fingerprint,
                session=info.session_id,
            )
        return Login(token, info)

    @contextlib.contextmanager
    def _revoked_unless_recorded(self, token: str) -> Iterator[None]:
        # A session whose login could not be audited (AuditError) must not exist.
        try:
            yield
        except BaseException:
            self._sessions.revoke(token)
            raise

    @contextlib.contextmanager
    def _attempt(self, user: str, source: str) -> Iterator[None]:
        # One lockout-counted attempt: counted when it starts (parallel attempts cannot slip
        # past the threshold), forgiven only if the block finishes; every failure is audited.
        keys = (f"user:{user}", f"source:{source}")
        try:
            engaged = self._lockout.begin(keys)
        except AuthError as exc:
            self._fail(user, source, exc)
            raise
        try:
            yield
        except AuthError as exc:
            self._fail(user, source, exc)
            if engaged:
                self._record("auth.lockout", user=user, source=source)
            raise
        self._lockout.succeeded(keys)

    def _check_code(self, user: str, totp: str) -> None:
        try:
            secrets_by_user = self._operators.current().secrets
        except ConfigError as exc:
            raise AuthError("operators_unavailable", str(exc)) from None
        self._totp.verify(secrets_by_user, user, totp)

    def _first_factor(self, user: str, message: bytes, signature: str, source: str) -> AuthorizedKey:
        sig = sshsig.parse_armored(signature)
        entry = self._find_key(user, sig.public_key_blob, source)
        sshsig.verify(sig, message, expected_blob=entry.blob)
        return entry

    def _find_key(self, user: str, blob: bytes, source: str) -> AuthorizedKey:
        # The key's line, if it may log in as ``user`` from ``source`` now. Proves nothing yet:
        # only a verified signature by this key makes it a factor.
        try:
            operators = self._operators.current()
        except ConfigError as exc:
            raise AuthError("operators_unavailable", str(exc)) from None
        entry = operators.keys.find(user, blob)
        if entry is None:
            raise AuthError("key_not_listed", f"{user!r} has no such key")
        if entry.expired(self.clock()):
            raise AuthError("key_expired", entry.fingerprint)
        if not entry.allows_source(source):
            raise AuthError("source_not_allowed", f"{source} not in from= of {entry.fingerprint}")
        return entry

    # -- the SSH door: one call per protocol step ----------------------------------------------
    # SSH proves the key inside the protocol (a signature over the session id), then asks for
    # the code in a second request; the same rules and records as ``login`` apply to each step.

    def listed_key(self, user: str, blob: bytes, *, source: str) -> AuthorizedKey:
        """The publickey step, before any signature is checked; raises AuthError (audited)."""
        try:
            return self._find_key(user[:64], blob, source)
        except AuthError as exc:
            self._fail(user, source, exc)
            raise

    def key_proven(self, entry: AuthorizedKey, *, source: str, door: str) -> None:
        """Record the first factor: the caller verified a signature by ``entry``'s key."""
        self._record("auth.factor", user=entry.user, key=entry.fingerprint, source=source, door=door)

    def second_factor(self, entry: AuthorizedKey, totp: str, *, source: str, door: str) -> Principal:
        """The TOTP step after a proven key: same single-use steps and lockout as ``login``."""
        user = entry.user
        with self._attempt(user, source):
            if not isinstance(totp, str) or not totp or len(totp) > MAX_FIELD:
                raise AuthError("malformed_request")
            self._check_code(user, totp)
        self._record(
            "auth.login", user=user, role=entry.role, source=source, key=entry.fingerprint, door=door
        )
        return Principal(user, entry.role, entry.fingerprint)

    def _fail(self, user: str, source: str, exc: AuthError) -> None:
        self._record("auth.failure", user=user[:64], source=source, reason=exc.reason, detail=exc.detail)

    # -- sessions ----------------------------------------------------------------------

    def session(self, token: str, *, touch: bool = True) -> SessionInfo:
        """Resolve a session token (raises AuthError); ``touch`` restarts its idle timer."""
        return self._sessions.lookup(token, touch=touch)

    def logout(self, token: str, *, source: str) -> None:
        info = self._sessions.revoke(token)
        if info is not None:
            self._record("auth.logout", user=info.principal.user, session=info.session_id, source=source)

    # -- browser tickets -------------------------------------------------------------------

    def ticket(self, token: str, *, source: str) -> tuple[str, float]:
        """A one-time browser ticket for the session behind ``token``; (ticket, ttl)."""
        info = self._sessions.lookup(token)
        ticket = self._tickets.issue(info.principal)
        self._record("auth.ticket", user=info.principal.user, session=info.session_id, source=source)
        return ticket, self._tickets.ttl

    def redeem(self, ticket: str, *, source: str) -> Login:
        """Trade a ticket for a new browser session; raises AuthError (audited)."""
        try:
            if not isinstance(ticket, str) or not ticket or len(ticket) > 256:
                raise AuthError("malformed_request")
            principal = self._tickets.redeem(ticket)
        except AuthError as exc:
            self._fail("(ticket)", source, exc)
            raise
        token, info = self._sessions.create(principal)
        with self._revoked_unless_recorded(token):
            self._record("auth.redeem", user=principal.user, session=info.session_id, source=source)
        return Login(token, info)

    def refuse(self, reason: str, *, source: str, user: str = "", **fields: object) -> None:
        """Audit a refusal decided outside this class (e.g. a websocket Origin check)."""
        self._record("auth.refused", reason=reason, source=source, user=user, **fields)
