"""``opsconsole connect URL``: the REPL in this terminal over the websocket.

Raw mode while connected, the window size follows SIGWINCH, and ``Ctrl-]`` (as in
telnet) leaves. The terminal is restored on every exit path: normal end, the escape
key, a dropped connection, an exception, SIGTERM/SIGHUP. Runs in the operator's process
on its own asyncio loop.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import json
import os
import shutil
import signal
import sys
import termios
import tty
from collections.abc import Iterator

import tornado.httpclient
import tornado.websocket

from opsconsole.errors import ClientError

ESCAPE = b"\x1d"  # Ctrl-]
ESCAPE_NAME = "Ctrl-]"


def ws_url(url: str) -> str:
    base = url.rstrip("/")
    if base.startswith("https://"):
        return "wss://" + base[len("https://") :]
    if base.startswith("http://"):
        return "ws://" + base[len("http://") :]
    raise ClientError(f"{url} is not an http(s) URL")


@contextlib.contextmanager
def raw_terminal(fd: int) -> Iterator[None]:
    """Raw mode for ``fd`` if it is a terminal; always restored, whatever happens."""
    if not os.isatty(fd):
        yield
        return
    saved = termios.tcgetattr(fd)
    try:
        tty.setraw(fd)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


async def session(url: str, token: str, stdin_fd: int, stdout_fd: int) -> tuple[int | None, str | None]:
    """Pump stdin → websocket → stdout until either side ends; returns the close code/reason."""
    cols, rows = shutil.get_terminal_size()
    request = tornado.httpclient.HTTPRequest(
        f"{ws_url(url)}/ops/terminal?rows={rows}&cols={cols}",
        headers={"Authorization": f"Bearer {token}"},
        connect_timeout=10,
        request_timeout=10,
    )
    try:
        conn = await tornado.websocket.websocket_connect(request, max_message_size=16 * 1024 * 1024)
    except tornado.httpclient.HTTPClientError as exc:
        raise ClientError(
            f"the console refused the terminal: {exc.code} {exc.message}", status=exc.code
        ) from None
    except OSError as exc:
        raise ClientError(f"cannot reach {url}: {exc}") from None
    conn.stream.set_nodelay(True)  # keystrokes are tiny writes: no Nagle delay
    loop = asyncio.get_running_loop()
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    done = asyncio.Event()

    def on_stdin() -> None:
        data = os.read(stdin_fd, 65536)
        if not data or ESCAPE in data:
            data = data.split(ESCAPE)[0]
            done.set()
        if data:
            conn.write_message(json.dumps(["stdin", decoder.decode(data)]))

    def on_resize() -> None:
        c, r = shutil.get_terminal_size()
        conn.write_message(json.dumps(["set_size", r, c]))

    async def pump_output() -> None:
        while (message := await conn.read_message()) is not None:
            frame = json.loads(message)
            if frame[0] == "stdout":
                os.write(stdout_fd, frame[1].encode())
        done.set()

    loop.add_reader(stdin_fd, on_stdin)
    with contextlib.suppress(ValueError, RuntimeError):  # no signals off the main thread
        loop.add_signal_handler(signal.SIGWINCH, on_resize)
    output = asyncio.create_task(pump_output())
    try:
        await done.wait()
    finally:
        loop.remove_reader(stdin_fd)
        with contextlib.suppress(ValueError, RuntimeError):
            loop.remove_signal_handler(signal.SIGWINCH)
        conn.close()
        output.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await output
    return conn.close_code, conn.close_reason


def run(url: str, token: str) -> int:
    stdin_fd, stdout_fd = sys.stdin.fileno(), sys.stdout.fileno()
    print(f"connected to {url}; {ESCAPE_NAME} leaves", file=sys.stderr)

    def terminate(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)  # unwinds through raw_terminal's finally

    previous = {s: signal.signal(s, terminate) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        with raw_terminal(stdin_fd):
            code, reason = asyncio.run(session(url, token, stdin_fd, stdout_fd))
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    print(f"\r\nconnection closed ({code}{': ' + reason if reason else ''})", file=sys.stderr)
    return 0 if code in (None, 1000, 1005) else 1
