"""TOTP second factor: the secrets file, code checks and the single-use step guard.

Each accepted time step is remembered per user and persisted in the state dir, so a code
(or any code of an earlier step) cannot be used again — not even after a restart.
Thread-safe.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import pyotp

from opsconsole import log
from opsconsole.errors import AuthError, ConfigError
from opsconsole.private_files import read_protected, write_private

_log = log.get("auth.totp")

# ASCII only: pyotp NFKC-normalises, which would let "１２３４５６" through.
CODE_RE = re.compile(r"[0-9]{6}")
SECRET_BYTES = 20  # 160 bits, RFC 4226's recommendation
MIN_SECRET_BYTES = 16
VALID_WINDOW = 1  # ±1 step of 30 s for clock drift


def new_secret() -> str:
    """A fresh base32 secret of 160 bits."""
    return pyotp.random_base32(length=32)


def provisioning_uri(secret: str, *, user: str, issuer: str = "opsconsole") -> str:
    """The ``otpauth://`` URI authenticator apps scan."""
    return pyotp.TOTP(secret).provisioning_uri(name=user, issuer_name=issuer)


def parse_secrets(text: str, *, source: str) -> dict[str, str]:
    """``user SECRET`` per line; ``#`` comments. A bad line is skipped with its number."""
    secrets_by_user: dict[str, str] = {}
    for line_no, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 2:
            _log.warning("%s:%d: skipped: expected 'user SECRET'", source, line_no)
            continue
        user, secret = parts
        try:
            raw_secret = base64.b32decode(secret.upper() + "=" * (-len(secret) % 8))
        except (binascii.Error, ValueError):
            _log.warning("%s:%d: skipped: secret is not base32", source, line_no)
            continue
        if len(raw_secret) < MIN_SECRET_BYTES:
            _log.warning("%s:%d: skipped: secret shorter than 128 bits", source, line_no)
            continue
        if user in secrets_by_user:
            _log.warning("%s:%d: skipped: second secret for %r", source, line_no, user)
            continue
        secrets_by_user[user] = secret.upper()
    return secrets_by_user


def load_secrets(path: Path) -> dict[str, str]:
    return parse_secrets(read_protected(path, secret=True), source=str(path))


class TotpGuard:
    """Checks codes and enforces one use per time step per user."""

    def __init__(self, *, state_file: Path, clock: Callable[[], float] = time.time) -> None:
        self._state_file = state_file
        self._clock = clock
        self._lock = threading.Lock()
        self._last_step: dict[str, int] = self._load()

    def _load(self) -> dict[str, int]:
        if not self._state_file.exists():
            return {}
        try:
            data = json.loads(read_protected(self._state_file, secret=True))
            return {str(k): int(v) for k, v in dict(data).items()}
        except (ValueError, TypeError) as exc:
            # Failing closed: a corrupt replay record must not reopen used codes.
            raise ConfigError(f"{self._state_file}: unreadable TOTP state: {exc}") from None

    def verify(self, secrets_by_user: Mapping[str, str], user: str, code: str) -> int:
        """Accept ``code`` for ``user`` once; returns the matched step or raises AuthError."""
        if not isinstance(code, str) or not CODE_RE.fullmatch(code):
            raise AuthError("totp_format", "not six ASCII digits")
        secret = secrets_by_user.get(user)
        if secret is None:
            raise AuthError("totp_no_secret", f"no TOTP secret for {user!r}")
        try:
            step = pyotp.TOTP(secret).verify_and_get_timecode(
                code, for_time=self._clock(), valid_window=VALID_WINDOW
            )
        except pyotp.exceptions.OTPVerificationError:
            raise AuthError("totp_mismatch") from None
        except ValueError:
            # pyotp checks no time before the epoch (a step of the window included) or past
            # year 9999: a host clock that far off cannot tell a right code from a wrong one.
            raise AuthError("totp_clock", "the clock is outside the range TOTP can check") from None
        with self._lock:
            if step <= self._last_step.get(user, -1):
                raise AuthError("totp_replay", f"step {step} already used or older")
            self._last_step[user] = step
            # Persist before the login completes: a crash must not reopen the step.
            write_private(self._state_file, json.dumps(self._last_step, sort_keys=True))
        return step
