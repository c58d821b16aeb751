"""The SSH port: a listening socket, an accept thread, one paramiko Transport per connection.

Off unless ``ssh_port`` is set. How a connection logs in is ``two_factor``; what it may
open, ``policy``; what a shell is, ``shell_channel``. This module owns the socket-level
limits: TCP_NODELAY on every accepted socket (keystrokes are tiny writes), the admission of
connections still authenticating (global and per-source caps, random early drop, penalties:
checked at accept, before any crypto is spent), a banner timeout, a login grace timer, and
the algorithm allow-lists.

Threads: ``opsconsole-ssh`` accepts; each connection's paramiko Transport runs on its own
``opsconsole-ssh-<id>`` thread; a grace timer thread per unauthenticated connection.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import socket
import threading
from collections.abc import Callable

import paramiko

from opsconsole import log
from opsconsole.auth.authenticator import Authenticator
from opsconsole.auth.principal import Principal
from opsconsole.config import Settings
from opsconsole.errors import AuditError, ConsoleError
from opsconsole.repl.factory import ReplFactory
from opsconsole.transport.admission import Admission, EarlyDrop, Penalties
from opsconsole.transport.ssh import host_key
from opsconsole.transport.ssh.policy import ConnectionPolicy
from opsconsole.transport.ssh.shell_channel import ShellChannel
from opsconsole.transport.ssh.two_factor import TwoFactorLogin

_log = log.get("transport.ssh")
# Deep enough that a burst of connects from one source cannot crowd another client's SYN
# out of the kernel's queue: who may stay is decided after accept(), by the admission.
BACKLOG = 1024

# Allow-lists, applied as paramiko's disabled_algorithms so an older or newer paramiko
# cannot widen them: no SHA-1 anywhere (no ssh-rsa signatures, no sha1 kex or MACs), no CBC.
ALLOWED: dict[str, frozenset[str]] = {
    "kex": frozenset(
        {
            "mlkem768x25519-sha256",
            "curve25519-sha256@libssh.org",
            "curve25519-sha256",
            "ecdh-sha2-nistp256",
            "ecdh-sha2-nistp384",
            "ecdh-sha2-nistp521",
            "diffie-hellman-group16-sha512",
            "diffie-hellman-group-exchange-sha256",
            "diffie-hellman-group14-sha256",
        }
    ),
    "ciphers": frozenset(
        {"aes128-ctr", "aes192-ctr", "aes256-ctr", "aes128-gcm@openssh.com", "aes256-gcm@openssh.com"}
    ),
    "macs": frozenset(
        {"hmac-sha2-256", "hmac-sha2-512", "hmac-sha2-256-etm@openssh.com", "hmac-sha2-512-etm@openssh.com"}
    ),
    "keys": frozenset({"ssh-ed25519"}),  # our host key
    "pubkeys": frozenset(
        {
            "ssh-ed25519",
            "ecdsa-sha2-nistp256",
            "ecdsa-sha2-nistp384",
            "ecdsa-sha2-nistp521",
            "rsa-sha2-256",
            "rsa-sha2-512",
        }
    ),
}


def disabled_algorithms() -> dict[str, list[str]]:
    # paramiko's own preference lists, minus everything not allowed here
    return {
        kind: [a for a in getattr(paramiko.Transport, f"_preferred_{kind}") if a not in allowed]
        for kind, allowed in ALLOWED.items()
    }


class AuditedTransport(paramiko.Transport):
    """A Transport that audits what paramiko refuses before authentication."""

    refused: Callable[..., None] | None = None  # set per connection: called with (reason, **fields)
    refusals: log.RefusalLog | None = None  # set per connection, with the peer's address
    source = "-"

    ended: Callable[[], None] | None = None  # set per connection: called once when the transport thread ends

    aborted: Callable[[], None] | None = None  # set per connection: paramiko ends authentication on its own

    def close(self) -> None:
        # paramiko's auth handler calls close() on this transport's own thread when it gives up
        # before any server callback (e.g. the user name changed between requests).
        if (
            self.aborted is not None
            and threading.current_thread() is self
            and self.is_active()
            and not self.is_authenticated()
        ):
            self.aborted()
        super().close()

    def _ensure_authed(self, ptype: int, message: paramiko.Message) -> paramiko.Message | None:
        # paramiko answers channel opens and global requests before authentication with a
        # refusal on its own; we only add the audit event.
        reply: paramiko.Message | None = super()._ensure_authed(ptype, message)  # type: ignore[misc]
        if reply is not None and self.refused is not None:
            self.refused("ssh_channel_before_auth", message_type=ptype)
        return reply

    def run(self) -> None:
        # the transport's own thread: paramiko's lines about this connection (a socket
        # closed before the banner logs a traceback) are aggregated like every refusal
        log.bind_thread(self.refusals, self.source)
        try:
            super().run()
        finally:
            if self.ended is not None:
                self.ended()


def _paramiko_cause(record: logging.LogRecord) -> str | None:
    # paramiko logs a failed connection as one headline ("Exception (server): Error reading
    # SSH protocol banner", "Socket exception: ...") and then its traceback line by line:
    # the headline is the refusal, the traceback and per-connection chatter are dropped.
    text = str(record.msg)
    return f"SSH {text.split(':', 1)[0]}" if text.startswith(_PARAMIKO_HEADLINES) else None


_PARAMIKO_HEADLINES = ("Exception (", "Socket exception", "Unknown exception", "Oops, unhandled")


class SshServer:
    """The console's SSH listener. ``start``/``stop`` run on the thread that starts the console."""

    def __init__(
        self,
        settings: Settings,
        *,
        auth: Authenticator,
        repl: ReplFactory,
        record: Callable[..., None],
        refusals: log.RefusalLog | None = None,
        penalties: Penalties | None = None,
        audit_failing: Callable[[], str | None] = lambda: None,
    ) -> None:
        self._settings = settings
        self._refusals = refusals or log.RefusalLog()
        log.route_library("paramiko.transport", _log, _paramiko_cause)
        self._audit_failing = audit_failing
        self._auth = auth
        self._repl = repl
        self._record = record
        # A bad or exposed key file raises here, in the caller, like every other file.
        self.host_key = host_key.load_or_create(settings.ssh_host_key_path)
        self.fingerprint = host_key.fingerprint(self.host_key)
        self.port = 0
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._transports: list[paramiko.Transport] = []
        self._stopping = False
        self.admission = Admission(
            "ssh",
            cap=settings.ssh_max_unauthenticated,
            per_source=settings.ssh_max_unauthenticated_per_source,
            early_drop=EarlyDrop(*settings.early_drop_fractions),
            penalties=penalties
            or Penalties(
                min_seconds=settings.penalty_min, max_seconds=settings.penalty_max, refusals=self._refusals
            ),
        )

    def start(self) -> int:
        host, port = self._settings.host, self._settings.ssh_port or 0
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((host, port))
            listener.listen(BACKLOG)
        except OSError as exc:
            listener.close()
            raise ConsoleError(f"cannot listen for SSH on {host}:{port}: {exc.strerror}") from exc
        self._listener = listener
        self.port = listener.getsockname()[1]
        self._thread = threading.Thread(target=self._accept_loop, name="opsconsole-ssh", daemon=True)
        self._thread.start()
        return self.port

    def stop(self, timeout: float = 3.0) -> None:
        with self._lock:
            self._stopping = True
            transports, self._transports = list(self._transports), []
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)  # wakes accept() on Linux
            listener.close()
        for transport in transports:
            transport.close()
        if self._thread is not None:
            self._thread.join(timeout)

    # -- the accept thread --------------------------------------------------------------------

    def _accept_loop(self) -> None:
        listener = self._listener
        assert listener is not None
        while True:
            try:
                sock, addr = listener.accept()
            except OSError:
                return  # the listener was closed: the console is stopping
            source = str(addr[0])
            with self._lock:
                self._transports = [t for t in self._transports if t.is_active()]
                stopping = self._stopping
            # Not audited: a flood would fill the log. The admission logs; the socket is gone at once.
            if stopping or not self.admission.admit(source, sock).admitted:
                sock.close()
                continue
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            try:
                self._serve(sock, source)
            except Exception as exc:
                self._refusals.refused(
                    _log,
                    logging.ERROR,
                    "SSH start",
                    source,
                    "SSH connection from %s failed to start: %s",
                    source,
                    exc,
                    exc_info=(type(exc), exc, exc.__traceback__),
                )
                self.admission.release(sock)
                sock.close()

    def _serve(self, sock: socket.socket, source: str) -> None:
        connection_id = secrets.token_hex(6)
        transport = AuditedTransport(sock, disabled_algorithms=disabled_algorithms(), strict_kex=True)
        transport.name = f"opsconsole-ssh-{connection_id}"
        transport.add_server_key(self.host_key)
        transport.banner_timeout = self._settings.header_timeout

        def refuse(reason: str, **fields: object) -> None:
            user = str(fields.pop("user", ""))
            # A refusal that cannot be recorded still stands; the audit writer logged why.
            with contextlib.suppress(AuditError):
                self._auth.refuse(reason, source=source, user=user, connection=connection_id, **fields)

        transport.refused = refuse
        transport.refusals, transport.source = self._refusals, source
        grace = threading.Timer(self._settings.ssh_login_grace, self._grace_over, (transport, refuse))
        grace.name = f"opsconsole-ssh-grace-{connection_id}"
        grace.daemon = True
        shells: dict[int, ShellChannel] = {}

        def on_login(principal: Principal) -> None:
            # the transport's thread, once both factors are done. Keepalives start only now:
            # OpenSSH's client answers a global request during authentication by disconnecting.
            grace.cancel()
            transport.set_keepalive(self._settings.ssh_keepalive)
            self.admission.authenticated(sock)

        def ended() -> None:
            grace.cancel()
            self.admission.release(sock, "noauth")  # no-op once authenticated
            # a finished connection must not keep its shells, and their REPL sessions, reachable
            # from the server's list until the next accept
            self._forget(transport)

        transport.ended = ended

        def open_shell(channel: paramiko.Channel, principal: Principal, rows: int, cols: int) -> None:
            shell = ShellChannel(
                channel,
                principal=principal,
                session_id=connection_id,
                repl=self._repl,
                record=self._record,
                refuse=refuse,
                idle_timeout=self._settings.session_idle_timeout,
                max_age=self._settings.session_max_age,
            )
            shells[channel.get_id()] = shell
            shell.start(rows, cols)

        def resize_shell(channel: paramiko.Channel, rows: int, cols: int) -> None:
            shell = shells.get(channel.get_id())
            if shell is not None:
                shell.resize(rows, cols)

        login = TwoFactorLogin(
            auth=self._auth,
            source=source,
            connection_id=connection_id,
            disconnect=transport.close,
            on_login=on_login,
            audit_failing=self._audit_failing,
        )
        policy = ConnectionPolicy(login, open_shell=open_shell, resize_shell=resize_shell)
        transport.aborted = login.aborted
        with self._lock:
            self._transports.append(transport)
        grace.start()
        # With an event, start_server returns at once; the handshake runs on the transport thread.
        transport.start_server(event=threading.Event(), server=policy)

    def _forget(self, transport: paramiko.Transport) -> None:
        # the transport's thread, as it ends
        with self._lock, contextlib.suppress(ValueError):
            self._transports.remove(transport)

    def _grace_over(self, transport: paramiko.Transport, refuse: Callable[..., None]) -> None:
        # the grace timer's thread
        if transport.is_active() and not transport.is_authenticated():
            refuse("ssh_login_grace_expired", seconds=self._settings.ssh_login_grace)
            self.admission.release(transport.sock, "timeout")
            transport.close()
