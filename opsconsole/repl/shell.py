"""The ptpython REPL of one session: read on the session loop, audit, evaluate, show.

Everything here runs on the session thread, on its loop. Unlike ``PythonRepl.run_async``, the
prompt_toolkit app runs right on that loop (``await app.run_async()``) instead of in an
executor thread that would start yet another thread and lose the session's context variables
(its ``AppSession`` and stream route); the app is not running while a line evaluates, so the
two never compete for the loop. Each line is evaluated in its own task (so Ctrl-C can cancel an
``await``) with ptpython's ``eval_async`` — top-level ``await`` works on the session's loop.

Kept off on purpose: the external editor and the system bindings (both act on the *server*:
Ctrl-Z would suspend the whole service), ``!`` shell escapes (ptpython hands them to
``os.system``), startup and config files (``run_config`` executes files from the service
user's home), file history (history is in memory only), the pager, exit confirmation.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from prompt_toolkit.auto_suggest import AutoSuggestFromHistory, ConditionalAutoSuggest, ThreadedAutoSuggest
from prompt_toolkit.buffer import Buffer
from prompt_toolkit.completion import CompleteEvent, Completer, Completion
from prompt_toolkit.document import Document
from prompt_toolkit.filters import Condition
from prompt_toolkit.input import Input
from prompt_toolkit.output import ColorDepth, Output
from ptpython.repl import PythonRepl, ReplExit, exit
from ptpython.utils import unindent_code

from opsconsole.repl import display, layout, streams
from opsconsole.repl.editor_profile import EditorProfile
from opsconsole.repl.editor_profile import apply as apply_profile
from opsconsole.repl.interrupt import Interrupter, ReplInterrupt

MAX_READ_FAILURES = 3
SHELL_REFUSED = (
    "shell escapes (!...) are disabled in the opsconsole REPL: they would run on the server. "
    "Use subprocess explicitly if you really mean it."
)
# sys.last_* are process-wide: one session sets them while another may be clearing its own
_last_error_lock = threading.Lock()


@dataclass(frozen=True, slots=True)
class _Failed:
    """What the eval task returns instead of raising: BaseExceptions must not escape a Task."""

    error: BaseException


class _SuggestWhenEnabled(ConditionalAutoSuggest):
    """ptpython's auto-suggestion, falsy while it is switched off.

    A buffer starts a suggestion task on every text change when its ``auto_suggest`` is
    truthy; with ptpython's always-truthy wrapper that task asks, finds suggestions off, and
    still fires ``on_suggestion_set`` — one more loop iteration and one more full redraw per
    keystroke for nothing. Falsy while off, the buffer skips the task.
    """

    def __bool__(self) -> bool:
        return self.filter()


class _OneCompletionAtATime(Completer):
    """ptpython's completer, run by one session at a time in this process.

    Completion runs jedi on a worker thread of each session, and jedi is not thread-safe: with
    two operators pressing Tab at once, one of them would get no menu (the common prefix
    inserted, then its completions lost). A lock per process; the completions are listed
    under it, so no generator is left half-run while another session's completion starts.
    """

    _lock = threading.Lock()

    def __init__(self, inner: Completer) -> None:
        self._inner = inner

    def get_completions(self, document: Document, complete_event: CompleteEvent) -> Iterable[Completion]:
        # a worker thread of the session (ThreadedCompleter)
        with self._lock:
            return list(self._inner.get_completions(document, complete_event))


class OpsRepl(PythonRepl):
    """A ptpython REPL bound to one session's terminal, namespace and audit hook."""

    def __init__(
        self,
        *,
        namespace: dict[str, Any],
        input: Input,
        output: Output,
        profile: EditorProfile,
        title: str,
        record_input: Callable[[str], None],
        interrupter: Interrupter,
        eval_finished: Callable[[], None],
        closing: Callable[[], bool],
    ) -> None:
        super().__init__(
            get_globals=lambda: namespace,
            get_locals=lambda: namespace,
            input=input,
            output=output,
            history_filename=None,  # InMemoryHistory
            startup_paths=None,
        )
        self._record_input = record_input
        self._interrupter = interrupter
        self._eval_finished = eval_finished
        self._closing = closing
        self._last_error: BaseException | None = None
        self.completer = _OneCompletionAtATime(self.completer)
        self.enable_open_in_editor = False
        self.enable_system_bindings = False
        self.confirm_exit = False
        self.enable_pager = False
        self.title = title
        self.terminal_title = title
        self.color_depth = ColorDepth.DEPTH_8_BIT
        apply_profile(self, profile)
        layout.slim(self)  # hidden toolbars, floats and sidebar are not laid out each frame
        self.default_buffer.auto_suggest = _SuggestWhenEnabled(
            ThreadedAutoSuggest(AutoSuggestFromHistory()), Condition(lambda: self.enable_auto_suggest)
        )
        namespace["exit"] = namespace["quit"] = exit()  # site's quit() would close sys.stdin
        namespace["get_ptpython"] = lambda: self

    # -- the loop ------------------------------------------------------------------------------

    async def interact(self) -> None:
        """Read-eval-print until Ctrl-D, ``exit()``, ``sys.exit()`` or a closed input."""
        try:
            await self._interact()
        finally:
            self._forget_last_error()

    async def _interact(self) -> None:
        self.app.output.set_title(self.terminal_title or "")
        self.app.output.flush()
        failures = 0
        while not self._closing():
            try:
                text = await self._read()
            except EOFError:
                return
            except Exception as exc:  # a broken completer or key binding: show it, keep going
                failures += 1
                if failures >= MAX_READ_FAILURES:
                    raise  # the same failure again and again: end the session (status 1)
                self._show_exception(exc)
                continue
            failures = 0
            if not await self._run_line(text) or self._closing():
                return

    async def _read(self) -> str:
        # ptpython's read(), minus its extra thread: the app runs on this loop
        while True:
            try:
                text = await self.app.run_async(handle_sigint=False)
            except KeyboardInterrupt:  # Ctrl-C at the prompt clears the line
                self.signatures = []
                self.default_buffer.document = Document()
                continue
            if text.lstrip().startswith("\x1a"):
                raise EOFError
            text = unindent_code(text)
            if text and not text.isspace():
                if self.insert_blank_line_after_input:
                    self.app.output.write("\n")
                return text

    async def _run_line(self, text: str) -> bool:
        """Audit, evaluate and show one submitted input. False: the operator is leaving."""
        try:
            self._record_input(text)  # before anything compiles: the record survives a crash
        except Exception as exc:
            self._say(f"not run: the line could not be recorded in the audit log ({exc})")
            return True
        if text.lstrip().startswith("!"):
            self._say(SHELL_REFUSED)
            return True
        streams.install()  # in case the host swapped sys.stdout since the last line
        loop = asyncio.get_running_loop()
        task = loop.create_task(self._evaluate(text))
        self._interrupter.begin(loop, task.cancel)
        try:
            try:
                result = await task
                if isinstance(result, _Failed):
                    return self._report(result.error)
                return self._show(result)
            finally:
                self._eval_finished()
        except (ReplInterrupt, asyncio.CancelledError) as exc:
            current = asyncio.current_task()
            if isinstance(exc, asyncio.CancelledError) and current is not None and current.cancelling():
                raise  # the session itself is being cancelled, not the eval
            return self._report(exc)
        finally:
            display.forget_shown()

    async def _evaluate(self, text: str) -> object:
        # the eval task
        try:
            return await self.eval_async(text)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # SystemExit/KeyboardInterrupt would stop the session loop
            return _Failed(exc)

    # -- showing ---------------------------------------------------------------------------------

    def _show(self, result: object) -> bool:
        if isinstance(result, exit):  # a bare `exit`, as ptpython treats it
            return False
        if result is not None and not display.take_shown(result):
            try:
                text = display.as_text(result)
                if text is None:
                    self._show_result(result)
                else:
                    self._say(text.rstrip("\n"))
            except Exception as exc:  # a broken __repr__ is the value's problem, not the session's
                self._show_exception(exc)
            if self.insert_blank_line_after_output:
                self._say("")
        self.current_statement_index += 1
        self.signatures = []
        return True

    def _report(self, error: BaseException) -> bool:
        if isinstance(error, ReplExit | SystemExit):
            return False
        ctrl_c = isinstance(error, ReplInterrupt | KeyboardInterrupt) or (
            isinstance(error, asyncio.CancelledError) and self._interrupter.requested
        )
        if ctrl_c:
            self._say("\rKeyboardInterrupt\n")
        else:
            self._show_exception(error)
        return True

    def _show_exception(self, error: BaseException) -> None:
        # pdb.pm() looks here, as after an error in the standard REPL. These are process-wide
        # (the last error of any session) and keep that eval's frames alive until the next one,
        # or until this session ends (_forget_last_error).
        with _last_error_lock:
            sys.last_type, sys.last_value, sys.last_traceback = type(error), error, error.__traceback__
            self._last_error = error
        self._get_output_printer().display_exception(
            error, highlight=self.enable_syntax_highlighting, paginate=False
        )

    def _forget_last_error(self) -> None:
        # the session thread, as the session ends: the traceback's frames hold this REPL, its
        # namespace and its session; the process-wide sys.last_* must not outlive them
        with _last_error_lock:
            error, self._last_error = self._last_error, None
            if error is None or getattr(sys, "last_value", None) is not error:
                return  # another session's error came later: it is theirs to clear
            for name in ("last_type", "last_value", "last_traceback"):
                with contextlib.suppress(AttributeError):
                    delattr(sys, name)

    def _say(self, text: str) -> None:
        output = self.app.output
        output.write(text + "\n")  # write() shows ESC as '?': a message cannot drive the terminal
        output.flush()

    # -- ptpython hooks --------------------------------------------------------------------------

    def _on_input_timeout(self, buff: Buffer) -> None:
        # ptpython runs jedi for signatures on every text change, shown or not: only when shown
        if self.show_signature or self.show_docstring:
            super()._on_input_timeout(buff)

    def eval(self, line: str) -> object:
        if line.lstrip().startswith("!"):
            raise PermissionError(SHELL_REFUSED)
        return super().eval(line)

    async def eval_async(self, line: str) -> object:
        if line.lstrip().startswith("!"):
            raise PermissionError(SHELL_REFUSED)
        return await super().eval_async(line)
