"""A small JSON-over-HTTP client for the CLI, and the per-URL token cache.

Runs in the operator's process, never inside the service. Standard library only, so the
CLI works wherever Python does.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from opsconsole.auth.files import ensure_private_dir, read_protected, write_private
from opsconsole.errors import ClientError, ConfigError

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

    def request(self, method: str, path: str, body: Any = None) -> Any:
        """Send one request; return the decoded JSON or raise ClientError with the server's message."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)  # noqa: S310
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(req, timeout=TIMEOUT) as resp:  # noqa: S310
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            raise ClientError(_error_text(exc), status=exc.code) from None
        except (urllib.error.URLError, OSError) as exc:
            raise ClientError(f"cannot reach {self.url}: {exc}") from None

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
