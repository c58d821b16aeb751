"""The SSH port against the real OpenSSH client, driven through a pseudo-terminal.

Each login answers the TOTP prompt with the code of the console's (fake) clock; the clock
moves a step between logins because a step is accepted once per user.
"""

from __future__ import annotations

import contextlib
import json
import re
import shlex
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyotp
import pytest

from opsconsole.console import Console
from testkit import REPO
from testkit.demo_process import run_demo
from testkit.ssh_client import PROMPT, PtyClient, known_hosts, require_openssh, ssh_options
from testkit.support import FakeClock, Operator, audit_events, console_settings

README = REPO / "README.md"


@contextlib.contextmanager
def _running(tmp_path: Path, keys_dir: Path, clock: FakeClock, **overrides: Any) -> Iterator[Console]:
    require_openssh()
    c = Console(console_settings(tmp_path, keys_dir, ssh_port=0, **overrides), clock=clock).start()
    try:
        yield c
    finally:
        c.stop()


@pytest.fixture
def ssh_console(tmp_path: Path, keys_dir: Path, clock: FakeClock) -> Iterator[Console]:
    with _running(tmp_path, keys_dir, clock) as c:
        yield c


def _ssh(console: Console, op: Operator, tmp_path: Path, *extra: str, command: str = "") -> PtyClient:
    options = ssh_options(console, op.key, known_hosts(console, tmp_path))
    argv = ["ssh", *options, "-p", str(console.ssh_port), *extra, f"{op.user}@127.0.0.1"]
    return PtyClient(argv + ([command] if command else []))


def _log_in(client: PtyClient, op: Operator, clock: FakeClock) -> None:
    client.expect(r"TOTP code: ")
    client.send(op.code(clock()) + "\n")


def _reasons(console: Console) -> list[str]:
    return [str(e["fields"].get("reason")) for e in audit_events(console.settings.audit_path)]


def test_openssh_key_then_totp_then_repl(
    ssh_console: Console, operators: dict[str, Operator], clock: FakeClock, tmp_path: Path
) -> None:
    alice = operators["alice"]
    client = _ssh(ssh_console, alice, tmp_path)
    try:
        _log_in(client, alice, clock)
        client.expect(PROMPT)
        client.run("1+1", r"^2\s*$")
        client.run("print(get_ptpython().app.output.get_size())", r"rows=30, columns=100")
        client.resize(40, 132)
        client.run("print(get_ptpython().app.output.get_size())", r"rows=40, columns=132")
        client.send("\x04")  # Ctrl-D at an empty prompt ends the session
        assert client.wait() == 0
    finally:
        client.close()
    events = audit_events(ssh_console.settings.audit_path)
    names = [e["event"] for e in events]
    # key proven → code → session, in that order, then the input before its effect
    order = [("auth.factor", "auth.login"), ("auth.login", "repl.open"), ("repl.open", "repl.input")]
    for earlier, later in order:
        assert names.index(earlier) < names.index(later)
    login = next(e for e in events if e["event"] == "auth.login")
    assert login["fields"]["door"] == "ssh" and login["fields"]["user"] == "alice"
    inputs = [e["fields"]["text"] for e in events if e["event"] == "repl.input"]
    assert "1+1" in inputs
    session = next(e for e in events if e["event"] == "repl.open")["fields"]["session"]
    cast = ssh_console.settings.state_dir / "casts" / f"{session}.cast"
    assert cast.stat().st_mode & 0o777 == 0o600
    header = json.loads(cast.read_text().splitlines()[0])
    assert header["version"] == 2
    closed = [e for e in events if e["event"] == "repl.close"]
    assert closed and closed[-1]["fields"]["status"] == 0


def test_unlisted_key_never_sees_the_totp_prompt(
    ssh_console: Console, keypairs: dict[str, Path], tmp_path: Path
) -> None:
    stranger = Operator("alice", "operator", keypairs["stranger"])
    client = _ssh(ssh_console, stranger, tmp_path)
    try:
        assert client.wait() == 255
        assert "Permission denied (publickey)" in client.text
        assert "TOTP" not in client.text
    finally:
        client.close()
    assert "key_not_listed" in _reasons(ssh_console)
    assert "auth.factor" not in [e["event"] for e in audit_events(ssh_console.settings.audit_path)]


@pytest.mark.slow
def test_a_slow_totp_typist_is_not_dropped(
    tmp_path: Path, keys_dir: Path, operators: dict[str, Operator], clock: FakeClock
) -> None:
    """45 s at the TOTP prompt, with keepalives every 2 s once logged in: none may come before.

    OpenSSH's client drops the connection over a global request that came during authentication
    ("bad message during authentication: type 80", printed once the code is typed), so a
    keepalive sent before login fails this test. The login grace is raised only so a slow prompt
    on a loaded machine cannot eat into the wait.
    """
    alice = operators["alice"]
    with _running(tmp_path, keys_dir, clock, ssh_keepalive=2, ssh_login_grace=120) as console:
        client = _ssh(console, alice, tmp_path)
        try:
            client.expect(r"TOTP code: ")
            client.stays_quiet(45)
            client.send(alice.code(clock()) + "\n")
            client.expect(PROMPT)
            client.run("6*7", r"^42\s*$")
            client.send("\x04")
            assert client.wait() == 0
        finally:
            client.close()
    assert "auth.login" in [e["event"] for e in audit_events(console.settings.audit_path)]


def test_keepalives_run_once_logged_in(
    tmp_path: Path, keys_dir: Path, operators: dict[str, Operator], clock: FakeClock
) -> None:
    """With a 1 s interval, OpenSSH's client (-v) logs keepalive requests after the login only."""
    alice = operators["alice"]
    keepalive = r"client_input_global_request: rtype keepalive@"
    with _running(tmp_path, keys_dir, clock, ssh_keepalive=1) as console:
        client = _ssh(console, alice, tmp_path, "-v")
        try:
            client.expect(r"TOTP code: ")
            client.send(alice.code(clock()) + "\n")
            client.expect(PROMPT)
            logged_in = client.text.index("Authenticated to")
            client.expect(keepalive, start=logged_in)
            assert not re.search(keepalive, client.text[:logged_in])
        finally:
            client.close()


def _refused_after_login(client: PtyClient, op: Operator, clock: FakeClock) -> str:
    """Log in, then the request is refused and the program fails; what it printed after the code."""
    try:
        _log_in(client, op, clock)
        assert client.wait() != 0
        return client.text.split("TOTP code:")[-1]
    finally:
        client.close()


def test_exec_is_refused(
    ssh_console: Console, operators: dict[str, Operator], clock: FakeClock, tmp_path: Path
) -> None:
    client = _ssh(ssh_console, operators["alice"], tmp_path, "-T", command="print('ran')")
    assert "ran" not in _refused_after_login(client, operators["alice"], clock)
    assert "ssh_exec_refused" in _reasons(ssh_console)


def test_sftp_is_refused(
    ssh_console: Console, operators: dict[str, Operator], clock: FakeClock, tmp_path: Path
) -> None:
    options = ssh_options(ssh_console, operators["alice"].key, known_hosts(ssh_console, tmp_path))
    client = PtyClient(["sftp", *options, "-P", str(ssh_console.ssh_port), "alice@127.0.0.1"])
    assert "sftp>" not in _refused_after_login(client, operators["alice"], clock)
    assert "ssh_subsystem_refused" in _reasons(ssh_console)


def test_local_forwarding_is_refused(
    ssh_console: Console, operators: dict[str, Operator], clock: FakeClock, tmp_path: Path
) -> None:
    alice = operators["alice"]
    with socket.socket() as probe:  # a free local port for ssh to listen on
        probe.bind(("127.0.0.1", 0))
        local_port = probe.getsockname()[1]
    target = ssh_console.port  # something real to forward to: the console's own HTTP port
    client = _ssh(ssh_console, alice, tmp_path, "-N", "-L", f"{local_port}:127.0.0.1:{target}")
    try:
        _log_in(client, alice, clock)
        for _ in range(100):  # ssh listens once it has logged in
            try:
                conn = socket.create_connection(("127.0.0.1", local_port), timeout=5)
                break
            except OSError:
                threading.Event().wait(0.1)
        else:
            pytest.fail("ssh -L never listened")
        with conn:
            conn.sendall(b"GET / HTTP/1.0\r\n\r\n")
            # the channel was refused, so ssh closes (or resets) the forwarded connection
            with contextlib.suppress(ConnectionResetError):
                assert conn.recv(100) == b""
    finally:
        client.close()
    assert "ssh_forwarding_refused" in _reasons(ssh_console)


def test_viewer_gets_a_refusal_not_a_repl(
    ssh_console: Console, operators: dict[str, Operator], clock: FakeClock, tmp_path: Path
) -> None:
    bob = operators["bob"]
    client = _ssh(ssh_console, bob, tmp_path)
    try:
        _log_in(client, bob, clock)
        assert client.wait() == 1
        assert "viewer role" in client.text
        assert ">>>" not in client.text
    finally:
        client.close()
    assert "ssh_viewer_shell" in _reasons(ssh_console)
    assert "repl.open" not in [e["event"] for e in audit_events(ssh_console.settings.audit_path)]


def readme_ssh_line() -> str:
    text = README.read_text(encoding="utf-8")
    found = re.search(r"^```sh\n(ssh -p 8722 .*)\n```", text, re.MULTILINE)
    assert found is not None, "README: the demo's ssh command in its own sh block"
    return found.group(1)


def test_demo_prints_and_serves_the_ssh_door(tmp_path: Path) -> None:
    """README "Two commands": the demo's ssh line, run as written from the directory holding
    `.opsconsole-demo/`, logs in; the demo turns the SSH port on, records it in demo.json, pins
    its host key in the known_hosts file the line names, and prints the same line."""
    require_openssh()
    line = readme_ssh_line()
    runner = run_demo(tmp_path / ".opsconsole-demo", log_in=False)
    demo = next(runner)
    try:
        info = demo.info
        assert isinstance(info["ssh_port"], int) and info["ssh_port"] > 0
        words = shlex.split(line.replace("-p 8722", f"-p {info['ssh_port']}"))
        # Only isolation from this machine's ssh config and agent is added; the host key is
        # checked strictly against the file the README's line names.
        isolation = ["-F", "/dev/null", "-o", "IdentityAgent=none", "-o", "StrictHostKeyChecking=yes"]
        argv = [words[0], *isolation, *words[1:]]
        client = PtyClient(argv, cwd=tmp_path)
        try:
            client.expect(r"TOTP code: ")
            client.send(pyotp.TOTP(info["totp_secret"]).now() + "\n")
            client.expect(PROMPT)
            client.run("1+1", r"^2\s*$")
            client.send("\x04")
            assert client.wait() == 0
        finally:
            client.close()
    finally:
        next(runner, None)
    assert f"ssh -p {info['ssh_port']} -i " in demo.output


@pytest.mark.parametrize(
    "option",
    ["Ciphers=aes128-cbc,3des-cbc", "MACs=hmac-sha1,hmac-md5", "KexAlgorithms=diffie-hellman-group14-sha1"],
)
def test_weak_algorithms_are_not_negotiated(
    ssh_console: Console, operators: dict[str, Operator], tmp_path: Path, option: str
) -> None:
    client = _ssh(ssh_console, operators["alice"], tmp_path, "-o", option)
    try:
        assert client.wait() == 255
        assert "no matching" in client.text and "TOTP" not in client.text
    finally:
        client.close()
