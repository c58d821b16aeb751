"""The audit log writer: appends hash-chained records, write-ahead and thread-safe.

Threads: ``record()`` is called from the console's IO thread (connections, logins)
and from REPL/SSH worker threads (each REPL line *before* it runs). One
``threading.Lock`` serialises seq/prev, the write and the fsync, so the order of the
lines in the file is the order of the chain. The fsync happens under the lock on
purpose: a record is not "written" until it is on disk, and a caller must not go on
to run a REPL line whose record could still be lost. Other processes are kept out
with an exclusive ``flock`` held for as long as the log is open.

A write or fsync failure leaves the end of the file unknown (maybe a torn line), so
the log refuses every further record instead of appending after a broken line.
"""

from __future__ import annotations

import errno
import fcntl
import os
import pathlib
import re
import stat
import threading
import time
from collections.abc import Callable
from types import TracebackType

from opsconsole import log
from opsconsole.audit import chain
from opsconsole.errors import AuditError

_log = log.get("audit")

_OPEN_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
_TAIL_CHUNK = 64 * 1024

# A guard against caller bugs, not a filter: a field *named* like a secret is refused
# outright, so a TOTP code or a token can never reach the log by accident.
_SECRET_NAME_RE = re.compile(r"totp|code|token|secret|password|signature", re.IGNORECASE)


def _refuse(path: pathlib.Path, reason: str) -> AuditError:
    return AuditError(f"refusing audit log {path}: {reason}")


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


def _prepare_dir(directory: pathlib.Path) -> None:
    """Create the log's directory 0700 if missing; warn if an existing one is shared."""
    try:
        directory.mkdir(parents=True, mode=0o700)
    except FileExistsError:
        st = directory.stat()
        if st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX:
            _log.warning("audit log directory %s is writable by group or others", directory)
        return
    except OSError as exc:
        raise AuditError(f"cannot create audit log directory {directory}: {exc.strerror}") from exc
    # mkdir's mode is filtered by the umask; the directory we created must be exactly 0700.
    os.chmod(directory, 0o700)


def _open_fd(path: pathlib.Path) -> int:
    """Open the log for appending, refusing a symlink or anything but a regular file."""
    # lstat first only for a clearer message and to avoid blocking on a FIFO;
    # O_NOFOLLOW and the fstat in _check_fd are what close the race.
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise _refuse(path, exc.strerror or str(exc)) from exc
    else:
        if stat.S_ISLNK(st.st_mode):
            raise _refuse(path, "it is a symlink")
        if not stat.S_ISREG(st.st_mode):
            raise _refuse(path, "it is not a regular file")
    try:
        return os.open(path, _OPEN_FLAGS, 0o600)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _refuse(path, "it is a symlink") from exc
        raise AuditError(f"cannot open audit log {path}: {exc.strerror}") from exc


def _check_fd(path: pathlib.Path, fd: int) -> None:
    """StrictModes-like checks on the opened file, then take the single-writer lock."""
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        raise _refuse(path, "it is not a regular file")
    if st.st_uid != os.geteuid():
        raise _refuse(path, f"owned by uid {st.st_uid}, not by this process (uid {os.geteuid()})")
    if st.st_mode & 0o077:
        raise _refuse(path, f"mode {stat.S_IMODE(st.st_mode):04o} is group/world-accessible; want 0600")
    # Two writers (two processes, or two AuditLogs in one) would fork the chain.
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise _refuse(path, "another writer has it open") from None


def _read_tail(fd: int, size: int, path: pathlib.Path) -> bytes:
    """The last line of the file (without its newline), read backwards from the end."""
    if os.pread(fd, 1, size - 1) != b"\n":
        raise AuditError(f"{path}: last line is not terminated (torn write); refusing to resume the chain")
    chunks: list[bytes] = []
    end = size - 1
    pos = end
    while pos > 0:
        start = max(0, pos - _TAIL_CHUNK)
        data = os.pread(fd, pos - start, start)
        newline = data.rfind(b"\n")
        if newline != -1:
            chunks.append(data[newline + 1 :])
            break
        chunks.append(data)
        pos = start
        if end - pos > chain.MAX_LINE_BYTES:
            raise AuditError(f"{path}: last line is longer than {chain.MAX_LINE_BYTES} bytes")
    return b"".join(reversed(chunks))


def _resume(path: pathlib.Path, wfd: int) -> tuple[int, str]:
    """Return (seq, hash) of the file's last record, or (0, GENESIS) for an empty file."""
    size = os.fstat(wfd).st_size
    if size == 0:
        return 0, chain.GENESIS
    rfd = os.open(path, _READ_FLAGS)
    try:
        # The name could have been swapped since the write fd was opened; read the same file.
        rst, wst = os.fstat(rfd), os.fstat(wfd)
        if (rst.st_dev, rst.st_ino) != (wst.st_dev, wst.st_ino):
            raise _refuse(path, "the file was replaced while opening it")
        raw = _read_tail(rfd, size, path)
    finally:
        os.close(rfd)
    try:
        link = chain.check(raw.decode("ascii"), expected_seq=None, expected_prev=None)
    except UnicodeDecodeError:
        raise AuditError(f"{path}: last line is not ASCII; refusing to resume the chain") from None
    except chain.ChainError as exc:
        raise AuditError(
            f"{path}: last line is invalid ({exc.reason}); refusing to resume the chain"
        ) from None
    return link.seq, link.hash


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
        self._lock = threading.Lock()

    @classmethod
    def open(cls, path: pathlib.Path, *, clock: Callable[[], float] = time.time) -> AuditLog:
        """Open (or create, 0600) the log at ``path`` and resume its chain.

        Only the last line is checked here, so opening a big log stays cheap; use
        ``verify_file`` to check the whole chain.
        """
        path = pathlib.Path(path)
        _prepare_dir(path.parent)
        fd = _open_fd(path)
        try:
            _check_fd(path, fd)
            seq, prev = _resume(path, fd)
        except OSError as exc:
            os.close(fd)
            raise AuditError(f"cannot read audit log {path}: {exc.strerror or exc}") from exc
        except BaseException:
            os.close(fd)
            raise
        _log.info("audit log %s opened at seq %d", path, seq)
        return cls(path, fd, clock=clock, seq=seq, prev=prev)

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

    @property
    def closed(self) -> bool:
        with self._lock:
            return self._fd is None

    def record(self, event: str, /, **fields: object) -> None:
        """Append one record and fsync it before returning (write-ahead).

        Raises AuditError, with nothing written, for a bad event name, a field that is
        not JSON-able, a secret-looking field name, or a closed or broken log.
        """
        _check_secret_names(fields)
        with self._lock:
            if self._fd is None:
                raise AuditError(f"audit log {self._path} is closed")
            if self._broken is not None:
                raise AuditError(
                    f"audit log {self._path} is unusable after an earlier failure: {self._broken}"
                )
            seq = self._seq + 1
            try:
                line = chain.seal(seq, chain.format_ts(self._clock()), event, fields, self._prev)
                # Self-check: never write a line the verifier would reject.
                link = chain.check(line, expected_seq=seq, expected_prev=self._prev)
            except chain.ChainError as exc:
                raise AuditError(f"refusing audit record {event!r}: {exc.reason}") from None
            try:
                self._write_all(self._fd, (line + "\n").encode("ascii"))
                os.fsync(self._fd)
            except OSError as exc:
                self._broken = f"{type(exc).__name__}: {exc.strerror or exc}"
                _log.error("audit log %s: write failed at seq %d: %s", self._path, seq, self._broken)
                raise AuditError(f"cannot write audit log {self._path}: {self._broken}") from exc
            self._seq = seq
            self._prev = link.hash

    @staticmethod
    def _write_all(fd: int, data: bytes) -> None:
        # One os.write writes the whole line on a local filesystem; the loop only
        # covers a short write (e.g. interrupted near a full disk).
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
