"""A websocket terminal client for tests: types frames, reads output with ANSI stripped."""

from __future__ import annotations

import asyncio
import json
import re
import time
from typing import Any

import tornado.httpclient
import tornado.websocket

ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(\x07|\x1b\\)|\x1b[()][A-Z0-9]|\x1b[=>78]")


def clean(text: str) -> str:
    return ANSI.sub("", text).replace("\r", "")


class Term:
    def __init__(self, conn: tornado.websocket.WebSocketClientConnection) -> None:
        self.conn = conn
        self.raw = ""

    @classmethod
    async def open(
        cls, url: str, token: str | None = None, *, headers: dict[str, str] | None = None, query: str = ""
    ) -> Term:
        hdrs = dict(headers or {})
        if token is not None:
            hdrs["Authorization"] = f"Bearer {token}"
        ws = url.replace("http://", "ws://", 1) + "/ops/terminal" + (f"?{query}" if query else "")
        request = tornado.httpclient.HTTPRequest(ws, headers=hdrs, connect_timeout=5, request_timeout=5)
        conn = await tornado.websocket.websocket_connect(request, max_message_size=64 * 1024 * 1024)
        conn.stream.set_nodelay(True)  # as browsers do: keystrokes are tiny writes
        return cls(conn)

    async def send(self, text: str) -> None:
        await self.conn.write_message(json.dumps(["stdin", text]))

    async def frame(self, *frame: Any) -> None:
        await self.conn.write_message(json.dumps(list(frame)))

    @property
    def text(self) -> str:
        return clean(self.raw)

    async def expect(self, pattern: str, timeout: float = 10.0, *, start: int = 0) -> re.Match[str]:
        """Wait until the cleaned output (from ``start``) matches ``pattern``."""
        deadline = time.monotonic() + timeout
        regex = re.compile(pattern, re.MULTILINE)
        while True:
            match = regex.search(self.text, start)
            if match:
                return match
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{pattern!r} not seen in {timeout}s; output:\n{self.text[-2000:]}")
            try:
                message = await asyncio.wait_for(self.conn.read_message(), left)
            except TimeoutError:
                continue
            if message is None:
                raise AssertionError(
                    f"closed ({self.conn.close_code}) before {pattern!r}; output:\n{self.text[-2000:]}"
                )
            frame = json.loads(message)
            assert frame[0] == "stdout", frame
            self.raw += frame[1]

    async def run(self, line: str, pattern: str, timeout: float = 10.0) -> re.Match[str]:
        """Type ``line`` + Enter and wait for ``pattern`` after what was there before."""
        start = len(self.text)
        await self.send(line + "\r")
        return await self.expect(pattern, timeout, start=start)

    async def closed(self, timeout: float = 5.0) -> int | None:
        """Read until the server closes; returns its close code."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                message = await asyncio.wait_for(self.conn.read_message(), deadline - time.monotonic())
            except TimeoutError:
                break
            if message is None:
                self.conn.close()
                return self.conn.close_code
            self.raw += json.loads(message)[1]
        raise AssertionError("still open")

    async def close(self) -> None:
        """Close and wait for the server's close frame, so no socket is left behind."""
        self.conn.close()
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            try:
                if await asyncio.wait_for(self.conn.read_message(), deadline - time.monotonic()) is None:
                    return
            except TimeoutError:
                break
