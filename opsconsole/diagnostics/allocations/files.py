"""The files of a snapshot store: one private directory, one pickle per snapshot.

Each snapshot is written as ``<name>.tracemalloc`` — a pickle ``tracemalloc.Snapshot.load``
reads — into a private (0700) directory; the file is created by ``private_files.create``
(O_EXCL|O_NOFOLLOW, mode 0600) and removed again on any failure so no half-written file
remains. Names are checked against a strict pattern (``check_name``) before they get near a
path. A file that exists already is never overwritten, and files are read back through
``private_files`` (no link, a regular 0600 file of ours).
"""

from __future__ import annotations

import os
import pickle
import re
import tracemalloc
from pathlib import Path

from opsconsole import log, private_files
from opsconsole.errors import InsecureFileError, InvalidRequestError, StateError

_log = log.get("diagnostics.snapshots")  # the store's logger: one name for operators to tune

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")  # used with fullmatch: no "\n" slips by
SUFFIX = ".tracemalloc"


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
        """Create ``directory`` (exactly 0700) if it is missing; an existing one must already be
        private (``private_files``, secret): it is never loosened or fixed up."""
        self.directory = directory
        private_files.ensure_private_dir(directory, secret=True)

    def path(self, name: str) -> Path:
        return self.directory / (name + SUFFIX)

    def check_dir(self) -> None:
        private_files.check_dir(self.directory, secret=True)

    def write(self, name: str, snapshot: tracemalloc.Snapshot) -> int:
        """Write the pickle with O_EXCL; on any failure the file is removed again."""
        self.check_dir()  # again: the directory could have been swapped since __init__
        path = self.path(name)
        try:
            fd = private_files.create(path)
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
            with os.fdopen(private_files.open_checked(path, os.O_RDONLY, secret=True), "rb") as fh:
                # Our own file, written by this store into its 0700 directory and opened
                # without following links: not untrusted input.
                snapshot = pickle.load(fh)  # noqa: S301
        except InsecureFileError as exc:
            raise StateError(str(exc)) from exc
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
