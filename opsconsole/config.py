"""Frozen settings: keyword arguments > ``OPSCONSOLE_*`` environment > TOML file > defaults.

Every setting is declared once, in :class:`Settings`; its type drives parsing from the
environment and checking of TOML values and keyword arguments. An unknown key or a wrong
type is a :class:`ConfigError` naming the key and where it came from. Runs on whichever
thread calls ``opsconsole.start()`` (or the CLI), never on the console thread.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import ssl
import tomllib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from opsconsole.errors import ConfigError

ENV_PREFIX = "OPSCONSOLE_"
#: Environment variable naming the TOML file when ``config=`` is not given.
ENV_CONFIG = "OPSCONSOLE_CONFIG"


@dataclasses.dataclass(frozen=True, slots=True)
class Settings:
    """Every setting with its default. ``config/opsconsole.toml`` documents each one."""

    host: str = "127.0.0.1"
    port: int = 8780
    # The origin operators use to reach the console (scheme://host:port). It is part of the
    # signed login message and the websocket Origin allow-list. Default: derived from host/port.
    public_url: str | None = None
    state_dir: Path = Path(".opsconsole")
    authorized_keys: Path = Path("keys/authorized_keys")
    totp_secrets: Path = Path("keys/totp_secrets")
    audit_log: Path | None = None  # default: <state_dir>/audit.jsonl
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None  # set → clients must present a certificate (mTLS)
    session_idle_timeout: float = 900.0
    session_max_age: float = 28800.0
    nonce_ttl: float = 60.0
    lockout_threshold: int = 5
    lockout_base_delay: float = 1.0
    lockout_max_delay: float = 900.0
    max_body_bytes: int = 65536
    # Seconds to send request headers (also how long a keep-alive connection may idle) and a body.
    header_timeout: float = 5.0
    body_timeout: float = 5.0
    # Seconds an HTTP connection may stay open before it carries a valid session.
    preauth_timeout: float = 30.0
    max_connections: int = 64
    # Connections not yet authenticated from one source (an IPv4 address, an IPv6 /64) on
    # the HTTP port; more are closed at accept().
    max_unauthenticated_per_source: int = 16
    # Random early drop of unauthenticated connections, "start:rate:full" in percent: from
    # start % of a door's cap, drop a new one with rate % probability, rising to 100 % at full %.
    early_drop: str = "50:30:100"
    # Per-source penalties (seconds): a source refused at its cap, timing out or leaving
    # without authenticating builds up penalty time; from penalty_min on it is refused at
    # accept until that time has run out (at most penalty_max). penalty_max = 0: off.
    penalty_min: float = 15.0
    penalty_max: float = 600.0
    # Requests without a valid session per second and per source (burst: at once); beyond
    # that 429 with Retry-After, before the body is parsed.
    unauthenticated_rate: float = 20.0
    unauthenticated_burst: int = 100
    # Browser origins besides the console's own that may open the terminal and send
    # cookie-authenticated requests (comma-separated), e.g. behind a proxy.
    allowed_origins: str = ""
    # The REPL profile: "lean" (completion on Tab only) or "full" (completion while typing).
    repl_profile: str = "lean"
    # GIL switch interval in seconds while a REPL session is open (0: leave the interpreter's).
    repl_switch_interval: float = 0.0005
    # Websocket keep-alive ping interval in seconds; no pong within as long again closes it.
    ws_ping_interval: float = 20.0
    # Websocket messages per second a terminal client may send (a paste is one message).
    ws_rate_limit: int = 200
    # Terminal output not yet taken by a slow client, in bytes, before the client is dropped.
    ws_output_buffer: int = 4 * 1024 * 1024
    # The SSH port for the OpenSSH client: off (None) unless set; 0 picks any free port.
    ssh_port: int | None = None
    # The SSH host key (ed25519); default <state_dir>/ssh_host_ed25519_key, made on first start.
    ssh_host_key: Path | None = None
    # Seconds an SSH connection may take to finish both factors before it is closed.
    ssh_login_grace: float = 60.0
    # Seconds between SSH keepalives, sent only once both factors are done: OpenSSH's client
    # drops a connection that gets a global request while it is still authenticating.
    ssh_keepalive: int = 30
    # SSH connections still authenticating at once; more are closed at accept().
    ssh_max_unauthenticated: int = 10
    # Of those, from one source (an IPv4 address, an IPv6 /64).
    ssh_max_unauthenticated_per_source: int = 4
    # Seconds between leak detector samples; 0 (the default) leaves it off until started by hand.
    leak_interval: float = 0.0
    # MiB a whole-heap walk (census, reference search, heap snapshot) may add to the process
    # before it stops with an error (HTTP 507).
    walk_memory_budget: int = 1024

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None

    @property
    def ssh_host_key_path(self) -> Path:
        return self.ssh_host_key if self.ssh_host_key is not None else self.state_dir / "ssh_host_ed25519_key"

    @property
    def early_drop_fractions(self) -> tuple[float, float, float]:
        """``early_drop`` as fractions (start, rate, full); checked by :func:`load`."""
        start, rate, full = (int(p) / 100 for p in self.early_drop.split(":"))
        return start, rate, full

    @property
    def audit_path(self) -> Path:
        return self.audit_log if self.audit_log is not None else self.state_dir / "audit.jsonl"

    def origin(self, bound_port: int) -> str:
        """The public origin; ``bound_port`` replaces port 0 once the socket is bound."""
        if self.public_url:
            return self.public_url.rstrip("/")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.tls else 'http'}://{host}:{bound_port}"

    def extra_origins(self) -> tuple[str, ...]:
        return tuple(o.strip().rstrip("/") for o in self.allowed_origins.split(",") if o.strip())

    def ssl_context(self) -> ssl.SSLContext | None:
        """TLS (and with ``tls_client_ca`` mutual TLS) for the HTTP listener."""
        if self.tls_cert is None:
            return None
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            ctx.load_cert_chain(self.tls_cert, self.tls_key)
            if self.tls_client_ca is not None:
                ctx.load_verify_locations(cafile=str(self.tls_client_ca))
                ctx.verify_mode = ssl.CERT_REQUIRED
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"cannot load TLS material: {exc}", key="tls_cert") from exc
        return ctx


_FIELDS: dict[str, dataclasses.Field[Any]] = {f.name: f for f in dataclasses.fields(Settings)}
_HINTS: dict[str, Any] = typing.get_type_hints(Settings)

_LIMITS: dict[str, tuple[float, float]] = {
    "port": (0, 65535),
    "session_idle_timeout": (1, 7 * 86400),
    "session_max_age": (1, 30 * 86400),
    "nonce_ttl": (1, 60),  # the security defaults cap nonces at 60 s
    "lockout_threshold": (1, 1000),
    "lockout_base_delay": (0.001, 3600),
    "lockout_max_delay": (0.001, 86400),
    "max_body_bytes": (1024, 65536),
    "header_timeout": (0.1, 60),
    "body_timeout": (0.1, 600),
    "preauth_timeout": (1, 3600),
    "max_connections": (1, 100000),
    "max_unauthenticated_per_source": (1, 100000),
    "penalty_min": (0, 86400),
    "penalty_max": (0, 86400),
    "unauthenticated_rate": (0.01, 100000),
    "unauthenticated_burst": (1, 100000),
    "ws_ping_interval": (1, 3600),
    "ws_rate_limit": (1, 100000),
    "ws_output_buffer": (65536, 1 << 30),
    "ssh_port": (0, 65535),
    "ssh_login_grace": (1, 600),
    "ssh_keepalive": (1, 3600),
    "ssh_max_unauthenticated": (1, 10000),
    "ssh_max_unauthenticated_per_source": (1, 10000),
    "leak_interval": (0, 3600),
    "walk_memory_budget": (16, 1 << 20),
    "repl_switch_interval": (0, 0.1),
}


def _base_types(hint: Any) -> tuple[type, bool]:
    """(the concrete type, whether None is allowed) of a field annotation."""
    if isinstance(hint, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return args[0], True
    return hint, False


def _coerce(key: str, value: Any, source: str, *, from_text: bool) -> Any:
    """Check (or, for environment text, parse) one value against the field's type."""
    kind, optional = _base_types(_HINTS[key])
    if value is None or (from_text and optional and value == ""):
        if optional:
            return None
        raise ConfigError("must not be empty", key=key, source=source)
    try:
        if from_text:
            value = _parse_text(kind, value)
        value = _check_type(kind, value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"expected {kind.__name__}: {exc}", key=key, source=source) from None
    if key in _LIMITS:
        low, high = _LIMITS[key]
        if not low <= value <= high:
            raise ConfigError(f"{value} is outside {low}..{high}", key=key, source=source)
    return value


def _parse_text(kind: type, text: str) -> Any:
    if kind is bool:
        lowered = text.strip().lower()
        if lowered in {"1", "true", "yes", "on"}:
            return True
        if lowered in {"0", "false", "no", "off"}:
            return False
        raise ValueError(f"{text!r} is not a boolean")
    if kind in (int, float):
        return kind(text)
    return text


def _check_type(kind: type, value: Any) -> Any:
    if kind is Path:
        if isinstance(value, str | os.PathLike):
            return Path(value)
    elif kind is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
        return value
    raise TypeError(f"got {type(value).__name__} {value!r}")


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"invalid TOML: {exc}", source=str(path)) from None
    # Accept settings either at top level or under an [opsconsole] table.
    table = data.get("opsconsole", data)
    if not isinstance(table, dict):
        raise ConfigError("[opsconsole] must be a table", source=str(path))
    return table


def load(
    config: str | os.PathLike[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    **overrides: Any,
) -> Settings:
    """Build :class:`Settings` from the layers. Raises :class:`ConfigError`."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    config_path = config if config is not None else env.get(ENV_CONFIG) or None
    if config_path is not None:
        path = Path(config_path)
        for key, raw in _read_toml(path).items():
            if key not in _FIELDS:
                raise ConfigError("unknown setting", key=key, source=str(path))
            value = _coerce(key, raw, str(path), from_text=False)
            if isinstance(value, Path) and not value.is_absolute():
                value = path.parent / value  # relative paths in a file are relative to it
            values[key] = value
    for name, raw in env.items():
        if not name.startswith(ENV_PREFIX) or name == ENV_CONFIG:
            continue
        key = name[len(ENV_PREFIX) :].lower()
        if key not in _FIELDS:
            raise ConfigError("unknown setting", key=name, source="environment")
        values[key] = _coerce(key, raw, "environment", from_text=True)
    for key, raw in overrides.items():
        if key not in _FIELDS:
            raise ConfigError("unknown setting", key=key, source="keyword argument")
        values[key] = _coerce(key, raw, "keyword argument", from_text=False)
    settings = Settings(**values)
    _check_safety(settings)
    return settings


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a hostname or "" (all interfaces): treat as exposed


def _check_safety(s: Settings) -> None:
    if (s.tls_cert is None) != (s.tls_key is None):
        raise ConfigError("tls_cert and tls_key must be set together", key="tls_cert")
    if s.tls_client_ca is not None and s.tls_cert is None:
        raise ConfigError("tls_client_ca (mTLS) needs tls_cert and tls_key", key="tls_client_ca")
    if not _is_loopback(s.host) and not s.tls:
        raise ConfigError(
            f"refusing to listen on {s.host!r} without TLS: whoever reaches this port can run code "
            "in the process. Set tls_cert and tls_key (optionally tls_client_ca for mTLS), "
            "or keep host = 127.0.0.1 and reach it through an SSH tunnel",
            key="host",
        )
    if s.repl_profile not in ("lean", "full"):
        raise ConfigError('must be "lean" or "full"', key="repl_profile")
    if 0 < s.leak_interval < 1:
        raise ConfigError("must be 0 (off) or at least 1 second", key="leak_interval")
    for origin in s.extra_origins():
        if not origin.startswith(("http://", "https://")):
            raise ConfigError(f"{origin!r} is not an origin (scheme://host[:port])", key="allowed_origins")
    if s.session_idle_timeout > s.session_max_age:
        raise ConfigError("must not exceed session_max_age", key="session_idle_timeout")
    if s.lockout_base_delay > s.lockout_max_delay:
        raise ConfigError("must not exceed lockout_max_delay", key="lockout_base_delay")
    if s.penalty_min > s.penalty_max:
        raise ConfigError("must not exceed penalty_max", key="penalty_min")
    _check_early_drop(s.early_drop)


def _check_early_drop(text: str) -> None:
    parts = text.split(":")
    if len(parts) != 3 or not all(p.isascii() and p.isdigit() for p in parts):
        raise ConfigError(f"{text!r} is not start:rate:full (three whole percentages)", key="early_drop")
    start, rate, full = (int(p) for p in parts)
    if not (0 <= start <= full <= 100 and rate <= 100):
        raise ConfigError(f"{text!r}: need 0 <= start <= full <= 100 and rate <= 100", key="early_drop")
