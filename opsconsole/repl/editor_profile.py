"""How much editor comfort a REPL session buys with the host's CPU: the "lean" and "full" profiles.

ptpython's comfort features run jedi in the host process: completion while typing runs it on
every keystroke, and the signature/docstring pop-ups run it on every text change (ptpython
starts that work even when the pop-ups are hidden). jedi is pure Python and holds the GIL for
tens to hundreds of milliseconds per call — more with a big namespace or tracemalloc on — so
each keystroke can stall every host thread serving traffic.

``lean`` (the default) is for production hosts: no completion while typing, no signature or
docstring pop-ups (and no jedi work for them), completion only when Tab is pressed. The cost
of a keystroke is then a redraw of the input line. Typing stays responsive and the service
does not notice the operator; the one jedi call left is the one the operator asks for.

``full`` is ptpython's interactive experience — completion while typing, signature and
docstring pop-ups — for staging or a host with CPU to spare.

Both profiles keep eval-based (dictionary) completion off: it calls ``__getitem__``/
``__getattr__`` of live host objects while the operator types.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ptpython.python_input import PythonInput

from opsconsole.errors import ConfigError

ProfileName = Literal["lean", "full"]
DEFAULT_PROFILE: ProfileName = "lean"


@dataclass(frozen=True, slots=True)
class EditorProfile:
    name: ProfileName
    complete_while_typing: bool
    show_signature: bool
    show_docstring: bool


PROFILES: dict[str, EditorProfile] = {
    "lean": EditorProfile("lean", complete_while_typing=False, show_signature=False, show_docstring=False),
    "full": EditorProfile("full", complete_while_typing=True, show_signature=True, show_docstring=True),
}


def get(name: str) -> EditorProfile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ConfigError(f'must be "lean" or "full", not {name!r}', key="repl_profile") from None


def apply(repl: PythonInput, profile: EditorProfile) -> None:
    """Set the profile's options on a ptpython input (the session thread, before it runs)."""
    repl.complete_while_typing = profile.complete_while_typing
    repl.show_signature = profile.show_signature
    repl.show_docstring = profile.show_docstring
    repl.enable_dictionary_completion = False
    repl.enable_auto_suggest = False
    repl.enable_history_search = False
