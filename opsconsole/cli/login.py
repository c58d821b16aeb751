"""``opsconsole login``: challenge → SSHSIG (ssh-agent or key file) → TOTP → cached token.

Runs in the operator's process.
"""

from __future__ import annotations

import getpass
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import paramiko

from opsconsole.auth import signer as keysign
from opsconsole.cli.client import Client
from opsconsole.errors import ClientError

# AgentKey is a PKey subclass in paramiko, so one type covers both.
Signer = paramiko.PKey


@dataclass(frozen=True, slots=True)
class LoginResult:
    token: str
    role: str
    expires_in: int


def origin_of(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def check_message(message: str, *, user: str, url: str) -> None:
    """Refuse to sign a message made for another user, purpose or origin.

    A hostile server could otherwise hand us a message minted by the real console and
    relay our signature there.
    """
    lines = dict(line.split(": ", 1) for line in message.splitlines()[1:] if ": " in line)
    expected = {"purpose": "login", "user": user, "origin": origin_of(url)}
    for key, value in expected.items():
        if lines.get(key) != value:
            raise ClientError(
                f"refusing to sign: the challenge names {key} {lines.get(key)!r}, not {value!r}"
            )


def choose_signer(identity: Path | None, ask_passphrase: Callable[[str], str] = getpass.getpass) -> Signer:
    """The agent's key matching ``identity`` (or its first key), else the key file itself."""
    wanted = None
    if identity is not None:
        pub = identity if identity.suffix == ".pub" else identity.with_name(identity.name + ".pub")
        if pub.exists():
            wanted = keysign.public_blob_of(pub.read_text())
    try:
        agent_keys = keysign.agent_keys()
    except paramiko.SSHException:
        agent_keys = []
    for key in agent_keys:
        if wanted is None or key.asbytes() == wanted:
            return key
    if identity is None:
        raise ClientError(
            "ssh-agent has no keys (is SSH_AUTH_SOCK set?); add one with ssh-add or use --identity"
        )
    if identity.suffix == ".pub":
        raise ClientError(
            f"the key for {identity} is not in ssh-agent; ssh-add it or pass the private key file"
        )
    try:
        return keysign.load_private_key(identity, None)
    except paramiko.PasswordRequiredException:
        return keysign.load_private_key(identity, ask_passphrase(f"Passphrase for {identity}: "))
    except (OSError, paramiko.SSHException) as exc:
        raise ClientError(f"cannot read {identity}: {exc}") from None


def login(client: Client, *, user: str, key: Signer, totp: Callable[[], str]) -> LoginResult:
    """Run the login flow against ``client``; raises ClientError (401 on any auth failure)."""
    challenge = client.post("/ops/auth/challenge", {"user": user})
    check_message(challenge["message"], user=user, url=client.url)
    signature = keysign.sign(challenge["message"].encode(), key)
    answer = client.post(
        "/ops/auth/login",
        {"user": user, "nonce": challenge["nonce"], "signature": signature, "totp": totp().strip()},
    )
    return LoginResult(answer["token"], answer["role"], int(answer["expires_in"]))
