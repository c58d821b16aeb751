"""Real OpenSSH tooling for the auth tests: keys from ssh-keygen, a real ssh-agent.

Plain functions and classes; each test module wraps them in its own fixtures.
"""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from testkit.support import poll_until

# name -> ssh-keygen arguments
KEY_SPECS: dict[str, list[str]] = {
    "ed25519": ["-t", "ed25519"],
    "ecdsa256": ["-t", "ecdsa", "-b", "256"],
    "ecdsa384": ["-t", "ecdsa", "-b", "384"],
    "ecdsa521": ["-t", "ecdsa", "-b", "521"],
    "rsa2048": ["-t", "rsa", "-b", "2048"],
    "rsa1024": ["-t", "rsa", "-b", "1024"],
}
GOOD_KEYS = ["ed25519", "ecdsa256", "ecdsa384", "ecdsa521", "rsa2048"]


@dataclass(frozen=True)
class KeyPair:
    private: Path
    public: Path
    pub_line: str  # "ssh-ed25519 AAAA... comment"

    @property
    def key_type(self) -> str:
        return self.pub_line.split()[0]

    @property
    def b64(self) -> str:
        return self.pub_line.split()[1]

    @property
    def blob(self) -> bytes:
        return base64.b64decode(self.b64)


def keygen(path: Path, spec: str, comment: str = "test@host") -> KeyPair:
    subprocess.run(
        ["ssh-keygen", *KEY_SPECS[spec], "-N", "", "-C", comment, "-f", str(path), "-q"],
        check=True,
        capture_output=True,
    )
    pub = path.with_name(path.name + ".pub")
    return KeyPair(path, pub, pub.read_text().strip())


class KeyRing:
    """Makes each kind of key on first use and keeps it for the session."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._keys: dict[str, KeyPair] = {}

    def __getitem__(self, name: str) -> KeyPair:
        if name not in self._keys:
            spec = name.split("_", maxsplit=1)[0]  # "ed25519_other" is a second ed25519 key
            self._keys[name] = keygen(self.directory / name, spec)
        return self._keys[name]


def ssh_keygen_sign(key: KeyPair, message: bytes, namespace: str = "opsconsole") -> str:
    out = subprocess.run(
        ["ssh-keygen", "-Y", "sign", "-n", namespace, "-f", str(key.private)],
        input=message,
        check=True,
        capture_output=True,
    )
    return out.stdout.decode()


def ssh_keygen_verify(
    key: KeyPair, message: bytes, armored: str, workdir: Path, namespace: str = "opsconsole"
) -> subprocess.CompletedProcess[bytes]:
    """``ssh-keygen -Y verify``: an independent check of a signature we made."""
    allowed = workdir / "allowed_signers"
    allowed.write_text(f'someone namespaces="{namespace}" {key.pub_line}\n')
    sigfile = workdir / "message.sig"
    sigfile.write_text(armored)
    return subprocess.run(
        [
            "ssh-keygen",
            "-Y",
            "verify",
            "-n",
            namespace,
            "-f",
            str(allowed),
            "-I",
            "someone",
            "-s",
            str(sigfile),
        ],
        input=message,
        capture_output=True,
        check=False,
    )


@contextmanager
def running_agent() -> Iterator[dict[str, str]]:
    """A real ssh-agent in the foreground (-D) on a socket in a fresh short-named dir.

    Yields the environment (SSH_AUTH_SOCK) to talk to it; the agent is stopped by its
    pid on exit. (A short path: Unix socket paths are limited to ~107 bytes, and
    pytest's tmp_path for a parametrized test can be long.)
    """
    with tempfile.TemporaryDirectory(prefix="opsagent-") as directory, _agent(Path(directory)) as env:
        yield env


@contextmanager
def _agent(directory: Path) -> Iterator[dict[str, str]]:
    sock = directory / "agent.sock"
    proc = subprocess.Popen(
        ["ssh-agent", "-D", "-a", str(sock)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        if not poll_until(lambda: sock.exists() or proc.poll() is not None, 10) or not sock.exists():
            raise RuntimeError("ssh-agent did not start")
        yield {"SSH_AUTH_SOCK": str(sock), "SSH_AGENT_PID": str(proc.pid)}
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)


def ssh_add(key: KeyPair, env: dict[str, str]) -> None:
    subprocess.run(
        ["ssh-add", "-q", str(key.private)],
        env={**os.environ, **env},
        check=True,
        capture_output=True,
    )
