"""Opening an audit log for appending and finding where its chain ends.

Runs on the thread that opens the log (the caller of ``opsconsole.start``), before any
record is written. The file is a secret file of ``private_files`` (no symlink, a regular
file of ours, no group/world access) with one writer (``flock``). Only the last line is
checked here, so opening a big log stays cheap; ``verify_file`` checks the whole chain.

A crash (``kill -9``, power loss) can leave the last line unterminated: a record that was
never fsynced, so its caller never went on (the REPL line it guarded did not run). Such a
*torn tail* is the one thing repaired automatically: the bytes after the last newline are
saved to ``<log>.torn-<offset>`` (0600) and cut off, and the caller records that it did
so. Anything else (a last complete line that does not check) is refused with how to rotate.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import pathlib
from dataclasses import dataclass

from opsconsole import log, private_files
from opsconsole.audit import chain
from opsconsole.errors import AuditError

_log = log.get("audit")

_TAIL_CHUNK = 64 * 1024


@dataclass(frozen=True, slots=True)
class TornTail:
    """The unterminated bytes cut off the end of the log on opening, and where they went."""

    offset: int
    length: int
    sha256: str
    saved_to: pathlib.Path


@dataclass(frozen=True, slots=True)
class Resumed:
    """Where the chain of an opened log ends."""

    seq: int
    hash: str
    torn: TornTail | None


def rotate_hint(path: pathlib.Path) -> str:
    """How to start a new chain while keeping the old file as evidence."""
    return (
        "keep the file as evidence and start a new chain: "
        f"mv {path} {path}.broken-$(date -u +%Y%m%dT%H%M%SZ), "
        f"check it with `opsconsole audit verify {path}.broken-…`, then start the console again"
    )


def refuse(path: pathlib.Path, reason: str) -> AuditError:
    return AuditError(f"refusing audit log {path}: {reason}")


def open_fd(path: pathlib.Path) -> int:
    """Open the log for appending (created 0600 if missing); InsecureFileError if refused."""
    try:
        return private_files.open_checked(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, secret=True)
    except OSError as exc:
        raise AuditError(f"cannot open audit log {path}: {exc.strerror}") from exc


def lock(path: pathlib.Path, fd: int) -> None:
    """Take the single-writer lock: two writers (two processes, or two AuditLogs in one)
    would fork the chain."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise refuse(path, "another writer has it open") from None


def _last_newline(fd: int, size: int, path: pathlib.Path) -> int:
    """Offset of the last b"\\n" in the file's first ``size`` bytes, or -1; bounded read."""
    pos = size
    while pos > 0:
        if size - pos > chain.MAX_LINE_BYTES + 1:
            raise AuditError(
                f"{path}: no line end in the last {chain.MAX_LINE_BYTES} bytes; refusing to resume "
                f"the chain; {rotate_hint(path)}"
            )
        start = max(0, pos - _TAIL_CHUNK)
        newline = os.pread(fd, pos - start, start).rfind(b"\n")
        if newline != -1:
            return start + newline
        pos = start
    return -1


def _save_torn(path: pathlib.Path, fd: int, offset: int, size: int) -> TornTail:
    data = os.pread(fd, size - offset, offset)
    saved = path.with_name(f"{path.name}.torn-{offset}")
    try:
        out = private_files.create(saved)
    except FileExistsError:
        raise AuditError(
            f"{path}: the last line is torn and {saved} already exists; move that file away and start again"
        ) from None
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(out, view) :]
        os.fsync(out)
    finally:
        os.close(out)
    return TornTail(offset, len(data), hashlib.sha256(data).hexdigest(), saved)


def resume(path: pathlib.Path, wfd: int) -> Resumed:
    """Find the last record of the log open on ``wfd``; cut (and save) a torn tail first."""
    size = os.fstat(wfd).st_size
    if size == 0:
        return Resumed(0, chain.GENESIS, None)
    rfd = private_files.open_checked(path, os.O_RDONLY, secret=True)
    try:
        # The name could have been swapped since the write fd was opened; read the same file.
        rst, wst = os.fstat(rfd), os.fstat(wfd)
        if (rst.st_dev, rst.st_ino) != (wst.st_dev, wst.st_ino):
            raise refuse(path, "the file was replaced while opening it")
        torn: TornTail | None = None
        end = _last_newline(rfd, size, path)
        if end != size - 1:
            torn = _save_torn(path, rfd, end + 1, size)
            os.ftruncate(wfd, end + 1)
            os.fsync(wfd)
            _log.warning(
                "audit log %s: cut a torn last line of %d bytes (saved to %s)",
                path,
                torn.length,
                torn.saved_to,
            )
            size = end + 1
            if size == 0:
                return Resumed(0, chain.GENESIS, torn)
        start = _last_newline(rfd, size - 1, path) + 1
        raw = os.pread(rfd, size - 1 - start, start)
    finally:
        os.close(rfd)
    try:
        link = chain.check(raw.decode("ascii"), expected_seq=None, expected_prev=None)
    except (UnicodeDecodeError, chain.ChainError) as exc:
        reason = exc.reason if isinstance(exc, chain.ChainError) else "not ASCII"
        raise AuditError(
            f"{path}: last line is invalid ({reason}); refusing to resume the chain; {rotate_hint(path)}"
        ) from None
    return Resumed(link.seq, link.hash, torn)
