"""What importing opsconsole costs: checked in a fresh interpreter, as a service or a shell sees it.

``import opsconsole`` must load none of the heavy libraries and open no file, socket or thread
(README "Embedding"); ``opsconsole --help`` and a client verb such as ``whoami`` load only
what they use. Each probe runs in its own subprocess, so nothing this test process already
imported can hide a regression.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from opsconsole.console import Console
from testkit.support import FakeClock, Operator, login_token

HEAVY = ("tornado", "prompt_toolkit", "ptpython", "paramiko", "jedi")
# A client verb needs neither key math nor QR codes nor TOTP unless it is login or enroll.
CLIENT_HEAVY = (*HEAVY, "cryptography", "segno", "pyotp")
# Neither the package nor ``--help`` talks HTTP or TLS.
OFFLINE_HEAVY = (*CLIENT_HEAVY, "http", "email", "ssl")

# Runs in the fresh interpreter: records what the import did through audit hooks, then
# prints the loaded top-level packages and every file, socket and thread event it saw.
PROBE = """
import json, sys, threading
events = []
MODULE_FILES = (".py", ".pyc", ".so")

def hook(event, args):
    if event == "open" and not str(args[0]).endswith(MODULE_FILES):
        events.append(f"open {args[0]}")
    elif event in ("socket.__new__", "socket.bind", "socket.connect", "_thread.start_new_thread"):
        events.append(event)

sys.addaudithook(hook)
code = 0
try:
    exec(sys.argv[1])
except SystemExit as exc:
    code = exc.code
opened = list(events)
print(json.dumps({
    "code": code,
    "packages": sorted({name.partition(".")[0] for name in sys.modules}),
    "events": opened,
    "threads": threading.active_count(),
}))
"""


def _probe(statement: str, env: dict[str, str] | None = None) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, statement],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env=env,
    )
    result: dict[str, object] = json.loads(out.stdout.splitlines()[-1])
    return result


def _loaded(result: dict[str, object], names: tuple[str, ...]) -> list[str]:
    packages = result["packages"]
    assert isinstance(packages, list)
    return [name for name in names if name in packages]


def test_import_opsconsole_loads_no_heavy_library_and_opens_nothing() -> None:
    result = _probe("import opsconsole")
    assert _loaded(result, OFFLINE_HEAVY) == []
    assert result["events"] == []
    assert result["threads"] == 1


def test_the_public_names_are_reachable_and_start_pays_the_imports() -> None:
    # Touching the lazy names loads the console; the probe proves the mechanism is what
    # keeps the plain import light, not an accident of what nobody referenced.
    result = _probe("import opsconsole; opsconsole.start; opsconsole.Console")
    assert _loaded(result, HEAVY[:4]) == list(HEAVY[:4])
    assert result["threads"] == 1  # loading is not starting


def test_cli_help_loads_no_heavy_library() -> None:
    result = _probe("from opsconsole.__main__ import main; main(['--help'])")
    assert result["code"] == 0
    assert _loaded(result, OFFLINE_HEAVY) == []


def test_cli_whoami_loads_only_what_it_uses(
    console: Console, operators: dict[str, Operator], clock: FakeClock, tmp_path: Path
) -> None:
    token = login_token(console.url, operators["alice"], clock())
    cache = tmp_path / "xdg" / "opsconsole" / "tokens.json"
    cache.parent.mkdir(parents=True, mode=0o700)
    cache.write_text(json.dumps({console.url: {"token": token, "user": "alice"}}))
    cache.chmod(0o600)
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPSCONSOLE_")}
    env["XDG_CONFIG_HOME"] = str(tmp_path / "xdg")
    result = _probe(
        f"from opsconsole.__main__ import main; raise SystemExit(main(['whoami', {console.url!r}]))", env
    )
    assert result["code"] == 0
    assert _loaded(result, CLIENT_HEAVY) == []
