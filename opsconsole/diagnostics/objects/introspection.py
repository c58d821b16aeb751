"""The attributes of CPython's own types that hold references, one table for every walker.

Each is read through the type's C getset or member descriptor, so reading it never runs host code.
``refchain_labels`` labels a reference with the first name whose value is the referent, and the
``.heapsnapshot`` walk names its edges the same way, so the order matters where two attributes can
hold the same object. The frame of a generator or coroutine comes second (``refchain_labels`` reads
it to label the frame's locals). Reading ``cell_contents`` of an empty cell raises ValueError.
"""

from __future__ import annotations

import types

BUILTIN_ATTRS: dict[type, tuple[str, ...]] = {
    types.FunctionType: (
        "__code__",
        "__globals__",
        "__builtins__",
        "__closure__",
        "__defaults__",
        "__kwdefaults__",
        "__name__",
        "__qualname__",
        "__module__",
        "__doc__",
        "__dict__",
        "__annotations__",
    ),
    types.MethodType: ("__self__", "__func__"),
    types.BuiltinFunctionType: ("__self__",),
    staticmethod: ("__func__",),
    classmethod: ("__func__",),
    property: ("fget", "fset", "fdel", "__doc__"),
    types.TracebackType: ("tb_frame", "tb_next"),
    types.FrameType: ("f_back", "f_code", "f_globals", "f_builtins", "f_trace"),
    types.CellType: ("cell_contents",),
    types.CodeType: (
        "co_code",
        "co_consts",
        "co_names",
        "co_filename",
        "co_name",
        "co_qualname",
        "co_linetable",
    ),
    types.GeneratorType: ("gi_code", "gi_frame"),
    types.CoroutineType: ("cr_code", "cr_frame"),
    types.AsyncGeneratorType: ("ag_code", "ag_frame"),
}


def builtin_attr(obj: object, name: str, default: object) -> object:
    """``obj.name`` for a name from ``BUILTIN_ATTRS``, or ``default`` when unset (or an empty cell)."""
    try:
        return getattr(obj, name, default)
    except ValueError:
        return default
