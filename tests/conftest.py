"""Fixtures: real key pairs, a keys dir, and a real console thread on port 0 with a fake clock."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from opsconsole.console import Console
from testkit.support import FakeClock, Operator, console_settings, keygen, write_keys_dir


@pytest.fixture(scope="session")
def keypairs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One real key of each kind, made once per run by ssh-keygen."""
    d = tmp_path_factory.mktemp("keypairs")
    return {
        "ed25519": keygen(d / "ed25519"),
        "ed25519_b": keygen(d / "ed25519_b"),
        "ecdsa": keygen(d / "ecdsa", "ecdsa", 256),
        "rsa": keygen(d / "rsa", "rsa", 2048),
        "stranger": keygen(d / "stranger"),
    }


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def operators(keypairs: dict[str, Path]) -> dict[str, Operator]:
    return {
        "alice": Operator("alice", "operator", keypairs["ed25519"]),
        "bob": Operator("bob", "viewer", keypairs["ecdsa"]),
        "carol": Operator("carol", "operator", keypairs["rsa"]),
        "dave": Operator("dave", "operator", keypairs["ed25519_b"]),
    }


@pytest.fixture
def keys_dir(tmp_path: Path, operators: dict[str, Operator]) -> Path:
    d = tmp_path / "keys"
    write_keys_dir(d, list(operators.values()), {"dave": 'from="10.0.0.0/8"'})
    return d


@pytest.fixture
def repl_namespace() -> dict[str, object]:
    """What each REPL session of the ``console`` fixture starts with; a test module may override it."""
    return {}


@pytest.fixture
def console(
    tmp_path: Path, keys_dir: Path, clock: FakeClock, repl_namespace: dict[str, object]
) -> Iterator[Console]:
    """The real console thread on a free loopback port, sharing the test's fake clock."""
    c = Console(console_settings(tmp_path, keys_dir), clock=clock, namespace=repl_namespace).start()
    yield c
    c.stop()


@pytest.fixture
def cli_env(tmp_path: Path) -> dict[str, str]:
    """The environment for an ``opsconsole`` CLI process: no agent, no OPSCONSOLE_* settings of the
    caller's, and a token cache of this test's own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SSH_AUTH_SOCK", "OPSCONSOLE_"))}
    env["XDG_CONFIG_HOME"] = str(tmp_path / "xdg")
    return env
