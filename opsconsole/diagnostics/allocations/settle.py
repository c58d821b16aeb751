"""The wait for the host's next full garbage collection, before an after-GC snapshot is taken.

A ``gc.callbacks`` hook runs inside the collection, on whichever host thread triggered it, so
it does as little as possible: it puts ``"gc"`` on a queue the waiting thread blocks on. The
snapshot store puts ``"dropped"`` or ``"closed"`` on the same queue to cancel the wait.
"""

from __future__ import annotations

import contextlib
import gc
import queue
from collections.abc import Iterator
from typing import Any

from opsconsole.errors import StateError


@contextlib.contextmanager
def full_gc_signal() -> Iterator[queue.SimpleQueue[str]]:
    """A queue that gets ``"gc"`` after each full (generation 2) collection while the block runs."""
    wake: queue.SimpleQueue[str] = queue.SimpleQueue()

    def on_gc(phase: str, info: dict[str, Any]) -> None:
        # Runs inside a collection, on whichever host thread triggered it. It only puts on
        # a SimpleQueue, which never blocks and is safe to re-enter; Event.set would take a
        # lock the waiting thread itself may hold if the collection starts on it.
        if phase == "stop" and info.get("generation") == 2:
            wake.put_nowait("gc")

    gc.callbacks.append(on_gc)
    try:
        yield wake
    finally:
        with contextlib.suppress(ValueError):
            gc.callbacks.remove(on_gc)


def wait_for_gc(wake: queue.SimpleQueue[str], timeout: float, name: str) -> None:
    """Block until ``wake`` reports a full collection; StateError on timeout or cancellation."""
    try:
        why = wake.get(timeout=timeout)
    except queue.Empty:
        raise StateError(f"no full garbage collection within {timeout:g} s; {name!r} not taken") from None
    if why != "gc":
        raise StateError(f"snapshot {name!r} was {why} while waiting for a full collection")
