"""``/ops/ui/``: the web console's static files, served with a strict Content-Security-Policy.

The files are our own page plus xterm.js copied from npm into ``opsconsole/static/vendor``
at install time (see setup.py): no CDN, works offline. Runs on the console IO loop.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import tornado.web

STATIC = Path(__file__).resolve().parents[2] / "static"
# Nothing inline anywhere: scripts, styles and connections only from this origin.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; font-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


class UiFileHandler(tornado.web.StaticFileHandler):
    def set_extra_headers(self, path: str) -> None:
        self.set_header("Content-Security-Policy", CSP)
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Referrer-Policy", "no-referrer")
        self.set_header("Cache-Control", "no-cache")


def ui_routes() -> list[tuple[str, type[tornado.web.RequestHandler], dict[str, Any]]]:
    return [
        (r"/ops/ui", tornado.web.RedirectHandler, {"url": "/ops/ui/"}),
        (r"/ops/ui/vendor/(.*)", UiFileHandler, {"path": str(STATIC / "vendor")}),
        (r"/ops/ui/(.*)", UiFileHandler, {"path": str(STATIC / "ui"), "default_filename": "index.html"}),
    ]
