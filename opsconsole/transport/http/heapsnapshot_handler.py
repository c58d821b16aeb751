"""``GET /ops/heapsnapshot``: the live heap as a Chrome DevTools ``.heapsnapshot``, streamed.

The walk and the text run on the one dump worker (429 + Retry-After while another expensive dump
runs). The worker hands each chunk to the console IO loop and waits until it is flushed to the
socket before making the next, so at most one chunk is in flight and the document is never held
whole. ``?contents=full`` puts str/bytes contents and every dict key in clear; the audit record says
which was asked for, before the walk starts. Handler methods run on the console IO loop.
"""

from __future__ import annotations

import asyncio
from typing import ClassVar

import tornado.iostream

from opsconsole import log
from opsconsole.auth.principal import Role
from opsconsole.diagnostics.heapsnapshot.document import Contents, HeapSnapshotInfo
from opsconsole.transport.http.base import BaseHandler

_log = log.get("transport.heapsnapshot")
SEND_TIMEOUT = 300.0  # seconds the worker waits for one chunk to reach a slow client


class HeapSnapshotHandler(BaseHandler):
    required_role: ClassVar[Role | None] = "operator"

    async def get(self) -> None:
        contents: Contents = (
            "full" if self.choice_arg("contents", ("redacted", "full")) == "full" else "redacted"
        )
        self.audit("dump.heapsnapshot", contents=contents)
        loop = asyncio.get_running_loop()
        snapshot = self.diag.heapsnapshot(contents=contents)

        def produce() -> HeapSnapshotInfo:
            # runs on the dump worker: walk, then one chunk at a time through the IO loop
            for chunk in snapshot:
                asyncio.run_coroutine_threadsafe(self._send(chunk), loop).result(SEND_TIMEOUT)
            return snapshot.info()

        try:
            info = await self.expensive("heapsnapshot", produce, expected_seconds=30.0)
        except tornado.iostream.StreamClosedError:
            _log.info("heapsnapshot: the client went away; export abandoned")
            return
        _log.info(
            "heapsnapshot: %d nodes, %d edges, %d bytes in %.1fs",
            info.nodes,
            info.edges,
            info.bytes,
            info.seconds,
        )
        self.finish()

    async def _send(self, chunk: bytes) -> None:
        if not self._headers_written:
            self.set_header("Content-Type", "application/octet-stream")
            self.set_header("Content-Disposition", 'attachment; filename="opsconsole.heapsnapshot"')
        self.write(chunk)
        await self.flush()
