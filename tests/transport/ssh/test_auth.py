"""Attacks on the SSH port's authentication, made with a paramiko client: the steps OpenSSH
would never take in this order, forged signatures, floods and idlers. Each refusal must leave
an audit event, and none may end authenticated."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paramiko
import pytest

from opsconsole.console import Console
from opsconsole.errors import ConsoleError, InsecureFileError
from opsconsole.transport.ssh import host_key
from testkit.ssh_client import Impostor, paramiko_client, totp_answer
from testkit.ssh_client import open_shell as _shell
from testkit.support import (
    FakeClock,
    Operator,
    audit_events,
    console_settings,
    repl_sessions_ended,
    wait_until,
)


def _start(tmp_path: Path, keys_dir: Path, clock: FakeClock, **over: Any) -> Console:
    return Console(console_settings(tmp_path, keys_dir, ssh_port=0, **over), clock=clock).start()


@pytest.fixture
def ssh_console(tmp_path: Path, keys_dir: Path, clock: FakeClock) -> Iterator[Console]:
    c = _start(tmp_path, keys_dir, clock)
    yield c
    c.stop()


def _key(op: Operator) -> paramiko.PKey:
    return paramiko.PKey.from_path(op.key)


def _events(console: Console, name: str) -> list[dict[str, Any]]:
    return [e for e in audit_events(console.settings.audit_path) if e["event"] == name]


def _reasons(console: Console) -> list[str]:
    return [str(e["fields"].get("reason")) for e in audit_events(console.settings.audit_path)]


def _both_factors(transport: paramiko.Transport, op: Operator, code: str) -> None:
    # the order OpenSSH uses: publickey (partial success), then keyboard-interactive
    # paramiko returns the methods left after a partial success
    assert transport.auth_publickey(op.user, _key(op)) == ["keyboard-interactive"]
    transport.auth_interactive(op.user, totp_answer(code))


def test_off_by_default(tmp_path: Path, keys_dir: Path, clock: FakeClock) -> None:
    c = Console(console_settings(tmp_path, keys_dir), clock=clock).start()
    try:
        assert c.ssh is None and c.ssh_port is None
        assert not c.settings.ssh_host_key_path.exists()
    finally:
        c.stop()


def test_two_factors_in_order_log_in(
    ssh_console: Console, operators: dict[str, Operator], clock: FakeClock
) -> None:
    transport = paramiko_client(ssh_console)
    try:
        with pytest.raises(paramiko.BadAuthenticationType) as info:
            transport.auth_interactive("alice", totp_answer("000000"))
        assert info.value.allowed_types == ["publickey"]  # only publickey before the key
        _both_factors(transport, operators["alice"], operators["alice"].code(clock()))
        assert transport.is_authenticated()
        assert transport.agreed_on_strict_kex  # the Terrapin countermeasure is on
    finally:
        transport.close()
    assert _events(ssh_console, "auth.login")[0]["fields"]["door"] == "ssh"


def test_public_key_with_a_foreign_signature_is_not_a_factor(
    ssh_console: Console, operators: dict[str, Operator], keypairs: dict[str, Path], clock: FakeClock
) -> None:
    """The paramiko MFA bypass: the listed public key, signed by another private key, plus a
    valid code must not get in — the first factor counts only after the signature verified."""
    alice = operators["alice"]
    forged = Impostor(shown=_key(alice), signer=paramiko.PKey.from_path(keypairs["stranger"]))
    transport = paramiko_client(ssh_console)
    try:
        with pytest.raises(paramiko.AuthenticationException):
            transport.auth_publickey("alice", forged)
        with pytest.raises(paramiko.AuthenticationException):
            transport.auth_interactive("alice", totp_answer(alice.code(clock())))
        assert not transport.is_authenticated()
    finally:
        transport.close()
    assert "ssh_bad_signature" in _reasons(ssh_console)
    assert "ssh_keyboard_interactive_before_publickey" in _reasons(ssh_console)
    assert not _events(ssh_console, "auth.factor") and not _events(ssh_console, "auth.login")


def test_keyboard_interactive_before_publickey_is_refused(
    ssh_console: Console, operators: dict[str, Operator], clock: FakeClock
) -> None:
    transport = paramiko_client(ssh_console)
    try:
        with pytest.raises(paramiko.AuthenticationException):
            transport.auth_interactive("alice", totp_answer(operators["alice"].code(clock())))
        assert not transport.is_authenticated()
    finally:
        transport.close()
    assert "ssh_keyboard_interactive_before_publickey" in _reasons(ssh_console)


def test_a_code_replayed_on_a_second_connection_is_refused(
    ssh_console: Console, operators: dict[str, Operator], clock: FakeClock
) -> None:
    alice = operators["alice"]
    code = alice.code(clock())
    first = paramiko_client(ssh_console)
    second = paramiko_client(ssh_console)
    try:
        _both_factors(first, alice, code)
        assert first.is_authenticated()
        with pytest.raises(paramiko.AuthenticationException):
            _both_factors(second, alice, code)
        assert not second.is_authenticated()
    finally:
        first.close()
        second.close()
    assert "totp_replay" in _reasons(ssh_console)


def _fail_six_times(transport: paramiko.Transport, stranger: paramiko.PKey) -> None:
    # the most failed attempts one connection may make before the next one disconnects it
    for _ in range(6):
        with pytest.raises(paramiko.AuthenticationException):
            transport.auth_publickey("alice", stranger)


def test_the_seventh_attempt_disconnects(
    ssh_console: Console, operators: dict[str, Operator], keypairs: dict[str, Path], clock: FakeClock
) -> None:
    stranger = paramiko.PKey.from_path(keypairs["stranger"])
    transport = paramiko_client(ssh_console)
    try:
        _fail_six_times(transport, stranger)
        assert transport.is_active()
        # the 7th request — even with the right key — is refused and the connection closed
        with pytest.raises((paramiko.AuthenticationException, paramiko.SSHException, EOFError)):
            transport.auth_publickey("alice", _key(operators["alice"]))
        wait_until(lambda: not transport.is_active(), what="the connection closed")
        assert not transport.is_authenticated()
    finally:
        transport.close()
    assert _reasons(ssh_console).count("key_not_listed") == 6
    assert "ssh_too_many_attempts" in _reasons(ssh_console)
    assert not _events(ssh_console, "auth.factor")


def test_a_channel_before_authentication_is_refused(ssh_console: Console) -> None:
    transport = paramiko_client(ssh_console)
    try:
        with pytest.raises(paramiko.ChannelException):
            transport.open_session(timeout=5)
    finally:
        transport.close()
    assert "ssh_channel_before_auth" in _reasons(ssh_console)


def test_an_idle_connection_is_closed_after_the_grace_time(
    tmp_path: Path, keys_dir: Path, clock: FakeClock
) -> None:
    console = _start(tmp_path, keys_dir, clock, ssh_login_grace=1)
    try:
        transport = paramiko_client(console)
        wait_until(lambda: not transport.is_active(), what="the idle connection closed")
        transport.close()
        assert "ssh_login_grace_expired" in _reasons(console)
    finally:
        console.stop()


def test_unauthenticated_connections_are_capped_at_accept(
    tmp_path: Path, keys_dir: Path, clock: FakeClock
) -> None:
    console = _start(tmp_path, keys_dir, clock, ssh_max_unauthenticated=2)
    assert console.ssh_port is not None
    held = [paramiko_client(console), paramiko_client(console)]
    try:
        with socket.create_connection(("127.0.0.1", console.ssh_port), timeout=5) as extra:
            # closed before the server even sends its version banner
            assert extra.recv(100) == b""
        for t in held:
            t.close()
        port = console.ssh_port

        def served() -> bool:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as again:
                return again.recv(100).startswith(b"SSH-2.0-")

        wait_until(served, what="a new connection served once those are gone")
    finally:
        for t in held:
            t.close()
        console.stop()


def test_sha1_rsa_signatures_are_refused(
    ssh_console: Console, operators: dict[str, Operator], clock: FakeClock
) -> None:
    carol = operators["carol"]
    old = paramiko.Transport(
        ("127.0.0.1", ssh_console.ssh_port or 0),
        disabled_algorithms={"pubkeys": ["rsa-sha2-256", "rsa-sha2-512"]},
    )
    try:
        old.start_client(timeout=10)
        with pytest.raises((paramiko.AuthenticationException, paramiko.SSHException, EOFError)):
            old.auth_publickey("carol", _key(carol))  # would sign as ssh-rsa (SHA-1)
        assert not old.is_authenticated()
    finally:
        old.close()
    modern = paramiko_client(ssh_console)
    try:
        _both_factors(modern, carol, carol.code(clock()))  # rsa-sha2-* is fine
        assert modern.is_authenticated()
    finally:
        modern.close()


def test_host_key_is_private_from_creation_and_stable(
    tmp_path: Path, keys_dir: Path, clock: FakeClock
) -> None:
    first = _start(tmp_path, keys_dir, clock)
    assert first.ssh is not None
    fingerprint = first.ssh.fingerprint
    first.stop()
    path = first.settings.ssh_host_key_path
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert fingerprint == host_key.fingerprint(host_key.load_or_create(path))
    again = _start(tmp_path, keys_dir, clock)
    try:
        assert again.ssh is not None and again.ssh.fingerprint == fingerprint
    finally:
        again.stop()
    start = [e for e in _events(again, "console.start") if "ssh_host_key" in e["fields"]]
    assert start[-1]["fields"]["ssh_host_key"] == fingerprint


def test_a_readable_host_key_is_refused(tmp_path: Path, keys_dir: Path, clock: FakeClock) -> None:
    path = tmp_path / "hostkey"
    host_key.load_or_create(path)
    path.chmod(0o644)
    with pytest.raises(InsecureFileError, match="chmod 600"):
        _start(tmp_path, keys_dir, clock, ssh_host_key=path)


def test_a_taken_ssh_port_is_a_clear_error_and_nothing_is_left_running(
    tmp_path: Path, keys_dir: Path, clock: FakeClock
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        console = Console(console_settings(tmp_path, keys_dir, ssh_port=port), clock=clock)
        with pytest.raises(ConsoleError, match=f"cannot listen for SSH on 127.0.0.1:{port}"):
            console.start()
    # nothing half-started holds the state dir or the port: the same settings start cleanly now
    again = Console(console_settings(tmp_path, keys_dir, ssh_port=port), clock=clock).start()
    try:
        assert again.ssh_port == port
    finally:
        again.stop()


def test_an_idle_shell_is_closed_like_an_idle_browser_session(
    tmp_path: Path, keys_dir: Path, clock: FakeClock, operators: dict[str, Operator]
) -> None:
    console = _start(tmp_path, keys_dir, clock, session_idle_timeout=1)
    try:
        transport, channel = _shell(console, operators["alice"], clock)
        try:
            seen = b""
            deadline = time.monotonic() + 10
            while not channel.closed and time.monotonic() < deadline:
                seen += channel.recv(65536)
                if channel.exit_status_ready():
                    break
            assert b"session closed: no input for 1 s" in seen
        finally:
            transport.close()
        assert "ssh_session_expired" in _reasons(console)
    finally:
        console.stop()


def test_a_client_that_stops_reading_is_dropped_and_memory_stays_bounded(
    ssh_console: Console, operators: dict[str, Operator], clock: FakeClock
) -> None:
    transport, channel = _shell(ssh_console, operators["alice"], clock)
    try:
        before = _rss()
        # 100 MB of output; the client never reads again, so its SSH window stays shut.
        channel.sendall(b"for _ in range(100): print('y' * 1_000_000)\r")
        wait_until(lambda: "ssh_slow_client" in _reasons(ssh_console), 60, "the stalled client dropped")
        assert _rss() - before < 64 * 1024 * 1024
    finally:
        transport.close()
    assert repl_sessions_ended(), "the dropped REPL session never ended"


def _rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def _server_connections_ended(timeout: float = 10.0) -> None:
    """Join the console's SSH transport threads: their last records are on disk afterwards."""
    deadline = time.monotonic() + timeout
    for thread in threading.enumerate():
        if thread.name.startswith("opsconsole-ssh-") and not thread.name.startswith("opsconsole-ssh-grace"):
            thread.join(max(0.0, deadline - time.monotonic()))
            assert not thread.is_alive(), f"{thread.name} still running"


@pytest.mark.parametrize("first_method", ["none", "publickey"])
def test_obs6_ssh_user_change_is_audited(
    ssh_console: Console, operators: dict[str, Operator], clock: FakeClock, first_method: str
) -> None:
    """paramiko disconnects a client that changes its user name between requests, before any
    server callback; the decision must still reach the audit log, and nobody gets in."""
    alice, carol = operators["alice"], operators["carol"]
    transport = paramiko_client(ssh_console)
    try:
        if first_method == "none":
            with pytest.raises(paramiko.BadAuthenticationType):
                transport.auth_none("alice")  # what OpenSSH sends first
            switch = lambda: transport.auth_publickey("carol", _key(carol))  # noqa: E731
        else:
            assert transport.auth_publickey("alice", _key(alice)) == ["keyboard-interactive"]
            switch = lambda: transport.auth_interactive("carol", totp_answer(carol.code(clock())))  # noqa: E731
        with pytest.raises((paramiko.SSHException, EOFError)):
            switch()
        assert not transport.is_authenticated()
    finally:
        transport.close()
    _server_connections_ended()
    aborted = [
        e["fields"]
        for e in _events(ssh_console, "auth.refused")
        if e["fields"]["reason"] == "ssh_auth_aborted"
    ]
    assert len(aborted) == 1, aborted
    assert aborted[0]["user"] == "alice"
    assert aborted[0]["methods"] == [first_method]
    assert "user name that changed" in aborted[0]["cause"]
    assert not _events(ssh_console, "auth.login")


def test_a_connection_we_close_is_not_also_recorded_as_aborted(
    ssh_console: Console, keypairs: dict[str, Path]
) -> None:
    stranger = paramiko.PKey.from_path(keypairs["stranger"])
    transport = paramiko_client(ssh_console)
    try:
        _fail_six_times(transport, stranger)
        with pytest.raises((paramiko.AuthenticationException, paramiko.SSHException, EOFError)):
            transport.auth_publickey("alice", stranger)
    finally:
        transport.close()
    _server_connections_ended()
    assert "ssh_too_many_attempts" in _reasons(ssh_console)
    assert "ssh_auth_aborted" not in _reasons(ssh_console)
