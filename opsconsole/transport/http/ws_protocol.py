"""A frame reader that closes a broken websocket by the book (RFC 6455 7.1.7 and 7.4.1).

Tornado's reader drops the TCP connection with no close frame for a text message that is
not UTF-8, reserved bits, an oversized or fragmented control frame, a stray continuation or
an unknown opcode, and it accepts unmasked client frames. No public hook sees those frames,
so this subclass replaces one private method, ``_receive_frame`` (one frame per call, the
same since Tornado 6.3), and hands every good frame to Tornado's own ``_handle_message`` (pings,
pongs, the close handshake, ``on_message``). ``shape_problems()`` checks the private members
it relies on; when they drift the handler falls back to Tornado's reader (see
``terminal_socket.py``) and a test fails.

A violation is reported once to the handler's ``protocol_error`` (which audits it and sends
the close frame); then the connection only waits for the peer's close frame, reading and
dropping whatever comes first, so the peer reads our close code before TCP ends (closing
a socket with unread input would reset it). Tornado ends the wait after 5 s.
Runs on the console IO loop.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import tornado.websocket

from opsconsole import log
from opsconsole.errors import OpsConsoleError, ProtocolError
from opsconsole.transport.http import ws_frames as wf

_log = log.get("transport.terminal")
_CHUNK = 64 * 1024  # what a dropped payload is read in: memory stays bounded whatever its length

# Tornado's private members this reader relies on, with their parameters.
_NEEDS: dict[str, tuple[str, ...]] = {
    "_receive_frame": ("self",),
    "_read_bytes": ("self", "n"),
    "_handle_message": ("self", "opcode", "data"),
    "_receive_frame_loop": ("self",),
}
_COROUTINES = ("_receive_frame", "_read_bytes", "_receive_frame_loop")


def shape_problems() -> list[str]:
    """What differs from the Tornado this reader was written against (empty: all is there)."""
    cls = tornado.websocket.WebSocketProtocol13
    problems = []
    for name, params in _NEEDS.items():
        member = getattr(cls, name, None)
        if member is None:
            problems.append(f"WebSocketProtocol13.{name} is gone")
        elif tuple(inspect.signature(member).parameters) != params:
            problems.append(f"WebSocketProtocol13.{name} takes {inspect.signature(member)}")
        elif name in _COROUTINES and not inspect.iscoroutinefunction(member):
            problems.append(f"WebSocketProtocol13.{name} is no longer a coroutine function")
    init = tuple(inspect.signature(cls.__init__).parameters)
    if init != ("self", "handler", "mask_outgoing", "params"):
        problems.append(f"WebSocketProtocol13.__init__ takes {init}")
    return problems


SUPPORTED = not shape_problems()


class StrictProtocol(tornado.websocket.WebSocketProtocol13):
    """Tornado's server-side protocol with a frame reader that polices every frame."""

    _strict_message: bytearray | None = None  # the fragmented message being assembled
    _strict_message_opcode = wf.TEXT
    _strict_failed = False  # a violation was reported: wait for the peer's close, drop the rest
    _strict_skip = 0  # bytes of the refused frame still to be dropped
    _strict_lost = False  # the frames cannot be followed any more: drop bytes until EOF

    @classmethod
    def replacing(cls, stock: tornado.websocket.WebSocketProtocol13) -> StrictProtocol:
        """The same protocol as ``stock`` (same handler and settings) with this reader."""
        return cls(stock.handler, stock.mask_outgoing, stock.params)

    async def _receive_frame(self) -> None:
        if self._strict_failed:
            await self._drop_frame()
            return
        try:
            await self._read_frame()
        except ProtocolError as exc:
            self._fail(exc)

    async def _read_frame(self) -> None:
        head = wf.Head.parse(await self._read_bytes(2))
        try:
            length = await self._length(head)
        except ProtocolError:
            self._strict_lost = True
            raise
        try:
            wf.check_head(head, in_message=self._strict_message is not None)
            if not head.control:
                buffered = 0 if self._strict_message is None else len(self._strict_message)
                wf.check_size(buffered, length, self.params.max_message_size)
        except ProtocolError:
            self._strict_skip = length + (4 if head.masked else 0)
            raise
        mask = await self._read_bytes(4)
        payload = wf.unmask(mask, await self._read_bytes(length) if length else b"")
        if head.control:
            if head.opcode == wf.CLOSE:
                wf.check_close(payload)
            await self._deliver(head.opcode, payload)
            return
        if head.fin and self._strict_message is None:  # the common case: a whole message in one frame
            opcode, data = head.opcode, payload
        else:
            if self._strict_message is None:
                self._strict_message, self._strict_message_opcode = bytearray(), head.opcode
            self._strict_message += payload
            if not head.fin:
                return
            opcode, data = self._strict_message_opcode, bytes(self._strict_message)
            self._strict_message = None
        if opcode == wf.TEXT:
            wf.check_text(data)
        await self._deliver(opcode, data)

    async def _length(self, head: wf.Head) -> int:
        if head.length7 < 126:
            return head.length7
        return wf.extended_length(head, await self._read_bytes(2 if head.length7 == 126 else 8))

    async def _deliver(self, opcode: int, data: bytes) -> None:
        handled = self._handle_message(opcode, data)
        if handled is not None:
            await handled

    def _fail(self, exc: ProtocolError) -> None:
        self._strict_failed = True
        self._strict_message = None
        report: Callable[[ProtocolError], Any] | None = getattr(self.handler, "protocol_error", None)
        try:
            if report is not None:
                report(exc)  # audits once and closes with exc.code
        except OpsConsoleError as err:  # e.g. the audit log cannot be written: close all the same
            _log.error("websocket protocol error %s not reported: %s", exc.reason, err)
        finally:
            self.close(exc.code, exc.message)  # sends nothing if a close frame went out already

    async def _drop_frame(self) -> None:
        # After a violation: skip frames until the peer's close frame, which ends it.
        if self._strict_lost:
            await self.stream.read_bytes(_CHUNK, partial=True)
            return
        if self._strict_skip:
            await self._discard(self._strict_skip)
            self._strict_skip = 0
            return
        head = wf.Head.parse(await self._read_bytes(2))
        try:
            length = await self._length(head)
        except ProtocolError:
            self._strict_lost = True
            return
        await self._discard(length + (4 if head.masked else 0))
        if head.opcode == wf.CLOSE:
            self.client_terminated = True
            self.close()  # our close frame went out before: this ends the TCP connection

    async def _discard(self, n: int) -> None:
        while n > 0:
            n -= len(await self.stream.read_bytes(min(n, _CHUNK), partial=True))
