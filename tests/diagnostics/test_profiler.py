"""The sampling profiler against real busy threads, and its collapsed/speedscope exports parsed
strictly. Sample windows are short (0.2–0.6 s): enough ticks to find a hot function."""

from __future__ import annotations

import json
import math
import re
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from opsconsole.diagnostics.profiler.export import SPEEDSCOPE_SCHEMA, function_name
from opsconsole.diagnostics.profiler.sampler import (
    ALL_THREADS,
    ProfileFrame,
    ProfileStack,
    collapsed,
    sample,
    speedscope,
)
from opsconsole.diagnostics.profiler.sampler import (
    CpuProfile as Profile,
)
from opsconsole.diagnostics.render import to_data, to_text
from opsconsole.errors import InvalidRequestError

COLLAPSED_LINE = re.compile(r"^[^ ].* \d+$")


def zebra_hot_leaf(n: int) -> int:
    total = 0
    for i in range(n):
        total += i * i
    return total


def zebra_busy_caller(stop: list[bool]) -> None:
    while not stop[0]:
        zebra_hot_leaf(2000)


def quiet_sleeper(stop: list[bool]) -> None:
    while not stop[0]:
        time.sleep(0.01)


@pytest.fixture
def spawn() -> Iterator[Callable[[str, Callable[[list[bool]], None]], threading.Thread]]:
    stop = [False]
    threads: list[threading.Thread] = []

    def start(name: str, fn: Callable[[list[bool]], None]) -> threading.Thread:
        t = threading.Thread(target=fn, args=(stop,), name=name, daemon=True)
        t.start()
        threads.append(t)
        return t

    yield start
    stop[0] = True
    for t in threads:
        t.join(timeout=2)
        assert not t.is_alive()


def parse_collapsed(text: str) -> list[tuple[list[str], int]]:
    """Strict reader of the folded format: every line 'a;b;c COUNT', no empty parts."""
    assert text.endswith("\n")
    out = []
    for line in text.splitlines():
        assert COLLAPSED_LINE.match(line), line
        stack, _, count = line.rpartition(" ")
        parts = stack.split(";")
        assert all(parts), line
        out.append((parts, int(count)))
    assert len({";".join(p) for p, _ in out}) == len(out)  # one line per distinct stack
    return out


def check_speedscope(doc: dict[str, Any], profile: Profile) -> None:
    """Structural check against https://www.speedscope.app/file-format-schema.json."""
    json.dumps(doc)
    assert doc["$schema"] == SPEEDSCOPE_SCHEMA
    assert isinstance(doc["name"], str) and isinstance(doc["exporter"], str)
    frames = doc["shared"]["frames"]
    assert len(frames) == len(profile.frames)
    for f in frames:
        assert set(f) <= {"name", "file", "line", "col"} and isinstance(f["name"], str) and f["name"]
        assert isinstance(f["file"], str) and isinstance(f["line"], int)
    profiles = doc["profiles"]
    assert 0 <= doc["activeProfileIndex"] < max(1, len(profiles))
    total_samples = 0
    for p in profiles:
        assert set(p) == {"type", "name", "unit", "startValue", "endValue", "samples", "weights"}
        assert p["type"] == "sampled" and p["unit"] == "seconds" and isinstance(p["name"], str)
        assert len(p["samples"]) == len(p["weights"]) > 0
        for stack in p["samples"]:
            assert stack and all(isinstance(i, int) and 0 <= i < len(frames) for i in stack)
        assert all(isinstance(w, float) and w > 0 for w in p["weights"])
        assert p["startValue"] == 0 and math.isclose(p["endValue"], sum(p["weights"]))
        total_samples += len(p["samples"])
    assert total_samples == len(profile.stacks)
    all_weight = sum(sum(p["weights"]) for p in profiles)
    assert math.isclose(all_weight, profile.samples * profile.elapsed / profile.ticks)


def test_the_busy_function_is_the_hottest_leaf(spawn: Any) -> None:
    # Wall-clock sampling: an idle thread is sampled as often as a busy one, so every other
    # thread (idle workers left by other tests) is excluded, as the console excludes its own.
    # The sampling thread, this one, is never sampled.
    busy = spawn("host-busy", zebra_busy_caller)
    # Every thread the interpreter runs, those started with _thread too (a test runner's IO
    # threads are), not only the threading module's.
    others = set(sys._current_frames()) - {busy.ident}
    t0 = time.monotonic()
    profile = sample(0.6, interval=0.005, exclude_idents=others)
    # the window lasts at least as asked; the upper bound is only a deadline on its end
    assert 0.55 < time.monotonic() - t0 < 30
    assert profile.ticks >= 10 and profile.samples >= profile.ticks
    assert 0.55 < profile.elapsed < 30

    lines = parse_collapsed(collapsed(profile))
    assert sum(count for _, count in lines) == profile.samples
    leaves: Counter[str] = Counter()
    for parts, count in lines:
        leaves[parts[-1]] += count
    hottest, hits = leaves.most_common(1)[0]
    assert hottest.startswith(f"{__name__}.zebra_hot_leaf (") and hottest.endswith(
        f"{__file__}:{zebra_hot_leaf.__code__.co_firstlineno})"
    )
    busy = [(p, c) for p, c in lines if p[0] == "host-busy"]
    assert sum(c for _, c in busy) == hits or hits > 0.5 * sum(c for _, c in busy)
    # Root first: the thread name, then threading's bootstrap, ..., the caller, the leaf.
    parts = max(busy, key=lambda pc: pc[1])[0]
    assert parts[1].startswith("threading.Thread._bootstrap (")
    assert parts[-2].startswith(f"{__name__}.zebra_busy_caller (")
    # The sampling thread (this one) never samples itself.
    assert threading.current_thread().name not in {p[0] for p, _ in lines}

    text = to_text(profile)
    leaf_table = text.split("functions including callees")[0]
    first_row = leaf_table.split("function\n")[1].splitlines()[1]
    assert f"{__name__}.zebra_hot_leaf" in first_row
    assert "self %" in text and "total %" in text
    assert f"{__name__}.zebra_busy_caller" in text.split("functions including callees")[1]

    check_speedscope(speedscope(profile), profile)
    json.dumps(to_data(profile))


def test_excluded_threads_are_not_sampled(spawn: Any) -> None:
    busy = spawn("console-own-busy", zebra_busy_caller)
    spawn("host-quiet", quiet_sleeper)
    profile = sample(0.2, interval=0.005, exclude_idents={busy.ident or 0})
    assert "console-own-busy" not in {s.thread for s in profile.stacks}
    assert "zebra_hot_leaf" not in collapsed(profile)
    assert "host-quiet" in {s.thread for s in profile.stacks}


def test_thread_names_off_merges_threads(spawn: Any) -> None:
    spawn("host-busy-1", zebra_busy_caller)
    spawn("host-busy-2", zebra_busy_caller)
    profile = sample(0.2, interval=0.005, thread_names=False)
    assert {s.thread for s in profile.stacks} == {ALL_THREADS}
    lines = parse_collapsed(collapsed(profile))
    assert all(p[0] == ALL_THREADS for p, _ in lines)
    assert sum(c for _, c in lines) == profile.samples >= 2 * profile.ticks
    doc = speedscope(profile)
    assert [p["name"] for p in doc["profiles"]] == [ALL_THREADS]
    check_speedscope(doc, profile)


def test_a_stop_event_ends_the_window_early() -> None:
    stop = threading.Event()
    timer = threading.Timer(0.1, stop.set)
    timer.start()
    t0 = time.monotonic()
    profile = sample(30, interval=0.01, stop_event=stop)
    timer.join()
    # early: well before the 30 s asked for, however loaded the machine
    assert time.monotonic() - t0 < 20
    assert profile.seconds == 30 and profile.elapsed < 20 and profile.ticks >= 1


def test_the_window_lasts_as_asked_with_a_coarse_interval() -> None:
    profile = sample(0.25, interval=0.1)
    assert 0.24 < profile.elapsed < 10  # at least as asked; the upper bound is a deadline
    assert 2 <= profile.ticks <= 3


@pytest.mark.parametrize(
    ("seconds", "interval"),
    [
        (0, 0.005),
        (-1, 0.005),
        (300.5, 0.005),
        (math.nan, 0.005),
        (1, 0.0005),
        (1, 1.5),
        (1, math.inf),
        ("1", 0.005),
    ],
)
def test_bad_parameters_are_rejected(seconds: Any, interval: Any) -> None:
    with pytest.raises(InvalidRequestError):
        sample(seconds, interval=interval)


def _hand_made() -> Profile:
    frames = (
        ProfileFrame(function="main", module="app", file="/srv/app.py", line=1),
        ProfileFrame(function="odd;name", module="", file="/srv/we\nird.py", line=7),
        ProfileFrame(function="leaf", module="app", file="/srv/app.py", line=20),
    )
    stacks = (
        ProfileStack(thread=" worker;1", frames=(0, 1), count=3),
        ProfileStack(thread=" worker;1", frames=(0, 2), count=5),
        ProfileStack(thread="main", frames=(0, 2, 0, 2), count=2),  # recursion
    )
    return Profile(
        seconds=1.0,
        interval=0.01,
        elapsed=1.0,
        started_at=0.0,
        ticks=10,
        samples=10,
        frames=frames,
        stacks=stacks,
    )


def test_collapsed_names_never_break_the_format() -> None:
    text = collapsed(_hand_made())
    lines = parse_collapsed(text)
    assert sum(c for _, c in lines) == 10
    assert "worker,1;app.main (/srv/app.py:1);odd,name (/srv/we ird.py:7) 3\n" in text
    assert function_name(_hand_made().frames[1]) == "odd;name"  # only the exports fold it


def test_text_counts_recursion_once_per_stack() -> None:
    text = to_text(_hand_made())
    total_part = text.split("functions including callees")[1]
    # app.main is on every stack: 100 %, not 120 % for the recursive one.
    assert re.search(r"^\s+100\.0\s+10\s+app\.main \(/srv/app\.py:1\)$", total_part, re.M)
    assert re.search(r"^\s+70\.0\s+7\s+app\.leaf \(/srv/app\.py:20\)$", total_part, re.M)
    leaf_part = text.split("functions including callees")[0]
    assert re.search(r"^\s+70\.0\s+7\s+app\.leaf", leaf_part, re.M)
    check_speedscope(speedscope(_hand_made()), _hand_made())


def test_an_empty_profile_renders() -> None:
    empty = Profile(
        seconds=1, interval=0.01, elapsed=1, started_at=0, ticks=1, samples=0, frames=(), stacks=()
    )
    assert collapsed(empty) == ""
    assert "(no samples)" in to_text(empty)
    doc = speedscope(empty)
    assert doc["profiles"] == [] and doc["activeProfileIndex"] == 0
