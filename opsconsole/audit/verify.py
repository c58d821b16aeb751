"""The audit log verifier: walks the whole hash chain and names the first broken line.

Runs in whichever thread calls it (the CLI, a test, an operator's script); it only
reads, so it may run while an ``AuditLog`` is appending. Lines are streamed one at a
time with a bounded read, so a big log needs no more memory than its longest line.

A valid chain proves that no line was edited, deleted or reordered *relative to the
last line*; a log rewritten from scratch or cut short is only caught against a head kept
elsewhere: pass the anchored heads (``head``'s log lines, shipped off the host) as
``heads`` and the file must reach each of them with the same hash.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Iterable
from dataclasses import dataclass

from opsconsole.audit import chain
from opsconsole.audit.head import Head
from opsconsole.errors import AuditChainError, AuditError


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """The result of a successful ``verify_file``."""

    path: pathlib.Path
    records: int
    last_hash: str
    """Hash of the last record (64 zeros for an empty log)."""
    first_ts: str | None
    last_ts: str | None


def verify_file(path: str | os.PathLike[str], heads: Iterable[Head] = ()) -> VerifyReport:
    """Check every line of the audit log at ``path``, and that it reaches each of ``heads``.

    Raises ``AuditChainError(path, line_no, reason)`` on the first broken line, on a
    record whose hash differs from an anchored head's, or (line = one past the end) when
    the file ends before an anchored head; ``AuditError`` if the file cannot be read.
    """
    path = pathlib.Path(path)
    anchors = {h.seq: h.hash for h in heads}
    if anchors.get(0, chain.GENESIS) != chain.GENESIS:
        raise AuditChainError(str(path), 1, "the anchored head 0 (an empty log) must have the hash 64 zeros")
    name = str(path)
    seq = 0
    prev = chain.GENESIS
    first_ts: str | None = None
    last_ts: str | None = None
    try:
        with path.open("rb") as f:
            line_no = 0
            while True:
                # One byte more than the longest line plus its newline: enough to tell
                # "too long" from "fits" without reading an unbounded line.
                raw = f.readline(chain.MAX_LINE_BYTES + 2)
                if not raw:
                    break
                line_no += 1
                if not raw.endswith(b"\n"):
                    if len(raw) > chain.MAX_LINE_BYTES:
                        raise AuditChainError(name, line_no, f"line longer than {chain.MAX_LINE_BYTES} bytes")
                    raise AuditChainError(name, line_no, "line not terminated by a newline (torn write)")
                try:
                    text = raw[:-1].decode("ascii")
                except UnicodeDecodeError:
                    raise AuditChainError(name, line_no, "non-ASCII byte in line") from None
                try:
                    link = chain.check(text, expected_seq=seq + 1, expected_prev=prev)
                except chain.ChainError as exc:
                    raise AuditChainError(name, line_no, exc.reason) from None
                seq, prev = link.seq, link.hash
                anchored = anchors.get(seq)
                if anchored is not None and anchored != prev:
                    raise AuditChainError(
                        name,
                        line_no,
                        f"record {seq} has hash {prev[:16]}…, the anchored head says {anchored[:16]}…: "
                        "the log was rewritten from here on (or the head belongs to another log)",
                    )
                if first_ts is None:
                    first_ts = link.ts
                last_ts = link.ts
    except OSError as exc:
        raise AuditError(f"cannot read audit log {path}: {exc.strerror or exc}") from exc
    beyond = [s for s in anchors if s > seq]
    if beyond:
        raise AuditChainError(
            name,
            seq + 1,
            f"the file ends at record {seq}, before the anchored head {max(beyond)}: "
            f"records {seq + 1}..{max(beyond)} were cut off (or the head belongs to another log)",
        )
    return VerifyReport(path=path, records=seq, last_hash=prev, first_ts=first_ts, last_ts=last_ts)
