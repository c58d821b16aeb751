"""Builds REPL sessions for the doors (websocket, SSH): namespace, helpers, recording, audit
wiring and the GIL switch interval (see ``gil``) in one place so every door gets the same session."""

from __future__ import annotations

import asyncio
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Literal

from opsconsole.diagnostics.service import Diagnostics
from opsconsole.repl import gil
from opsconsole.repl.helpers import Ops
from opsconsole.repl.session import ReplSession


class ReplFactory:
    """One per console. ``open`` runs on the console IO loop (or an SSH thread)."""

    def __init__(
        self,
        *,
        namespace: Mapping[str, object],
        diag: Diagnostics,
        app_loop: asyncio.AbstractEventLoop | None,
        record: Callable[..., None],
        cast_dir: Path,
        profile: Literal["lean", "full"],
        switch_interval: float = 0.0,
    ) -> None:
        self._namespace = dict(namespace)
        self._ops = Ops(diag, app_loop=app_loop)
        self._record = record
        self._cast_dir = cast_dir
        self._profile = profile
        self._switch_interval = switch_interval
        self._lock = threading.Lock()
        self._sessions: weakref.WeakSet[ReplSession] = weakref.WeakSet()

    def open(
        self,
        *,
        user: str,
        session_id: str,
        door: str,
        sink: Callable[[str], None],
        on_close: Callable[[int], None],
        rows: int,
        cols: int,
    ) -> ReplSession:
        """A started session; every submitted line is audited before it runs.

        While it is open the process's GIL switch interval is at most ``switch_interval``.
        """

        def record_input(line: str) -> None:
            # runs on the session thread, before the line is compiled
            self._record("repl.input", user=user, session=session_id, text=line)

        # Each session gets its own dict: `_`, `exit` and friends must not cross sessions.
        namespace: dict[str, object] = {**self._namespace, "ops": self._ops}

        def closed(status: int) -> None:
            # the session thread (or the closing thread), once, after start()
            release()
            on_close(status)

        session = ReplSession(
            session_id=session_id,
            user=user,
            namespace=namespace,
            sink=sink,
            on_close=closed,
            record_input=record_input,
            cast_path=self._cast_dir / f"{session_id}.cast",
            rows=rows,
            cols=cols,
            profile=self._profile,
            title=f"opsconsole {user}@{door}",
        )
        self._record("repl.open", user=user, session=session_id, door=door)
        with self._lock:
            self._sessions.add(session)
        release = gil.hold(self._switch_interval)
        try:
            session.start()
        except BaseException:
            release()  # never started: on_close comes only if the door closes it
            raise
        return session

    def close_all(self, timeout: float = 3.0) -> None:
        """End every session and wait for their threads (console shutdown, any thread).

        A session thread must not outlive the console: it would keep evaluating with
        nowhere to send its output.
        """
        with self._lock:
            sessions = list(self._sessions)
        for session in sessions:
            session.close()
        deadline = time.monotonic() + timeout
        for session in sessions:
            session.join(max(0.0, deadline - time.monotonic()))
