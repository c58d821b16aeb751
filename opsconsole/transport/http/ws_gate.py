"""The websocket gate: one decision, ours, for every upgrade of ``/ops/terminal``.

Pure: the request's headers and the console's origins in, ``None`` (allowed) or a
``Refusal`` out. The rule, in the order it is checked:

1. it is a websocket upgrade: ``Upgrade: websocket``, ``Connection`` naming ``upgrade``,
   one ``Sec-WebSocket-Key`` of 16 bytes (400 otherwise), ``Sec-WebSocket-Version: 13``
   (426 otherwise: older drafts are how frameworks grew the ``Sec-WebSocket-Origin`` door);
2. one ``Host``, equal byte for byte to the host of the console's own origin or of an
   ``allowed_origins`` entry (against DNS rebinding);
3. no ``Sec-WebSocket-Origin`` (a pre-RFC 6455 header no current browser sends);
4. at most one ``Origin``; when present it equals, byte for byte, the console's own origin
   or an ``allowed_origins`` entry — no case folding, no default ports, no trailing slash,
   no "same host" shortcut, ``null`` is refused;
5. no ``Origin`` is accepted only from a client that is not a browser: one that sends no
   session cookie (the CLI's bearer token) and no ``Sec-Fetch-*`` metadata (browsers send
   both with an Origin).

``Sec-Fetch-Site`` never widens the rule: a request the Origin refuses stays refused
whatever it claims. The handler runs this before anything of Tornado's sees the request and
makes Tornado's own ``check_origin`` answer from ``origin_allowed``, so no framework
version can accept what this refuses.
"""

from __future__ import annotations

import base64
import binascii
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol


class Headers(Protocol):
    """What the gate reads from a request: every value of a header (names case-insensitive)."""

    def get_list(self, name: str) -> list[str]: ...


@dataclass(frozen=True, slots=True)
class Policy:
    """The exact Origin and Host values this console accepts."""

    origins: frozenset[str]
    hosts: frozenset[str]

    @classmethod
    def of(cls, own_origin: str, allowed_origins: Iterable[str]) -> Policy:
        origins = frozenset({own_origin, *allowed_origins})
        return cls(origins, frozenset(urllib.parse.urlsplit(o).netloc for o in origins))


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why an upgrade is refused: the HTTP status, the audit reason, the client's message."""

    status: int
    reason: str
    message: str


def origin_allowed(origin: str, policy: Policy) -> bool:
    """Byte-for-byte membership: the only Origin comparison anywhere in the console."""
    return origin in policy.origins


def decide(headers: Headers, policy: Policy, *, cookie: bool) -> Refusal | None:
    """``None`` if the upgrade may go on to authentication, else the refusal.

    ``cookie``: the request carries the session cookie (a browser's credential).
    """
    return _upgrade(headers) or _host(headers, policy) or _origin(headers, policy, cookie)


def _host(headers: Headers, policy: Policy) -> Refusal | None:
    hosts = headers.get_list("Host")
    if len(hosts) != 1 or hosts[0] not in policy.hosts:
        return Refusal(403, "ws_host", "the Host header does not name this console")
    return None


def _origin(headers: Headers, policy: Policy, cookie: bool) -> Refusal | None:
    if headers.get_list("Sec-WebSocket-Origin"):
        return Refusal(403, "ws_legacy_origin", "Sec-WebSocket-Origin is not accepted")
    origins = headers.get_list("Origin")
    if len(origins) > 1:
        return Refusal(403, "ws_origin_repeated", "more than one Origin header")
    if origins:
        return None if origin_allowed(origins[0], policy) else _FOREIGN
    if cookie:
        return Refusal(403, "ws_origin_missing", "a browser session needs an Origin header")
    if any(headers.get_list(name) for name in _FETCH_METADATA):
        return Refusal(403, "ws_origin_missing", "a browser request needs an Origin header")
    return None


_FOREIGN = Refusal(403, "ws_origin", "this Origin may not open the terminal")
_FETCH_METADATA = ("Sec-Fetch-Site", "Sec-Fetch-Mode", "Sec-Fetch-Dest", "Sec-Fetch-User")


def _upgrade(headers: Headers) -> Refusal | None:
    upgrade = headers.get_list("Upgrade")
    connection = ",".join(headers.get_list("Connection"))
    if [u.lower() for u in upgrade] != ["websocket"] or "upgrade" not in _tokens(connection):
        return Refusal(400, "ws_not_upgrade", "this route is a websocket upgrade")
    keys = headers.get_list("Sec-WebSocket-Key")
    if len(keys) != 1 or not _valid_key(keys[0]):
        return Refusal(400, "ws_bad_key", "Sec-WebSocket-Key must be 16 bytes in base64")
    if headers.get_list("Sec-WebSocket-Version") != ["13"]:
        return Refusal(426, "ws_version", "only websocket version 13 (RFC 6455) is spoken")
    return None


def _tokens(value: str) -> set[str]:
    return {t.strip().lower() for t in value.split(",")}


def _valid_key(key: str) -> bool:
    try:
        return len(base64.b64decode(key, validate=True)) == 16
    except (binascii.Error, ValueError):
        return False
