"""The dump routes: thin translations between HTTP and the Diagnostics façade.

Cheap dumps (threads, gc, process, heap status) run on the console IO loop; expensive ones
(census, growth, refchain, snapshots, diff, profile) go to the one dump worker, so the IO
loop keeps answering and a second request gets 429. Runs on the console IO loop.
"""

from __future__ import annotations

import json
import os
import re
import threading
from typing import ClassVar, Literal, cast

from opsconsole import log, private_files
from opsconsole.auth.principal import Role
from opsconsole.diagnostics.profiler import sampler
from opsconsole.diagnostics.render import to_data
from opsconsole.errors import DiagnosticsError, InvalidRequestError, NotFoundError
from opsconsole.transport.http.base import ApiError, BaseHandler

_log = log.get("transport.dumps")
CHUNK = 64 * 1024
# Names of snapshots in URLs: the store checks again; this keeps junk out of the logs.
_NAME_IN_URL = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


class ThreadsHandler(BaseHandler):
    def get(self) -> None:
        self.send_result(self.diag.threads())


class GcHandler(BaseHandler):
    def get(self) -> None:
        self.send_result(self.diag.gc())


class GcMonitorHandler(BaseHandler):
    """``POST /ops/gc/monitor?enable=true|false``: the pause histogram hook, on or off."""

    required_role: ClassVar[Role | None] = "operator"

    def post(self) -> None:
        enable = self.choice_arg("enable", ("true", "false")) == "true"
        self.audit("dump.gc_monitor", enable=enable)
        if enable:
            self.diag.gc_monitor.start()
        else:
            self.diag.gc_monitor.stop()
        self.send_result(self.diag.gc())


class ProcessHandler(BaseHandler):
    def get(self) -> None:
        self.send_result(self.diag.process())


class ObjectsHandler(BaseHandler):
    async def get(self) -> None:
        top = self.int_arg("top", 30, 1, 1000)
        sizes = self.choice_arg("sizes", ("true", "false")) == "true"
        self.send_result(await self.expensive("census", lambda: self.diag.census(top, sizes=sizes)))


class BaselineHandler(BaseHandler):
    async def post(self) -> None:
        name = self.get_query_argument("name", "default")
        self.send_result(await self.expensive("baseline", lambda: self.diag.baseline(name)))


class GrowthHandler(BaseHandler):
    async def get(self) -> None:
        since = self.get_query_argument("since", None)
        top = self.int_arg("top", 30, 1, 1000)
        self.send_result(await self.expensive("growth", lambda: self.diag.growth(since, top)))


class RefchainHandler(BaseHandler):
    required_role: ClassVar[Role | None] = "operator"

    async def get(self) -> None:
        target = self.get_query_argument("type", "")
        if not target:
            raise ApiError(400, "bad_request", "type (a qualified type name) is required")
        depth = self.int_arg("max_depth", 40, 1, 200)
        limit = self.float_arg("time_limit", 5.0, 0.1, 60.0)
        self.audit("dump.refchain", type=target)
        result = await self.expensive(
            "refchain",
            lambda: self.diag.refchain(target, max_depth=depth, time_limit=limit),
            expected_seconds=limit,
        )
        self.send_result(result)


class HeapHandler(BaseHandler):
    required_role: ClassVar[Role | None] = "operator"

    async def get(self) -> None:
        top = self.int_arg("top", 10, 0, 200)
        # With top > 0 this takes a snapshot: expensive.
        self.send_result(await self.expensive("heap status", lambda: self.diag.heap_status(top)))


class HeapStartHandler(BaseHandler):
    required_role: ClassVar[Role | None] = "operator"

    def post(self) -> None:
        frames = self.int_arg("frames", 1, 1, 64)
        self.audit("dump.heap_start", frames=frames)
        self.send_result(self.diag.heap_start(frames))


class HeapStopHandler(BaseHandler):
    required_role: ClassVar[Role | None] = "operator"

    async def post(self) -> None:
        self.audit("dump.heap_stop")
        # tracemalloc.stop() frees every trace while holding the GIL: not on the IO loop.
        self.send_result(await self.expensive("heap stop", self.diag.heap_stop))


class SnapshotsHandler(BaseHandler):
    """``GET`` lists snapshots; ``POST {"name", "when": "now"|"after-gc", "collect"}`` takes one."""

    required_role: ClassVar[Role | None] = "operator"

    def get(self) -> None:
        self.send_result(self.diag.snapshots.summary())

    async def post(self) -> None:
        body = self.json_body("name")
        name, when, collect = body["name"], body.get("when", "now"), body.get("collect", False)
        if when not in ("now", "after-gc") or not isinstance(collect, bool):
            raise ApiError(400, "bad_request", 'when must be "now" or "after-gc"; collect a boolean')
        self.diag.snapshots.check_name(name)
        self.audit("dump.snapshot", name=name, when=when, collect=collect)
        if when == "now":
            self.send_json(to_data(await self.expensive("snapshot", lambda: self.diag.snapshot(name))), 201)
            return
        # After-GC waits for the host's next full collection, which may take minutes; it
        # waits on its own thread so the dump worker stays available.
        threading.Thread(
            target=self._after_gc, args=(name, collect), name="opsconsole-aftergc", daemon=True
        ).start()
        self.send_json({"name": name, "state": "pending"}, 202)

    def _after_gc(self, name: str, collect: bool) -> None:
        # runs on its own opsconsole-aftergc thread
        try:
            self.diag.snapshot_after_gc(name, collect=collect)
        except DiagnosticsError as exc:
            _log.warning("after-gc snapshot %s not taken: %s", name, exc)


class SnapshotHandler(BaseHandler):
    """``GET /ops/heap/snapshots/NAME`` streams the file; ``DELETE`` drops it."""

    required_role: ClassVar[Role | None] = "operator"

    async def get(self, name: str) -> None:
        path = self.diag.snapshots.path(_checked(name))
        self.audit("dump.snapshot_download", name=name)
        try:
            fd = private_files.open_checked(path, os.O_RDONLY, secret=True)
        except FileNotFoundError:  # dropped between the store's check and the open
            raise NotFoundError(f"no snapshot named {name!r}") from None
        with os.fdopen(fd, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            self.set_header("Content-Type", "application/octet-stream")
            self.set_header("Content-Length", str(size))
            self.set_header("Content-Disposition", f'attachment; filename="{name}.tracemalloc"')
            while chunk := fh.read(CHUNK):
                self.write(chunk)
                await self.flush()  # stream: never the whole file in memory
        self.finish()

    def delete(self, name: str) -> None:
        self.audit("dump.snapshot_drop", name=name)
        self.diag.snapshots.drop(_checked(name))
        self.send_json({"dropped": name})


class SnapshotTopHandler(BaseHandler):
    """``GET /ops/heap/snapshots/NAME/top``: the largest allocation sites of one snapshot."""

    required_role: ClassVar[Role | None] = "operator"

    async def get(self, name: str) -> None:
        key = self.choice_arg("key", ("lineno", "traceback"))
        top = self.int_arg("top", 10, 1, 500)
        checked = _checked(name)
        self.send_result(
            await self.expensive("snapshot top", lambda: self.diag.snapshots.top(checked, key=key, top=top))
        )


class DiffHandler(BaseHandler):
    required_role: ClassVar[Role | None] = "operator"

    async def get(self) -> None:
        base = _checked(self.get_query_argument("base", ""))
        other = self.get_query_argument("other", None)
        key = cast(Literal["lineno", "traceback"], self.choice_arg("key", ("lineno", "traceback")))
        top = self.int_arg("top", 20, 1, 500)
        result = await self.expensive(
            "diff", lambda: self.diag.diff(base, None if other is None else _checked(other), key=key, top=top)
        )
        self.send_result(result)


class ProfileHandler(BaseHandler):
    required_role: ClassVar[Role | None] = "operator"

    async def get(self) -> None:
        seconds = self.float_arg("seconds", 5.0, 0.1, 300.0)
        interval = self.float_arg("interval", 5.0, 1.0, 1000.0) / 1000.0  # milliseconds in the URL
        fmt = self.choice_arg("format", ("collapsed", "speedscope", "json", "text"))
        self.audit("dump.profile", seconds=seconds)
        result = await self.expensive(
            "profile", lambda: self.diag.profile(seconds, interval=interval), expected_seconds=seconds
        )
        if fmt == "collapsed":
            self.set_header("Content-Type", "text/plain; charset=utf-8")
            self.finish(sampler.collapsed(result))
        elif fmt == "speedscope":
            self.finish(json.dumps(sampler.speedscope(result)))
        else:
            self.send_result(result)


def _checked(name: str) -> str:
    if not _NAME_IN_URL.fullmatch(name):
        raise InvalidRequestError("snapshot names are 1-64 of A-Z a-z 0-9 _ . - and start alphanumeric")
    return name
