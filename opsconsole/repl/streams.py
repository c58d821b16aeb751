"""``sys.stdout``/``sys.stderr``/``sys.stdin`` routed to the REPL session that is running the code.

REPL code runs inside the host process, whose standard streams belong to the service. ``install``
replaces each of them ONCE (idempotent, process-wide) with a :class:`RoutedStream`: a context
variable names the current session's :class:`Route`; when it is unset the stream passes every call
through to the stream it replaced, so the host sees no change but one ``ContextVar.get`` per call.
The proxies are never taken out again — restoring while a session (or a task or executor job it
started) still writes would send that output to the service log. If something else later replaces
``sys.stdout`` (a test runner does), the next eval in any session wraps the new stream.

What lands in the session: ``print``, ``sys.stdout.write``, tracebacks ptpython prints, warnings,
``logging.lastResort`` (it looks ``sys.stderr`` up when it emits) — from the session thread, its
asyncio tasks and its executor jobs (they copy the context). ``input()`` reads the session's
keyboard (see ``stdin.LineReader``).

What does NOT: anything written by file descriptor (``subprocess``, ``os.system``, C extensions,
``faulthandler``), logging handlers that captured the real stream when they were configured, and
threads the operator starts from the REPL (a new ``threading.Thread`` starts with an empty
context). That output goes to the process's own stdout/stderr, i.e. the service log.
"""

from __future__ import annotations

import io
import sys
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Protocol, TextIO, cast


class Writer(Protocol):
    def write(self, text: str, /) -> int: ...

    def flush(self) -> None: ...


class Reader(Protocol):
    def readline(self, size: int = -1, /) -> str: ...


@dataclass(frozen=True, slots=True)
class Route:
    """Where one session's standard streams go."""

    stdout: Writer
    stderr: Writer
    stdin: Reader


_route: ContextVar[Route | None] = ContextVar("opsconsole_repl_route", default=None)
_install_lock = threading.Lock()
# Every proxy ever installed, kept alive for good. print() holds only a *borrowed* reference to
# sys.stdout while it writes (CPython 3.11), so a proxy freed because another thread replaced
# sys.stdout mid-print would be a use-after-free — a segfault of the whole service.
_installed: list[RoutedStream] = []


class RoutedStream:
    """Stands in for one of ``sys.stdout``/``sys.stderr``/``sys.stdin``; any thread.

    In a session the stream is not a terminal and has no file descriptor: ``isatty()`` is False
    (pydoc and friends must not start ``less`` on the server's terminal) and ``fileno()`` raises
    ``io.UnsupportedOperation`` (so fd-level writers fail loudly instead of writing to the log).
    """

    def __init__(self, name: str, fallback: TextIO | None) -> None:
        self._name = name
        self._fallback = fallback

    # -- writing ---------------------------------------------------------------------------

    def write(self, text: str) -> int:
        route = _route.get()
        if route is not None:
            if not isinstance(text, str):
                raise TypeError(f"write() argument must be str, not {type(text).__name__}")
            return (route.stderr if self._name == "stderr" else route.stdout).write(text)
        if self._fallback is None:  # pythonw / closed std streams: print() is a no-op there too
            return len(text)
        return self._fallback.write(text)

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        route = _route.get()
        if route is not None:
            (route.stderr if self._name == "stderr" else route.stdout).flush()
        elif self._fallback is not None:
            self._fallback.flush()

    # -- reading ---------------------------------------------------------------------------

    def readline(self, size: int = -1) -> str:
        route = _route.get()
        if route is not None:
            return route.stdin.readline(size)
        return self._fallback.readline(size) if self._fallback is not None else ""

    def read(self, size: int = -1) -> str:
        route = _route.get()
        if route is None:
            return self._fallback.read(size) if self._fallback is not None else ""
        # read() means "to EOF": collect lines until Ctrl-D on an empty line.
        parts: list[str] = []
        while size < 0 or sum(map(len, parts)) < size:
            line = route.stdin.readline(-1)
            if not line:
                break
            parts.append(line)
        text = "".join(parts)
        return text if size < 0 else text[:size]

    def readlines(self, hint: int = -1) -> list[str]:
        return list(self)

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        line = self.readline()
        if not line:
            raise StopIteration
        return line

    # -- what kind of stream ---------------------------------------------------------------

    @property
    def buffer(self) -> Any:
        """The binary face: in a session, bytes written are decoded (UTF-8) into the session."""
        route = _route.get()
        if route is None:
            if self._fallback is None:
                raise AttributeError("buffer")
            return self._fallback.buffer
        if self._name == "stdin":
            raise AttributeError("a REPL session's stdin has no binary buffer")
        return _BinaryWriter(route.stderr if self._name == "stderr" else route.stdout)

    def isatty(self) -> bool:
        if _route.get() is not None:
            return False
        return self._fallback is not None and self._fallback.isatty()

    def fileno(self) -> int:
        if _route.get() is not None or self._fallback is None:
            raise io.UnsupportedOperation(f"a REPL session's {self._name} has no file descriptor")
        return self._fallback.fileno()

    @property
    def encoding(self) -> str:
        if _route.get() is not None or self._fallback is None:
            return "utf-8"
        return self._fallback.encoding

    @property
    def errors(self) -> str | None:
        if _route.get() is not None or self._fallback is None:
            return "replace"
        return self._fallback.errors

    def __getattr__(self, name: str) -> Any:
        # Everything else (buffer, name, mode, closed, ...) is the replaced stream's.
        if self._fallback is None:
            raise AttributeError(name)
        return getattr(self._fallback, name)

    def __repr__(self) -> str:
        return f"<opsconsole routed {self._name} over {self._fallback!r}>"


class _BinaryWriter:
    """``sys.stdout.buffer`` in a session (click, for one, writes bytes there)."""

    def __init__(self, writer: Writer) -> None:
        self._writer = writer

    def write(self, data: bytes | bytearray | memoryview) -> int:
        self._writer.write(bytes(data).decode("utf-8", "replace"))
        return len(data)

    def flush(self) -> None:
        self._writer.flush()


def install() -> None:
    """Put the routed proxies in place if they are not there. Idempotent and cheap; any thread.

    Called when a session starts and before each eval, so a host (or test runner) that swapped
    ``sys.stdout`` meanwhile gets its new stream wrapped rather than the session's output.
    """
    with _install_lock:
        for name in ("stdout", "stderr", "stdin"):
            current = getattr(sys, name)
            if not isinstance(current, RoutedStream):
                proxy = RoutedStream(name, current)
                _installed.append(proxy)
                setattr(sys, name, cast(TextIO, proxy))


@contextmanager
def routed(route: Route) -> Iterator[None]:
    """Send this context's standard streams to ``route`` inside the block (the session thread)."""
    token = _route.set(route)
    try:
        yield
    finally:
        _route.reset(token)
