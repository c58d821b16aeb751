"""An asciicast v2 recording of one REPL session: what the operator saw, replayable with asciinema.

Format (https://docs.asciinema.org/manual/asciicast/v2/): a JSON header line, then one JSON
array per event, ``[seconds_since_start, code, data]``: ``"o"`` output and ``"r"`` resize
(``"COLSxROWS"``). Input (``"i"``) is deliberately not recorded: keystrokes include passwords
typed into ``getpass``; the audit log holds each submitted line instead.

The file is created 0600 by ``private_files.create`` (never follows or reuses a planted
path), each event is flushed as it is written so a crash keeps everything shown up to it, and
the recording stops at ``max_bytes`` with a final note, so a runaway print loop cannot fill the
disk. A write error stops the recording (logged once); it never ends the session.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import TextIO

from opsconsole import log, private_files

_log = log.get("repl.asciicast")
MAX_BYTES = 64 * 1024 * 1024
TERM = "xterm-256color"


class CastRecorder:
    """Appends events to one ``.cast`` file. Every method is safe from any thread."""

    def __init__(self, file: TextIO, path: Path, *, max_bytes: int) -> None:
        self._file: TextIO | None = file
        self._path = path
        self._max_bytes = max_bytes
        self._lock = threading.Lock()
        self._start = time.monotonic()
        self._last = 0.0
        self._size = 0

    @classmethod
    def create(
        cls, path: Path, *, cols: int, rows: int, title: str, max_bytes: int = MAX_BYTES
    ) -> CastRecorder:
        """Create ``path`` (it must not exist) and write the header. OSError if it cannot."""
        fd = private_files.create(path)
        try:
            file = os.fdopen(fd, "w", encoding="utf-8", newline="\n")
        except BaseException:
            os.close(fd)
            raise
        header = {
            "version": 2,
            "width": cols,
            "height": rows,
            "timestamp": int(time.time()),
            "title": title,
            "env": {"TERM": TERM},
        }
        line = json.dumps(header) + "\n"
        try:  # unlike events, a header that cannot be written is the caller's error
            file.write(line)
            file.flush()
        except BaseException:
            file.close()
            raise
        recorder = cls(file, path, max_bytes=max_bytes)
        recorder._size = len(line)
        return recorder

    @property
    def path(self) -> Path:
        return self._path

    @property
    def recording(self) -> bool:
        return self._file is not None

    def output(self, text: str) -> None:
        if text:
            self._event("o", text)

    def resize(self, cols: int, rows: int) -> None:
        self._event("r", f"{cols}x{rows}")

    def close(self) -> None:
        with self._lock:
            self._stop()

    # -- internals (callers hold the lock) ---------------------------------------------------

    def _event(self, code: str, data: str) -> None:
        with self._lock:
            if self._file is None:
                return
            # monotonic() never goes back; max() also keeps equal-rounding events in order
            self._last = max(self._last, round(time.monotonic() - self._start, 6))
            line = json.dumps([self._last, code, data])  # ensure_ascii: len() is the byte count
            if self._size + len(line) + 1 > self._max_bytes:
                note = f"\r\n[opsconsole: recording stopped at {self._max_bytes >> 20} MiB]\r\n"
                self._write_line(json.dumps([self._last, "o", note]))
                _log.warning("asciicast %s reached %d bytes; recording stopped", self._path, self._size)
                self._stop()
                return
            self._write_line(line)

    def _write_line(self, line: str) -> None:
        assert self._file is not None
        try:
            self._file.write(line + "\n")
            self._file.flush()
        except OSError as exc:
            # A full disk or a file-size limit is the host's to fix; the reason says all of it.
            _log.error("asciicast %s cannot be written (%s); recording stopped", self._path, exc)
            self._stop()
            return
        self._size += len(line) + 1

    def _stop(self) -> None:
        file, self._file = self._file, None
        if file is not None:
            try:
                file.close()
            except OSError as exc:
                _log.error("asciicast %s did not close cleanly (%s)", self._path, exc)
