"""Named tracemalloc snapshots: files for download, grouped forms in memory for fast diffs.

Each snapshot is written as ``<name>.tracemalloc`` — a pickle ``tracemalloc.Snapshot.load``
reads — into a private (0700) directory, safely (see ``files``); names are checked
against a strict pattern before they get near a path. An after-GC snapshot waits for the host's
next full collection first (see ``settle``). A count and a byte budget bound the disk use:
the oldest snapshots are dropped (file deleted) to make room. ``close`` deletes every file
this store wrote; files it did not write (another process sharing the directory, an earlier
run) are never touched, and a name whose file exists is refused rather than overwritten.

Threads: ``take`` and ``diff`` run on the console's dump worker thread; ``take_after_gc``
on the thread that waits for the collection (the console gives it its own thread so the dump
worker stays free); ``list``/``path``/``drop``/``close`` on the IO loop. One lock guards
the registry and is never held during snapshotting, pickling or grouping.
"""

from __future__ import annotations

import builtins
import gc
import queue
import threading
import time
import tracemalloc
from collections.abc import Collection
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from opsconsole import log
from opsconsole.diagnostics.allocations import diff, files
from opsconsole.diagnostics.allocations.diff import Grouped, HeapDiff, KeyType, Site
from opsconsole.diagnostics.allocations.files import NAME_PATTERN, SUFFIX, SnapshotFiles
from opsconsole.diagnostics.allocations.settle import full_gc_signal, wait_for_gc
from opsconsole.errors import ConfigError, InvalidRequestError, NotFoundError, StateError

__all__ = [
    "MAX_WAIT",
    "NAME_PATTERN",
    "SUFFIX",
    "SnapshotInfo",
    "SnapshotList",
    "SnapshotStore",
    "SnapshotTop",
    "State",
]

_log = log.get("diagnostics.snapshots")

MAX_WAIT = 24 * 3600.0

State = Literal["ready", "pending"]


@dataclass(frozen=True, slots=True)
class SnapshotInfo:
    name: str
    state: State  # "pending": requested, not yet written (waiting for a full GC, or being written)
    after_gc: bool
    requested_at: float  # time.time()
    taken_at: float | None  # None while pending
    frames: int  # traceback limit of the snapshot
    traces: int
    traced_bytes: int  # total size of the traced blocks
    file_bytes: int  # size of the file on disk


@dataclass(frozen=True, slots=True)
class SnapshotList:
    snapshots: tuple[SnapshotInfo, ...]  # oldest request first
    file_bytes: int
    max_count: int
    max_bytes: int


@dataclass(frozen=True, slots=True)
class SnapshotTop:
    name: str
    key: KeyType
    traces: int  # after leaving out the console's own and tracemalloc's
    traced_bytes: int
    sites: tuple[Site, ...]


@dataclass(slots=True)
class _Entry:
    info: SnapshotInfo
    seq: int  # budget order; wall-clock taken_at can step backwards
    wake: queue.SimpleQueue[str] | None  # after-GC waiters get "gc", "dropped" or "closed"
    grouped: Grouped | None = None


class SnapshotStore:
    """Errors: a bad name or parameter, or a name already taken → InvalidRequestError (400);
    no such snapshot → NotFoundError (404); tracemalloc off, snapshot still pending, store
    closed, write failure or over the byte budget → StateError (409); an unsafe directory
    → InsecureFileError (a ConfigError) from the constructor.
    """

    def __init__(
        self,
        directory: Path,
        *,
        max_count: int = 8,
        max_bytes: int = 512 * 1024 * 1024,
        exclude_prefixes: Collection[str] = diff.DEFAULT_EXCLUDE_PREFIXES,
        exclude_files: Collection[str] = diff.DEFAULT_EXCLUDE_FILES,
    ) -> None:
        if max_count < 1:
            raise ConfigError("must be at least 1", key="max_count")
        if max_bytes < 1:
            raise ConfigError("must be at least 1", key="max_bytes")
        self.directory = Path(directory)
        self.max_count = max_count
        self.max_bytes = max_bytes
        self._exclude = {"exclude_prefixes": tuple(exclude_prefixes), "exclude_files": tuple(exclude_files)}
        self._lock = threading.Lock()
        self._entries: dict[str, _Entry] = {}
        self._seq = 0
        self._closed = False
        self._files = SnapshotFiles(self.directory)  # creates the directory, or checks it is safe

    # -- queries -------------------------------------------------------------------------

    @staticmethod
    def check_name(name: object) -> str:
        """``name`` if it is a valid snapshot name, else InvalidRequestError. Any thread."""
        return files.check_name(name)

    def list(self) -> tuple[SnapshotInfo, ...]:
        with self._lock:
            return tuple(e.info for e in self._entries.values())

    def summary(self) -> SnapshotList:
        infos = self.list()
        return SnapshotList(infos, sum(i.file_bytes for i in infos), self.max_count, self.max_bytes)

    def path(self, name: str) -> Path:
        """The file of a ready snapshot, for download."""
        with self._lock:
            self._ready(self.check_name(name))
        return self._files.path(name)

    def top(self, name: str, *, key: str = "lineno", top: int = 10) -> SnapshotTop:
        """The largest allocation sites of one snapshot (``traceback`` reads the file)."""
        kind, _ = diff.check_key(key), diff.check_top(top)
        grouped = self._grouped(self.check_name(name), kind)
        return SnapshotTop(name, kind, grouped.traces, grouped.size, diff.top_sites(grouped, top))

    def diff(self, base: str, other: str | None = None, *, key: str = "lineno", top: int = 20) -> HeapDiff:
        """``other`` minus ``base``; ``other=None`` compares with a fresh snapshot (not stored).

        ``lineno`` uses the grouped forms kept in memory; ``traceback`` reads the files.
        """
        kind, _ = diff.check_key(key), diff.check_top(top)
        grouped_base = self._grouped(self.check_name(base), kind)
        if other is None:
            grouped_other = diff.group(self._snapshot(), kind, **self._exclude)
        else:
            grouped_other = self._grouped(self.check_name(other), kind)
        return diff.diff(grouped_base, grouped_other, top=top, base_name=base, other_name=other or "now")

    # -- changes -------------------------------------------------------------------------

    def take(self, name: str) -> SnapshotInfo:
        """Snapshot now and store it as ``name``. A taken name is InvalidRequestError (400)."""
        self.check_name(name)
        self._snapshot_possible()
        return self._capture(self._reserve(name, wake=None))

    def take_after_gc(self, name: str, *, timeout: float = 300.0, collect: bool = False) -> SnapshotInfo:
        """Snapshot right after the host's next full (generation 2) collection.

        Blocks the calling thread until then (at most ``timeout`` seconds, after which the
        pending entry goes and StateError is raised). ``collect=True`` runs that collection
        now, on the calling thread — the only place the console ever calls gc.collect().
        """
        self.check_name(name)
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout <= MAX_WAIT:
            raise InvalidRequestError(f"timeout must be a number of seconds in (0, {MAX_WAIT:g}]")
        self._snapshot_possible()
        # Hook first, entry second: once list() shows "pending", no full collection is missed.
        with full_gc_signal() as wake:
            entry = self._reserve(name, wake=wake, after_gc=True)
            try:
                if collect:
                    gc.collect()
                wait_for_gc(wake, timeout, name)
            except BaseException:
                self._forget(name, entry)
                raise
        # The snapshot itself is taken here, never inside the gc callback.
        return self._capture(entry)

    def drop(self, name: str) -> None:
        """Forget a snapshot and delete its file; a pending one is cancelled."""
        self.check_name(name)
        with self._lock:
            entry = self._entries.pop(name, None)
        if entry is None:
            raise NotFoundError(f"no snapshot named {name!r}")
        if entry.info.state == "ready":
            self._files.unlink(name)
        elif entry.wake is not None:
            entry.wake.put_nowait("dropped")
        # A pending plain take sees its entry gone when it finishes and deletes its file.

    def close(self) -> None:
        """Delete every file this store wrote and cancel pending after-GC waits. Idempotent."""
        with self._lock:
            self._closed = True
            entries = list(self._entries.values())
            self._entries.clear()
        for entry in entries:
            if entry.wake is not None:
                entry.wake.put_nowait("closed")
            if entry.info.state == "ready":
                self._files.unlink(entry.info.name)

    # -- internals -----------------------------------------------------------------------

    def _reserve(self, name: str, *, wake: queue.SimpleQueue[str] | None, after_gc: bool = False) -> _Entry:
        with self._lock:
            if self._closed:
                raise StateError("the snapshot store is closed")
            if name in self._entries:
                raise InvalidRequestError(f"a snapshot named {name!r} exists; drop it or pick another name")
            self._seq += 1
            info = SnapshotInfo(name, "pending", after_gc, time.time(), None, 0, 0, 0, 0)
            entry = self._entries[name] = _Entry(info, self._seq, wake)
            return entry

    def _forget(self, name: str, entry: _Entry) -> None:
        with self._lock:
            if self._entries.get(name) is entry:
                del self._entries[name]

    def _capture(self, entry: _Entry) -> SnapshotInfo:
        name = entry.info.name
        try:
            snapshot = self._snapshot()
            taken_at = time.time()
            file_bytes = self._files.write(name, snapshot)
            try:
                grouped = diff.group(snapshot, "lineno", **self._exclude)
            except BaseException:
                self._files.unlink(name)
                raise
        except BaseException:
            self._forget(name, entry)
            raise
        traced = grouped.size + grouped.excluded_size
        traces = grouped.traces + grouped.excluded_traces
        info = replace(
            entry.info,
            state="ready",
            taken_at=taken_at,
            frames=snapshot.traceback_limit,
            traces=traces,
            traced_bytes=traced,
            file_bytes=file_bytes,
        )
        del snapshot
        victims: builtins.list[str] = []
        with self._lock:
            gone = self._closed or self._entries.get(name) is not entry
            too_big = not gone and file_bytes > self.max_bytes
            if too_big:
                del self._entries[name]
            elif not gone:
                entry.info, entry.grouped = info, grouped
                victims = self._over_budget()
        if gone or too_big:
            self._files.unlink(name)
            if gone:
                raise StateError(f"snapshot {name!r} was dropped, or the store closed, while it was taken")
            raise StateError(f"snapshot {name!r} is {file_bytes} bytes, over the budget of {self.max_bytes}")
        for victim in victims:
            self._files.unlink(victim)
            _log.info("dropped snapshot %s to stay within the budget", victim)
        return info

    def _over_budget(self) -> builtins.list[str]:
        # Called with the lock held; the newest snapshot fits by itself, so it always stays.
        ready = sorted((e for e in self._entries.values() if e.info.state == "ready"), key=lambda e: e.seq)
        total = sum(e.info.file_bytes for e in ready)
        victims = []
        while len(ready) > self.max_count or total > self.max_bytes:
            oldest = ready.pop(0)
            total -= oldest.info.file_bytes
            del self._entries[oldest.info.name]
            victims.append(oldest.info.name)
        return victims

    def _ready(self, name: str) -> _Entry:
        entry = self._entries.get(name)
        if entry is None:
            raise NotFoundError(f"no snapshot named {name!r}")
        if entry.info.state != "ready":
            raise StateError(f"snapshot {name!r} is still pending")
        return entry

    def _grouped(self, name: str, key: KeyType) -> Grouped:
        with self._lock:
            grouped = self._ready(name).grouped
        if key == "lineno" and grouped is not None:
            return grouped
        return diff.group(self._files.load(name), key, **self._exclude)

    def _snapshot_possible(self) -> None:
        if self._closed:
            raise StateError("the snapshot store is closed")
        if not tracemalloc.is_tracing():
            raise StateError("tracemalloc is not tracing; start it first")

    def _snapshot(self) -> tracemalloc.Snapshot:
        try:
            return tracemalloc.take_snapshot()
        except RuntimeError as exc:
            raise StateError("tracemalloc is not tracing; start it first") from exc
