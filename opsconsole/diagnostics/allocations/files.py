"""The files of a snapshot store: one private directory, one pickle per snapshot.

Each snapshot is written as ``<name>.tracemalloc`` — a pickle ``tracemalloc.Snapshot.load``
reads — into a private (0700) directory; the file is created with O_EXCL|O_NOFOLLOW, mode
0600, and removed again on any failure so no half-written file remains. Names are checked against a
strict pattern (``check_name``) before they get near a path. A file that exists already is never
overwritten, and files are read back without following links.
"""

from __future__ import annotations

import os
import pickle
import re
import stat
import tracemalloc
from pathlib import Path

from opsconsole import log
from opsconsole.errors import InsecureFileError, InvalidRequestError, StateError

_log = log.get("diagnostics.snapshots")  # the store's logger: one name for operators to tune

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")  # used with fullmatch: no "\n" slips by
SUFFIX = ".tracemalloc"
_WRITE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK


def check_name(name: object) -> str:
    """``name`` if it is a valid snapshot name, else InvalidRequestError. Any thread."""
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise InvalidRequestError(
            "a snapshot name is 1-64 characters of A-Z a-z 0-9 _ . - and starts with a letter or digit"
        )
    return name


class SnapshotFiles:
    """The snapshot files in ``directory``. Names passed in must have passed ``check_name``.

    Errors: an unsafe directory → InsecureFileError (a ConfigError); a file that cannot be
    created, written or read → StateError. Deleting never raises: a failure is logged.
    """

    def __init__(self, directory: Path) -> None:
        """Create ``directory`` (exactly 0700) if it is missing; an existing one must already be safe."""
        self.directory = directory
        self.directory.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.mkdir(self.directory, 0o700)
        except FileExistsError:
            pass  # an existing directory must pass check_dir as it is: never loosened or fixed up
        else:
            os.chmod(self.directory, 0o700)  # exactly 0700, whatever the umask
        self.check_dir()

    def path(self, name: str) -> Path:
        return self.directory / (name + SUFFIX)

    def check_dir(self) -> None:
        path = self.directory
        try:
            st = os.lstat(path)
        except OSError as exc:
            raise InsecureFileError(str(path), f"cannot be used: {exc.strerror}") from exc
        if stat.S_ISLNK(st.st_mode):
            raise InsecureFileError(str(path), "is a symbolic link; point the setting at the real directory")
        if not stat.S_ISDIR(st.st_mode):
            raise InsecureFileError(str(path), "is not a directory")
        if st.st_uid != os.geteuid():
            raise InsecureFileError(str(path), f"is owned by uid {st.st_uid}, not by this process")
        if st.st_mode & 0o077:
            mode = f"{stat.S_IMODE(st.st_mode):04o}"
            raise InsecureFileError(
                str(path), f"is accessible by group/others (mode {mode}); run chmod 700 {path}"
            )

    def write(self, name: str, snapshot: tracemalloc.Snapshot) -> int:
        """Write the pickle with O_EXCL; on any failure the file is removed again."""
        self.check_dir()  # again: the directory could have been swapped since __init__
        path = self.path(name)
        try:
            fd = os.open(path, _WRITE_FLAGS, 0o600)
        except FileExistsError as exc:
            raise StateError(
                f"{path} exists but is not a snapshot of this store; not overwriting it"
            ) from exc
        except OSError as exc:
            raise StateError(f"cannot create {path}: {exc.strerror}") from exc
        # From here on the file is ours: whatever fails, it goes.
        try:
            try:
                fh = os.fdopen(fd, "wb")
            except BaseException:
                os.close(fd)
                raise
            with fh:
                os.fchmod(fh.fileno(), 0o600)  # exactly 0600, whatever the umask
                pickle.dump(snapshot, fh, protocol=pickle.HIGHEST_PROTOCOL)
                fh.flush()
                os.fsync(fh.fileno())
                size = os.fstat(fh.fileno()).st_size
        except BaseException as exc:
            self.unlink(name)
            if isinstance(exc, OSError):
                raise StateError(f"could not write {path}: {exc.strerror or exc}") from exc
            raise
        return size

    def load(self, name: str) -> tracemalloc.Snapshot:
        path = self.path(name)
        try:
            with os.fdopen(os.open(path, _READ_FLAGS), "rb") as fh:
                if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
                    raise StateError(f"{path} is not a regular file")
                # Our own file, written by this store into its 0700 directory and opened
                # without following links: not untrusted input.
                snapshot = pickle.load(fh)  # noqa: S301
        except OSError as exc:
            raise StateError(f"cannot read {path}: {exc.strerror}") from exc
        if not isinstance(snapshot, tracemalloc.Snapshot):
            raise StateError(f"{path} does not hold a tracemalloc snapshot")
        return snapshot

    def unlink(self, name: str) -> None:
        try:
            os.unlink(self.path(name))
        except FileNotFoundError:
            pass
        except OSError as exc:
            _log.warning("could not delete snapshot file %s: %s", self.path(name), exc)
