"""What each patch of prompt_toolkit's internals buys, measured with and without it in one run.

The one patch kept, ``redraw`` (``opsconsole.repl.redraw``): the session's app draws a frame
right after a slice of keys, in the same loop iteration, instead of ``Application.invalidate``'s
deferred redraw. A patch whose gain this bench cannot show is not kept.

For each, keystroke → echo (``bench/repl_pipe.py``'s in-process probe, no transport) in two
sessions open side by side, one with the patch and one without, typed into in turn key by key
(who goes first alternates), on an idle host and with one CPU-bound host thread at the
console's ``repl_switch_interval``; per round the p50 of each side, then the median over rounds
of the ratio off ÷ on (> 1: the patch pays). The "off" side is the fallback each patch
module takes when prompt_toolkit's shape drifts.

    .venv/bin/python bench/repl_patches.py [N] [ROUNDS]    (N keystrokes a round, default 200)
"""

from __future__ import annotations

import contextlib
import itertools
import re
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script: the repo root

from bench.repl_pipe import LINE, SWITCH, Probe, busy_host, default_factory, switch_interval
from opsconsole.repl import redraw
from opsconsole.repl.session import ReplSession

PATCHES = {"redraw": redraw}


def open_session(name: str, *, off: bool) -> tuple[ReplSession, Probe]:
    """A lean session at its first prompt, with patch ``name`` on, or off as when the shape drifted."""
    module = PATCHES[name]
    saved = module.SUPPORTED
    module.SUPPORTED = not off
    probe = Probe()
    try:
        session = default_factory("lean")(probe)
        probe.wait(0, r">>> ?$")  # the patch is installed (or not) before the first prompt
    finally:
        module.SUPPORTED = saved
    return session, probe


def keystroke(session: ReplSession, probe: Probe, ch: str) -> float:
    """Seconds from feeding ``ch`` until its echo arrived."""
    mark = probe.mark()
    t0 = time.perf_counter()
    session.feed(ch)
    probe.wait(mark, re.escape(ch))
    return time.perf_counter() - t0


def one_round(name: str, *, busy: bool, n: int) -> tuple[float, float]:
    """p50 keystroke → echo in seconds (on, off): two sessions typed into in turn, key by key,
    so a change in the machine's load hits both sides alike."""
    sides = [open_session(name, off=False), open_session(name, off=True)]
    samples: list[list[float]] = [[], []]
    letters = itertools.cycle("abcdefghijklmnopqrstuvwxyz")
    try:
        with switch_interval(SWITCH), busy_host() if busy else contextlib.nullcontext():
            for i in range(n):
                ch = next(letters)
                for k in (0, 1) if i % 2 else (1, 0):  # who goes first alternates
                    session, probe = sides[k]
                    if i and i % LINE == 0:
                        mark = probe.mark()
                        session.feed("\x03")  # Ctrl-C at the prompt clears the line
                        probe.wait(mark, r">>> ?$")
                    samples[k].append(keystroke(session, probe, ch))
    finally:
        for session, _ in sides:
            session.close()
    return statistics.median(samples[0]), statistics.median(samples[1])


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    print(
        f"keystroke → echo p50, patch on vs off, {rounds} rounds of {n} keys typed into both in turn (lean)"
    )
    print(f"{'patch':<12} {'host':<28} {'on ms':>8} {'off ms':>8} {'off ÷ on':>9}")
    for name in PATCHES:
        for busy in (False, True):
            on: list[float] = []
            off: list[float] = []
            for _ in range(rounds):
                a, b = one_round(name, busy=busy, n=n)
                on.append(a)
                off.append(b)
            host = f"busy thread, {SWITCH * 1e3:g} ms switch" if busy else "idle"
            ratio = statistics.median(b / a for a, b in zip(on, off, strict=True))
            print(
                f"{name:<12} {host:<28} {statistics.median(on) * 1e3:8.2f} "
                f"{statistics.median(off) * 1e3:8.2f} {ratio:8.2f}×"
            )


if __name__ == "__main__":
    main()
