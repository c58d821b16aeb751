"""Where a request comes from, and how fast an unauthenticated source may ask.

A *source* is what one client controls: an IPv4 address, or an IPv6 /64 (one customer
network; a host picks any address in it at will). Every per-source limit keys on
:func:`source_key`. :class:`RequestRate` is a token bucket per source for requests that
carry no valid session, checked before a body is parsed or a signature checked.
Pure logic with an injected clock; thread-safe (the HTTP door calls it on the console
loop, nothing else does, but a lock costs nothing here).
"""

from __future__ import annotations

import functools
import ipaddress
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

# Bound on remembered sources; idle (refilled) buckets are pruned past it, then the oldest.
MAX_TRACKED = 10_000


# Parsing an address costs more than the rest of a refusal at accept(), and a flood comes
# from few addresses: remember the most recent ones (bounded, thread-safe).
@functools.lru_cache(maxsize=4096)
def source_key(address: str) -> str:
    """``"192.0.2.7"`` for IPv4 (also when mapped into IPv6), ``"2001:db8:1:2::/64"`` for IPv6.

    Anything that is not an IP address (a Unix socket peer, ``"unknown"``) is its own key.
    """
    text = address.partition("%")[0]  # a link-local scope id is not part of the address
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


@dataclass(frozen=True, slots=True)
class RateVerdict:
    """``allowed``, or how many seconds until the source may ask again."""

    allowed: bool
    source: str
    retry_after: float = 0.0


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class RequestRate:
    """At most ``burst`` unauthenticated requests at once per source, refilled at ``rate``/s."""

    def __init__(self, *, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, _Bucket] = {}

    def take(self, address: str) -> RateVerdict:
        """Count one unauthenticated request from ``address``; refused past the rate."""
        source = source_key(address)
        now = self._clock()
        with self._lock:
            bucket = self._buckets.get(source)
            if bucket is None:
                self._make_room(now)
                bucket = self._buckets[source] = _Bucket(self._burst, now)
            else:
                # max(): a clock that steps back refills nothing instead of draining
                bucket.tokens = min(self._burst, bucket.tokens + max(0.0, now - bucket.updated) * self._rate)
                bucket.updated = now
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return RateVerdict(True, source)
            wait = (1.0 - bucket.tokens) / self._rate
        return RateVerdict(False, source, retry_after=max(1.0, math.ceil(wait)))

    def peek(self, address: str) -> RateVerdict:
        """Whether ``address`` may send one more unauthenticated request now; counts nothing.

        The HTTP door asks this for every request before the request is routed, and answers
        a refused one itself; an allowed one is counted later, by :meth:`take`, once it is
        known to carry no valid session.
        """
        source = source_key(address)
        now = self._clock()
        with self._lock:
            bucket = self._buckets.get(source)
            if bucket is None:
                return RateVerdict(True, source)
            tokens = min(self._burst, bucket.tokens + max(0.0, now - bucket.updated) * self._rate)
        if tokens >= 1.0:
            return RateVerdict(True, source)
        return RateVerdict(False, source, retry_after=max(1.0, math.ceil((1.0 - tokens) / self._rate)))

    def tracked(self) -> int:
        with self._lock:
            return len(self._buckets)

    def _make_room(self, now: float) -> None:
        if len(self._buckets) < MAX_TRACKED:
            return
        full_after = self._burst / self._rate  # a bucket idle this long is full: forget it
        for key in [k for k, b in self._buckets.items() if now - b.updated >= full_after]:
            del self._buckets[key]
        while len(self._buckets) >= MAX_TRACKED:
            # Still full of busy sources: forget the oldest (it gets a fresh burst, no more).
            del self._buckets[next(iter(self._buckets))]
