"""opsconsole: the maintenance endpoint a Python service embeds with one call.

::

    import opsconsole
    console = opsconsole.start(config="opsconsole.toml")   # its own thread and loop
    ...
    console.stop()

Importing this package opens no socket and starts no thread.
"""

from __future__ import annotations

from opsconsole.config import Settings
from opsconsole.console import Console, start
from opsconsole.errors import (
    AuditChainError,
    AuditError,
    AuthError,
    ClientError,
    ConfigError,
    ConsoleError,
    InsecureFileError,
    OpsConsoleError,
)

__all__ = [
    "AuditChainError",
    "AuditError",
    "AuthError",
    "ClientError",
    "ConfigError",
    "Console",
    "ConsoleError",
    "InsecureFileError",
    "OpsConsoleError",
    "Settings",
    "start",
]
__version__ = "0.1.0"
