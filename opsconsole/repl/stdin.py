"""The session keyboard as ``sys.stdin`` while a line evaluates: ``input()``, ``pdb``, ``help()``.

While the prompt is shown, keystrokes go to prompt_toolkit. While a line evaluates they come
here instead, and a ``readline`` on the routed ``sys.stdin`` (from the session thread or a job
that copied its context) edits them like a terminal in cooked mode would: echo, Backspace,
Ctrl-U, Enter ends the line, Ctrl-D on an empty line is end of file, escape sequences (arrow
keys, bracketed-paste marks) are dropped. Ctrl-C while a reader waits raises
``KeyboardInterrupt`` from ``readline`` — what ``input()`` does in a terminal, and what pdb
expects. Text typed but not read when the eval ends becomes type-ahead for the next prompt.

Echo shows everything typed, so ``getpass`` is not safe here: it opens ``/dev/tty`` of the
*server* process when there is one, and otherwise falls back to this reader with echo on.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

_POLL = 0.1  # seconds; a waiting reader wakes this often so an async ReplInterrupt gets delivered
MAX_PENDING = 8 * 1024 * 1024  # characters typed during one eval and not read; more is dropped


class LineReader:
    """Cooked-mode line editing over text fed from another thread."""

    def __init__(self, echo: Callable[[str], None]) -> None:
        self._echo = echo
        self._cond = threading.Condition()
        self._pending: list[str] = []  # typed, not yet consumed
        self._pending_size = 0
        self._waiting = 0
        self._interrupted = False
        self._closed = False
        self._escape = ""  # an escape sequence being skipped, possibly split across feeds
        self._after_cr = False

    # -- the feeding side (console IO thread, under the session's feed lock) -----------------

    def put(self, text: str) -> None:
        with self._cond:
            if self._pending_size + len(text) > MAX_PENDING:
                return  # nobody reads, and a paste must not grow memory without bound
            self._pending.append(text)
            self._pending_size += len(text)
            self._cond.notify_all()

    def interrupt(self) -> bool:
        """Ctrl-C: drop unread input; if a reader waits it raises KeyboardInterrupt. Returns that."""
        with self._cond:
            self._pending.clear()
            self._pending_size = 0
            if not self._waiting:
                return False
            self._interrupted = True
            self._cond.notify_all()
            return True

    def take_leftover(self) -> str:
        """What was typed but never read (the session thread, when the eval ends)."""
        with self._cond:
            text = "".join(self._pending)
            self._pending.clear()
            self._pending_size = 0
            self._escape = ""
            self._interrupted = False
            return text

    def close(self) -> None:
        """End of file for every reader, now and later. Any thread."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    # -- the reading side (the evaluating thread) -----------------------------------------------

    def readline(self, size: int = -1) -> str:
        line: list[str] = []
        with self._cond:
            self._waiting += 1
            try:
                while True:
                    done = self._consume(line, size)
                    if done is not None:
                        return done
                    if self._interrupted:
                        self._interrupted = False
                        self._echo("^C\n")
                        raise KeyboardInterrupt
                    if self._closed:
                        return "".join(line)
                    self._cond.wait(_POLL)
            finally:
                self._waiting -= 1

    def _consume(self, line: list[str], size: int) -> str | None:
        # Caller holds the condition. Returns the finished line, or None to wait for more.
        if not self._pending:
            return None
        text = "".join(self._pending)
        self._pending.clear()
        self._pending_size = 0
        echo: list[str] = []
        result: str | None = None
        i = 0
        while i < len(text) and result is None:
            ch = text[i]
            i += 1
            if self._escape or ch == "\x1b":
                self._skip_escape(ch)
            elif not (ch == "\n" and self._after_cr):  # the \n of a \r\n pair is dropped
                result = self._key(ch, line, echo, size)
            self._after_cr = ch == "\r"
        if i < len(text):
            self._pending.append(text[i:])
            self._pending_size = len(text) - i
        if echo:
            self._echo("".join(echo))
        return result

    @staticmethod
    def _key(ch: str, line: list[str], echo: list[str], size: int) -> str | None:
        # one keystroke of line editing; returns the line when it is finished
        if ch in "\r\n":
            echo.append("\n")
            return "".join(line) + "\n"
        if ch == "\x04":
            return "".join(line)  # empty: end of file; else the partial line, like a tty
        if ch in "\x7f\b":
            if line:
                line.pop()
                echo.append("\b \b")
        elif ch == "\x15":
            echo.append("\b \b" * len(line))
            line.clear()
        elif ch >= " " or ch == "\t":
            line.append(ch)
            echo.append(ch)
            if 0 <= size <= len(line):
                return "".join(line)
        return None

    def _skip_escape(self, ch: str) -> None:
        # ESC [ params final | ESC O x | ESC x — dropped: arrows, function keys, paste marks
        seq = self._escape + ch
        csi_open = seq[1:2] == "[" and (len(seq) == 2 or not "\x40" <= ch <= "\x7e")
        ss3_open = seq[1:2] == "O" and len(seq) == 2
        self._escape = seq if len(seq) == 1 or csi_open or ss3_open else ""
