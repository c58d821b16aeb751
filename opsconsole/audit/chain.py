"""The hash-chaining rules of the audit log, shared by the writer and the verifier.

One record is one line of canonical JSON::

    {"event":"repl.line","fields":{...},"hash":"<sha256>","prev":"<sha256>","seq":7,"ts":"...Z"}

``hash`` is the sha256 of the canonical JSON of the record *without* ``hash``; ``prev``
is the ``hash`` of the line before (64 zeros for the first line), so editing, deleting
or reordering any line breaks every link after it.

Canonical JSON uses ``ensure_ascii=True``: every control character (ESC, CR, LF, NUL,
U+2028, ...) in a REPL line or a user name is written as a ``\\uXXXX`` escape, so a
field value can neither forge a second line nor move a terminal cursor when someone
``cat``s the log. DEL (0x7f) is the one control character ``json`` leaves raw, so the
line escapes it too; that changes the bytes on disk, not the parsed value the hash
is computed from.

These functions are pure and hold no state: callers (the writer under its lock, the
verifier in whichever thread runs it) supply ``seq`` and ``prev``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import re
from dataclasses import dataclass

GENESIS = "0" * 64
"""The ``prev`` of the first record."""

MAX_LINE_BYTES = 1 << 20
"""Longest accepted line: the writer refuses bigger records so the verifier and the
tail reader can bound the memory they use per line."""

MAX_DEPTH = 32
"""Deepest nesting of lists/dicts accepted in ``fields``."""

KEYS = frozenset({"seq", "ts", "event", "fields", "prev", "hash"})

# fullmatch everywhere: ``$`` would accept a trailing newline.
_EVENT_RE = re.compile(r"[a-z][a-z0-9_.]*")
_TS_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z")
_HEX_RE = re.compile(r"[0-9a-f]{64}")


class ChainError(ValueError):
    """A record cannot be sealed or does not check; ``reason`` says why.

    Internal to the audit package: the writer turns it into ``AuditError`` and the
    verifier into ``AuditChainError`` with the line number.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Link:
    """What a checked line contributes to the chain."""

    seq: int
    ts: str
    hash: str


def canonical(obj: dict[str, object]) -> str:
    """The canonical JSON text that is hashed."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def digest(body: dict[str, object]) -> str:
    """The ``hash`` of a record given without its ``hash`` key."""
    return hashlib.sha256(canonical(body).encode("ascii")).hexdigest()


def check_event(event: object) -> str:
    """Return ``event`` if it is a valid event name, else raise ChainError."""
    if not isinstance(event, str) or _EVENT_RE.fullmatch(event) is None:
        raise ChainError(f"bad event name {event!r}")
    return event


def check_value(value: object, where: str, depth: int = 0) -> None:
    """Raise ChainError unless ``value`` is JSON made of str/int/float/bool/None, lists and dicts.

    Checked before serialising so a bad value is refused up front instead of
    surfacing as a half-built line; the depth limit also stops cyclic containers.
    """
    if depth > MAX_DEPTH:
        raise ChainError(f"{where}: nested deeper than {MAX_DEPTH}")
    if value is None or isinstance(value, str | bool | int):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ChainError(f"{where}: {value!r} is not valid JSON")
        return
    if isinstance(value, list):
        for i, item in enumerate(value):
            check_value(item, f"{where}[{i}]", depth + 1)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ChainError(f"{where}: key {key!r} is not a string")
            check_value(item, f"{where}.{key}", depth + 1)
        return
    raise ChainError(f"{where}: {type(value).__name__} is not JSON-able")


def format_ts(seconds: float) -> str:
    """RFC 3339 UTC with milliseconds, e.g. ``2026-11-29T08:38:31.123Z``."""
    # Round to whole microseconds first (float noise: 0.123 is stored as 0.12299...),
    # then truncate: a record must not claim a later millisecond than its clock read.
    millis = round(seconds * 1_000_000) // 1000
    whole, ms = divmod(millis, 1000)
    stamp = dt.datetime.fromtimestamp(whole, tz=dt.UTC)
    return f"{stamp:%Y-%m-%dT%H:%M:%S}.{ms:03d}Z"


def seal(seq: int, ts: str, event: str, fields: dict[str, object], prev: str) -> str:
    """Build the line (without newline) for one record; raise ChainError if it is invalid."""
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 1:
        raise ChainError(f"bad seq {seq!r}")
    if not isinstance(ts, str) or _TS_RE.fullmatch(ts) is None:
        raise ChainError(f"bad ts {ts!r}")
    check_event(event)
    if not isinstance(fields, dict):
        raise ChainError("fields is not an object")
    check_value(fields, "fields")
    if not isinstance(prev, str) or _HEX_RE.fullmatch(prev) is None:
        raise ChainError(f"bad prev {prev!r}")
    body: dict[str, object] = {"seq": seq, "ts": ts, "event": event, "fields": fields, "prev": prev}
    record = dict(body, hash=digest(body))
    line = canonical(record).replace("\x7f", "\\u007f")
    if len(line) > MAX_LINE_BYTES:
        raise ChainError(f"record is {len(line)} bytes, more than {MAX_LINE_BYTES}")
    return line


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
    # json.loads keeps the last of duplicate keys; a reader that kept the first
    # would see a different record than the one hashed, so duplicates are refused.
    obj: dict[str, object] = {}
    for key, value in pairs:
        if key in obj:
            raise ChainError(f"duplicate key {key!r}")
        obj[key] = value
    return obj


def _no_constant(name: str) -> object:
    raise ChainError(f"{name} is not valid JSON")


def parse(line: str) -> dict[str, object]:
    """Parse one line into a record object, raising ChainError on anything but a JSON object."""
    if len(line) > MAX_LINE_BYTES:
        raise ChainError(f"line longer than {MAX_LINE_BYTES} bytes")
    try:
        obj = json.loads(line, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except ChainError:
        raise
    except (ValueError, RecursionError) as exc:
        raise ChainError(f"bad JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise ChainError("not a JSON object")
    return obj


def check(line: str, *, expected_seq: int | None, expected_prev: str | None) -> Link:
    """Check one line (without newline) and return its link.

    ``expected_seq``/``expected_prev`` of None skip the link to the previous line: the
    writer resuming from a file's last line can only check that line on its own.
    """
    obj = parse(line)
    missing = sorted(KEYS - obj.keys())
    if missing:
        raise ChainError(f"missing key(s) {', '.join(missing)}")
    extra = sorted(obj.keys() - KEYS)
    if extra:
        raise ChainError(f"unexpected key(s) {', '.join(extra)}")
    seq, ts, prev, hash_ = obj["seq"], obj["ts"], obj["prev"], obj["hash"]
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 1:
        raise ChainError(f"bad seq {seq!r}")
    if not isinstance(ts, str) or _TS_RE.fullmatch(ts) is None:
        raise ChainError(f"bad ts {ts!r}")
    check_event(obj["event"])
    if not isinstance(obj["fields"], dict):
        raise ChainError("fields is not an object")
    if not isinstance(prev, str) or _HEX_RE.fullmatch(prev) is None:
        raise ChainError(f"bad prev {prev!r}")
    if not isinstance(hash_, str) or _HEX_RE.fullmatch(hash_) is None:
        raise ChainError(f"bad hash {hash_!r}")
    if expected_seq is not None and seq != expected_seq:
        raise ChainError(f"wrong seq {seq}, expected {expected_seq}")
    if expected_prev is not None and prev != expected_prev:
        raise ChainError("wrong prev: does not match the previous line's hash")
    body = {k: v for k, v in obj.items() if k != "hash"}
    if digest(body) != hash_:
        raise ChainError("wrong hash: the record was altered")
    return Link(seq=seq, ts=ts, hash=hash_)
