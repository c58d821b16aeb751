"""Single-use login nonces and the exact message an operator signs.

The server makes the message; the client signs it as SSHSIG (namespace ``opsconsole``) and
sends back only the nonce and the signature, so the server verifies against its own copy.
Runs on the console IO loop (the HTTP login routes); a lock keeps it safe from any thread.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from opsconsole.errors import AuthError

NONCE_BYTES = 32  # 256 bits; the floor is 128
# Pre-auth memory is bounded: past this many outstanding nonces the oldest is dropped.
MAX_OUTSTANDING = 10_000
MESSAGE_HEADER = "opsconsole-login-v1"


@dataclass(frozen=True, slots=True)
class Challenge:
    nonce: str
    user: str
    message: str
    expires_at: float


def login_message(*, user: str, nonce: str, instance_id: str, origin: str, purpose: str) -> str:
    """The text an operator signs. Naming instance and origin stops a signature made for one
    console (or a phishing page) from being replayed at another."""
    return (
        f"{MESSAGE_HEADER}\n"
        f"purpose: {purpose}\n"
        f"user: {user}\n"
        f"nonce: {nonce}\n"
        f"instance: {instance_id}\n"
        f"origin: {origin}\n"
    )


class ChallengeStore:
    def __init__(self, *, ttl: float, instance_id: str, clock: Callable[[], float] = time.time) -> None:
        self._ttl = ttl
        self._instance_id = instance_id
        self._clock = clock
        self._lock = threading.Lock()
        self._pending: OrderedDict[str, Challenge] = OrderedDict()

    def issue(self, user: str, *, origin: str, purpose: str = "login") -> Challenge:
        """Make a nonce for ``user``; unknown users get one too (no enumeration)."""
        nonce = secrets.token_hex(NONCE_BYTES)
        message = login_message(
            user=user, nonce=nonce, instance_id=self._instance_id, origin=origin, purpose=purpose
        )
        challenge = Challenge(nonce, user, message, self._clock() + self._ttl)
        with self._lock:
            self._pending[nonce] = challenge
            while len(self._pending) > MAX_OUTSTANDING:
                self._pending.popitem(last=False)
        return challenge

    def take(self, nonce: str, user: str) -> Challenge:
        """Consume ``nonce``. It is gone afterwards whatever the outcome (single use)."""
        with self._lock:
            challenge = self._pending.pop(nonce, None)
        if challenge is None:
            raise AuthError("unknown_nonce", "not issued, already used or dropped")
        if challenge.user != user:
            raise AuthError("nonce_user_mismatch", f"issued for {challenge.user!r}")
        if self._clock() > challenge.expires_at:
            raise AuthError("expired_nonce")
        return challenge
