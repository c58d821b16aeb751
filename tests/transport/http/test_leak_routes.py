"""The leak detector's routes on the real console thread: roles, bad intervals, start twice,
stop when stopped, audit, the text form, the setting that starts it; and ops.leaks()."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from opsconsole.cli.dump import ROUTES
from opsconsole.console import Console
from opsconsole.diagnostics.leaks import detector as leaks
from opsconsole.diagnostics.service import Diagnostics
from opsconsole.repl.helpers import HELPERS, Ops
from testkit.support import FakeClock, Operator, audit_events, call, console_settings, login_token, wait_until


@pytest.fixture
def tokens(console: Console, operators: dict[str, Operator], clock: FakeClock) -> dict[str, str]:
    return {
        "operator": login_token(console.url, operators["alice"], clock()),
        "viewer": login_token(console.url, operators["bob"], clock()),
    }


def test_roles_start_twice_stop_twice_and_audit(console: Console, tokens: dict[str, str]) -> None:
    url, op, viewer = console.url, tokens["operator"], tokens["viewer"]
    status, body = call(url, "GET", "/ops/leaks", token=viewer)
    assert status == 200, body
    assert (body["running"], body["verdict"], body["samples"]) == (False, "insufficient_data", 0)
    assert call(url, "GET", "/ops/leaks")[0] == 401
    assert call(url, "POST", "/ops/leaks/start?interval=1", {}, token=viewer)[0] == 403
    assert call(url, "POST", "/ops/leaks/stop", {}, token=viewer)[0] == 403

    status, body = call(url, "POST", "/ops/leaks/start?interval=1", {}, token=op)
    assert status == 200, body
    assert body["running"] is True and body["interval"] == 1.0
    assert leaks.THREAD_NAME in [t.name for t in threading.enumerate()]
    status, body = call(url, "POST", "/ops/leaks/start?interval=2", {}, token=op)
    assert (status, body["error"]) == (409, "conflict")
    assert "already running every 1 s" in body["message"]

    wait_until(lambda: call(url, "GET", "/ops/leaks", token=viewer)[1]["samples"] >= 2, what="two samples")
    status, body = call(url, "GET", "/ops/leaks", token=viewer)
    assert set(body) >= {"running", "interval", "samples", "verdict", "confidence", "rss_bytes_per_min"}
    assert set(body) >= {"growth", "sites", "history"}
    history = body["history"]
    assert len(history["t"]) == len(history["rss"]) == len(history["traced"]) == body["samples"]
    assert all(isinstance(v, int) and v > 0 for v in history["rss"])
    assert history["traced"] == [None] * body["samples"]  # tracemalloc is off: not needed
    status, text = call(url, "GET", "/ops/leaks?format=text", token=viewer)
    assert status == 200 and "running every 1 s" in text

    status, body = call(url, "POST", "/ops/leaks/stop", {}, token=op)
    assert status == 200 and body["running"] is False and body["samples"] >= 2
    status, body = call(url, "POST", "/ops/leaks/stop", {}, token=op)
    assert (status, body["message"]) == (409, "the leak detector is not running")
    # The report outlives the stop, for a look afterwards.
    assert call(url, "GET", "/ops/leaks", token=viewer)[1]["samples"] >= 2

    events = [e for e in audit_events(console.settings.audit_path) if e["event"].startswith("dump.leaks")]
    assert [(e["event"], e["fields"]["user"]) for e in events] == [
        ("dump.leaks_start", "alice"),
        ("dump.leaks_start", "alice"),  # recorded before it ran, refused or not
        ("dump.leaks_stop", "alice"),
        ("dump.leaks_stop", "alice"),
    ]
    assert events[0]["fields"]["interval"] == 1.0


@pytest.mark.parametrize("interval", ["0.5", "0", "-1", "3601", "abc", "nan"])
def test_a_bad_interval_is_a_clear_400(console: Console, tokens: dict[str, str], interval: str) -> None:
    status, body = call(
        console.url, "POST", f"/ops/leaks/start?interval={interval}", {}, token=tokens["operator"]
    )
    assert status == 400, body
    assert body["error"] == "bad_request"
    assert body["message"].startswith("interval must be")
    assert not console.diagnostics.leak_detector.running


def test_the_setting_starts_it_and_stopping_the_console_stops_it(
    tmp_path: Path, keys_dir: Path, clock: FakeClock
) -> None:
    c = Console(console_settings(tmp_path, keys_dir, leak_interval=5.0), clock=clock).start()
    try:
        assert c.diagnostics.leak_detector.running
        assert c.diagnostics.leaks().interval == 5.0
    finally:
        c.stop()
    assert not c.diagnostics.leak_detector.running
    assert leaks.THREAD_NAME not in [t.name for t in threading.enumerate()]
    started = [e for e in audit_events(c.settings.audit_path) if e["event"] == "dump.leaks_start"]
    assert started and started[0]["fields"]["source"] == "config"


def test_the_repl_helpers_and_the_cli_route(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert {"leaks", "leaks_start", "leaks_stop"} <= set(HELPERS)
    assert ROUTES["leaks"] == ("GET", "/ops/leaks")
    diag = Diagnostics(dump_dir=tmp_path / "dumps")
    ops = Ops(diag, app_loop=None)
    try:
        assert ops.leaks().verdict == "insufficient_data"
        assert "never started" in capsys.readouterr().out
        assert ops.leaks_start(1.0).running
        assert "running every 1 s" in capsys.readouterr().out
        assert not ops.leaks_stop().running
        assert "stopped" in capsys.readouterr().out
    finally:
        diag.close()
