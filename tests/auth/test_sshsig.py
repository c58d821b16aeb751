"""SSHSIG against the real OpenSSH tools: ssh-keygen -Y sign/verify and a real ssh-agent."""

from __future__ import annotations

import base64
import collections
import hashlib
import struct
import subprocess
from collections.abc import Iterator
from pathlib import Path

import paramiko
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from opsconsole.auth import signer, sshsig
from opsconsole.errors import AuthError, ConfigError, InsecureFileError
from testkit.sshkeys import (
    GOOD_KEYS,
    KeyPair,
    KeyRing,
    running_agent,
    ssh_add,
    ssh_keygen_sign,
    ssh_keygen_verify,
)

MESSAGE = b"opsconsole login v1\nuser: alice\nnonce: 7f3a9c\n"
RSA_SIG_ALGS = {"rsa-sha2-256", "rsa-sha2-512"}


@pytest.fixture(scope="module")
def keyring(tmp_path_factory: pytest.TempPathFactory) -> KeyRing:
    return KeyRing(tmp_path_factory.mktemp("keyring"))


@pytest.fixture
def agent_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    with running_agent() as env:
        monkeypatch.setenv("SSH_AUTH_SOCK", env["SSH_AUTH_SOCK"])
        yield env


# -- independent builders (plain struct packing, not the code under test) --------------


def s(b: bytes | str) -> bytes:
    raw = b.encode() if isinstance(b, str) else b
    return struct.pack(">I", len(raw)) + raw


def build_blob(
    pub: bytes,
    inner_sig: bytes,
    *,
    namespace: str = "opsconsole",
    hash_alg: str = "sha512",
    reserved: bytes = b"",
    magic: bytes = b"SSHSIG",
    version: int = 1,
) -> bytes:
    return (
        magic + struct.pack(">I", version) + s(pub) + s(namespace) + s(reserved) + s(hash_alg) + s(inner_sig)
    )


def to_sign(message: bytes, namespace: str = "opsconsole", hash_alg: str = "sha512") -> bytes:
    return b"SSHSIG" + s(namespace) + s(b"") + s(hash_alg) + s(hashlib.new(hash_alg, message).digest())


def _parse_and_verify(armored_or_blob: str | bytes, expected: bytes, message: bytes) -> None:
    if isinstance(armored_or_blob, str):
        sig = sshsig.parse_armored(armored_or_blob)
    else:
        sig = sshsig.parse_blob(armored_or_blob)
    sshsig.verify(sig, message, expected_blob=expected)


def reason_of(armored_or_blob: str | bytes, expected: bytes, message: bytes = MESSAGE) -> str:
    """The AuthError reason parse + verify end with (they must end with one)."""
    with pytest.raises(AuthError) as info:
        _parse_and_verify(armored_or_blob, expected, message)
    return info.value.reason


def raw_of(armored: str) -> bytes:
    return sshsig.parse_armored(armored).raw


# -- ssh-keygen signs, we verify -------------------------------------------------------


@pytest.mark.parametrize("spec", GOOD_KEYS)
def test_verify_accepts_ssh_keygen_signatures(keyring: KeyRing, spec: str) -> None:
    kp = keyring[spec]
    sig = sshsig.parse_armored(ssh_keygen_sign(kp, MESSAGE))
    assert sig.namespace == "opsconsole"
    assert sig.hash_algorithm == "sha512"
    assert sig.public_key_blob == kp.blob
    if kp.key_type == "ssh-rsa":
        assert sig.sig_algorithm == "rsa-sha2-512"
    else:
        assert sig.sig_algorithm == kp.key_type
    sshsig.verify(sig, MESSAGE, expected_blob=kp.blob)


@pytest.mark.parametrize("spec", GOOD_KEYS)
def test_altered_message_is_bad_signature(keyring: KeyRing, spec: str) -> None:
    kp = keyring[spec]
    armored = ssh_keygen_sign(kp, MESSAGE)
    assert reason_of(armored, kp.blob, MESSAGE + b"x") == "bad_signature"
    assert reason_of(armored, kp.blob, MESSAGE[:-1]) == "bad_signature"


def test_wrong_namespace(keyring: KeyRing) -> None:
    kp = keyring["ed25519"]
    armored = ssh_keygen_sign(kp, MESSAGE, namespace="other")
    assert reason_of(armored, kp.blob) == "wrong_namespace"
    sshsig.verify(sshsig.parse_armored(armored), MESSAGE, expected_blob=kp.blob, namespace="other")


def test_other_key_is_key_mismatch(keyring: KeyRing) -> None:
    armored = ssh_keygen_sign(keyring["ed25519_other"], MESSAGE)
    assert reason_of(armored, keyring["ed25519"].blob) == "key_mismatch"
    assert reason_of(ssh_keygen_sign(keyring["ecdsa256"], MESSAGE), keyring["ed25519"].blob) == "key_mismatch"


def test_small_rsa_is_weak_key(keyring: KeyRing) -> None:
    kp = keyring["rsa1024"]
    armored = ssh_keygen_sign(kp, MESSAGE)
    assert sshsig.parse_armored(armored).sig_algorithm == "rsa-sha2-512"
    assert reason_of(armored, kp.blob) == "weak_key"
    with pytest.raises(AuthError) as info:
        signer.sign(MESSAGE, signer.load_private_key(kp.private, None))
    assert info.value.reason == "weak_key"


def test_sha1_rsa_signature_is_disallowed(keyring: KeyRing) -> None:
    kp = keyring["rsa2048"]
    key = paramiko.RSAKey.from_private_key_file(str(kp.private))
    assert key.private_key is not None
    # paramiko 5 refuses to make SHA-1 signatures; an old agent or a forger still could.
    sha1 = key.private_key.sign(to_sign(MESSAGE), padding.PKCS1v15(), hashes.SHA1())  # noqa: S303
    blob = build_blob(kp.blob, s("ssh-rsa") + s(sha1))
    assert sshsig.parse_blob(blob).sig_algorithm == "ssh-rsa"
    assert reason_of(blob, kp.blob) == "disallowed_algorithm"


def test_sig_algorithm_must_match_key_type(keyring: KeyRing) -> None:
    ed = keyring["ed25519"]
    _, ed_sig = sshsig.split_signature(sshsig.parse_armored(ssh_keygen_sign(ed, MESSAGE)).signature)
    for alg in ("rsa-sha2-512", "ecdsa-sha2-nistp256", "ssh-ed448", "none"):
        assert reason_of(build_blob(ed.blob, s(alg) + s(ed_sig)), ed.blob) == "disallowed_algorithm"
    ec = keyring["ecdsa256"]
    _, ec_sig = sshsig.split_signature(sshsig.parse_armored(ssh_keygen_sign(ec, MESSAGE)).signature)
    blob = build_blob(ec.blob, s("ecdsa-sha2-nistp384") + s(ec_sig))
    assert reason_of(blob, ec.blob) == "disallowed_algorithm"


def test_sha256_hash_from_hand_built_blob(keyring: KeyRing) -> None:
    kp = keyring["ed25519"]
    key = paramiko.Ed25519Key.from_private_key_file(str(kp.private))
    inner = key.sign_ssh_data(to_sign(MESSAGE, hash_alg="sha256")).asbytes()
    sshsig.verify(
        sshsig.parse_blob(build_blob(kp.blob, inner, hash_alg="sha256")), MESSAGE, expected_blob=kp.blob
    )
    # The same signature claimed under sha512 signs other bytes.
    assert reason_of(build_blob(kp.blob, inner, hash_alg="sha512"), kp.blob) == "bad_signature"


# -- malformed input -------------------------------------------------------------------


def test_truncated_and_trailing_bytes(keyring: KeyRing) -> None:
    kp = keyring["ed25519"]
    raw = raw_of(ssh_keygen_sign(kp, MESSAGE))
    for cut in range(len(raw)):
        assert reason_of(raw[:cut], kp.blob) == "malformed_signature", cut
    assert reason_of(raw + b"\0", kp.blob) == "malformed_signature"
    assert reason_of(raw + b"\0\0\0\0", kp.blob) == "malformed_signature"


def test_structural_rules(keyring: KeyRing) -> None:
    kp = keyring["ed25519"]
    sig = sshsig.parse_armored(ssh_keygen_sign(kp, MESSAGE))
    good = build_blob(kp.blob, sig.signature)
    assert good == sig.raw  # our independent builder agrees with ssh-keygen
    bad = {
        "magic": build_blob(kp.blob, sig.signature, magic=b"SSHSIH"),
        "version": build_blob(kp.blob, sig.signature, version=2),
        "reserved": build_blob(kp.blob, sig.signature, reserved=b"x"),
        "hash": build_blob(kp.blob, sig.signature, hash_alg="sha1"),
        "namespace": build_blob(kp.blob, sig.signature, namespace=""),
        "inner trailing": build_blob(kp.blob, sig.signature + b"\0"),
        "inner truncated": build_blob(kp.blob, sig.signature[:-1]),
        "ed25519 length": build_blob(kp.blob, s("ssh-ed25519") + s(b"\1" * 63)),
    }
    for name, blob in bad.items():
        assert reason_of(blob, kp.blob) == "malformed_signature", name


def test_ecdsa_inner_signature_is_strict(keyring: KeyRing) -> None:
    kp = keyring["ecdsa256"]
    sig = sshsig.parse_armored(ssh_keygen_sign(kp, MESSAGE))
    alg, rs = sshsig.split_signature(sig.signature)
    for variant in (rs + b"\0", rs[:-1], s(b"\0\1") + s(b"\1"), s(b"\x80") + s(b"\1")):
        assert reason_of(build_blob(kp.blob, s(alg) + s(variant)), kp.blob) == "malformed_signature"


def test_armor_rules(keyring: KeyRing) -> None:
    kp = keyring["ed25519"]
    armored = ssh_keygen_sign(kp, MESSAGE)
    lines = armored.strip().splitlines()
    assert max(len(line) for line in lines[1:-1]) == 70  # ssh-keygen's wrapping
    one_line = "\n".join([lines[0], "".join(lines[1:-1]), lines[-1]])
    rewrapped = sshsig.armor(raw_of(armored), width=13)
    for text in (one_line, rewrapped, "\r\n".join(lines), "  " + armored + "\n\n"):
        sshsig.verify(sshsig.parse_armored(text), MESSAGE, expected_blob=kp.blob)
    broken = [
        "\n".join(lines[1:]),
        "\n".join(lines[:-1]),
        armored.replace("SSH SIGNATURE", "PGP SIGNATURE"),
        "\n".join([lines[0], lines[1][:-1] + "!", *lines[2:]]),
        "\n".join([lines[0], lines[-1]]),
        lines[0] + "\n" + "A" * 40000 + "\n" + lines[-1],
        "",
    ]
    for text in broken:
        assert reason_of(text, kp.blob) == "malformed_signature"


def _every_bit_flip_is_refused(raw: bytes, expected: bytes) -> collections.Counter[str]:
    reasons: collections.Counter[str] = collections.Counter()
    accepted = []
    for bit in range(len(raw) * 8):
        mutated = bytearray(raw)
        mutated[bit // 8] ^= 1 << (bit % 8)
        try:
            sshsig.verify(sshsig.parse_blob(bytes(mutated)), MESSAGE, expected_blob=expected)
        except AuthError as exc:
            reasons[exc.reason] += 1
        else:
            accepted.append(bit)
    assert accepted == [], f"bit flips accepted: {accepted}"
    return reasons


@pytest.mark.parametrize("spec", ["ed25519", "ecdsa256", "rsa2048"])
def test_exhaustive_bit_flips(keyring: KeyRing, spec: str) -> None:
    kp = keyring[spec]
    raw = raw_of(ssh_keygen_sign(kp, MESSAGE))
    sshsig.verify(sshsig.parse_blob(raw), MESSAGE, expected_blob=kp.blob)  # the original is fine
    reasons = _every_bit_flip_is_refused(raw, kp.blob)
    assert sum(reasons.values()) == len(raw) * 8
    # Every part of the blob was hit: framing, key, namespace, algorithm and signature.
    assert {"malformed_signature", "key_mismatch", "wrong_namespace", "bad_signature"} <= set(reasons)
    assert "disallowed_algorithm" in reasons


# -- we sign, ssh-keygen verifies ------------------------------------------------------


@pytest.mark.parametrize("hash_algorithm", ["sha512", "sha256"])
@pytest.mark.parametrize("spec", GOOD_KEYS)
def test_our_signature_verified_by_ssh_keygen(
    keyring: KeyRing, tmp_path: Path, spec: str, hash_algorithm: str
) -> None:
    kp = keyring[spec]
    key = signer.load_private_key(kp.private, None)
    armored = signer.sign(MESSAGE, key, hash_algorithm=hash_algorithm)
    body = armored.strip().splitlines()[1:-1]
    assert all(len(line) <= 76 for line in body)
    assert len(body[0]) == 76
    proc = ssh_keygen_verify(kp, MESSAGE, armored, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert ssh_keygen_verify(kp, MESSAGE + b"!", armored, tmp_path).returncode != 0
    sig = sshsig.parse_armored(armored)
    assert sig.hash_algorithm == hash_algorithm
    if kp.key_type == "ssh-rsa":
        assert sig.sig_algorithm == "rsa-sha2-512"
    sshsig.verify(sig, MESSAGE, expected_blob=kp.blob)


def test_sign_with_other_namespace(keyring: KeyRing, tmp_path: Path) -> None:
    kp = keyring["ed25519"]
    armored = signer.sign(MESSAGE, signer.load_private_key(kp.private, None), namespace="file")
    assert ssh_keygen_verify(kp, MESSAGE, armored, tmp_path, namespace="file").returncode == 0
    assert reason_of(armored, kp.blob) == "wrong_namespace"


def test_sign_refuses_bad_arguments(keyring: KeyRing) -> None:
    key = signer.load_private_key(keyring["ed25519"].private, None)
    with pytest.raises(ConfigError, match="hash algorithm"):
        signer.sign(MESSAGE, key, hash_algorithm="sha1")
    public_only = paramiko.PKey.from_type_string("ssh-ed25519", keyring["ed25519"].blob)
    with pytest.raises(ConfigError, match="no private part"):
        signer.sign(MESSAGE, public_only)


class _Sha1OnlyRsaKey(paramiko.RSAKey):
    """A real RSA key that answers like an agent without SHA-2 support: ssh-rsa (SHA-1)."""

    def sign_ssh_data(self, data: bytes, algorithm: str | None = None) -> paramiko.Message:
        assert self.private_key is not None
        msg = paramiko.Message()
        msg.add_string("ssh-rsa")
        msg.add_string(self.private_key.sign(data, padding.PKCS1v15(), hashes.SHA1()))  # noqa: S303
        return msg


def test_sign_refuses_sha1_answer(keyring: KeyRing) -> None:
    key = _Sha1OnlyRsaKey.from_private_key_file(str(keyring["rsa2048"].private))
    with pytest.raises(AuthError) as info:
        signer.sign(MESSAGE, key)
    assert info.value.reason == "disallowed_algorithm"


# -- through a real ssh-agent ----------------------------------------------------------


def _agent_sign(kp: KeyPair, env: dict[str, str]) -> str:
    ssh_add(kp, env)
    agent = paramiko.Agent()
    try:
        (key,) = signer.agent_keys(agent)
        assert isinstance(key, paramiko.AgentKey)
        assert key.asbytes() == kp.blob
        return signer.sign(MESSAGE, key)
    finally:
        agent.close()


@pytest.mark.parametrize("spec", GOOD_KEYS)
def test_sign_through_real_agent(
    keyring: KeyRing, tmp_path: Path, agent_env: dict[str, str], spec: str
) -> None:
    kp = keyring[spec]
    armored = _agent_sign(kp, agent_env)
    sig = sshsig.parse_armored(armored)
    if kp.key_type == "ssh-rsa":
        assert sig.sig_algorithm == "rsa-sha2-512"  # the agent flag was sent: not SHA-1
    else:
        assert sig.sig_algorithm == kp.key_type
    sshsig.verify(sig, MESSAGE, expected_blob=kp.blob)
    proc = ssh_keygen_verify(kp, MESSAGE, armored, tmp_path)
    assert proc.returncode == 0, proc.stderr


def test_no_agent_means_no_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    assert signer.agent_keys() == []


# -- key loading -----------------------------------------------------------------------


def test_load_encrypted_key(tmp_path: Path) -> None:
    path = tmp_path / "enc"
    subprocess.run(
        ["ssh-keygen", "-t", "ed25519", "-N", "sesame", "-f", str(path), "-q"],
        check=True,
        capture_output=True,
    )
    with pytest.raises(paramiko.PasswordRequiredException):
        signer.load_private_key(path, None)
    with pytest.raises(ConfigError, match="wrong passphrase"):
        signer.load_private_key(path, "wrong")
    key = signer.load_private_key(path, "sesame")
    assert key.asbytes() == signer.public_blob_of(path.with_name("enc.pub"))


@pytest.mark.parametrize(("kind", "bits"), [("rsa", "2048"), ("ecdsa", "384")])
def test_load_pem_key(tmp_path: Path, kind: str, bits: str) -> None:
    path = tmp_path / "pem"
    subprocess.run(
        ["ssh-keygen", "-t", kind, "-b", bits, "-m", "PEM", "-N", "", "-f", str(path), "-q"],
        check=True,
        capture_output=True,
    )
    assert path.read_text().startswith(f"-----BEGIN {'RSA' if kind == 'rsa' else 'EC'} PRIVATE KEY-----")
    key = signer.load_private_key(path, None)
    assert key.asbytes() == signer.public_blob_of(Path(f"{path}.pub"))


def test_load_private_key_refusals(keyring: KeyRing, tmp_path: Path) -> None:
    kp = keyring["ed25519"]
    loose = tmp_path / "loose"
    loose.write_text(kp.private.read_text())
    loose.chmod(0o644)
    with pytest.raises(InsecureFileError, match="chmod 600"):
        signer.load_private_key(loose, None)
    garbage = tmp_path / "garbage"
    garbage.write_text("not a key\n")
    garbage.chmod(0o600)
    with pytest.raises(ConfigError, match="not an OpenSSH or PEM private key"):
        signer.load_private_key(garbage, None)
    with pytest.raises(ConfigError, match="does not exist"):
        signer.load_private_key(tmp_path / "missing", None)


def test_public_blob_of(keyring: KeyRing, tmp_path: Path) -> None:
    kp = keyring["ecdsa384"]
    assert signer.public_blob_of(kp.pub_line) == kp.blob
    assert signer.public_blob_of(kp.pub_line + "\n") == kp.blob
    assert signer.public_blob_of(kp.public) == kp.blob
    assert signer.public_blob_of(str(kp.public)) == kp.blob
    with pytest.raises(ConfigError, match="private key"):
        signer.public_blob_of(kp.private)
    with pytest.raises(ConfigError, match="cannot read"):
        signer.public_blob_of(tmp_path / "missing.pub")
    with pytest.raises(ConfigError, match="1024 bits"):
        signer.public_blob_of(keyring["rsa1024"].pub_line)
    assert base64.b64decode(kp.b64) == kp.blob
