"""The one exception tree of opsconsole.

::

    OpsConsoleError
    ├── ConfigError            a setting, file or environment variable is wrong
    │   └── InsecureFileError  a private file or directory is refused by ``private_files``
    ├── AuthError              any authentication failure (the reason is for the log only)
    ├── AuditError             the audit log cannot be written or read
    │   └── AuditChainError    the hash chain is broken (names the line)
    ├── ConsoleError           start/stop problems: bind failures, a stopped console
    ├── ClientError            the CLI client got an error answer or could not connect
    ├── ProtocolError          a websocket client broke RFC 6455 or the terminal's messages
    └── DiagnosticsError       a dump could not be made as asked
        ├── BusyError          another expensive dump is running (HTTP 429 + Retry-After)
        ├── InvalidRequestError a bad name or parameter (HTTP 400)
        ├── NotFoundError      no such snapshot or type (HTTP 404)
        ├── StateError         not possible now, e.g. tracemalloc is off (HTTP 409)
        └── BudgetError        a heap walk would grow the process past its budget (HTTP 507)

Every error the host application can see derives from ``OpsConsoleError`` so that one
``except`` clause keeps the host app safe.
"""

from __future__ import annotations


class OpsConsoleError(Exception):
    """Base of every error raised by opsconsole."""


class ConfigError(OpsConsoleError):
    """A setting is unknown, has the wrong type or an unsafe value.

    ``key`` names the setting and ``source`` where it came from (a file path,
    ``environment`` or ``keyword argument``) so the message can point at the fix.
    """

    def __init__(self, message: str, *, key: str | None = None, source: str | None = None) -> None:
        parts = [message]
        if key is not None:
            parts.append(f"setting {key!r}")
        if source is not None:
            parts.append(f"from {source}")
        super().__init__(" — ".join(parts) if len(parts) > 1 else message)
        self.key = key
        self.source = source


class InsecureFileError(ConfigError):
    """A private file or directory is a symlink, of the wrong type, someone else's, or too open.

    Raised by ``opsconsole.private_files`` for every file the console keeps private (keys,
    secrets, the audit log, dumps); ``reason`` says what to fix.
    """

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"refusing {path}: {reason}", source=None)
        self.path = path
        self.reason = reason


class AuthError(OpsConsoleError):
    """Authentication failed.

    ``reason`` is a short machine-readable code for the audit log (``bad_signature``,
    ``totp_replay``, ``locked``, ...). It is never sent to the client: every failure
    answers the same 401 so nothing can be enumerated.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class AuditError(OpsConsoleError):
    """The audit log could not be written or read."""


class AuditChainError(AuditError):
    """The audit log's hash chain is broken at ``line`` (1-based)."""

    def __init__(self, path: str, line: int, reason: str) -> None:
        super().__init__(f"{path}:{line}: {reason}")
        self.path = path
        self.line = line
        self.reason = reason


class ConsoleError(OpsConsoleError):
    """The console could not start, or was used after it stopped."""


class ClientError(OpsConsoleError):
    """The CLI client could not talk to a console, or got an error answer."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class ProtocolError(OpsConsoleError):
    """A websocket peer sent what RFC 6455 or the terminal's message format forbids.

    ``code`` is the close code the connection ends with (1002, 1003, 1007, 1008, 1009),
    ``reason`` a short machine-readable code for the audit log, and the message the close
    reason the client sees (short: a close frame carries at most 123 bytes of it).
    """

    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message


class DiagnosticsError(OpsConsoleError):
    """A dump could not be made as asked. Subclasses map to HTTP statuses at the edge."""


class BusyError(DiagnosticsError):
    """Another expensive dump is running; try again after ``retry_after`` seconds."""

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class InvalidRequestError(DiagnosticsError):
    """A parameter or name is not acceptable (bad pattern, out of range)."""


class NotFoundError(DiagnosticsError):
    """The named thing (snapshot, baseline, type) does not exist."""


class StateError(DiagnosticsError):
    """Not possible in the current state (e.g. tracemalloc is not tracing)."""


class BudgetError(DiagnosticsError):
    """A whole-heap walk (census, reference search, heap snapshot) stopped before growing the process
    by more than ``limit`` bytes; ``used`` is what it had reached, ``how`` how that was known."""

    def __init__(self, what: str, *, limit: int, used: int, how: str) -> None:
        super().__init__(
            f"{what} stopped: it would grow the process by more than {limit >> 20} MiB, its memory "
            f"budget ({used >> 20} MiB {how}); raise the walk_memory_budget setting to allow more"
        )
        self.what = what
        self.limit = limit
        self.used = used
        self.how = how
