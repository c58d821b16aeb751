"""The event loop and executor of one REPL session thread.

Each session runs on its own thread (named ``opsconsole-repl-<id>``; the prefix keeps it and
its workers out of dumps) with its own loop, so a blocking eval (``time.sleep(60)``)
freezes only that session. Two things differ from a stock loop, both because that thread is
not the main thread:

* Signals. ``loop.add_signal_handler`` raises off the main thread (``set_wakeup_fd``), yet
  ptpython and asyncio code call it around every eval to make Ctrl-C cancel the eval task. A
  session has no signals — Ctrl-C arrives as a ``\\x03`` keystroke — so :class:`SessionLoop`
  *captures* a SIGINT handler instead of installing it, and the session calls it when the
  operator presses Ctrl-C. Other signals are refused with a clear error.
* Context. ``loop.run_in_executor`` does not copy context variables, and the session's
  prompt_toolkit ``AppSession`` and standard-stream route live in them: a job run without them
  talks to another session's terminal or to the service log. :class:`ContextExecutor` runs
  each job in a copy of the submitter's context; it is the loop's default executor.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import functools
import queue
import signal
import threading
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar, TypeVarTuple, Unpack

P = ParamSpec("P")
T = TypeVar("T")
Ts = TypeVarTuple("Ts")
_Job = tuple["concurrent.futures.Future[Any]", Callable[[], Any]]


class ContextExecutor(concurrent.futures.Executor):
    """Runs jobs on up to ``workers`` daemon threads, each job in a copy of its submitter's context.

    Not a ThreadPoolExecutor: its workers are joined at interpreter exit, so one operator job
    stuck in C (``run_in_executor(None, time.sleep, 1e9)``) would hang the service's shutdown.
    ``submit`` and ``shutdown`` are safe from any thread.
    """

    def __init__(self, name: str, *, workers: int = 4) -> None:
        self._name = name
        self._workers = workers
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._idle = threading.Semaphore(0)
        self._lock = threading.Lock()
        self._threads = 0
        self._shut = False

    def submit(
        self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs
    ) -> concurrent.futures.Future[T]:
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        job = functools.partial(contextvars.copy_context().run, fn, *args, **kwargs)
        with self._lock:
            if self._shut:
                raise RuntimeError("cannot schedule new futures after shutdown")
            self._jobs.put((future, job))
            if not self._idle.acquire(blocking=False) and self._threads < self._workers:
                self._threads += 1
                name = f"{self._name}-worker-{self._threads}"
                threading.Thread(target=self._work, name=name, daemon=True).start()
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        # wait is accepted for the Executor interface; the workers are never joined (see above)
        with self._lock:
            self._shut = True
        if cancel_futures:
            while True:
                try:
                    item = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if item is not None:
                    item[0].cancel()
        self._jobs.put(None)

    def _work(self) -> None:
        # a worker thread
        while True:
            item = self._jobs.get()
            if item is None:
                self._jobs.put(None)  # wake the next worker too
                return
            future, job = item
            del item
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(job())
                except BaseException as exc:
                    future.set_exception(exc)
            del future, job  # do not keep the last job's result alive while idle
            self._idle.release()


class SessionLoop(asyncio.SelectorEventLoop):
    """A selector loop that keeps a SIGINT handler instead of installing it, and whose default
    executor is a :class:`ContextExecutor` (``set_default_executor`` only takes a
    ThreadPoolExecutor, hence the override of ``run_in_executor``).

    Driven only from the session thread; ``sigint_handler`` may be read from any thread.
    """

    def __init__(self, name: str, *, workers: int = 4) -> None:
        super().__init__()
        self.executor = ContextExecutor(name, workers=workers)
        self._sigint_lock = threading.Lock()
        self._sigint: Callable[[], object] | None = None

    def run_in_executor(
        self,
        executor: concurrent.futures.Executor | None,
        func: Callable[[Unpack[Ts]], T],
        *args: *Ts,
    ) -> asyncio.Future[T]:
        return super().run_in_executor(self.executor if executor is None else executor, func, *args)

    def add_signal_handler(self, sig: int, callback: Callable[[Unpack[Ts]], object], *args: *Ts) -> None:
        if sig != signal.SIGINT:
            raise RuntimeError(
                f"signal {sig} cannot be handled from a REPL session: signals go to the host process"
            )
        with self._sigint_lock:
            self._sigint = functools.partial(callback, *args)

    def remove_signal_handler(self, sig: int) -> bool:
        if sig != signal.SIGINT:
            return False
        with self._sigint_lock:
            had, self._sigint = self._sigint is not None, None
        return had

    @property
    def sigint_handler(self) -> Callable[[], object] | None:
        """What ptpython or the operator's code asked to run on SIGINT, if anything."""
        with self._sigint_lock:
            return self._sigint

    def close_session(self, *, grace: float = 1.0) -> None:
        """Cancel what the operator left running, give it ``grace`` seconds, close. Session thread.

        Bounded: a task that ignores cancellation or an executor job stuck in C is abandoned.
        """
        try:
            tasks = [t for t in asyncio.all_tasks(self) if not t.done()]
            for task in tasks:
                task.cancel()
            if tasks:
                self.run_until_complete(asyncio.wait(tasks, timeout=grace))
            self.run_until_complete(self.shutdown_asyncgens())
        finally:
            self.executor.shutdown(wait=False, cancel_futures=True)
            self.close()
