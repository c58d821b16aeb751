"""The SSH port's host key: ed25519, made on first start, kept 0600 in the state dir.

Operators pin this key in ``known_hosts`` the first time they connect, so it must survive
restarts and never be readable by anyone else. It is created with mode 0600 from the first
byte (``write_private``: O_EXCL temp file, fsync, rename), never written and then chmod-ed, and
an existing file is refused if group or others can read it, like sshd's StrictModes.
Runs on the thread that starts the console.
"""

from __future__ import annotations

import io
from pathlib import Path

import paramiko
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from opsconsole import log
from opsconsole.auth.keys import fingerprint_of
from opsconsole.errors import ConfigError
from opsconsole.private_files import read_protected, write_private

_log = log.get("transport.ssh")


def load_or_create(path: Path) -> paramiko.Ed25519Key:
    """The host key at ``path``, generated there first if it does not exist yet."""
    if not path.exists() and not path.is_symlink():
        pem = (
            Ed25519PrivateKey.generate()
            .private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.OpenSSH,
                serialization.NoEncryption(),
            )
            .decode("ascii")
        )
        write_private(path, pem)
        _log.info("created the SSH host key %s", path)
    text = read_protected(path, secret=True)
    try:
        return paramiko.Ed25519Key(file_obj=io.StringIO(text))
    except (paramiko.SSHException, ValueError) as exc:
        raise ConfigError(
            f"{path} is not an unencrypted ed25519 private key: {exc}", key="ssh_host_key"
        ) from None


def fingerprint(key: paramiko.PKey) -> str:
    """``SHA256:…`` as ``ssh-keygen -lf`` and the ssh client's host key prompt show it."""
    return fingerprint_of(key.asbytes())
