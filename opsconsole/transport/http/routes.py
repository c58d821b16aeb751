"""The one URL table: each route, the handler class that serves it and the module it lives in.

``make_app`` builds the Tornado application from it with the access log; the server that runs
it is ``http_server``. Built on the console thread's own asyncio loop (see ``console.py``).
"""

from __future__ import annotations

import logging
from typing import Any

import tornado.web

from opsconsole import log
from opsconsole.transport.http import (
    auth_handlers,
    base,
    dump_handlers,
    heapsnapshot_handler,
    leak_handlers,
    terminal_socket,
    ui_handlers,
)
from opsconsole.transport.http.base import Services

_log = log.get("transport.http")
_REFUSED = frozenset({401, 403, 429})  # refusals worth a WARNING (aggregated all the same)


def routes(svc: Services | None) -> list[tuple[str, type[tornado.web.RequestHandler], dict[str, Any]]]:
    """The one URL table. docs/openapi.json documents each route (a test compares them)."""
    table: list[tuple[str, type[tornado.web.RequestHandler]]] = [
        (r"/ops/auth/challenge", auth_handlers.ChallengeHandler),
        (r"/ops/auth/login", auth_handlers.LoginHandler),
        (r"/ops/auth/logout", auth_handlers.LogoutHandler),
        (r"/ops/auth/ticket", auth_handlers.TicketHandler),
        (r"/ops/auth/redeem", auth_handlers.RedeemHandler),
        (r"/ops/whoami", auth_handlers.WhoamiHandler),
        (r"/ops/threads", dump_handlers.ThreadsHandler),
        (r"/ops/gc", dump_handlers.GcHandler),
        (r"/ops/gc/monitor", dump_handlers.GcMonitorHandler),
        (r"/ops/process", dump_handlers.ProcessHandler),
        (r"/ops/objects", dump_handlers.ObjectsHandler),
        (r"/ops/objects/baseline", dump_handlers.BaselineHandler),
        (r"/ops/objects/growth", dump_handlers.GrowthHandler),
        (r"/ops/objects/refchain", dump_handlers.RefchainHandler),
        (r"/ops/heap", dump_handlers.HeapHandler),
        (r"/ops/heap/start", dump_handlers.HeapStartHandler),
        (r"/ops/heap/stop", dump_handlers.HeapStopHandler),
        (r"/ops/heap/snapshots", dump_handlers.SnapshotsHandler),
        (r"/ops/heap/snapshots/([^/]+)", dump_handlers.SnapshotHandler),
        (r"/ops/heap/snapshots/([^/]+)/top", dump_handlers.SnapshotTopHandler),
        (r"/ops/heap/diff", dump_handlers.DiffHandler),
        (r"/ops/profile", dump_handlers.ProfileHandler),
        (r"/ops/heapsnapshot", heapsnapshot_handler.HeapSnapshotHandler),
        (r"/ops/leaks", leak_handlers.LeaksHandler),
        (r"/ops/leaks/start", leak_handlers.LeaksStartHandler),
        (r"/ops/leaks/stop", leak_handlers.LeaksStopHandler),
        (r"/ops/terminal", terminal_socket.TerminalHandler),
    ]
    return [(pattern, handler, {"svc": svc}) for pattern, handler in table]


def make_app(svc: Services) -> tornado.web.Application:
    return tornado.web.Application(
        [*routes(svc), *ui_handlers.ui_routes()],
        default_handler_class=base.NotFoundHandler,
        default_handler_args={"svc": svc},
        xsrf_cookies=False,  # cookie POSTs are checked against the Origin allow-list instead
        log_function=lambda handler: _log_request(svc.refusals, handler),
        compress_response=False,
        websocket_ping_interval=svc.settings.ws_ping_interval,
        websocket_ping_timeout=svc.settings.ws_ping_interval,
        websocket_max_message_size=terminal_socket.HARD_MAX_MESSAGE,
    )


def _log_request(refusals: log.RefusalLog, handler: tornado.web.RequestHandler) -> None:
    # The path only: query strings and headers could one day carry something secret.
    # An operator's own requests get a line each; everything else (refusals, and requests
    # made before any login) is aggregated, since anyone can send those by the thousand.
    status = handler.get_status()
    method, path, ms = handler.request.method, handler.request.path, 1000.0 * handler.request.request_time()
    if getattr(handler, "session", None) is not None and status < 400:
        _log.info("%d %s %s %.1fms", status, method, path, ms)
        return
    source = handler.request.remote_ip or "unknown"
    reason = getattr(handler, "refusal_reason", "")
    refusals.refused(
        _log,
        logging.WARNING if status in _REFUSED else logging.INFO,
        f"HTTP {status}" if status >= 400 else f"HTTP {status} {method} {path}",
        source,
        "%d %s %s from %s%s",
        status,
        method,
        path[:200],
        source,
        f": {reason}" if reason else "",
    )
