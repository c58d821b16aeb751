"""What one SSH connection may do: two factors in order, then one shell channel.

Like OpenSSH's ``AuthenticationMethods publickey,keyboard-interactive``: only ``publickey`` is
offered until a key is *proven*, then only ``keyboard-interactive``, which asks for the TOTP
code; both steps go through the console's one Authenticator (same keys file and options, same
single-use steps, lockout and audit events as the HTTP login).

The paramiko trap (design notes §2): paramiko calls ``check_auth_publickey`` *before* it
checks the signature, and also for signature-less "would you accept this key?" queries.
Recording the first factor there would let anyone holding the *public* key plus a code in.
So ``check_auth_publickey`` only says the key is listed; the factor is recorded by a wrapper
around that very key object's ``verify_ssh_sig``, when paramiko's own verification of the
signature over this session succeeds. ``tests/test_ssh_auth.py`` attacks exactly that.

Every decision is audited. paramiko takes a few itself, before any callback here (a user
name that changes between requests, an unreadable public key, a service other than
``ssh-connection``, a 10th failure): it then closes the transport on its own thread, and
``aborted`` records that. When the audit log cannot be written, nothing is decided
without a record: the request fails and the connection is closed.

Every method runs on the connection's paramiko transport thread.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import paramiko
from paramiko.common import (
    AUTH_FAILED,
    AUTH_PARTIALLY_SUCCESSFUL,
    AUTH_SUCCESSFUL,
    OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED,
    OPEN_SUCCEEDED,
)
from paramiko.server import InteractiveQuery

from opsconsole import log
from opsconsole.auth import sshsig
from opsconsole.auth.authenticator import Authenticator
from opsconsole.auth.keys import AuthorizedKey
from opsconsole.auth.principal import Principal
from opsconsole.errors import AuditError, AuthError

_log = log.get("transport.ssh")
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


class ShellOpener(Protocol):
    def __call__(self, channel: paramiko.Channel, principal: Principal, rows: int, cols: int) -> None: ...


class ShellSizer(Protocol):
    def __call__(self, channel: paramiko.Channel, rows: int, cols: int) -> None: ...


class ConnectionPolicy(paramiko.ServerInterface):
    """paramiko's server callbacks for one connection."""

    def __init__(
        self,
        *,
        auth: Authenticator,
        source: str,
        connection_id: str,
        disconnect: Callable[[], None],
        on_login: Callable[[Principal], None],
        open_shell: ShellOpener,
        resize_shell: ShellSizer,
        audit_failing: Callable[[], str | None] = lambda: None,
    ) -> None:
        self._auth = auth
        self._source = source
        self._connection_id = connection_id
        self._disconnect = disconnect
        self._on_login = on_login
        self._open_shell = open_shell
        self._resize_shell = resize_shell
        self._audit_failing = audit_failing
        self._user = ""
        self._proven: AuthorizedKey | None = None  # set only once a signature by the key verified
        self.principal: Principal | None = None
        self._failures = 0
        self._methods: list[str] = []  # every method asked for, in order (for the audit)
        self._closing = False  # set when this policy closes the connection itself
        self._session_channel: int | None = None
        self._pty: dict[int, tuple[int, int]] = {}
        self._shell_started = False

    # -- authentication ----------------------------------------------------------------------

    def get_banner(self) -> tuple[str | None, str | None]:
        # Sent once, before the first method: the one place an SSH client shows our words.
        if self._audit_failing() is None:
            return None, None
        return AUDIT_DOWN_BANNER, "en"

    def get_allowed_auths(self, username: str) -> str:
        return "keyboard-interactive" if self._proven is not None else "publickey"

    def check_auth_none(self, username: str) -> int:
        # Every OpenSSH client starts with "none" to learn the methods: not an attempt.
        self._asked("none", username)
        return AUTH_FAILED

    def check_auth_password(self, username: str, password: str) -> int:
        self._asked("password", username)
        self._attempt_failed("ssh_method_not_offered", method="password")
        return AUTH_FAILED

    def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
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

    def check_auth_interactive(self, username: str, submethods: str) -> int | InteractiveQuery:
        self._asked("keyboard-interactive", username)
        if self._over_limit():
            return AUTH_FAILED
        if self._proven is None:
            self._attempt_failed("ssh_keyboard_interactive_before_publickey")
            return AUTH_FAILED
        return InteractiveQuery("", "", (TOTP_PROMPT, False))

    def check_auth_interactive_response(self, responses: list[str]) -> int:
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
            self._refuse("ssh_auth_aborted", methods=list(self._methods), cause=ABORT_CAUSE)

    def _over_limit(self) -> bool:
        if self._failures < MAX_ATTEMPTS:
            return False
        self._refuse("ssh_too_many_attempts", attempts=self._failures + 1)
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
        self._refuse(reason, **fields)

    def _refuse(self, reason: str, **fields: object) -> None:
        if self.principal is not None:  # refusals inside a login are audited one by one, never folded
            fields.setdefault("session", self._connection_id)
        try:
            self._auth.refuse(
                reason, source=self._source, user=self._user, connection=self._connection_id, **fields
            )
        except AuditError:
            self._close()  # a refusal that cannot be recorded still stands; nothing more is decided

    # -- channels: one session with a pty and a shell; nothing else ----------------------------

    def check_channel_request(self, kind: str, chanid: int) -> int:
        if self.principal is None:
            # paramiko refuses these before authentication itself; this is the second lock.
            self._refuse("ssh_channel_before_auth", kind=kind[:64])
            return OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED
        if kind != "session" or self._session_channel is not None:
            self._refuse("ssh_channel_refused", kind=kind[:64])
            return OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED
        self._session_channel = chanid
        return OPEN_SUCCEEDED

    def check_channel_pty_request(  # noqa: PLR0917 (paramiko calls it positionally)
        self,
        channel: paramiko.Channel,
        term: bytes,
        width: int,
        height: int,
        pixelwidth: int,
        pixelheight: int,
        modes: bytes,
    ) -> bool:
        if not self._ours(channel) or self._shell_started:
            return False
        self._pty[channel.get_id()] = (height, width)
        return True

    def check_channel_shell_request(self, channel: paramiko.Channel) -> bool:
        if not self._ours(channel) or self._shell_started or self.principal is None:
            return False
        self._shell_started = True
        rows, cols = self._pty.get(channel.get_id(), (24, 80))
        self._open_shell(channel, self.principal, rows, cols)
        return True

    def check_channel_window_change_request(
        self, channel: paramiko.Channel, width: int, height: int, pixelwidth: int, pixelheight: int
    ) -> bool:
        if not self._ours(channel):
            return False
        self._pty[channel.get_id()] = (height, width)
        if self._shell_started:
            self._resize_shell(channel, height, width)
        return True

    def check_channel_exec_request(self, channel: paramiko.Channel, command: bytes) -> bool:
        self._refuse("ssh_exec_refused", command=command[:200].decode("utf-8", "replace"))
        return False

    def check_channel_subsystem_request(self, channel: paramiko.Channel, name: str) -> bool:
        self._refuse("ssh_subsystem_refused", subsystem=name[:64])
        return False

    def check_channel_direct_tcpip_request(
        self, chanid: int, origin: tuple[str, int], destination: tuple[str, int]
    ) -> int:
        self._refuse(
            "ssh_forwarding_refused", kind="direct-tcpip", destination=f"{destination[0]}:{destination[1]}"
        )
        return OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED

    def check_port_forward_request(self, address: str, port: int) -> bool:
        self._refuse("ssh_forwarding_refused", kind="tcpip-forward", destination=f"{address}:{port}")
        return False

    def check_global_request(self, kind: str, msg: paramiko.Message) -> bool:
        # OpenSSH sends keepalive and hostkey notices here; refusing them is harmless.
        return False

    def check_channel_forward_agent_request(self, channel: paramiko.Channel) -> bool:
        self._refuse("ssh_agent_forwarding_refused")
        return False

    def check_channel_x11_request(
        self,
        channel: paramiko.Channel,
        single_connection: bool,
        auth_protocol: str,
        auth_cookie: bytes,
        screen_number: int,
    ) -> bool:
        self._refuse("ssh_x11_refused")
        return False

    def check_channel_env_request(self, channel: paramiko.Channel, name: bytes, value: bytes) -> bool:
        return False  # OpenSSH sends LANG and LC_* by default: refused quietly, not audited

    def _ours(self, channel: paramiko.Channel) -> bool:
        return self.principal is not None and channel.get_id() == self._session_channel
