"""One-time browser tickets: a logged-in CLI trades its token for a link the browser redeems.

The ticket travels in the URL fragment (never sent to a server, never in a log), is
single use and lives at most 60 s. Redeeming it opens a *new* session for the same
principal, carried by an HttpOnly cookie, so the CLI's token never reaches the browser.
Thread-safe.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from opsconsole.auth.principal import Principal
from opsconsole.errors import AuthError

TICKET_BYTES = 32
TICKET_TTL = 60.0
MAX_OUTSTANDING = 1_000


@dataclass(frozen=True, slots=True)
class _Ticket:
    principal: Principal
    expires_at: float


class TicketStore:
    def __init__(self, *, ttl: float = TICKET_TTL, clock: Callable[[], float] = time.time) -> None:
        self._ttl = min(ttl, TICKET_TTL)
        self._clock = clock
        self._lock = threading.Lock()
        self._tickets: OrderedDict[str, _Ticket] = OrderedDict()

    @property
    def ttl(self) -> float:
        return self._ttl

    def issue(self, principal: Principal) -> str:
        ticket = secrets.token_urlsafe(TICKET_BYTES)
        with self._lock:
            self._tickets[_digest(ticket)] = _Ticket(principal, self._clock() + self._ttl)
            while len(self._tickets) > MAX_OUTSTANDING:
                self._tickets.popitem(last=False)
        return ticket

    def redeem(self, ticket: str) -> Principal:
        """Consume ``ticket`` (gone whatever the outcome); raises AuthError."""
        with self._lock:
            entry = self._tickets.pop(_digest(ticket), None)
        if entry is None:
            raise AuthError("ticket_unknown", "not issued, already used or dropped")
        if self._clock() > entry.expires_at:
            raise AuthError("ticket_expired")
        return entry.principal


def _digest(ticket: str) -> str:
    return hashlib.sha256(ticket.encode("utf-8", "surrogatepass")).hexdigest()
