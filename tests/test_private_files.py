"""The one private-file policy (opsconsole.private_files), attacked through each of its users.

Each rule is attacked three times: through auth (the TOTP secrets file, authorized_keys,
the keys directory ``opsconsole enroll`` writes), through the audit log (its file and
directory) and through the tracemalloc snapshot store of diagnostics (its files and
directory). Every refusal is the same InsecureFileError naming the path, the reason and
the fix.
"""

from __future__ import annotations

import os
import stat
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

from opsconsole import private_files
from opsconsole.audit import AuditLog
from opsconsole.auth.keys import load_authorized_keys
from opsconsole.auth.totp import load_secrets
from opsconsole.cli.enroll import enroll
from opsconsole.diagnostics.service import Diagnostics
from opsconsole.errors import ConfigError, InsecureFileError, StateError

SECRET_LINE = "alice JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP\n"
KEY_LINE = (
    'user="alice" ssh-ed25519 '
    "AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl alice@laptop\n"
)


def make(path: Path, mode: int, text: str = "x\n") -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


@pytest.fixture
def diag(tmp_path: Path) -> Iterator[Diagnostics]:
    tracemalloc.stop()
    tracemalloc.start(1)
    d = Diagnostics(dump_dir=tmp_path / "state" / "dumps")
    try:
        yield d
    finally:
        d.close()
        tracemalloc.stop()


@pytest.fixture
def umask_277() -> Iterator[None]:
    # A umask that would leave new files unreadable and directories unwritable by their owner.
    old = os.umask(0o277)
    try:
        yield
    finally:
        os.umask(old)


# --- what is created: directories 0700, files 0600, whatever the umask ---------------------


def test_created_dirs_and_files_have_exact_modes_whatever_the_umask(tmp_path: Path, umask_277: None) -> None:
    d = tmp_path / "a" / "b"
    private_files.ensure_private_dir(d)
    for p in (tmp_path / "a", d):
        assert stat.S_IMODE(os.lstat(p).st_mode) == 0o700
    fd = private_files.create(d / "new")
    os.close(fd)
    assert stat.S_IMODE(os.lstat(d / "new").st_mode) == 0o600
    private_files.write_private(d / "secrets", SECRET_LINE)
    assert stat.S_IMODE(os.lstat(d / "secrets").st_mode) == 0o600


def test_the_audit_log_and_its_dir_are_created_private(tmp_path: Path, umask_277: None) -> None:
    path = tmp_path / "audit" / "audit.jsonl"
    AuditLog.open(path).close()
    assert stat.S_IMODE(os.lstat(path.parent).st_mode) == 0o700
    assert stat.S_IMODE(os.lstat(path).st_mode) == 0o600


def test_the_dump_dir_is_created_private(diag: Diagnostics, tmp_path: Path) -> None:
    for p in (tmp_path / "state", tmp_path / "state" / "dumps"):
        assert stat.S_IMODE(os.lstat(p).st_mode) == 0o700


def test_create_never_reuses_or_follows_an_existing_path(tmp_path: Path) -> None:
    target = make(tmp_path / "target", 0o600, "keep\n")
    (tmp_path / "planted").symlink_to(target)
    with pytest.raises(FileExistsError):
        private_files.create(tmp_path / "planted")
    with pytest.raises(FileExistsError):
        private_files.create(target)
    assert target.read_text() == "keep\n"


# --- a secret file others can read --------------------------------------------------------


@pytest.mark.parametrize("mode", [0o604, 0o640, 0o644])
def test_auth_refuses_a_readable_secrets_file(tmp_path: Path, mode: int) -> None:
    p = make(tmp_path / "totp_secrets", mode, SECRET_LINE)
    with pytest.raises(InsecureFileError, match=rf"accessible by group/others \(mode 0{mode:o}\).*chmod 600"):
        load_secrets(p)


def test_audit_refuses_a_readable_log(tmp_path: Path) -> None:
    path = tmp_path / "audit" / "audit.jsonl"
    AuditLog.open(path).close()
    path.chmod(0o640)
    with pytest.raises(InsecureFileError, match=r"accessible by group/others \(mode 0640\).*chmod 600"):
        AuditLog.open(path)


def test_diagnostics_refuses_a_snapshot_file_made_readable(diag: Diagnostics) -> None:
    diag.snapshots.take("one")
    diag.snapshots.path("one").chmod(0o644)
    with pytest.raises(StateError, match=r"accessible by group/others \(mode 0644\)"):
        diag.snapshots.top("one", key="traceback")


def test_authorized_keys_may_be_readable_but_not_writable(tmp_path: Path) -> None:
    p = make(tmp_path / "authorized_keys", 0o644, KEY_LINE)
    assert len(load_authorized_keys(p).entries) == 1
    p.chmod(0o664)
    with pytest.raises(InsecureFileError, match=r"group/world-writable \(mode 0664\).*chmod go-w"):
        load_authorized_keys(p)


# --- a directory others can write ----------------------------------------------------------


def test_enroll_refuses_a_group_writable_keys_dir(tmp_path: Path) -> None:
    d = tmp_path / "keys"
    d.mkdir()
    d.chmod(0o770)
    key = KEY_LINE.split(" ", 1)[1]
    with pytest.raises(InsecureFileError, match=r"group/world-writable \(mode 0770\)"):
        enroll("alice", key, role="operator", keys_dir=d)
    assert os.listdir(d) == []
    assert stat.S_IMODE(os.lstat(d).st_mode) == 0o770  # refused, never "fixed"


@pytest.mark.parametrize("mode", [0o770, 0o1777])
def test_audit_refuses_a_dir_others_can_write(tmp_path: Path, mode: int) -> None:
    # Even with the sticky bit: whoever may create files there can plant the log first.
    d = tmp_path / "audit"
    d.mkdir()
    d.chmod(mode)
    with pytest.raises(InsecureFileError, match="group/world-writable"):
        AuditLog.open(d / "audit.jsonl")
    assert not (d / "audit.jsonl").exists()


def test_diagnostics_refuses_a_dump_dir_others_can_enter(tmp_path: Path) -> None:
    d = tmp_path / "dumps"
    d.mkdir()
    d.chmod(0o750)
    with pytest.raises(InsecureFileError, match=r"accessible by group/others \(mode 0750\).*chmod 700"):
        Diagnostics(dump_dir=d)


def test_diagnostics_checks_the_dump_dir_again_before_each_write(diag: Diagnostics) -> None:
    diag.snapshots.directory.chmod(0o770)
    with pytest.raises(InsecureFileError, match="group/others"):
        diag.snapshots.take("late")


# --- a symlink swapped in ------------------------------------------------------------------


def test_auth_refuses_a_symlinked_secrets_file(tmp_path: Path) -> None:
    real = make(tmp_path / "real", 0o600, SECRET_LINE)
    (tmp_path / "totp_secrets").symlink_to(real)
    with pytest.raises(InsecureFileError, match="symbolic link"):
        load_secrets(tmp_path / "totp_secrets")


def test_auth_refuses_a_symlinked_keys_dir(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    (tmp_path / "keys").symlink_to(real)
    with pytest.raises(InsecureFileError, match="symbolic link; point the setting at the real directory"):
        private_files.ensure_private_dir(tmp_path / "keys")


def test_audit_refuses_a_log_swapped_for_a_symlink(tmp_path: Path) -> None:
    path = tmp_path / "audit" / "audit.jsonl"
    AuditLog.open(path).close()
    elsewhere = make(tmp_path / "elsewhere", 0o600, "")
    path.unlink()
    path.symlink_to(elsewhere)
    with pytest.raises(InsecureFileError, match="symbolic link"):
        AuditLog.open(path)
    assert elsewhere.read_text() == ""


def test_diagnostics_refuses_a_snapshot_swapped_for_a_symlink(diag: Diagnostics, tmp_path: Path) -> None:
    diag.snapshots.take("one")
    path = diag.snapshots.path("one")
    decoy = tmp_path / "decoy"
    os.rename(path, decoy)
    path.symlink_to(decoy)
    with pytest.raises(StateError, match="symbolic link"):
        diag.snapshots.top("one", key="traceback")


def test_diagnostics_refuses_a_dump_dir_swapped_for_a_symlink(diag: Diagnostics, tmp_path: Path) -> None:
    d = diag.snapshots.directory
    os.rename(d, tmp_path / "moved")
    d.symlink_to(tmp_path / "moved")
    with pytest.raises(InsecureFileError, match="symbolic link"):
        diag.snapshots.take("late")
    assert os.listdir(tmp_path / "moved") == []


# --- not a regular file --------------------------------------------------------------------


def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "totp_secrets"
    os.mkfifo(fifo, 0o600)
    with pytest.raises(InsecureFileError, match="not a regular file"):
        load_secrets(fifo)
    audit = tmp_path / "audit" / "audit.jsonl"
    audit.parent.mkdir(mode=0o700)
    os.mkfifo(audit, 0o600)
    with pytest.raises(InsecureFileError, match="not a regular file"):
        AuditLog.open(audit)


# --- a file owned by someone else ----------------------------------------------------------

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give a file to another user")


@needs_root
def test_auth_refuses_a_secrets_file_of_another_user(tmp_path: Path) -> None:
    p = make(tmp_path / "totp_secrets", 0o600, SECRET_LINE)
    os.chown(p, 54321, -1)
    with pytest.raises(InsecureFileError, match="owned by uid 54321"):
        load_secrets(p)


@needs_root
def test_audit_refuses_a_log_of_another_user(tmp_path: Path) -> None:
    path = tmp_path / "audit" / "audit.jsonl"
    AuditLog.open(path).close()
    os.chown(path, 54321, -1)
    with pytest.raises(InsecureFileError, match="owned by uid 54321"):
        AuditLog.open(path)


@needs_root
def test_diagnostics_refuses_a_dump_dir_of_another_user(tmp_path: Path) -> None:
    d = tmp_path / "dumps"
    d.mkdir(mode=0o700)
    os.chown(d, 54321, -1)
    with pytest.raises(InsecureFileError, match="owned by uid 54321"):
        Diagnostics(dump_dir=d)


# --- errors --------------------------------------------------------------------------------


def test_a_refusal_is_a_config_error_naming_path_and_reason(tmp_path: Path) -> None:
    p = make(tmp_path / "totp_secrets", 0o644, SECRET_LINE)
    with pytest.raises(ConfigError) as info:
        private_files.read_protected(p, secret=True)
    assert isinstance(info.value, InsecureFileError)
    assert info.value.path == str(p) and "0644" in info.value.reason
