"""A sampling profiler over all threads of the host, in pure Python.

``sample`` runs on the console's dump worker thread and blocks it for the sample window.
Each tick it takes ``sys._current_frames()`` and walks every other thread's stack to the
root; it never touches the host threads' state, so their only cost is the GIL hand-over to
the sampler once per tick (measured by bench/profiler_overhead.py). Stacks are counted in a
dict keyed by frame indexes, and each code object is turned into a ``ProfileFrame`` once
(cached by identity), so a tick is one dict lookup per frame.

The exporters (collapsed stacks, speedscope JSON) live in ``export`` and are
re-exported here as ``collapsed`` and ``speedscope``.
"""

from __future__ import annotations

import sys
import threading
import time
import types
from collections.abc import Collection
from dataclasses import dataclass

from opsconsole.diagnostics.profiler.export import collapsed, speedscope
from opsconsole.errors import InvalidRequestError
from opsconsole.log import get as get_logger

__all__ = ["ALL_THREADS", "CpuProfile", "ProfileFrame", "ProfileStack", "collapsed", "sample", "speedscope"]

log = get_logger("diagnostics.profiler")

MAX_SECONDS = 300.0
MIN_INTERVAL = 0.001
MAX_INTERVAL = 1.0
ALL_THREADS = "all threads"
# Thread idents are reused after a thread ends: refresh the ident → name map this often.
_NAME_REFRESH_TICKS = 200


@dataclass(frozen=True, slots=True)
class ProfileFrame:
    """A function: its qualified name, module (from the frame's globals), file and first line."""

    function: str
    module: str
    file: str
    line: int


@dataclass(frozen=True, slots=True)
class ProfileStack:
    """One distinct stack of one thread (or of all, see ``sample``), root first, as indexes
    into ``CpuProfile.frames``; ``count`` is how many ticks found the thread in it."""

    thread: str
    frames: tuple[int, ...]
    count: int


@dataclass(frozen=True, slots=True)
class CpuProfile:
    """``seconds``/``interval`` as asked; ``elapsed`` as it ran (shorter if stopped early).
    ``ticks`` is how often all threads were sampled, ``samples`` the sum of stack counts (one
    per thread per tick). ``started_at`` is epoch seconds."""

    seconds: float
    interval: float
    elapsed: float
    started_at: float
    ticks: int
    samples: int
    frames: tuple[ProfileFrame, ...]
    stacks: tuple[ProfileStack, ...]


def _check(name: str, value: float, low: float, high: float, low_open: bool) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidRequestError(f"{name} must be a number, not {type(value).__name__}")
    ok = (low < value if low_open else low <= value) and value <= high  # NaN fails both
    if not ok:
        bound = f"{'>' if low_open else '>='} {low:g}"
        raise InvalidRequestError(f"{name} must be {bound} and <= {high:g}, got {value!r}")


class _Sampler:
    """The per-sample state. Used only by the thread running ``sample``."""

    def __init__(self, exclude: frozenset[int], thread_names: bool) -> None:
        self.exclude = exclude
        self.thread_names = thread_names
        self.by_code: dict[types.CodeType, int] = {}
        self.by_key: dict[tuple[str, str, str, int], int] = {}
        self.frames: list[ProfileFrame] = []
        self.counts: dict[tuple[str, tuple[int, ...]], int] = {}
        self.names: dict[int, str] = {}

    def _intern(self, frame: types.FrameType) -> int:
        code = frame.f_code
        module = frame.f_globals.get("__name__")
        key = (
            code.co_qualname,
            module if isinstance(module, str) else "",
            code.co_filename,
            code.co_firstlineno,
        )
        # Two code objects for the same function (a reloaded module) share one frame entry.
        index = self.by_key.get(key)
        if index is None:
            index = self.by_key[key] = len(self.frames)
            self.frames.append(ProfileFrame(function=key[0], module=key[1], file=key[2], line=key[3]))
        self.by_code[code] = index
        return index

    def refresh_names(self) -> None:
        self.names = {t.ident: t.name for t in threading.enumerate() if t.ident is not None}

    def _name(self, ident: int) -> str:
        name = self.names.get(ident)
        if name is None:
            self.refresh_names()
            # A thread started outside ``threading`` stays unnamed; remember that too.
            name = self.names.setdefault(ident, f"thread 0x{ident:x}")
        return name

    def tick(self) -> None:
        by_code, counts, exclude = self.by_code, self.counts, self.exclude
        current = sys._current_frames()
        try:
            for ident in current:
                if ident in exclude:  # always holds the sampling thread itself
                    continue
                stack: list[int] = []
                f: types.FrameType | None = current[ident]
                while f is not None:
                    index = by_code.get(f.f_code)
                    stack.append(index if index is not None else self._intern(f))
                    f = f.f_back
                stack.reverse()
                key = (self._name(ident) if self.thread_names else ALL_THREADS, tuple(stack))
                counts[key] = counts.get(key, 0) + 1
        finally:
            # Drop the borrowed frames at once: holding them would keep host locals alive, and
            # the dict holds this very frame too (a cycle only gc could free).
            del current

    def result(
        self, seconds: float, interval: float, elapsed: float, started_at: float, ticks: int
    ) -> CpuProfile:
        stacks = tuple(
            ProfileStack(thread=thread, frames=frames, count=count)
            for (thread, frames), count in sorted(self.counts.items(), key=lambda kv: (kv[0][0], -kv[1]))
        )
        return CpuProfile(
            seconds=seconds,
            interval=interval,
            elapsed=elapsed,
            started_at=started_at,
            ticks=ticks,
            samples=sum(self.counts.values()),
            frames=tuple(self.frames),
            stacks=stacks,
        )


def sample(
    seconds: float,
    *,
    interval: float = 0.005,
    exclude_idents: Collection[int] = (),
    thread_names: bool = True,
    stop_event: threading.Event | None = None,
) -> CpuProfile:
    """Sample every thread's stack each ``interval`` for ``seconds``; blocks the calling thread.

    Run on a worker thread (the dump worker); the calling thread and ``exclude_idents`` (the
    console's own threads) are not sampled. With ``thread_names=False`` all threads are
    merged under one name. Setting ``stop_event`` ends the window early (console shutdown,
    a client that went away); the profile so far is returned.
    """
    _check("seconds", seconds, 0.0, MAX_SECONDS, low_open=True)
    _check("interval", interval, MIN_INTERVAL, MAX_INTERVAL, low_open=False)
    sampler = _Sampler(frozenset(exclude_idents) | {threading.get_ident()}, thread_names)
    sampler.refresh_names()
    started_at = time.time()
    start = time.perf_counter()
    deadline = start + seconds
    next_tick = start
    ticks = 0
    latency = 0.0  # how late the sampler gets the GIL back after a sleep (moving average)
    while True:
        sampler.tick()
        ticks += 1
        if ticks % _NAME_REFRESH_TICKS == 0:
            sampler.refresh_names()
        # Ticks sit on a fixed grid (start + k·interval), so sleep overshoot does not add up.
        # When the sampler fell behind (the host held the GIL), skip the missed grid points
        # instead of sampling in a burst.
        next_tick += interval
        now = time.perf_counter()
        if next_tick <= now:
            next_tick += ((now - next_tick) // interval + 1) * interval
        last = next_tick >= deadline
        # The window lasts ``seconds`` even when the last tick came early in its interval.
        # A CPU-bound host gives the GIL back only after the switch interval: wake up that
        # much earlier so ticks still land on the grid.
        target = deadline if last else next_tick - latency
        pause = max(0.0, target - now)
        if stop_event is None:
            time.sleep(pause)
        elif stop_event.wait(pause):
            break
        if last:
            break
        late = time.perf_counter() - max(target, now)
        latency = min(interval, max(0.0, 0.8 * latency + 0.2 * late))
    elapsed = time.perf_counter() - start
    profile = sampler.result(seconds, interval, elapsed, started_at, ticks)
    log.debug("sampled %d ticks, %d distinct stacks in %.2f s", ticks, len(profile.stacks), elapsed)
    return profile
