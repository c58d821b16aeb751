"""Admission of connections that have not authenticated yet, per door (HTTP, SSH).

Modelled on sshd's ``MaxStartups`` and ``PerSourcePenalties``. A connection is *pending*
from accept() until it authenticates (a valid session token; SSH auth complete) or closes.
At accept, in this order, a new connection is refused when:

1. its source is serving a penalty (``penalty``);
2. its source already holds ``per_source`` pending connections (``source_cap``), so one
   source can never fill the door: a source is an IPv4 address or an IPv6 /64;
3. ``cap`` connections are pending from all sources together (``cap``);
4. past the early-drop start, at random (``early_drop``): the probability rises linearly
   from ``rate`` at the start to 1 at ``full`` (fractions of ``cap``). The start is never
   below ``per_source``, so one source alone cannot make the door drop others at random.

Penalties (shared by both doors): each bad event adds seconds to its source's account,
which drains in real time; once the account holds ``min_seconds`` the source is refused
at accept until it has drained (at most ``max_seconds``). A source that keeps hitting its
cap, keeps timing out or keeps closing without authenticating ends up shut out for a
while; a refusal during a penalty adds nothing, so every penalty ends.

Pure logic: an injected clock and RNG, opaque connection keys, no sockets. Thread-safe:
the HTTP door calls it on the console loop, the SSH door on its accept and transport threads.
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Hashable
from dataclasses import dataclass

from opsconsole import log
from opsconsole.auth.sources import source_key

_log = log.get("transport.admission")

# Seconds of penalty per event, as sshd's PerSourcePenalties: being dropped at the source
# cap is cheap (a browser may open a few connections too many), closing without ever
# authenticating or sending a request costs more, and so does being closed for sending
# requests without a session past the source's rate (HTTP: the client ignored a
# Retry-After; eight in a row reach the default penalty_min of 15 s); being closed by a
# timeout costs most.
COSTS: dict[str, float] = {"source_cap": 1.0, "noauth": 2.0, "rate": 2.0, "timeout": 10.0}
# Bound on sources with a penalty account; past it, expired accounts are pruned and new
# sources go unpenalised (the per-source and global caps still hold) rather than grow memory.
MAX_PENALISED = 10_000


@dataclass(frozen=True, slots=True)
class EarlyDrop:
    """Random early drop, as fractions of the door's cap: ``start:rate:full``."""

    start: float = 0.5
    rate: float = 0.3
    full: float = 1.0


@dataclass(frozen=True, slots=True)
class Verdict:
    admitted: bool
    source: str
    cause: str = ""  # why it was refused: penalty, source_cap, cap, early_drop


@dataclass(frozen=True, slots=True)
class AdmissionStats:
    door: str
    pending: int
    sources: int  # sources holding at least one pending connection
    refused: tuple[tuple[str, int], ...]  # (cause, count) since start, sorted by cause
    penalised: int  # sources serving a penalty now


@dataclass(slots=True)
class _Account:
    until: float  # the account is empty at this time
    blocked: bool = False


class Penalties:
    """Per-source penalty accounts, shared by the doors."""

    def __init__(
        self,
        *,
        min_seconds: float,
        max_seconds: float,
        clock: Callable[[], float] = time.monotonic,
        refusals: log.RefusalLog | None = None,
    ) -> None:
        self.refusals = refusals or log.RefusalLog()  # where refusal lines go, aggregated
        self._min = min_seconds
        self._max = max_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._accounts: dict[str, _Account] = {}

    def penalise(self, source: str, cause: str) -> None:
        """Add ``cause``'s cost to ``source`` (a :func:`source_key`)."""
        if self._max <= 0:
            return
        now = self._clock()
        with self._lock:
            account = self._accounts.get(source)
            if account is None or now >= account.until:
                if account is None and not self._make_room(now):
                    return
                account = self._accounts[source] = _Account(now)
            account.until = min(account.until + COSTS[cause], now + self._max)
            engaged = not account.blocked and account.until - now >= self._min
            account.blocked = account.blocked or engaged
            seconds = account.until - now
        if engaged:
            self.refusals.refused(
                _log,
                logging.INFO,
                "penalty",
                source,
                "source %s refused for %.0fs: %s",
                source,
                seconds,
                cause,
            )

    def remaining(self, source: str) -> float:
        """Seconds ``source`` stays refused (0: not refused)."""
        now = self._clock()
        with self._lock:
            account = self._accounts.get(source)
            if account is None:
                return 0.0
            if now >= account.until:
                del self._accounts[source]
                return 0.0
            return account.until - now if account.blocked else 0.0

    def blocked(self) -> int:
        now = self._clock()
        with self._lock:
            return sum(1 for a in self._accounts.values() if a.blocked and now < a.until)

    def _make_room(self, now: float) -> bool:
        if len(self._accounts) < MAX_PENALISED:
            return True
        for key in [k for k, a in self._accounts.items() if now >= a.until]:
            del self._accounts[key]
        return len(self._accounts) < MAX_PENALISED


class Admission:
    """Pending connections of one door; ``key`` is any hashable object naming a connection."""

    def __init__(
        self,
        door: str,
        *,
        cap: int,
        per_source: int,
        early_drop: EarlyDrop,
        penalties: Penalties,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.door = door
        self._cap = cap
        self._per_source = per_source
        self._penalties = penalties
        self._rng = rng
        self._early_start = min(cap, max(per_source, math.ceil(early_drop.start * cap)))
        self._early_full = min(cap, max(self._early_start, math.ceil(early_drop.full * cap)))
        self._early_rate = early_drop.rate
        self._lock = threading.Lock()
        self._pending: dict[Hashable, str] = {}  # connection key -> source
        self._per: Counter[str] = Counter()  # source -> pending connections
        self._refused: Counter[str] = Counter()

    def admit(self, address: str, key: Hashable) -> Verdict:
        """Decide at accept(); an admitted ``key`` must later be released."""
        source = source_key(address)
        cause = ""
        if self._penalties.remaining(source) > 0:
            cause = "penalty"
        with self._lock:
            total = len(self._pending)
            if cause:
                pass
            elif self._per[source] >= self._per_source:
                cause = "source_cap"
            elif total >= self._cap:
                cause = "cap"
            elif total >= self._early_start and self._rng() < self._drop_probability(total):
                cause = "early_drop"
            if cause:
                self._refused[cause] += 1
            else:
                self._pending[key] = source
                self._per[source] += 1
        if cause:
            # A source serving a penalty was named once when it began; its refusals are noise.
            level = logging.DEBUG if cause == "penalty" else logging.INFO
            self._penalties.refusals.refused(
                _log,
                level,
                f"{self.door} {cause}",
                source,
                "%s connection from %s refused: %s",
                self.door,
                source,
                cause,
            )
            if cause == "source_cap":
                self._penalties.penalise(source, cause)
            return Verdict(False, source, cause)
        return Verdict(True, source)

    def authenticated(self, key: Hashable) -> None:
        """``key`` authenticated: it no longer counts as pending (no penalty at its close)."""
        with self._lock:
            self._forget(key)

    def release(self, key: Hashable, cause: str | None = None) -> None:
        """``key`` closed; ``cause`` (a key of COSTS) penalises its source if it was pending."""
        with self._lock:
            source = self._forget(key)
        if source is not None and cause is not None:
            self._penalties.penalise(source, cause)

    def is_pending(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._pending

    def pending(self, address: str | None = None) -> int:
        """Pending connections in all, or from ``address``'s source."""
        with self._lock:
            return len(self._pending) if address is None else self._per[source_key(address)]

    def stats(self) -> AdmissionStats:
        with self._lock:
            pending, sources = len(self._pending), len(self._per)
            refused = tuple(sorted(self._refused.items()))
        return AdmissionStats(self.door, pending, sources, refused, self._penalties.blocked())

    def _drop_probability(self, total: int) -> float:
        if total >= self._early_full:
            return 1.0
        span = self._early_full - self._early_start
        return self._early_rate + (1.0 - self._early_rate) * (total - self._early_start) / span

    def _forget(self, key: Hashable) -> str | None:
        # under self._lock
        source = self._pending.pop(key, None)
        if source is not None:
            self._per[source] -= 1
            if self._per[source] <= 0:
                del self._per[source]
        return source
