"""A small JSON-over-HTTP client for the CLI, and the per-URL token cache.

Runs in the operator's process, never inside the service. Standard library only, so the
CLI works wherever Python does.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Callable
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

    def _open(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)  # noqa: S310
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        try:
            return urllib.request.urlopen(req, timeout=TIMEOUT)  # noqa: S310
        except urllib.error.HTTPError as exc:
            raise ClientError(_error_text(exc), status=exc.code) from None
        except (urllib.error.URLError, OSError) as exc:
            raise ClientError(f"cannot reach {self.url}: {exc}") from None

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


def _error_text(exc: urllib.error.HTTPError) -> str:
    try:
        body = json.loads(exc.read())
        return f"{exc.code} {body.get('error')}: {body.get('message')}"
    except (ValueError, AttributeError):
        return f"{exc.code} {exc.reason}"
