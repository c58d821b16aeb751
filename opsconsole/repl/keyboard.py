"""The keyboard of one REPL session: an in-memory prompt_toolkit ``Input`` fed by the transport.

Why not a pipe (``create_pipe_input``, as prompt_toolkit's SSH server does): a keystroke then
costs a write on the session loop, a wake-up of the selector for the read end and a read — one
more loop iteration and two more system calls, each of which hands the GIL away. While a host
thread spins in pure Python, a thread coming back from a system call waits up to a whole switch
interval (5 ms by default) for the GIL, so every avoided hand-off is milliseconds of echo latency.
A pipe write also blocks once 64 KiB are unread, which is the normal state during a long eval
or a big paste, so a pipe would need a queue in front of it anyway.

Here the queue *is* the input: :meth:`Keyboard.feed` (the console IO loop, or any thread)
appends text and schedules one callback on the session loop; prompt_toolkit's callback then
calls :meth:`read_keys`, which parses at most :data:`CHUNK` characters with prompt_toolkit's own
``Vt100Parser`` and, if more is queued, schedules itself again — a big paste is processed in
slices, and the loop (resizes, output, Ctrl-C) keeps turning between them. Text fed while no
prompt is shown stays queued: it is type-ahead for the next prompt. At most
:data:`MAX_QUEUED` characters are held for a session that does not read; more is dropped.

``after_keys`` (set by the terminal) runs right after the app has processed each slice of keys,
on the session loop: that is where the terminal draws the new frame without another iteration.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import threading
import weakref
from collections import deque
from collections.abc import Callable, Iterator

from prompt_toolkit.input import Input
from prompt_toolkit.input.typeahead import clear_typeahead
from prompt_toolkit.input.vt100_parser import Vt100Parser
from prompt_toolkit.key_binding import KeyPress

from opsconsole import log

_log = log.get("repl.keyboard")
CHUNK = 4096  # characters parsed per read_keys(): a big paste is processed in slices
MAX_QUEUED = 32 * 1024 * 1024  # characters held for a session that does not read; more is dropped


class _TypeaheadNames:
    """Numbers for the keyboards' type-ahead keys, each reused once its keyboard is gone. Any thread.

    prompt_toolkit keeps type-ahead in a process-wide dict under ``typeahead_hash()`` and never
    deletes a key (clearing stores an empty list). A key per keyboard ever made would grow that
    dict by one entry per session for good; reused numbers bound it by the most sessions open
    at once.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._free: list[int] = []
        self._next = 0

    def take(self) -> int:
        with self._lock:
            if self._free:
                return heapq.heappop(self._free)
            self._next += 1
            return self._next

    def give(self, number: int) -> None:
        with self._lock:
            heapq.heappush(self._free, number)


_NAMES = _TypeaheadNames()


class Keyboard(Input):
    """Queued text in, parsed key presses out. ``feed``/``discard``/``close`` from any thread;
    everything prompt_toolkit calls runs on the session loop."""

    def __init__(self) -> None:
        number = _NAMES.take()
        self._typeahead_key = f"opsconsole-keyboard-{number}"
        weakref.finalize(self, _NAMES.give, number).atexit = False
        clear_typeahead(self)  # whatever a keyboard that held the number left behind
        self._lock = threading.Lock()
        self._queue: deque[str] = deque()
        self._queued = 0
        self._dropped = 0
        self._eof = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._callback: Callable[[], None] | None = None
        self._wake_scheduled = False
        self._keys: list[KeyPress] = []
        self._parser = Vt100Parser(self._keys.append)
        self.after_keys: Callable[[], None] = lambda: None

    # -- the transport's side (any thread) -------------------------------------------------------

    def feed(self, text: str) -> None:
        """Queue keys; never blocks. Beyond MAX_QUEUED unread characters, text is dropped."""
        with self._lock:
            if self._eof:
                return
            if self._queued + len(text) > MAX_QUEUED:
                self._dropped += len(text)
                return
            self._queue.append(text)
            self._queued += len(text)
        self._wake()

    def discard(self) -> None:
        """Drop queued keys not yet read (Ctrl-C flushes type-ahead, as a tty does)."""
        with self._lock:
            self._queue.clear()
            self._queued = 0

    def close(self) -> None:
        """End of input: queued keys are dropped and the app sees EOF. Idempotent."""
        with self._lock:
            if self._eof:
                return
            self._eof = True
            self._queue.clear()
            self._queued = 0
            dropped = self._dropped
        if dropped:
            _log.warning("REPL input dropped: %d characters beyond the %d queued", dropped, MAX_QUEUED)
        self._wake()

    @property
    def pending(self) -> bool:
        """Whether queued text is waiting to be read."""
        return self._queued > 0

    # -- prompt_toolkit's side (the session loop) ------------------------------------------------

    def attach(self, input_ready_callback: Callable[[], None]) -> contextlib.AbstractContextManager[None]:
        return self._attached(input_ready_callback)

    def detach(self) -> contextlib.AbstractContextManager[None]:
        return self._attached(None)

    @contextlib.contextmanager
    def _attached(self, callback: Callable[[], None] | None) -> Iterator[None]:
        loop = asyncio.get_running_loop()
        with self._lock:
            previous = self._callback
            self._loop, self._callback = loop, callback
            self._loop_thread = threading.get_ident()
        self._wake()  # type-ahead, or EOF, is there to read at once
        try:
            yield
        finally:
            with self._lock:
                self._callback = previous
            self._wake()  # keys that came while detached are for the restored reader

    def read_keys(self) -> list[KeyPress]:
        text = self._take(CHUNK)
        if text:
            self._parser.feed(text)
        if self.pending:
            self._wake()  # the rest in the next slice, after the app has drawn this one
        return self._parsed()

    def flush_keys(self) -> list[KeyPress]:
        # a lone ESC: no more of an escape sequence came within the app's timeout
        self._parser.flush()
        return self._parsed()

    @property
    def closed(self) -> bool:
        return self._eof and not self._queued

    def fileno(self) -> int:
        raise NotImplementedError("a REPL session's keyboard is not a file")

    def typeahead_hash(self) -> str:
        # the key of this keyboard's type-ahead in prompt_toolkit's process-wide dict: unique
        # among the keyboards alive, reused after (see _TypeaheadNames)
        return self._typeahead_key

    def raw_mode(self) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()

    def cooked_mode(self) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()

    def forget(self) -> None:
        """Drop type-ahead prompt_toolkit keeps for this input (the session thread, at the end)."""
        clear_typeahead(self)

    # -- internals -------------------------------------------------------------------------------

    def _take(self, limit: int) -> str:
        parts: list[str] = []
        size = 0
        with self._lock:
            while self._queue and size < limit:
                part = self._queue.popleft()
                if size + len(part) > limit:
                    part, rest = part[: limit - size], part[limit - size :]
                    self._queue.appendleft(rest)
                parts.append(part)
                size += len(part)
            self._queued -= size
        return "".join(parts)

    def _parsed(self) -> list[KeyPress]:
        keys = self._keys[:]
        self._keys.clear()
        return keys

    def _wake(self) -> None:
        # any thread: one delivery scheduled at a time, however many feeds come in meanwhile
        with self._lock:
            loop = self._loop
            if loop is None or self._wake_scheduled:
                return
            self._wake_scheduled = True
            here = threading.get_ident() == self._loop_thread
        with contextlib.suppress(RuntimeError):  # the session loop is closed: the session is over
            if here:  # no self-pipe write (a system call, a GIL hand-off) from the loop's own thread
                loop.call_soon(self._deliver)
            else:
                loop.call_soon_threadsafe(self._deliver)

    def _deliver(self) -> None:
        # session loop
        with self._lock:
            self._wake_scheduled = False
            callback = self._callback
        if callback is not None and (self._queued or self._eof):
            callback()
            self.after_keys()
