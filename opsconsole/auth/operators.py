"""The operators: authorized_keys plus TOTP secrets, reloaded when either file changes.

``opsconsole enroll`` can add an operator while the console runs; the next login sees it.
A file that turns unsafe (e.g. chmod 644) makes every login fail closed until fixed.
Thread-safe.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from opsconsole import log
from opsconsole.auth.keys import AuthorizedKeys, load_authorized_keys
from opsconsole.auth.totp import load_secrets
from opsconsole.errors import ConfigError

_log = log.get("auth.operators")

Recorder = Callable[..., None]
_Stamp = tuple[int, int, int, int]


def _stamp(path: Path) -> _Stamp:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return (0, 0, 0, 0)
    return (st.st_ino, st.st_mtime_ns, st.st_size, st.st_mode)


@dataclass(frozen=True, slots=True)
class Operators:
    keys: AuthorizedKeys
    secrets: dict[str, str]


class OperatorStore:
    def __init__(self, *, authorized_keys: Path, totp_secrets: Path, record: Recorder) -> None:
        self._keys_path = authorized_keys
        self._secrets_path = totp_secrets
        self._record = record
        self._lock = threading.Lock()
        self._stamps: tuple[_Stamp, _Stamp] | None = None
        self._current: Operators | None = None
        self._error: ConfigError | None = None
        self.current()  # load once now: a bad file stops start() with its message

    def current(self) -> Operators:
        """The operators as the files say now. Raises ConfigError while a file is unsafe."""
        stamps = (_stamp(self._keys_path), _stamp(self._secrets_path))
        with self._lock:
            if stamps != self._stamps:
                # The new state is in place before anything is recorded: a record that fails
                # (AuditError, counted by the writer) must not leave the old operators in use.
                self._stamps = stamps
                try:
                    self._current, self._error = self._load(), None
                except ConfigError as exc:
                    self._current, self._error = None, exc
                    _log.error("operators not loaded: %s", exc)
                    self._record("config.rejected", reason=str(exc))
                else:
                    for bad in self._current.keys.rejected:
                        self._record(
                            "config.rejected_line",
                            file=str(self._keys_path),
                            line=bad.line_no,
                            reason=bad.reason,
                        )
            if self._error is not None:
                raise self._error
            assert self._current is not None
            return self._current

    def _load(self) -> Operators:
        keys = load_authorized_keys(self._keys_path)
        secrets = load_secrets(self._secrets_path)
        _log.info("loaded %d keys and %d TOTP secrets", len(keys.entries), len(secrets))
        return Operators(keys, secrets)
