"""The audit log writer: appends hash-chained records, write-ahead and thread-safe.

Threads: ``record()`` is called from the console's IO thread (connections, logins)
and from REPL/SSH worker threads (each REPL line *before* it runs). One
``threading.Lock`` serialises seq/prev, the write and the fsync, so the order of the
lines in the file is the order of the chain. The fsync happens under the lock on
purpose: a record is not "written" until it is on disk, and a caller must not go on
to run a REPL line whose record could still be lost. Other processes are kept out
with an exclusive ``flock`` held for as long as the log is open.

When a write fails (the disk is full, a file-size limit, a quota), the file is cut
back to the end of the last complete record, so it never holds half a line, and the
caller gets ``AuditError``: nothing that needed the record runs. The next record tries
again; the first one that succeeds is preceded by an ``audit.write_failed`` record
counting what was refused meanwhile. The host log gets one line when writing starts
failing and one when it works again, however many records were refused in between.
If the cut itself fails, or an fsync fails (the end of the file is then unknown), the
log refuses every further record.
"""

from __future__ import annotations

import errno
import os
import pathlib
import re
import threading
import time
from collections.abc import Callable
from types import TracebackType

from opsconsole import log, private_files
from opsconsole.audit import chain, resume
from opsconsole.audit.head import Head
from opsconsole.errors import AuditError

_log = log.get("audit")

# A guard against caller bugs, not a filter: a field *named* like a secret is refused
# outright, so a TOTP code or a token can never reach the log by accident.
_SECRET_NAME_RE = re.compile(r"totp|code|token|secret|password|signature", re.IGNORECASE)


def _check_secret_names(value: object, where: str = "", depth: int = 0) -> None:
    # Nested keys are checked too: {"headers": {"X-Token": ...}} leaks just as well.
    # Too-deep values are left to chain.check_value, which refuses them.
    if depth > chain.MAX_DEPTH:
        return
    if isinstance(value, dict):
        for name, item in value.items():
            if isinstance(name, str) and _SECRET_NAME_RE.search(name):
                raise AuditError(
                    f"field {where}{name!r} looks like a secret; it is never written to the audit log"
                )
            _check_secret_names(item, f"{where}{name}.", depth + 1)
    elif isinstance(value, list):
        for item in value:
            _check_secret_names(item, f"{where}[].", depth + 1)


class AuditLog:
    """An open, append-only audit log. Create with ``AuditLog.open``."""

    def __init__(
        self, path: pathlib.Path, fd: int, *, clock: Callable[[], float], seq: int, prev: str
    ) -> None:
        self._path = path
        self._fd: int | None = fd
        self._clock = clock
        self._seq = seq
        self._prev = prev
        self._broken: str | None = None
        self._failing: str | None = None  # the last write error, while records are refused
        self._refused = 0
        self._lock = threading.Lock()

    @classmethod
    def open(cls, path: pathlib.Path, *, clock: Callable[[], float] = time.time) -> AuditLog:
        """Open (or create, 0600) the log at ``path`` and resume its chain.

        The log and its directory follow ``private_files`` (the log is a secret file; the
        directory is made 0700 and refused if others can write it): InsecureFileError.

        Only the last line is checked here, so opening a big log stays cheap; use
        ``verify_file`` to check the whole chain. A torn last line (a crash mid-write)
        is cut off, saved next to the log and recorded as ``audit.torn_tail``; any other
        bad end raises AuditError saying how to rotate the log.
        """
        path = pathlib.Path(path)
        private_files.ensure_private_dir(path.parent)
        fd = resume.open_fd(path)
        try:
            resume.lock(path, fd)
            end = resume.resume(path, fd)
        except OSError as exc:
            os.close(fd)
            raise AuditError(f"cannot read audit log {path}: {exc.strerror or exc}") from exc
        except BaseException:
            os.close(fd)
            raise
        _log.info("audit log %s opened at seq %d", path, end.seq)
        audit = cls(path, fd, clock=clock, seq=end.seq, prev=end.hash)
        if end.torn is not None:
            try:
                audit.record(
                    "audit.torn_tail",
                    offset=end.torn.offset,
                    bytes=end.torn.length,
                    sha256=end.torn.sha256,
                    saved_to=str(end.torn.saved_to),
                )
            except BaseException:
                audit.close()
                raise
        return audit

    @property
    def path(self) -> pathlib.Path:
        return self._path

    @property
    def last_seq(self) -> int:
        """Seq of the last record written (0 for an empty log)."""
        with self._lock:
            return self._seq

    @property
    def last_hash(self) -> str:
        """Hash of the last record written; anchor it elsewhere to detect a rewritten log."""
        with self._lock:
            return self._prev

    def head(self) -> Head:
        """Seq and hash of the last record written, read together (any thread)."""
        with self._lock:
            return Head(self._seq, self._prev)

    @property
    def failing(self) -> str | None:
        """Why records are being refused right now (None while the log writes fine)."""
        with self._lock:
            if self._fd is None:
                return "closed"
            return self._broken or self._failing

    @property
    def closed(self) -> bool:
        with self._lock:
            return self._fd is None

    def record(self, event: str, /, **fields: object) -> None:
        """Append one record and fsync it before returning (write-ahead).

        Raises AuditError, with nothing written, for a bad event name, a field that is
        not JSON-able, a secret-looking field name, a closed or broken log, or a write
        that failed (the file is then cut back to its last complete record).
        """
        _check_secret_names(fields)
        with self._lock:
            if self._fd is None:
                raise AuditError(f"audit log {self._path} is closed")
            if self._broken is not None:
                raise AuditError(
                    f"audit log {self._path} is unusable after an earlier failure: {self._broken}"
                )
            try:
                line = self._seal(self._seq + 1, self._prev, event, fields)
            except chain.ChainError as exc:
                raise AuditError(f"refusing audit record {event!r}: {exc.reason}") from None
            if self._failing is not None:
                # The first record after a failure says what was lost; written in the same call
                # so it cannot be skipped.
                note = self._seal(
                    self._seq + 1,
                    self._prev,
                    "audit.write_failed",
                    {"refused": self._refused, "error": self._failing},
                )
                self._append(note, event)
                _log.warning(
                    "audit log %s is writable again; %d record(s) were refused meanwhile",
                    self._path,
                    self._refused,
                )
                self._failing, self._refused = None, 0
                line = self._seal(self._seq + 1, self._prev, event, fields)
            self._append(line, event)

    def _seal(self, seq: int, prev: str, event: str, fields: dict[str, object]) -> str:
        line = chain.seal(seq, chain.format_ts(self._clock()), event, fields, prev)
        # Self-check: never write a line the verifier would reject.
        chain.check(line, expected_seq=seq, expected_prev=prev)
        return line

    def _append(self, line: str, event: str) -> None:
        # under self._lock; advances seq/prev only once the line is on disk
        fd = self._fd
        assert fd is not None
        data = (line + "\n").encode("ascii")
        try:
            start = os.fstat(fd).st_size
        except OSError as exc:
            self._break(exc)
            raise AuditError(f"cannot write audit log {self._path}: {self._broken}") from exc
        try:
            self._write_all(fd, data)
        except OSError as exc:
            error = f"{type(exc).__name__}: {exc.strerror or exc}"
            if not self._cut_back(fd, start):
                self._break(exc)
                raise AuditError(f"cannot write audit log {self._path}: {self._broken}") from exc
            if self._failing is None:
                _log.error(
                    "audit log %s cannot be written (%s): REPL lines and logins are refused until it can",
                    self._path,
                    error,
                )
            self._failing = error
            self._refused += 1
            raise AuditError(f"cannot write audit log {self._path}: {error}; {event} not recorded") from exc
        try:
            os.fsync(fd)
        except OSError as exc:
            self._break(exc)
            raise AuditError(f"cannot write audit log {self._path}: {self._broken}") from exc
        self._seq += 1
        self._prev = chain.check(line, expected_seq=self._seq, expected_prev=self._prev).hash

    def _cut_back(self, fd: int, size: int) -> bool:
        # Remove whatever part of the line reached the file. Shrinking is allowed even at a
        # file-size limit or on a full disk; the fstat confirms the end is known again.
        try:
            os.ftruncate(fd, size)
            return os.fstat(fd).st_size == size
        except OSError:
            return False

    def _break(self, exc: OSError) -> None:
        self._broken = f"{type(exc).__name__}: {exc.strerror or exc}"
        _log.error("audit log %s: write failed at seq %d: %s", self._path, self._seq + 1, self._broken)

    @staticmethod
    def _write_all(fd: int, data: bytes) -> None:
        # One os.write writes the whole line on a local filesystem; the loop only
        # covers a short write (e.g. interrupted near a full disk, where the next
        # write then fails and the caller cuts the partial line off again).
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            if written == 0:
                raise OSError(errno.EIO, "write made no progress")
            view = view[written:]

    def close(self) -> None:
        """Close the file and release the lock; calling it again does nothing."""
        with self._lock:
            if self._fd is None:
                return
            fd, self._fd = self._fd, None
        os.close(fd)
        _log.info("audit log %s closed at seq %d", self._path, self._seq)

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._fd is None else f"seq={self._seq}"
        return f"<AuditLog {self._path} {state}>"
