"""Settings layers, validation, and the refusals that keep the console closed."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

import opsconsole
from opsconsole import config
from opsconsole.errors import ConfigError, InsecureFileError
from testkit import REPO
from testkit.support import audit_events

EXAMPLE = REPO / "config" / "opsconsole.toml"


def test_defaults_are_safe() -> None:
    s = config.load(None, environ={})
    assert s.host == "127.0.0.1"
    assert s.nonce_ttl <= 60
    assert s.max_body_bytes <= 65536
    assert (s.session_idle_timeout, s.session_max_age) == (900, 8 * 3600)


def test_precedence_kwargs_over_env_over_file(tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_text("port = 1111\nnonce_ttl = 30\nmax_connections = 7\n")
    env = {"OPSCONSOLE_PORT": "2222", "OPSCONSOLE_NONCE_TTL": "20"}
    s = config.load(f, environ=env, port=3333)
    assert (s.port, s.nonce_ttl, s.max_connections) == (3333, 20.0, 7)


def test_config_file_from_environment_and_relative_paths(tmp_path: Path) -> None:
    f = tmp_path / "sub" / "c.toml"
    f.parent.mkdir()
    f.write_text('[opsconsole]\nauthorized_keys = "keys/ak"\n')
    s = config.load(None, environ={"OPSCONSOLE_CONFIG": str(f)})
    assert s.authorized_keys == f.parent / "keys" / "ak"


def test_unknown_key_names_key_and_file(tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_text("prot = 8000\n")
    with pytest.raises(ConfigError, match=r"'prot'.*c\.toml") as info:
        config.load(f, environ={})
    assert info.value.key == "prot" and info.value.source == str(f)


@pytest.mark.parametrize(
    ("toml", "key"),
    [
        ('port = "eighty"', "port"),
        ("nonce_ttl = true", "nonce_ttl"),
        ("host = 127", "host"),
        ("port = 70000", "port"),
    ],
)
def test_wrong_type_names_key_and_file(tmp_path: Path, toml: str, key: str) -> None:
    f = tmp_path / "c.toml"
    f.write_text(toml + "\n")
    with pytest.raises(ConfigError, match=re.escape(str(f))) as info:
        config.load(f, environ={})
    assert info.value.key == key


def test_bad_environment_and_keyword_values() -> None:
    with pytest.raises(ConfigError, match="OPSCONSOLE_PROT.*environment"):
        config.load(None, environ={"OPSCONSOLE_PROT": "1"})
    with pytest.raises(ConfigError, match="'port'.*environment"):
        config.load(None, environ={"OPSCONSOLE_PORT": "x"})
    with pytest.raises(ConfigError, match="'port'.*keyword argument"):
        config.load(None, environ={}, port="8000")
    with pytest.raises(ConfigError, match="'bogus'.*keyword argument"):
        config.load(None, environ={}, bogus=1)


def test_invalid_toml_names_file(tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_text("port = = 1\n")
    with pytest.raises(ConfigError, match=re.escape(str(f))):
        config.load(f, environ={})


def test_nonce_ttl_cannot_exceed_60_seconds() -> None:
    with pytest.raises(ConfigError, match="nonce_ttl"):
        config.load(None, environ={}, nonce_ttl=120)


@pytest.mark.parametrize("host", ["0.0.0.0", "10.1.2.3", "::", "ops.example.com", ""])
def test_non_loopback_without_tls_refuses_and_says_how_to_fix(host: str) -> None:
    with pytest.raises(ConfigError, match="without TLS") as info:
        opsconsole.start(host=host, port=0)
    assert info.value.key == "host"
    assert "tls_cert" in str(info.value) and "127.0.0.1" in str(info.value)


def test_tls_settings_must_come_in_pairs(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="together"):
        config.load(None, environ={}, tls_cert=tmp_path / "c.pem")
    with pytest.raises(ConfigError, match="mTLS"):
        config.load(None, environ={}, tls_client_ca=tmp_path / "ca.pem")


def test_example_config_documents_every_setting_and_loads() -> None:
    text = EXAMPLE.read_text()
    documented = set(re.findall(r"^#? ?([a-z_]+) = ", text, flags=re.MULTILINE))
    assert documented == {f.name for f in dataclasses.fields(config.Settings)}
    loaded, defaults = config.load(EXAMPLE, environ={}), config.Settings()
    for f in dataclasses.fields(config.Settings):
        if not isinstance(getattr(defaults, f.name), Path):  # paths resolve against the file
            assert getattr(loaded, f.name) == getattr(defaults, f.name), f.name


# -- files the console refuses (start() raises in the caller, naming the file) ------------


def _start(tmp_path: Path, keys_dir: Path) -> opsconsole.Console:
    return opsconsole.start(
        port=0,
        state_dir=tmp_path / "state",
        authorized_keys=keys_dir / "authorized_keys",
        totp_secrets=keys_dir / "totp_secrets",
    )


def test_refuses_world_readable_secrets(tmp_path: Path, keys_dir: Path) -> None:
    (keys_dir / "totp_secrets").chmod(0o644)
    with pytest.raises(InsecureFileError, match="totp_secrets.*chmod 600"):
        _start(tmp_path, keys_dir)
    events = audit_events(tmp_path / "state" / "audit.jsonl")
    assert [e["event"] for e in events] == ["config.rejected"]
    assert "totp_secrets" in events[0]["fields"]["reason"]


def test_refuses_group_writable_authorized_keys(tmp_path: Path, keys_dir: Path) -> None:
    (keys_dir / "authorized_keys").chmod(0o664)
    with pytest.raises(InsecureFileError, match="authorized_keys.*writable"):
        _start(tmp_path, keys_dir)


def test_refuses_symlinked_authorized_keys(tmp_path: Path, keys_dir: Path) -> None:
    real = tmp_path / "elsewhere"
    (keys_dir / "authorized_keys").rename(real)
    (keys_dir / "authorized_keys").symlink_to(real)
    with pytest.raises(InsecureFileError, match="authorized_keys.*symbolic link"):
        _start(tmp_path, keys_dir)


def test_missing_keys_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        _start(tmp_path, tmp_path / "nokeys")
