"""``opsconsole connect`` in a real pseudo-terminal: raw mode, the REPL, Ctrl-] leaves,
and the terminal settings come back exactly as they were."""

from __future__ import annotations

import fcntl
import json
import os
import re
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

from opsconsole.console import Console
from testkit.support import FakeClock, Operator, login_token
from testkit.terminal_client import clean


def _read_until(fd: int, pattern: str, seen: bytearray, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not re.search(pattern, clean(seen.decode("utf-8", "replace")), re.MULTILINE):
        left = deadline - time.monotonic()
        assert left > 0, f"{pattern!r} not seen; got:\n{clean(seen.decode('utf-8', 'replace'))[-1500:]}"
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            try:
                seen += os.read(fd, 65536)
            except OSError:
                break


def test_connect_drives_a_session_and_restores_the_terminal(
    console: Console, operators: dict[str, Operator], clock: FakeClock, tmp_path: Path
) -> None:
    token = login_token(console.url, operators["alice"], clock())
    cfg = tmp_path / "xdg" / "opsconsole"
    cfg.mkdir(parents=True, mode=0o700)
    (cfg / "tokens.json").write_text(json.dumps({console.url: {"token": token, "user": "alice"}}))
    (cfg / "tokens.json").chmod(0o600)
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPSCONSOLE_")}
    env["XDG_CONFIG_HOME"] = str(tmp_path / "xdg")

    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
    before = termios.tcgetattr(slave)
    proc = subprocess.Popen(
        [sys.executable, "-m", "opsconsole", "connect", console.url],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=env,
        close_fds=True,
    )
    seen = bytearray()
    try:
        _read_until(master, r">>> ?$", seen)
        assert termios.tcgetattr(slave)[3] & termios.ECHO == 0  # raw mode while connected
        os.write(master, b"1+1\r")
        _read_until(master, r"^2$", seen)
        os.write(master, b"\x1d")  # Ctrl-] leaves
        assert proc.wait(timeout=15) == 0
        _read_until(master, r"connection closed", seen)
        assert termios.tcgetattr(slave) == before
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
        os.close(slave)
