"""The leak detector's routes: ``GET /ops/leaks`` (viewers too), start and stop (operators).

Thin: the detector lives in the Diagnostics façade. Start and stop only flip a thread on or
off and the report is milliseconds of arithmetic, so all three run on the console IO loop.
"""

from __future__ import annotations

from typing import ClassVar

from opsconsole.auth.principal import Role
from opsconsole.diagnostics.leaks import detector as leaks
from opsconsole.transport.http.base import BaseHandler


class LeaksHandler(BaseHandler):
    """``GET /ops/leaks[?format=text]``: verdict, growth per type, sites, history."""

    def get(self) -> None:
        self.send_result(self.diag.leaks())


class LeaksStartHandler(BaseHandler):
    """``POST /ops/leaks/start?interval=SECONDS``: a new run; 409 while one runs."""

    # Operators only: sampling costs the host CPU, and a viewer should not change what the
    # host pays for.
    required_role: ClassVar[Role | None] = "operator"

    def post(self) -> None:
        interval = self.float_arg("interval", leaks.DEFAULT_INTERVAL, leaks.MIN_INTERVAL, leaks.MAX_INTERVAL)
        self.audit("dump.leaks_start", interval=interval)
        self.send_result(self.diag.leaks_start(interval))


class LeaksStopHandler(BaseHandler):
    """``POST /ops/leaks/stop``: stop sampling, keep the history; 409 when not running."""

    required_role: ClassVar[Role | None] = "operator"

    def post(self) -> None:
        self.audit("dump.leaks_stop")
        self.send_result(self.diag.leaks_stop())
