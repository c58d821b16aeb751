"""How the REPL echoes a value: diagnostics results as text, and never the same result twice.

The ``ops`` helpers print their result as text (so a helper called in a loop or assigned to a
name still shows something) and return the result dataclass (so it can be worked with:
``ops.census().types[0]``). Echoing that dataclass's repr after the text would bury it, so a
helper marks what it printed and the REPL skips echoing exactly that object, once. Any other
diagnostics result the REPL echoes — a name bound to one earlier, ``_`` — is shown as its
text rendering rather than its repr.

The mark is per thread: helpers run on the session thread and the REPL echoes there.
"""

from __future__ import annotations

import threading

from opsconsole.diagnostics.render import to_text
from opsconsole.diagnostics.render.registry import TEXT

_local = threading.local()


def mark_shown(value: object) -> None:
    """A helper has just printed ``value``; the REPL will not echo it. Any thread."""
    _local.shown = value


def take_shown(value: object) -> bool:
    """Whether ``value`` is what a helper printed last on this thread; clears the mark."""
    shown = getattr(_local, "shown", None)
    _local.shown = None
    return shown is not None and shown is value


def forget_shown() -> None:
    """Drop the mark (the session thread, after each eval) so it never keeps a result alive."""
    _local.shown = None


def as_text(value: object) -> str | None:
    """The text rendering of a diagnostics result, or None for any other value."""
    if type(value) in TEXT:
        return to_text(value)
    return None
