"""The two factors of one SSH connection, in order: a proven key, then a TOTP code.

Like OpenSSH's ``AuthenticationMethods publickey,keyboard-interactive``: only ``publickey`` is
offered until a key is *proven*, then only ``keyboard-interactive``, which asks for the TOTP
code; both steps go through the console's one Authenticator (same keys file and options, same
single-use steps, lockout and audit events as the HTTP login).

The paramiko trap (design notes §2): paramiko calls ``check_auth_publickey`` *before* it
checks the signature, and also for signature-less "would you accept this key?" queries.
Recording the first factor there would let anyone holding the *public* key plus a code in.
So :meth:`TwoFactorLogin.publickey` only says the key is listed; the factor is recorded by a
wrapper around that very key object's ``verify_ssh_sig``, when paramiko's own verification of
the signature over this session succeeds. ``tests/transport/ssh/test_auth.py`` attacks exactly that.

Every decision is audited. paramiko takes a few itself, before any callback here (a user
name that changes between requests, an unreadable public key, a service other than
``ssh-connection``, a 10th failure): it then closes the transport on its own thread, and
``aborted`` records that. When the audit log cannot be written, nothing is decided
without a record: the request fails and the connection is closed.

Every method runs on the connection's paramiko transport thread (``policy`` calls them).
"""

from __future__ import annotations

from collections.abc import Callable

import paramiko
from paramiko.common import AUTH_FAILED, AUTH_PARTIALLY_SUCCESSFUL, AUTH_SUCCESSFUL
from paramiko.server import InteractiveQuery

from opsconsole.auth import sshsig
from opsconsole.auth.authenticator import Authenticator
from opsconsole.auth.keys import AuthorizedKey
from opsconsole.auth.principal import Principal
from opsconsole.errors import AuditError, AuthError

MAX_ATTEMPTS = 6  # failed authentication requests per connection; the next one disconnects
TOTP_PROMPT = "TOTP code: "
DOOR = "ssh"
AUDIT_DOWN_BANNER = (
    "opsconsole: logins are refused while the audit log cannot be written (see the service log).\r\n"
)
ABORT_CAUSE = (
    "paramiko refused a request before any server callback: a user name that changed between "
    "requests, an unreadable public key, a service other than ssh-connection, or a 10th failure"
)


class TwoFactorLogin:
    """The login state of one connection, and the audit of everything refused on it."""

    def __init__(
        self,
        *,
        auth: Authenticator,
        source: str,
        connection_id: str,
        disconnect: Callable[[], None],
        on_login: Callable[[Principal], None],
        audit_failing: Callable[[], str | None] = lambda: None,
    ) -> None:
        self._auth = auth
        self._source = source
        self._connection_id = connection_id
        self._disconnect = disconnect
        self._on_login = on_login
        self._audit_failing = audit_failing
        self._user = ""
        self._proven: AuthorizedKey | None = None  # set only once a signature by the key verified
        self.principal: Principal | None = None
        self._failures = 0
        self._methods: list[str] = []  # every method asked for, in order (for the audit)
        self._closing = False  # set when this login closes the connection itself

    def banner(self) -> tuple[str | None, str | None]:
        # Sent once, before the first method: the one place an SSH client shows our words.
        if self._audit_failing() is None:
            return None, None
        return AUDIT_DOWN_BANNER, "en"

    def allowed_methods(self) -> str:
        return "keyboard-interactive" if self._proven is not None else "publickey"

    def none(self, username: str) -> int:
        # Every OpenSSH client starts with "none" to learn the methods: not an attempt.
        self._asked("none", username)
        return AUTH_FAILED

    def password(self, username: str) -> int:
        self._asked("password", username)
        self._attempt_failed("ssh_method_not_offered", method="password")
        return AUTH_FAILED

    def publickey(self, username: str, key: paramiko.PKey) -> int:
        self._asked("publickey", username)
        if self._over_limit():
            return AUTH_FAILED
        if self._proven is not None:
            self._attempt_failed("ssh_publickey_twice")
            return AUTH_FAILED
        try:
            entry = self._auth.listed_key(username, key.asbytes(), source=self._source)
        except AuthError:
            self._failures += 1  # listed_key audited the reason
            return AUTH_FAILED
        except AuditError:
            return self._audit_down()
        self._prove_on_verify(key, entry)
        # "Partially": paramiko answers a query with PK_OK, and a signed request goes on to
        # the signature check; only the wrapper below can turn it into a proven factor.
        return AUTH_PARTIALLY_SUCCESSFUL

    def _prove_on_verify(self, key: paramiko.PKey, entry: AuthorizedKey) -> None:
        verify = key.verify_ssh_sig

        def verify_then_record(data: bytes, msg: paramiko.Message) -> bool:
            algorithm = paramiko.Message(msg.asbytes()).get_text()
            try:
                sshsig.check_algorithm(entry.key_type, algorithm)  # no ssh-rsa (SHA-1)
            except AuthError as exc:
                self._attempt_failed(f"ssh_{exc.reason}", key=entry.fingerprint, algorithm=algorithm[:64])
                return False
            if not verify(data, msg):
                self._attempt_failed("ssh_bad_signature", key=entry.fingerprint)
                return False
            try:
                self._auth.key_proven(entry, source=self._source, door=DOOR)
            except AuditError:
                self._audit_down()
                return False
            self._proven = entry
            return True

        # This key object is built by paramiko for this one request and verified right after
        # this callback returns; replacing its bound method affects nothing else.
        key.verify_ssh_sig = verify_then_record  # type: ignore[method-assign]

    def interactive(self, username: str) -> int | InteractiveQuery:
        self._asked("keyboard-interactive", username)
        if self._over_limit():
            return AUTH_FAILED
        if self._proven is None:
            self._attempt_failed("ssh_keyboard_interactive_before_publickey")
            return AUTH_FAILED
        return InteractiveQuery("", "", (TOTP_PROMPT, False))

    def interactive_response(self, responses: list[str]) -> int:
        entry = self._proven
        if entry is None or self._over_limit():
            return AUTH_FAILED
        if len(responses) != 1:
            self._attempt_failed("ssh_malformed_response")
            return AUTH_FAILED
        # Authenticator apps show "123 456": the space is not part of the code.
        code = responses[0].strip().replace(" ", "")
        try:
            principal = self._auth.second_factor(entry, code, source=self._source, door=DOOR)
        except AuthError:
            self._failures += 1  # second_factor audited the reason
            return AUTH_FAILED
        except AuditError:
            return self._audit_down()
        self.principal = principal
        self._on_login(principal)
        return AUTH_SUCCESSFUL

    def _asked(self, method: str, username: str) -> None:
        self._user = username[:64]
        if len(self._methods) < 2 * MAX_ATTEMPTS:
            self._methods.append(method)

    def aborted(self) -> None:
        """paramiko is closing the connection during authentication on its own decision.

        Called from the transport's ``close`` on the transport thread; the user is the one
        paramiko holds the connection to (the first name asked for).
        """
        if not self._closing and self.principal is None:
            self._closing = True
            self.refuse("ssh_auth_aborted", methods=list(self._methods), cause=ABORT_CAUSE)

    def _over_limit(self) -> bool:
        if self._failures < MAX_ATTEMPTS:
            return False
        self.refuse("ssh_too_many_attempts", attempts=self._failures + 1)
        self._close()
        return True

    def _audit_down(self) -> int:
        # The decision could not be recorded (the writer logged why): refuse and hang up.
        self._close()
        return AUTH_FAILED

    def _close(self) -> None:
        self._closing = True
        self._disconnect()

    def _attempt_failed(self, reason: str, **fields: object) -> None:
        self._failures += 1
        self.refuse(reason, **fields)

    def refuse(self, reason: str, **fields: object) -> None:
        """Audit a refusal on this connection; one that cannot be recorded closes it."""
        if self.principal is not None:  # refusals inside a login are audited one by one, never folded
            fields.setdefault("session", self._connection_id)
        try:
            self._auth.refuse(
                reason, source=self._source, user=self._user, connection=self._connection_id, **fields
            )
        except AuditError:
            self._close()  # a refusal that cannot be recorded still stands; nothing more is decided
