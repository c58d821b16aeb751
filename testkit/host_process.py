"""A host service in its own process, for the fault tests: a tiny HTTP app plus the console.

``python -m testkit.host_process '{"state_dir": ..., ...}'`` starts the console with those
settings (real clock), prints one JSON line ``{"url", "app_url", "ssh_port", "pid"}`` (or
``{"error": ...}`` if the console refused to start) and serves until its stdin closes.
Like a host that may run under a file-size limit, it ignores SIGXFSZ, so a write past the
limit fails with EFBIG instead of killing the process. Its log goes to stderr, with the
audit head lines (``opsconsole.audit.head``) at INFO, as a host would ship them.

The test side is ``Host``: start, the first line, kill -9, and the stderr text afterwards.
"""

from __future__ import annotations

import http.server
import json
import logging
import os
import select
import signal
import subprocess
import sys
import threading
from typing import Any

from testkit import REPO


class _App(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"app ok\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def main(argv: list[str]) -> int:
    import opsconsole

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(name)s %(levelname)s %(message)s")
    logging.getLogger("opsconsole.audit.head").setLevel(logging.INFO)
    app = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _App)
    threading.Thread(target=app.serve_forever, name="host-app", daemon=True).start()
    try:
        console = opsconsole.start(**json.loads(argv[0]))
    except opsconsole.OpsConsoleError as exc:
        print(json.dumps({"error": str(exc)}), flush=True)
        return 3
    info = {
        "url": console.url,
        "app_url": f"http://127.0.0.1:{app.server_address[1]}/",
        "ssh_port": console.ssh_port,
        "pid": os.getpid(),
    }
    print(json.dumps(info), flush=True)
    sys.stdin.read()  # until the test closes our stdin
    console.stop()
    app.shutdown()
    return 0


class Host:
    """The test's handle on one host process."""

    def __init__(self, settings: dict[str, Any], *, timeout: float = 30.0) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("OPSCONSOLE_")}
        # stderr is a pipe, not a file: a file-size limit on the host must not cut its own log.
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "testkit.host_process", json.dumps(settings, default=str)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            cwd=REPO,
        )
        self._log: list[bytes] = []
        self._reader = threading.Thread(target=self._drain, name="host-log-reader", daemon=True)
        self._reader.start()
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        assert ready, f"the host printed nothing in {timeout}s; log:\n{self.log}"
        line = self.proc.stdout.readline()
        assert line, f"the host exited ({self.proc.wait(timeout)}); log:\n{self.log}"
        self.info: dict[str, Any] = json.loads(line)

    @property
    def url(self) -> str:
        return str(self.info["url"])

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self._log.append(line)

    @property
    def log(self) -> str:
        """The host's log so far (all of it once the process has exited)."""
        if self.proc.poll() is not None:
            self._reader.join(30)
        return b"".join(self._log).decode(errors="replace")

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)
        self._release()

    def stop(self, timeout: float = 30.0) -> int:
        """Close stdin (the host stops the console cleanly) and wait for the exit code."""
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        self._release()
        return self.proc.returncode

    def _release(self) -> None:
        self._reader.join(30)
        for pipe in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if pipe is not None and not pipe.closed:
                pipe.close()

    def heads(self) -> list[str]:
        """The ``SEQ:HASH`` of every audit head line the host logged so far."""
        found = []
        for line in self.log.splitlines():
            if "opsconsole-audit-head " in line:
                words = dict(w.split("=", 1) for w in line.split() if "=" in w and not w.startswith("file="))
                found.append(f"{words['seq']}:{words['hash']}")
        return found


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
