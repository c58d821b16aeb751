"""Test clients for the SSH port: the real OpenSSH ``ssh``/``sftp`` in a pseudo-terminal, and a
paramiko client for the attacks OpenSSH will not make (forged signatures, steps out of order)."""

from __future__ import annotations

import fcntl
import os
import re
import select
import shutil
import struct
import subprocess
import termios
import time
from collections.abc import Callable
from pathlib import Path

import paramiko
import pytest

from opsconsole.console import Console
from testkit.support import FakeClock, Operator
from testkit.terminal_client import clean

PROMPT = r">>>"


def require_openssh() -> None:
    """OpenSSH's client is the acceptance test's subject: skip loudly on a laptop, fail in CI."""
    missing = [tool for tool in ("ssh", "sftp", "setsid") if shutil.which(tool) is None]
    if missing:
        message = f"OpenSSH client tools missing: {', '.join(missing)} (apt-get install openssh-client)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


def known_hosts(console: Console, directory: Path) -> Path:
    """A known_hosts file pinning the console's host key, so strict checking can stay on."""
    assert console.ssh is not None
    path = directory / "known_hosts"
    path.write_text(f"[127.0.0.1]:{console.ssh_port} ssh-ed25519 {console.ssh.host_key.get_base64()}\n")
    return path


def ssh_options(console: Console, key: Path, hosts: Path) -> list[str]:
    return [
        "-F",
        "/dev/null",
        "-i",
        str(key),
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "IdentityAgent=none",
        "-o",
        f"UserKnownHostsFile={hosts}",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        "BatchMode=no",
        "-o",
        "ConnectTimeout=10",
    ]


class PtyClient:
    """An OpenSSH program with a real controlling terminal (``setsid -c``), as a person runs it."""

    def __init__(self, argv: list[str], rows: int = 30, cols: int = 100, *, cwd: Path | None = None) -> None:
        self.master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        # ssh reads the TOTP prompt's answer from /dev/tty, so the pty must be its controlling tty.
        self.proc = subprocess.Popen(
            ["setsid", "-w", "-c", *argv], stdin=slave, stdout=slave, stderr=slave, close_fds=True, cwd=cwd
        )
        os.close(slave)
        self.seen = bytearray()

    @property
    def text(self) -> str:
        return clean(self.seen.decode("utf-8", "replace"))

    def expect(self, pattern: str, timeout: float = 15.0, *, start: int = 0) -> None:
        deadline = time.monotonic() + timeout
        while not re.search(pattern, self.text[start:], re.MULTILINE):
            left = deadline - time.monotonic()
            assert left > 0, f"{pattern!r} not seen; got:\n{self.text[-1500:]}"
            if not self._read(left):
                assert re.search(pattern, self.text[start:], re.MULTILINE), (
                    f"{pattern!r} not seen before the end; got:\n{self.text[-1500:]}"
                )
                return

    def stays_quiet(self, seconds: float) -> None:
        """Read for ``seconds``, failing at the first byte the program prints or if it exits."""
        deadline = time.monotonic() + seconds
        before = len(self.seen)
        while (left := deadline - time.monotonic()) > 0:
            alive = self._read(left)
            assert alive and len(self.seen) == before and self.proc.poll() is None, (
                f"expected silence for {seconds} s; got:\n{self.text[-1500:]}"
            )

    def _read(self, timeout: float) -> bool:
        ready, _, _ = select.select([self.master], [], [], timeout)
        if ready:
            try:
                data = os.read(self.master, 65536)
            except OSError:
                return False  # EIO: the program has exited
            if not data:
                return False
            self.seen += data
        return True

    def send(self, text: str) -> None:
        os.write(self.master, text.encode())

    def run(self, line: str, pattern: str) -> None:
        start = len(self.text)
        self.send(line + "\r")
        self.expect(pattern, start=start)

    def resize(self, rows: int, cols: int) -> None:
        # The kernel sends SIGWINCH to ssh, which sends window-change to the server.
        fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def wait(self, timeout: float = 15.0) -> int:
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            self._read(0.1)
        return self.proc.wait(max(0.1, deadline - time.monotonic()))

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        os.close(self.master)


def paramiko_client(console: Console) -> paramiko.Transport:
    """A connected, key-exchanged paramiko client transport that checks the host key."""
    assert console.ssh is not None and console.ssh_port is not None
    transport = paramiko.Transport(("127.0.0.1", console.ssh_port))
    transport.start_client(timeout=10)
    assert transport.get_remote_server_key() == console.ssh.host_key
    return transport


def open_shell(
    console: Console, op: Operator, clock: FakeClock
) -> tuple[paramiko.Transport, paramiko.Channel]:
    """A logged-in paramiko connection with a pty shell whose first prompt has been read."""
    transport = paramiko_client(console)
    both_factors(transport, op.user, op.key, op.code(clock()))
    channel = transport.open_session(timeout=5)
    channel.get_pty(width=100, height=30)
    channel.invoke_shell()
    seen = b""
    deadline = time.monotonic() + 15
    while b">>>" not in seen:
        assert time.monotonic() < deadline, seen[-500:]
        seen += channel.recv(65536)
    return transport, channel


def totp_answer(code: str) -> Callable[[str, str, list[tuple[str, bool]]], list[str]]:
    def handler(title: str, instructions: str, prompts: list[tuple[str, bool]]) -> list[str]:
        return [code for _ in prompts]

    return handler


class Impostor(paramiko.PKey):
    """Presents one key's public half and signs with another private key: the MFA-bypass probe."""

    def __init__(self, shown: paramiko.PKey, signer: paramiko.PKey) -> None:
        self._shown, self._signer = shown, signer

    def asbytes(self) -> bytes:
        return self._shown.asbytes()

    def get_name(self) -> str:
        return self._shown.get_name()

    def sign_ssh_data(self, data: bytes, algorithm: str | None = None) -> paramiko.Message:
        return self._signer.sign_ssh_data(data, algorithm)


def both_factors(transport: paramiko.Transport, user: str, key: Path, code: str) -> None:
    """Log in as OpenSSH does: publickey (a partial success), then the TOTP code."""
    assert transport.auth_publickey(user, paramiko.PKey.from_path(key)) == ["keyboard-interactive"]
    transport.auth_interactive(user, totp_answer(code))
