"""What one SSH connection may do: two factors in order (``two_factor``), then one shell channel.

paramiko calls this :class:`ConnectionPolicy`'s ``check_*`` methods; the authentication ones
go to the connection's :class:`~opsconsole.transport.ssh.two_factor.TwoFactorLogin`, the
channel ones are decided here: one session channel with a pty and a shell, nothing else (no
exec, subsystem, forwarding, agent or X11), each refusal audited.

Every method runs on the connection's paramiko transport thread.
"""

from __future__ import annotations

from typing import Protocol

import paramiko
from paramiko.common import OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED, OPEN_SUCCEEDED
from paramiko.server import InteractiveQuery

from opsconsole.auth.principal import Principal
from opsconsole.transport.ssh.two_factor import TwoFactorLogin


class ShellOpener(Protocol):
    def __call__(self, channel: paramiko.Channel, principal: Principal, rows: int, cols: int) -> None: ...


class ShellSizer(Protocol):
    def __call__(self, channel: paramiko.Channel, rows: int, cols: int) -> None: ...


class ConnectionPolicy(paramiko.ServerInterface):
    """paramiko's server callbacks for one connection."""

    def __init__(self, login: TwoFactorLogin, *, open_shell: ShellOpener, resize_shell: ShellSizer) -> None:
        self._login = login
        self._open_shell = open_shell
        self._resize_shell = resize_shell
        self._session_channel: int | None = None
        self._pty: dict[int, tuple[int, int]] = {}
        self._shell_started = False

    @property
    def principal(self) -> Principal | None:
        """Who logged in on this connection; None until both factors are done."""
        return self._login.principal

    # -- authentication: the login decides ---------------------------------------------------

    def get_banner(self) -> tuple[str | None, str | None]:
        return self._login.banner()

    def get_allowed_auths(self, username: str) -> str:
        return self._login.allowed_methods()

    def check_auth_none(self, username: str) -> int:
        return self._login.none(username)

    def check_auth_password(self, username: str, password: str) -> int:
        return self._login.password(username)

    def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
        return self._login.publickey(username, key)

    def check_auth_interactive(self, username: str, submethods: str) -> int | InteractiveQuery:
        return self._login.interactive(username)

    def check_auth_interactive_response(self, responses: list[str]) -> int:
        return self._login.interactive_response(responses)

    # -- channels: one session with a pty and a shell; nothing else ----------------------------

    def check_channel_request(self, kind: str, chanid: int) -> int:
        if self._login.principal is None:
            # paramiko refuses these before authentication itself; this is the second lock.
            self._login.refuse("ssh_channel_before_auth", kind=kind[:64])
            return OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED
        if kind != "session" or self._session_channel is not None:
            self._login.refuse("ssh_channel_refused", kind=kind[:64])
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
        if not self._ours(channel) or self._shell_started or self._login.principal is None:
            return False
        self._shell_started = True
        rows, cols = self._pty.get(channel.get_id(), (0, 0))  # no pty request: size unknown
        self._open_shell(channel, self._login.principal, rows, cols)
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
        self._login.refuse("ssh_exec_refused", command=command[:200].decode("utf-8", "replace"))
        return False

    def check_channel_subsystem_request(self, channel: paramiko.Channel, name: str) -> bool:
        self._login.refuse("ssh_subsystem_refused", subsystem=name[:64])
        return False

    def check_channel_direct_tcpip_request(
        self, chanid: int, origin: tuple[str, int], destination: tuple[str, int]
    ) -> int:
        self._login.refuse(
            "ssh_forwarding_refused", kind="direct-tcpip", destination=f"{destination[0]}:{destination[1]}"
        )
        return OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED

    def check_port_forward_request(self, address: str, port: int) -> bool:
        self._login.refuse("ssh_forwarding_refused", kind="tcpip-forward", destination=f"{address}:{port}")
        return False

    def check_global_request(self, kind: str, msg: paramiko.Message) -> bool:
        # OpenSSH sends keepalive and hostkey notices here; refusing them is harmless.
        return False

    def check_channel_forward_agent_request(self, channel: paramiko.Channel) -> bool:
        self._login.refuse("ssh_agent_forwarding_refused")
        return False

    def check_channel_x11_request(
        self,
        channel: paramiko.Channel,
        single_connection: bool,
        auth_protocol: str,
        auth_cookie: bytes,
        screen_number: int,
    ) -> bool:
        self._login.refuse("ssh_x11_refused")
        return False

    def check_channel_env_request(self, channel: paramiko.Channel, name: bytes, value: bytes) -> bool:
        return False  # OpenSSH sends LANG and LC_* by default: refused quietly, not audited

    def _ours(self, channel: paramiko.Channel) -> bool:
        return self._login.principal is not None and channel.get_id() == self._session_channel
