"""A small JSON-over-HTTP client for the CLI, and the per-URL token cache.

Runs in the operator's process, never inside the service. Standard library only, so the
CLI works wherever Python does.

It speaks to the one console URL it was given, over ``http.client``: no redirect is
followed and no ``*_PROXY`` variable is honoured, so the bearer token never reaches another
host. (``urllib.request`` would do both, and costs a CLI verb's start-up as much again.)
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import ssl
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from opsconsole.errors import ClientError, ConfigError
from opsconsole.private_files import create, ensure_private_dir, read_protected, write_private

TIMEOUT = 30.0


def config_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "opsconsole"


class TokenCache:
    """``tokens.json`` (0600) mapping a console URL to its bearer token."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or config_dir() / "tokens.json"

    def _read(self) -> dict[str, Any]:
        if not self.path.exists():
            return {}
        try:
            data = json.loads(read_protected(self.path, secret=True))
        except ValueError as exc:
            raise ConfigError(f"{self.path}: not valid JSON ({exc}); delete it and log in again") from None
        return data if isinstance(data, dict) else {}

    def get(self, url: str) -> str | None:
        entry = self._read().get(normalize(url))
        return entry.get("token") if isinstance(entry, dict) else None

    def put(self, url: str, token: str, user: str) -> None:
        data = self._read()
        data[normalize(url)] = {"token": token, "user": user}
        ensure_private_dir(self.path.parent)
        write_private(self.path, json.dumps(data, indent=1, sort_keys=True))

    def drop(self, url: str) -> None:
        data = self._read()
        if data.pop(normalize(url), None) is not None:
            write_private(self.path, json.dumps(data, indent=1, sort_keys=True))


def normalize(url: str) -> str:
    return url.rstrip("/")


class Client:
    def __init__(self, url: str, token: str | None = None) -> None:
        self.url = normalize(url)
        self.token = token

    @contextlib.contextmanager
    def _open(self, method: str, path: str, body: Any = None) -> Iterator[http.client.HTTPResponse]:
        """One request on a new connection; the response is read inside the ``with``."""
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if data is not None else {}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        conn = _connection(self.url)
        try:
            try:
                conn.request(method, _target(self.url, path), body=data, headers=headers)
                resp = conn.getresponse()
            except OSError as exc:
                raise ClientError(f"cannot reach {self.url}: {exc}") from None
            except http.client.HTTPException as exc:
                raise ClientError(f"{self.url}: not an HTTP answer ({exc!r})") from None
            if resp.status >= 300:
                raise ClientError(_error_text(resp), status=resp.status)
            yield resp
        finally:
            conn.close()

    def request(self, method: str, path: str, body: Any = None) -> Any:
        """Send one request; return the decoded JSON or raise ClientError with the server's message."""
        return json.loads(self.fetch(method, path, body) or b"null")

    def fetch(self, method: str, path: str, body: Any = None) -> bytes:
        """The raw answer body (text dumps, collapsed stacks)."""
        with self._open(method, path, body) as resp:
            return bytes(resp.read())

    def download(self, path: str, dest: Path, progress: Callable[[int, int | None], None]) -> int:
        """Stream ``path`` into ``dest`` (0600, created new); nothing is left behind on failure."""
        tmp = dest.with_name(f".{dest.name}.part")
        fd = create(tmp)
        done = 0
        try:
            with os.fdopen(fd, "wb") as out, self._open("GET", path) as resp:
                total = resp.headers.get("Content-Length")
                while chunk := resp.read(256 * 1024):
                    out.write(chunk)
                    done += len(chunk)
                    progress(done, int(total) if total else None)
            os.replace(tmp, dest)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return done

    def post(self, path: str, body: Any = None) -> Any:
        return self.request("POST", path, {} if body is None else body)

    def get(self, path: str) -> Any:
        return self.request("GET", path)


def _connection(url: str) -> http.client.HTTPConnection:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ClientError(f"not a console URL: {url!r} (expected http://HOST:PORT or https://HOST:PORT)")
    try:
        port = parts.port
    except ValueError:
        raise ClientError(f"not a console URL: {url!r} (bad port)") from None
    if parts.scheme == "http":
        return http.client.HTTPConnection(parts.hostname, port, timeout=TIMEOUT)
    return http.client.HTTPSConnection(
        parts.hostname, port, timeout=TIMEOUT, context=ssl.create_default_context()
    )


def _target(url: str, path: str) -> str:
    """The request target: the URL's own path prefix (a console behind a path) plus ``path``."""
    return urllib.parse.urlsplit(url).path.rstrip("/") + path


def _error_text(resp: http.client.HTTPResponse) -> str:
    try:
        body = json.loads(resp.read())
        return f"{resp.status} {body.get('error')}: {body.get('message')}"
    except (ValueError, AttributeError, OSError, http.client.HTTPException):
        return f"{resp.status} {resp.reason}"
