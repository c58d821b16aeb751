"""prompt_toolkit's filter combinations, made unable to keep a closed REPL session alive.

prompt_toolkit memoizes ``a & b`` and ``a | b`` on the left operand: ``a._and_cache[b]`` keeps
``b`` and the combination for as long as ``a`` lives. ptpython builds its layout and key
bindings by combining prompt_toolkit's process-wide filters (``is_done``, ``~is_done``,
``has_completions``, ``in_editing_mode(...)``...) with Conditions of its own that close over
one session's ``PythonInput`` (``Condition(lambda: python_input.show_exit_confirmation)``).
Every ``process_wide & per_session`` so put the per-session filter — and through its closure
the REPL, its application, namespace, streams and recording — into a dict of an object that
lives as long as the process: every closed terminal would stay in memory, and a full
``gc.collect()`` would free none of it.

The cut, at the source: :func:`install` gives ``Filter`` two data descriptors named
``_and_cache`` and ``_or_cache`` that stand for a cache that remembers nothing. A data
descriptor on the class wins over the instance's own attribute, so the filters created at
import time (the process-wide ones) are covered as well as every later one; ``Filter.__init__``
assigning a fresh dict is ignored. Each ``&``/``|`` then builds a new combination, which lives
exactly as long as what uses it. Combinations are made when a layout or a key binding is built
(a few hundred per session), not per frame, so nothing measurable is lost. ``~f`` stays cached
on ``f``: it refers to ``f`` alone.

Shape check and fallback: :func:`install` first probes whether a combination keeps its right
operand alive. If the installed prompt_toolkit does not (a version that fixed it), nothing is
changed. If it does but its filters do not have the two dicts this module replaces (the library
changed shape), nothing is patched and one warning says that closed sessions may stay in
memory; ``tests/acceptance/test_session_churn.py`` fails in that case, so an upgrade cannot hide it.
"""

from __future__ import annotations

import functools
import threading
import weakref
from typing import Literal

import prompt_toolkit
from prompt_toolkit.filters import Condition, Filter

from opsconsole import log

_log = log.get("repl.filter_cache")
CACHES = ("_and_cache", "_or_cache")
State = Literal["not_needed", "installed", "unsupported"]

_lock = threading.Lock()


class _Forgetful:
    """Stands for one filter's combination cache: it never holds a key or a value."""

    def __contains__(self, key: object) -> bool:
        return False

    def __getitem__(self, key: object) -> Filter:
        raise KeyError(key)

    def __setitem__(self, key: object, value: object) -> None:
        pass

    def __len__(self) -> int:
        return 0

    def clear(self) -> None:
        pass


_FORGETFUL = _Forgetful()


class _CacheSlot:
    """The data descriptor put on ``Filter`` for each cache attribute."""

    def __get__(self, obj: object, owner: type | None = None) -> object:
        return self if obj is None else _FORGETFUL

    def __set__(self, obj: object, value: object) -> None:
        pass  # Filter.__init__ assigns a fresh dict: nothing to keep


def _never() -> bool:
    return False


def combination_keeps_operand() -> bool:
    """Whether ``lasting & x`` (or ``|``, or with ``~lasting``) keeps ``x`` alive. Any thread.

    No garbage collection is needed: without a cache the probe is freed by reference counting.
    """
    lasting = Condition(_never)  # stands for a process-wide filter such as is_done
    inverted = ~lasting
    probe = Condition(_never)
    ref = weakref.ref(probe)
    made = [lasting & probe, lasting | probe, inverted & probe, inverted | probe]
    del made, probe
    return ref() is not None


def _has_known_shape() -> bool:
    attributes = vars(Condition(_never))
    return all(isinstance(attributes.get(name), dict) for name in CACHES)


def install() -> State:
    """Make filter combinations forgetful, once per process; idempotent. Any thread."""
    with _lock:
        return _install_once()


@functools.cache
def _install_once() -> State:
    # under _lock
    if not combination_keeps_operand():
        return "not_needed"
    if _has_known_shape():
        for name in CACHES:
            setattr(Filter, name, _CacheSlot())
        if not combination_keeps_operand():
            return "installed"
        for name in CACHES:  # kept some other way: take ours back out
            delattr(Filter, name)
    _log.warning(
        "prompt_toolkit %s keeps filter combinations in a way opsconsole does not know: "
        "closed REPL sessions may stay in memory",
        prompt_toolkit.__version__,
    )
    return "unsupported"
