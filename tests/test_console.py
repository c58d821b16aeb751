"""The console thread's lifecycle: no side effects on import, start from any host shape,
idempotent stop that releases the port, TLS and mutual TLS."""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
import ssl
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import tornado.httpclient
import tornado.ioloop

import opsconsole
from opsconsole.errors import ConsoleError
from testkit.support import call
from testkit.tls import certificate


def _kwargs(tmp_path: Path, keys_dir: Path) -> dict[str, object]:
    return {
        "port": 0,
        "state_dir": tmp_path / "state",
        "authorized_keys": keys_dir / "authorized_keys",
        "totp_secrets": keys_dir / "totp_secrets",
    }


def test_import_opens_no_socket_and_starts_no_thread() -> None:
    code = (
        "import os, threading, opsconsole, opsconsole.console, opsconsole.transport.http.http_server\n"
        "names = os.listdir('/proc/self/fd')\n"
        "fds = [os.readlink(f'/proc/self/fd/{f}') for f in names if os.path.exists(f'/proc/self/fd/{f}')]\n"
        "assert not [f for f in fds if f.startswith('socket:')], fds\n"
        "assert threading.active_count() == 1, threading.enumerate()\n"
        "print('clean')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "clean"


def test_start_from_a_plain_script_and_stop_releases_the_port(tmp_path: Path, keys_dir: Path) -> None:
    console = opsconsole.start(**_kwargs(tmp_path, keys_dir))  # type: ignore[arg-type]
    assert console.port > 0 and console.url == f"http://127.0.0.1:{console.port}"
    workers = [t for t in threading.enumerate() if t.name == "opsconsole"]
    assert len(workers) == 1 and workers[0].daemon
    assert call(console.url, "POST", "/ops/auth/challenge", {"user": "x"})[0] == 200
    console.stop()
    console.stop()  # idempotent
    assert not workers[0].is_alive()
    with socket.socket() as s:  # the port is free again
        s.bind(("127.0.0.1", console.port))
    events = [json.loads(x)["event"] for x in (tmp_path / "state" / "audit.jsonl").read_text().splitlines()]
    assert events == ["console.start", "console.stop"]


def test_start_inside_a_running_asyncio_loop(tmp_path: Path, keys_dir: Path) -> None:
    async def host_app() -> tuple[int, bool]:
        console = opsconsole.start(**_kwargs(tmp_path, keys_dir))  # type: ignore[arg-type]
        try:
            loop = asyncio.get_running_loop()
            # The host loop stays free: ask the console from a worker while we await here.
            status, _ = await loop.run_in_executor(
                None, call, console.url, "POST", "/ops/auth/challenge", {"user": "a"}
            )
            return status, console.app_loop is loop
        finally:
            console.stop()

    assert asyncio.run(host_app()) == (200, True)


def test_start_from_a_tornado_app(tmp_path: Path, keys_dir: Path) -> None:
    async def in_tornado() -> int:
        console = opsconsole.start(**_kwargs(tmp_path, keys_dir))  # type: ignore[arg-type]
        try:
            client = tornado.httpclient.AsyncHTTPClient()
            resp = await client.fetch(
                console.url + "/ops/auth/challenge", method="POST", body=b'{"user":"a"}', raise_error=False
            )
            return resp.code
        finally:
            console.stop()

    assert tornado.ioloop.IOLoop(make_current=False).run_sync(in_tornado) == 200


def test_answers_while_the_host_loop_is_blocked(tmp_path: Path, keys_dir: Path) -> None:
    release = threading.Event()

    async def stuck() -> None:
        release.wait(10)  # a blocking call on the app loop: the whole loop is stuck

    console = opsconsole.start(**_kwargs(tmp_path, keys_dir))  # type: ignore[arg-type]
    host = threading.Thread(target=asyncio.run, args=(stuck(),))
    host.start()
    try:
        assert call(console.url, "POST", "/ops/auth/challenge", {"user": "a"})[0] == 200
    finally:
        release.set()
        host.join()
        console.stop()


def test_port_in_use_is_a_clear_error(tmp_path: Path, keys_dir: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        kwargs = _kwargs(tmp_path, keys_dir) | {"port": s.getsockname()[1]}
        with pytest.raises(ConsoleError, match="cannot listen"):
            opsconsole.start(**kwargs)  # type: ignore[arg-type]


def test_connection_cap_refuses_at_accept(tmp_path: Path, keys_dir: Path) -> None:
    console = opsconsole.start(**(_kwargs(tmp_path, keys_dir) | {"max_connections": 2}))  # type: ignore[arg-type]
    held = [socket.create_connection(("127.0.0.1", console.port)) for _ in range(2)]
    try:
        for s in held:
            s.sendall(b"POST /ops/auth/challenge HTTP/1.1\r\nHost: x\r\n")  # headers never finish
        extra = socket.create_connection(("127.0.0.1", console.port))
        extra.settimeout(5)
        assert extra.recv(1) == b""  # closed without an answer
        extra.close()
    finally:
        for s in held:
            s.close()
        console.stop()


def test_header_timeout_closes_a_slow_client(tmp_path: Path, keys_dir: Path) -> None:
    console = opsconsole.start(**(_kwargs(tmp_path, keys_dir) | {"header_timeout": 0.3}))  # type: ignore[arg-type]
    try:
        s = socket.create_connection(("127.0.0.1", console.port))
        s.sendall(b"GET /ops/whoami HTTP/1.1\r\n")
        s.settimeout(5)
        assert s.recv(1) == b""
        s.close()
    finally:
        console.stop()


# -- TLS ---------------------------------------------------------------------------------


def _https_status(port: int, ctx: ssl.SSLContext) -> int:
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=10)
    try:
        conn.request("POST", "/ops/auth/challenge", body=b'{"user":"a"}')
        return conn.getresponse().status
    finally:
        conn.close()


def test_tls_and_mutual_tls(tmp_path: Path, keys_dir: Path) -> None:
    ca, ca_key, ca_path, _ = certificate(tmp_path, "ca", None, server=False)
    _, _, srv_crt, srv_key = certificate(tmp_path, "server", (ca, ca_key), server=True)
    _, _, cli_crt, cli_key = certificate(tmp_path, "client", (ca, ca_key), server=False)
    client_ctx = ssl.create_default_context(cafile=str(ca_path))

    tls = opsconsole.start(**(_kwargs(tmp_path, keys_dir) | {"tls_cert": srv_crt, "tls_key": srv_key}))  # type: ignore[arg-type]
    try:
        assert tls.url.startswith("https://")
        assert _https_status(tls.port, client_ctx) == 200
    finally:
        tls.stop()

    mtls_kwargs = _kwargs(tmp_path, keys_dir) | {
        "tls_cert": srv_crt,
        "tls_key": srv_key,
        "tls_client_ca": ca_path,
    }
    mtls = opsconsole.start(**mtls_kwargs)  # type: ignore[arg-type]
    try:
        with pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError)):
            _https_status(mtls.port, client_ctx)  # no client certificate
        client_ctx.load_cert_chain(cli_crt, cli_key)
        assert _https_status(mtls.port, client_ctx) == 200
    finally:
        mtls.stop()
