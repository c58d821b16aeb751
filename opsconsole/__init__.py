"""opsconsole: the maintenance endpoint a Python service embeds with one call.

::

    import opsconsole
    console = opsconsole.start(config="opsconsole.toml")   # its own thread and loop
    ...
    console.stop()

Importing this package opens no file, socket or thread and loads none of Tornado,
prompt_toolkit, ptpython or paramiko: a service pays for them only when it calls
:func:`start`, and a CLI verb only for what it uses. ``Console``, ``start`` and
``Settings`` are loaded on first access (PEP 562); the exception tree is a plain import.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from opsconsole.errors import (
    AuditChainError,
    AuditError,
    AuthError,
    BudgetError,
    BusyError,
    ClientError,
    ConfigError,
    ConsoleError,
    DiagnosticsError,
    InsecureFileError,
    InvalidRequestError,
    NotFoundError,
    OpsConsoleError,
    ProtocolError,
    StateError,
)

if TYPE_CHECKING:
    from opsconsole.config import Settings
    from opsconsole.console import Console, start

__all__ = [
    "AuditChainError",
    "AuditError",
    "AuthError",
    "BudgetError",
    "BusyError",
    "ClientError",
    "ConfigError",
    "Console",
    "ConsoleError",
    "DiagnosticsError",
    "InsecureFileError",
    "InvalidRequestError",
    "NotFoundError",
    "OpsConsoleError",
    "ProtocolError",
    "Settings",
    "StateError",
    "start",
]
__version__ = "0.1.0"

# public name -> the module that defines it; imported on first access, on the caller's thread
_LAZY = {"Console": "opsconsole.console", "Settings": "opsconsole.config", "start": "opsconsole.console"}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'opsconsole' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
