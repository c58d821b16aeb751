"""One policy for every private file and directory the console reads or writes.

Like OpenSSH's StrictModes: whoever can write the keys file can log in, and whoever can
write a directory can swap the files in it, so anything another user could have written is
refused. Each caller says which of two kinds of content a path holds:

- ``secret=True``: TOTP seeds and state, the SSH host key, key files, the CLI's token
  cache, the audit log, dumps and their directory, heap snapshots, recordings. Nobody but
  the owner may read or write it.
- ``secret=False``: ``authorized_keys``, and directories that only hold secret files
  (the state directory, a keys directory such as ``/etc/opsconsole``). Others may read it,
  never write it.

For every path, existing or not:

- a symbolic link is refused (``O_NOFOLLOW``; an ``lstat`` first only for a clear message);
- a file must be a regular file, a directory a directory;
- the owner must be this process's effective uid, or root (a package-managed file);
- group/world write is refused; for secrets, any group/world access is.

What the console creates: files 0600 with ``O_CREAT|O_EXCL|O_NOFOLLOW`` (never an existing
file, never through a link), rewritten only by an atomic rename; directories 0700, missing
parents included. New modes are exact whatever the umask (``fchmod`` of the new descriptor);
an existing path is never chmod-ed, so a refusal is never "fixed" behind the operator's back.

A file is checked on ``fstat`` of the descriptor that is then used, so a file swapped between
check and use is caught; a directory is checked by ``lstat`` before each use, and the files
in it are still opened without following links.

A refusal raises ``InsecureFileError`` (a ``ConfigError``) naming the path, the reason and
the fix. ``read_protected``, ``write_private`` and ``ensure_private_dir`` report other OS
errors as ``ConfigError``; ``open_checked`` and ``create`` let ``OSError`` through, for
callers whose failures mean something else (the audit log, a dump). Every function runs on
the calling thread and holds no state.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from pathlib import Path

from opsconsole.errors import ConfigError, InsecureFileError

# Keys and secrets files are a few kilobytes; a cap turns a wrong path (a log file,
# /dev/zero behind a bind mount) into a clear error instead of a memory spike.
MAX_BYTES = 1 << 20

# Added to every open. Without O_NONBLOCK, opening a FIFO blocks until a writer shows up, so
# the "not a regular file" refusal would never be reached; regular files ignore the flag.
_OPEN_FLAGS = os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL
FILE_MODE = 0o600
DIR_MODE = 0o700


def _mode(st: os.stat_result) -> str:
    return f"{stat.S_IMODE(st.st_mode):04o}"


def check(path: Path, st: os.stat_result, *, secret: bool, directory: bool = False) -> None:
    """Apply the policy to ``st`` (an ``lstat`` or ``fstat`` of ``path``); InsecureFileError if refused."""
    kind = "directory" if directory else "file"
    if stat.S_ISLNK(st.st_mode):
        raise InsecureFileError(str(path), f"is a symbolic link; point the setting at the real {kind}")
    if directory and not stat.S_ISDIR(st.st_mode):
        raise InsecureFileError(str(path), "is not a directory")
    if not directory and not stat.S_ISREG(st.st_mode):
        raise InsecureFileError(str(path), "is not a regular file")
    # Root may own it (a package-managed config); anyone else could rewrite it behind our back.
    euid = os.geteuid()
    if st.st_uid not in (euid, 0):
        raise InsecureFileError(
            str(path), f"is owned by uid {st.st_uid}, not by uid {euid} (this process) or root"
        )
    if secret and st.st_mode & 0o077:
        want = "700" if directory else "600"
        raise InsecureFileError(
            str(path), f"is accessible by group/others (mode {_mode(st)}); run chmod {want} {path}"
        )
    if st.st_mode & 0o022:
        raise InsecureFileError(
            str(path), f"is group/world-writable (mode {_mode(st)}); run chmod go-w {path}"
        )


def open_checked(path: Path, flags: int, *, secret: bool) -> int:
    """Open the file ``path`` with ``flags`` and return the descriptor once its ``fstat`` passes.

    Never follows a link. A file created here (``O_CREAT``) is exactly 0600 whatever the
    umask. InsecureFileError if the file is refused; any other failure is the ``OSError``
    itself (FileNotFoundError, FileExistsError, EACCES, ...).
    """
    if flags & os.O_CREAT and not flags & os.O_EXCL:
        # Create-or-open: try a new file first so a new one gets the exact mode.
        try:
            return open_checked(path, flags | os.O_EXCL, secret=secret)
        except FileExistsError:
            flags &= ~os.O_CREAT
    if not flags & os.O_EXCL:
        # For a clear message, and so a FIFO is never opened; the fstat below is what counts.
        lst = os.lstat(path)
        if not stat.S_ISREG(lst.st_mode):
            check(path, lst, secret=secret)
    try:
        fd = os.open(path, flags | _OPEN_FLAGS, FILE_MODE)
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # became a symlink after the lstat above
            raise InsecureFileError(str(path), "is a symbolic link") from None
        raise
    try:
        if flags & os.O_EXCL:
            os.fchmod(fd, FILE_MODE)  # the file is new and ours: make the mode exact
        check(path, os.fstat(fd), secret=secret)
    except BaseException:
        os.close(fd)
        raise
    return fd


def create(path: Path) -> int:
    """Create ``path`` as a new 0600 file open for writing (never an existing file or a link).

    ``FileExistsError`` if anything is at ``path`` already; other ``OSError`` as raised.
    """
    return open_checked(path, _CREATE_FLAGS, secret=True)


def read_protected(path: Path, *, secret: bool) -> str:
    """Return the UTF-8 text of ``path`` once the policy accepts it.

    ``secret=False`` (authorized keys): nobody but the owner may write the file.
    ``secret=True`` (TOTP seeds and the like): nobody but the owner may even read it.
    """
    try:
        fd = open_checked(path, os.O_RDONLY, secret=secret)
    except FileNotFoundError:
        raise ConfigError(f"{path} does not exist; create it or fix the configured path") from None
    except OSError as exc:
        raise ConfigError(f"cannot open {path}: {exc.strerror}") from None
    try:
        chunks: list[bytes] = []
        size = 0
        while size <= MAX_BYTES:
            chunk = os.read(fd, MAX_BYTES + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if len(data) > MAX_BYTES:
        raise ConfigError(f"{path} is larger than {MAX_BYTES} bytes; is this the right file?")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path} is not valid UTF-8 (byte {exc.start})") from None


def _fsync_dir(directory: Path) -> None:
    # The rename is only durable once the directory entry is on disk.
    dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def write_private(path: Path, data: str) -> None:
    """Replace ``path`` atomically with ``data``; the file is 0600 from its creation.

    A reader sees either the old or the new file, never a partial one, and the
    content is never briefly world-readable (no chmod after the fact).
    """
    directory = path.parent
    tmp = directory / f".{path.name}.{secrets.token_hex(8)}.tmp"
    encoded = data.encode("utf-8")
    try:
        fd = create(tmp)
    except OSError as exc:
        raise ConfigError(f"cannot create a file in {directory}: {exc.strerror}") from None
    try:
        try:
            view = memoryview(encoded)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException as exc:
        # Nothing half-written may stay behind, whatever went wrong.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise ConfigError(f"cannot write {path}: {exc.strerror}") from None
        raise
    try:
        _fsync_dir(directory)
    except OSError as exc:
        # The new content is in place; only durability across a crash is in doubt. The
        # logging machinery is imported here, on this rare path, because the CLI's verbs
        # read and write private files and should not pay for it at start-up.
        from opsconsole import log

        warn = log.get("private_files").warning
        warn("%s: written, but fsync of %s failed: %s", path, directory, exc.strerror)


def check_dir(path: Path, *, secret: bool) -> None:
    """Apply the policy to the existing directory ``path`` (InsecureFileError, or ConfigError)."""
    try:
        st = os.lstat(path)
    except OSError as exc:
        raise ConfigError(f"cannot use directory {path}: {exc.strerror}") from None
    check(path, st, secret=secret, directory=True)


def _make_dir(directory: Path) -> None:
    try:
        os.mkdir(directory, DIR_MODE)
    except FileExistsError:
        return  # created concurrently, or a link or file is there: check_dir decides
    except OSError as exc:
        raise ConfigError(f"cannot create directory {directory}: {exc.strerror}") from None
    # mkdir's mode went through the umask; the directory is new and ours: make it exact.
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise ConfigError(f"cannot open directory {directory}: {exc.strerror}") from None
    try:
        os.fchmod(fd, DIR_MODE)
    finally:
        os.close(fd)


def ensure_private_dir(path: Path, *, secret: bool = False) -> None:
    """Create ``path`` (and missing parents) with mode 0700, or check the existing one.

    ``secret=False``: an existing directory may be readable by others (e.g.
    ``/etc/opsconsole``) but not writable by them: whoever can write the directory can
    replace the files in it. ``secret=True`` (dumps): no group/world access at all.
    """
    missing: list[Path] = []
    probe = path
    while not os.path.lexists(probe):
        missing.append(probe)
        if probe.parent == probe:
            break
        probe = probe.parent
    for directory in reversed(missing):
        _make_dir(directory)
    check_dir(path, secret=secret)
