"""StrictModes-like file checks on real files, symlinks, FIFOs and directories."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from opsconsole import private_files as files
from opsconsole.errors import ConfigError, InsecureFileError


def make(path: Path, mode: int, text: str = "content\n") -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


def test_secret_0600_is_read(tmp_path: Path) -> None:
    p = make(tmp_path / "secrets", 0o600, "alice ABC\n")
    assert files.read_protected(p, secret=True) == "alice ABC\n"


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o601])
def test_secret_readable_by_others_refused(tmp_path: Path, mode: int) -> None:
    p = make(tmp_path / "secrets", mode)
    with pytest.raises(InsecureFileError) as info:
        files.read_protected(p, secret=True)
    message = str(info.value)
    assert str(p) in message
    assert f"chmod 600 {p}" in message
    assert f"mode {mode:04o}" in message
    assert info.value.path == str(p)


@pytest.mark.parametrize("mode", [0o664, 0o646, 0o666, 0o620])
def test_keys_writable_by_others_refused(tmp_path: Path, mode: int) -> None:
    p = make(tmp_path / "authorized_keys", mode)
    with pytest.raises(InsecureFileError, match="group/world-writable") as info:
        files.read_protected(p, secret=False)
    assert f"chmod go-w {p}" in str(info.value)


@pytest.mark.parametrize("mode", [0o644, 0o600, 0o444, 0o400])
def test_keys_readable_by_others_accepted(tmp_path: Path, mode: int) -> None:
    p = make(tmp_path / "authorized_keys", mode)
    assert files.read_protected(p, secret=False) == "content\n"


@pytest.mark.parametrize("secret", [True, False])
def test_symlink_refused(tmp_path: Path, secret: bool) -> None:
    target = make(tmp_path / "real", 0o600)
    link = tmp_path / "link"
    link.symlink_to(target)
    with pytest.raises(InsecureFileError, match="symbolic link"):
        files.read_protected(link, secret=secret)


def test_dangling_symlink_refused_not_missing(tmp_path: Path) -> None:
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "nowhere")
    with pytest.raises(InsecureFileError, match="symbolic link"):
        files.read_protected(link, secret=False)


def test_directory_refused(tmp_path: Path) -> None:
    d = tmp_path / "dir"
    d.mkdir(mode=0o700)
    with pytest.raises(InsecureFileError, match="not a regular file"):
        files.read_protected(d, secret=True)


def test_fifo_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo, 0o600)
    with pytest.raises(InsecureFileError, match="not a regular file"):
        files.read_protected(fifo, secret=True)


def test_missing_file_is_config_error(tmp_path: Path) -> None:
    p = tmp_path / "authorized_keys"
    with pytest.raises(ConfigError, match="does not exist") as info:
        files.read_protected(p, secret=False)
    assert not isinstance(info.value, InsecureFileError)
    assert str(p) in str(info.value)


def test_invalid_utf8_names_the_file(tmp_path: Path) -> None:
    p = tmp_path / "authorized_keys"
    p.write_bytes(b"ok\n\xff\xfe\n")
    p.chmod(0o600)
    with pytest.raises(ConfigError, match="not valid UTF-8") as info:
        files.read_protected(p, secret=False)
    assert str(p) in str(info.value)


def test_oversized_file_refused(tmp_path: Path) -> None:
    p = tmp_path / "big"
    p.write_bytes(b"#" * (files.MAX_BYTES + 1))
    p.chmod(0o600)
    with pytest.raises(ConfigError, match="larger than"):
        files.read_protected(p, secret=False)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give a file to another user")
def test_file_owned_by_another_user_refused(tmp_path: Path) -> None:
    p = make(tmp_path / "authorized_keys", 0o600)
    os.chown(p, 54321, -1)
    with pytest.raises(InsecureFileError, match="owned by uid 54321"):
        files.read_protected(p, secret=False)


def test_write_private_creates_0600(tmp_path: Path) -> None:
    p = tmp_path / "state.json"
    old_umask = os.umask(0)  # even with a permissive umask the file is never wider than 0600
    try:
        files.write_private(p, "first\n")
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(p.stat().st_mode) == 0o600
    assert p.read_text() == "first\n"
    files.write_private(p, "second\n")
    assert p.read_text() == "second\n"
    assert stat.S_IMODE(p.stat().st_mode) == 0o600
    assert sorted(os.listdir(tmp_path)) == ["state.json"]


def test_write_private_replaces_a_wider_file(tmp_path: Path) -> None:
    p = make(tmp_path / "secrets", 0o644, "old\n")
    files.write_private(p, "new\n")
    assert stat.S_IMODE(p.stat().st_mode) == 0o600
    assert files.read_protected(p, secret=True) == "new\n"


def test_write_private_failure_leaves_no_temp_file(tmp_path: Path) -> None:
    make(tmp_path / "other", 0o600)
    target = tmp_path / "target"
    target.mkdir()
    (target / "inside").write_text("x")  # a non-empty directory: os.replace must fail
    before = sorted(os.listdir(tmp_path))
    with pytest.raises(ConfigError, match="cannot write"):
        files.write_private(target, "data\n")
    assert sorted(os.listdir(tmp_path)) == before
    assert target.is_dir()


def test_write_private_into_missing_dir_is_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot create"):
        files.write_private(tmp_path / "missing" / "file", "x")


def test_ensure_private_dir_creates_0700_with_parents(tmp_path: Path) -> None:
    d = tmp_path / "a" / "b" / "c"
    files.ensure_private_dir(d)
    for p in (tmp_path / "a", tmp_path / "a" / "b", d):
        assert p.is_dir()
        assert stat.S_IMODE(p.stat().st_mode) == 0o700
    files.ensure_private_dir(d)  # idempotent


def test_ensure_private_dir_accepts_0755(tmp_path: Path) -> None:
    d = tmp_path / "etc"
    d.mkdir(mode=0o755)
    d.chmod(0o755)
    files.ensure_private_dir(d)


def test_ensure_private_dir_refuses_group_writable(tmp_path: Path) -> None:
    d = tmp_path / "shared"
    d.mkdir()
    d.chmod(0o775)
    with pytest.raises(InsecureFileError, match=r"group/world-writable \(mode 0775\)"):
        files.ensure_private_dir(d)


def test_ensure_private_dir_refuses_symlink(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    link = tmp_path / "link"
    link.symlink_to(real)
    with pytest.raises(InsecureFileError, match="symbolic link"):
        files.ensure_private_dir(link)


def test_ensure_private_dir_refuses_a_file(tmp_path: Path) -> None:
    p = make(tmp_path / "file", 0o600)
    with pytest.raises(InsecureFileError, match="not a directory"):
        files.ensure_private_dir(p)
