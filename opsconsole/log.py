"""Named loggers. Every module logs through one of these so operators can tune them.

Secrets, TOTP codes and tokens are never passed to a logger; the audit log is the
record of security events, these loggers are for humans reading a service log.
"""

from __future__ import annotations

import logging

ROOT = "opsconsole"


def get(name: str) -> logging.Logger:
    """Return the logger ``opsconsole.<name>``."""
    return logging.getLogger(f"{ROOT}.{name}")
