"""The HTTP door's rule for requests without a session, and its cheap 429 below the handlers.

The rule, one for the whole door: a request that carries no valid session counts against its
source's :class:`~opsconsole.auth.sources.RequestRate`; past the rate it gets 429 with
``Retry-After`` and the body ``{"error": "rate_limited", ...}``, before its body is read,
before any JSON parsing, signature check or route. A request with a live session is never
limited.

Two places apply it. :class:`RequestGate` runs on every request as soon as its headers are
in, below Tornado's RequestHandler (``http_server``): if the source's bucket is empty and
the request carries no live session, the gate writes a canned 429 on the connection itself
and closes it (``Connection: close``, requests pipelined behind it dropped unread), so a
flood costs a header parse and a dictionary lookup per connection, and the connection's
close penalises the source (``admission.COSTS["rate"]``). A
request the gate lets through is counted by the handler (``SessionHandler
.limit_unauthenticated``) once it is known to carry no valid session, which also answers
429 where no gate runs.

Runs on the console loop.
"""

from __future__ import annotations

import json
import logging
import math

import tornado.http1connection
import tornado.httputil
import tornado.ioloop
import tornado.iostream

from opsconsole import log
from opsconsole.auth.authenticator import Authenticator
from opsconsole.auth.sources import RateVerdict, RequestRate
from opsconsole.errors import AuthError

_log = log.get("transport.http")
COOKIE = "opsconsole_session"
RATE_CODE = "rate_limited"
RATE_MESSAGE = "too many requests without a session; retry later"
WRITE_TIMEOUT = 5.0  # seconds a refused connection may take to take its 429
_BODY = json.dumps({"error": RATE_CODE, "message": RATE_MESSAGE}, separators=(",", ":")).encode()
_HEAD = (
    "HTTP/1.1 429 Too Many Requests\r\n"
    "Content-Type: application/json; charset=utf-8\r\n"
    f"Content-Length: {len(_BODY)}\r\n"
    "Cache-Control: no-store\r\n"
    "X-Content-Type-Options: nosniff\r\n"
    "Connection: close\r\n"
    "Retry-After: "
).encode()


def credentials(headers: tornado.httputil.HTTPHeaders) -> tuple[str | None, str]:
    """(token, "header" | "cookie" | "none"); tokens are never read from a URL or a query."""
    scheme, _, token = headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip(), "header"
    raw = headers.get("Cookie")
    if raw:
        cookie = tornado.httputil.parse_cookie(raw).get(COOKIE)
        if cookie:
            return cookie, "cookie"
    return None, "none"


class RequestGate:
    """Refuses requests without a live session from sources over their rate (console loop)."""

    def __init__(self, rate: RequestRate, auth: Authenticator, refusals: log.RefusalLog) -> None:
        self.rate = rate
        self._auth = auth
        self._refusals = refusals

    def verdict(self, address: str, headers: tornado.httputil.HTTPHeaders) -> RateVerdict | None:
        """The refusal for this request, or None to let it through (counts nothing)."""
        verdict = self.rate.peek(address)
        if verdict.allowed:
            return None  # the common case: no header is even looked at
        token, _ = credentials(headers)
        if token is not None:
            try:
                self._auth.session(token, touch=False)  # a lookup only: idle timers untouched
            except AuthError:
                pass
            else:
                return None
        return verdict

    def refuse(
        self,
        conn: tornado.http1connection.HTTP1Connection,
        start_line: tornado.httputil.RequestStartLine,
        verdict: RateVerdict,
    ) -> None:
        """Answer 429 and close the connection once that is written; nothing else is read.

        Called from ``headers_received``. The connection is detached from Tornado's HTTP
        loop first: requests the client pipelined behind this one, already in the stream's
        buffer, are dropped unparsed instead of each being answered on a closing stream.
        """
        stream = conn.detach()
        answer = _HEAD + b"%d\r\n\r\n" % math.ceil(verdict.retry_after)
        try:
            written = stream.write(answer if start_line.method == "HEAD" else answer + _BODY)
        except tornado.iostream.StreamClosedError:
            return  # the client has gone already
        if written.done():
            stream.close()  # the usual case: the answer went out at once
        else:
            # Detached, the stream no longer counts against any cap: a client that does not
            # read must not keep it open. Closed when written, or after WRITE_TIMEOUT anyway.
            written.add_done_callback(lambda _: stream.close())
            tornado.ioloop.IOLoop.current().call_later(WRITE_TIMEOUT, stream.close)
        self._refusals.refused(
            _log,
            logging.WARNING,
            "HTTP 429",
            verdict.source,
            "429 %s %s from %s: unauthenticated rate",
            start_line.method,
            start_line.path.partition("?")[0][:200],
            verdict.source,
        )
