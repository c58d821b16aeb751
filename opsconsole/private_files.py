"""StrictModes-like checks for the files that hold keys and secrets.

OpenSSH refuses an ``authorized_keys`` file that someone else could have written,
because whoever can write it can log in. The same holds for our keys file, and a
secrets file (TOTP seeds) must additionally not be *readable* by anyone else.

Reads go through one open file descriptor: the checks look at ``fstat`` of the
descriptor that is then read, so the file cannot be swapped between check and use.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from pathlib import Path

from opsconsole import log
from opsconsole.errors import ConfigError, InsecureFileError

_log = log.get("private_files")

# Keys and secrets files are a few kilobytes; a cap turns a wrong path (a log file,
# /dev/zero behind a bind mount) into a clear error instead of a memory spike.
MAX_BYTES = 1 << 20

_READ_FLAGS = (
    os.O_RDONLY
    | os.O_NOFOLLOW
    | os.O_CLOEXEC
    # Without O_NONBLOCK, opening a FIFO blocks until a writer shows up, so the
    # "not a regular file" refusal would never be reached. Reads of a regular
    # file ignore the flag.
    | os.O_NONBLOCK
    | os.O_NOCTTY
)


def _mode(st: os.stat_result) -> str:
    return f"{stat.S_IMODE(st.st_mode):04o}"


def _check_owner(path: Path, st: os.stat_result) -> None:
    # Root may own the file (a package-managed config); anyone else but us could
    # rewrite it behind our back.
    euid = os.geteuid()
    if st.st_uid not in (euid, 0):
        raise InsecureFileError(
            str(path), f"is owned by uid {st.st_uid}, not by uid {euid} (this process) or root"
        )


def check_stat(path: Path, st: os.stat_result, *, secret: bool) -> None:
    """Apply the file rules to an ``os.stat_result`` (raises ``InsecureFileError``)."""
    if stat.S_ISLNK(st.st_mode):
        raise InsecureFileError(str(path), "is a symbolic link; point the setting at the real file")
    if not stat.S_ISREG(st.st_mode):
        raise InsecureFileError(str(path), "is not a regular file")
    _check_owner(path, st)
    if secret:
        if st.st_mode & 0o077:
            raise InsecureFileError(
                str(path), f"is accessible by group/others (mode {_mode(st)}); run chmod 600 {path}"
            )
    elif st.st_mode & 0o022:
        raise InsecureFileError(
            str(path), f"is group/world-writable (mode {_mode(st)}); run chmod go-w {path}"
        )


def read_protected(path: Path, *, secret: bool) -> str:
    """Return the UTF-8 text of ``path`` after the StrictModes-like checks.

    ``secret=False`` (authorized keys): nobody but the owner may write the file.
    ``secret=True`` (TOTP seeds and the like): nobody but the owner may even read it.
    """
    try:
        # lstat first only for a clear message; O_NOFOLLOW below is what enforces it.
        lst = os.lstat(path)
    except FileNotFoundError:
        raise ConfigError(f"{path} does not exist; create it or fix the configured path") from None
    except OSError as exc:
        raise ConfigError(f"cannot stat {path}: {exc.strerror}") from None
    if stat.S_ISLNK(lst.st_mode):
        raise InsecureFileError(str(path), "is a symbolic link; point the setting at the real file")

    try:
        fd = os.open(path, _READ_FLAGS)
    except FileNotFoundError:
        raise ConfigError(f"{path} does not exist; create it or fix the configured path") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # became a symlink after the lstat above
            raise InsecureFileError(str(path), "is a symbolic link") from None
        raise ConfigError(f"cannot open {path}: {exc.strerror}") from None

    try:
        check_stat(path, os.fstat(fd), secret=secret)
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
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
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
        # The new content is in place; only durability across a crash is in doubt.
        _log.warning("%s: written, but fsync of %s failed: %s", path, directory, exc.strerror)


def _check_dir(path: Path, st: os.stat_result) -> None:
    if stat.S_ISLNK(st.st_mode):
        raise InsecureFileError(str(path), "is a symbolic link; point the setting at the real directory")
    if not stat.S_ISDIR(st.st_mode):
        raise InsecureFileError(str(path), "is not a directory")
    _check_owner(path, st)
    if st.st_mode & 0o022:
        raise InsecureFileError(
            str(path), f"is group/world-writable (mode {_mode(st)}); run chmod go-w {path}"
        )


def ensure_private_dir(path: Path) -> None:
    """Create ``path`` (and missing parents) with mode 0700, or check the existing one.

    An existing directory may be readable by others (e.g. ``/etc/opsconsole``) but not
    writable by them: whoever can write the directory can replace the files in it.
    """
    missing: list[Path] = []
    probe = path
    while not os.path.lexists(probe):
        missing.append(probe)
        if probe.parent == probe:
            break
        probe = probe.parent
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=0o700)
        except FileExistsError:
            pass  # created concurrently; the checks below still apply
        except OSError as exc:
            raise ConfigError(f"cannot create directory {directory}: {exc.strerror}") from None
    try:
        st = os.lstat(path)
    except OSError as exc:
        raise ConfigError(f"cannot stat {path}: {exc.strerror}") from None
    _check_dir(path, st)
