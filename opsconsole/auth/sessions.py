"""Server-side sessions behind opaque bearer tokens, with idle and absolute expiry.

Only a SHA-256 of each token is kept, so a memory dump of the console (which an operator
can take with our own tools) does not hand out live tokens. Thread-safe.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from opsconsole.auth.principal import Principal
from opsconsole.errors import AuthError

TOKEN_BYTES = 32  # 256 bits; the floor is 128
MAX_SESSIONS = 1_000


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """What a valid token resolves to."""

    session_id: str
    principal: Principal
    expires_in: float  # seconds until the nearer of the idle and the absolute expiry


@dataclass(slots=True)
class _Session:
    session_id: str
    principal: Principal
    created: float
    last_used: float


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


class SessionStore:
    def __init__(
        self, *, idle_timeout: float, max_age: float, clock: Callable[[], float] = time.time
    ) -> None:
        self._idle = idle_timeout
        self._max_age = max_age
        self._clock = clock
        self._lock = threading.Lock()
        self._sessions: dict[str, _Session] = {}

    def create(self, principal: Principal) -> tuple[str, SessionInfo]:
        token = secrets.token_urlsafe(TOKEN_BYTES)
        now = self._clock()
        session = _Session(secrets.token_hex(8), principal, now, now)
        with self._lock:
            self._expire(now)
            if len(self._sessions) >= MAX_SESSIONS:
                oldest = min(self._sessions, key=lambda k: self._sessions[k].last_used)
                del self._sessions[oldest]
            self._sessions[_digest(token)] = session
        return token, self._info(session, now)

    def lookup(self, token: str, *, touch: bool = True) -> SessionInfo:
        """Resolve ``token``; ``touch`` restarts the idle timer (any authenticated request)."""
        now = self._clock()
        key = _digest(token)
        with self._lock:
            session = self._sessions.get(key)
            if session is None:
                raise AuthError("invalid_token")
            if self._expired(session, now):
                del self._sessions[key]
                raise AuthError("expired_token")
            if touch:
                session.last_used = now
            return self._info(session, now)

    def revoke(self, token: str) -> SessionInfo | None:
        with self._lock:
            session = self._sessions.pop(_digest(token), None)
        return None if session is None else self._info(session, self._clock())

    def _expired(self, s: _Session, now: float) -> bool:
        return now - s.last_used > self._idle or now - s.created > self._max_age

    def _expire(self, now: float) -> None:
        for key in [k for k, s in self._sessions.items() if self._expired(s, now)]:
            del self._sessions[key]

    def _info(self, s: _Session, now: float) -> SessionInfo:
        remaining = min(s.last_used + self._idle, s.created + self._max_age) - now
        return SessionInfo(s.session_id, s.principal, max(0.0, remaining))
