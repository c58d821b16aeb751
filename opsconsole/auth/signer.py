"""Client-side SSHSIG signing, with a private key file or through an ssh-agent.

Runs in the operator's process (the CLI). Whatever signs, the result is checked
against the policy the server applies, so an old agent that answers an RSA request
with a SHA-1 ``ssh-rsa`` signature fails here with a clear reason, not at login.
"""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path

import paramiko

from opsconsole import private_files
from opsconsole.auth import keys, sshsig
from opsconsole.errors import AuthError, ConfigError

_PEM_RE = re.compile(r"-----BEGIN (OPENSSH|RSA|EC) PRIVATE KEY-----\s*\n(.*?)-----END", re.DOTALL)
_OPENSSH_MAGIC = b"openssh-key-v1\x00"
_KEY_CLASSES: dict[str, type[paramiko.PKey]] = {
    "ssh-ed25519": paramiko.Ed25519Key,
    "ecdsa-sha2-nistp256": paramiko.ECDSAKey,
    "ecdsa-sha2-nistp384": paramiko.ECDSAKey,
    "ecdsa-sha2-nistp521": paramiko.ECDSAKey,
    "ssh-rsa": paramiko.RSAKey,
}


def _key_class(text: str, path: Path) -> type[paramiko.PKey]:
    """Pick the paramiko class for a private key file without decrypting it."""
    m = _PEM_RE.search(text)
    if m is None:
        raise ConfigError(f"{path} is not an OpenSSH or PEM private key")
    if m.group(1) == "RSA":
        return paramiko.RSAKey
    if m.group(1) == "EC":
        return paramiko.ECDSAKey
    # openssh-key-v1 stores the public key in clear ahead of the (maybe encrypted)
    # private part, so the type is known before asking for a passphrase.
    try:
        body = base64.b64decode("".join(m.group(2).split()), validate=True)
        if not body.startswith(_OPENSSH_MAGIC):
            raise ValueError("bad magic")
        header = paramiko.Message(body[len(_OPENSSH_MAGIC) :])
        for _ in range(3):  # cipher name, KDF name, KDF options
            header.get_string()
        header.get_int()  # number of keys
        key_type = paramiko.Message(header.get_string()).get_text()
    except Exception:  # any decoding problem means the same thing: not a key file we can read
        raise ConfigError(f"{path} is not a valid OpenSSH private key") from None
    if key_type not in _KEY_CLASSES:
        raise ConfigError(f"{path}: key type {key_type!r} is not supported")
    return _KEY_CLASSES[key_type]


def load_private_key(path: Path, passphrase: str | None) -> paramiko.PKey:
    """Load an ed25519, ECDSA or RSA private key (OpenSSH format, or PEM for RSA/EC).

    Like ssh, refuses a key file that group or others can access (``InsecureFileError``).
    An encrypted key without ``passphrase`` raises ``paramiko.PasswordRequiredException``
    so the caller can ask for one and retry; other problems raise ``ConfigError``.
    """
    text = private_files.read_protected(path, secret=True)
    key_class = _key_class(text, path)
    try:
        # Not PKey.from_path: in paramiko 5.1 it hands a str passphrase to cryptography,
        # which wants bytes, so every encrypted key fails to load.
        key = key_class.from_private_key(io.StringIO(text), password=passphrase)
    except paramiko.PasswordRequiredException:
        raise
    except (paramiko.SSHException, ValueError, TypeError) as exc:
        raise ConfigError(f"{path}: cannot load private key (wrong passphrase?): {exc}") from None
    if key.get_name() not in keys.KEY_TYPES:
        raise ConfigError(f"{path}: key type {key.get_name()} is not supported")
    return key


def agent_keys(agent: paramiko.Agent | None = None) -> list[paramiko.AgentKey]:
    """The keys an ssh-agent (``$SSH_AUTH_SOCK``) offers; empty if there is no agent.

    Pass your own ``paramiko.Agent`` to be able to ``close()`` it; otherwise the
    connection lives as long as the process, which is what a CLI wants. An agent that
    answers nonsense raises ``paramiko.SSHException`` (callers fall back to a key file).
    """
    return list((agent if agent is not None else paramiko.Agent()).get_keys())


def _looks_like_key_line(text: str) -> bool:
    fields = text.split(None, 1)
    return bool(fields) and fields[0] in keys.KEY_TYPES


def public_blob_of(pub_line_or_path: str | Path) -> bytes:
    """The public key blob of an OpenSSH public key line, or of a ``.pub`` file's first key."""
    if isinstance(pub_line_or_path, str) and _looks_like_key_line(pub_line_or_path):
        text = pub_line_or_path
    else:
        path = Path(pub_line_or_path)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read public key {path}: {exc}") from None
        if "PRIVATE KEY-----" in text:
            raise ConfigError(f"{path} is a private key; give the .pub file")
        lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
        if not lines:
            raise ConfigError(f"{path} contains no public key")
        text = lines[0]
    _key_type, blob, _comment = keys.parse_public_key(text)
    return blob


def _signature_bytes(result: object) -> bytes:
    # PKey.sign_ssh_data returns a Message, AgentKey.sign_ssh_data the raw bytes.
    if isinstance(result, paramiko.Message):
        return result.asbytes()
    if isinstance(result, bytes):
        return result
    raise AuthError("signing_failed", f"unexpected signature type {type(result).__name__}")


def sign(
    message: bytes,
    signer: paramiko.PKey,
    *,
    namespace: str = sshsig.NAMESPACE,
    hash_algorithm: str = "sha512",
) -> str:
    """Sign ``message`` as ``ssh-keygen -Y sign -n namespace`` would; return the armored text.

    ``signer`` is a private key from ``load_private_key`` or an ``AgentKey``.
    """
    if hash_algorithm not in sshsig.HASH_ALGORITHMS:
        raise ConfigError(f"hash algorithm {hash_algorithm!r} is not sha256 or sha512")
    public_blob = signer.asbytes()
    key_type = signer.get_name()
    if key_type not in keys.KEY_TYPES:
        raise AuthError("disallowed_algorithm", f"key type {key_type} is not supported")
    if key_type == "ssh-rsa" and signer.get_bits() < keys.MIN_RSA_BITS:
        raise AuthError("weak_key", f"RSA key of {signer.get_bits()} bits")
    if not isinstance(signer, paramiko.AgentKey) and not signer.can_sign():
        raise ConfigError("this key has no private part; load the private key file")
    data = sshsig.signed_data(message, namespace=namespace, hash_algorithm=hash_algorithm)
    try:
        if key_type == "ssh-rsa":
            # For an AgentKey this sets the SSH_AGENT_RSA_SHA2_512 flag; without it
            # the agent signs with SHA-1.
            result: object = signer.sign_ssh_data(data, algorithm="rsa-sha2-512")
        else:
            result = signer.sign_ssh_data(data)
    except (paramiko.SSHException, OSError) as exc:
        raise AuthError("signing_failed", str(exc)) from None
    signature = _signature_bytes(result)
    # An agent predating SHA-2 RSA signatures ignores the flag and answers ssh-rsa.
    sshsig.check_algorithm(key_type, sshsig.split_signature(signature)[0])
    blob = sshsig.encode_blob(
        public_blob, namespace=namespace, hash_algorithm=hash_algorithm, signature=signature
    )
    # Verify our own output: a broken agent or key should fail here, not at the server.
    sshsig.verify(sshsig.parse_blob(blob), message, expected_blob=public_blob, namespace=namespace)
    return sshsig.armor(blob)
