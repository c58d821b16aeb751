"""Reading CPython objects without running host code: one module for every walker.

Namespaces, class attributes and instance attributes are read through CPython's own descriptors
and getsets, never a module subclass's, a metaclass's, a property's or a ``__getattr__``; reading an
instance never materialises its ``__dict__`` (3.11 would add a dict per instance). ``BUILTIN_ATTRS``
lists the attributes of CPython's own types that hold references: ``refchain_labels`` labels a
reference with the first name whose value is the referent, and the ``.heapsnapshot`` walk names its
edges the same way, so the order matters where two attributes can hold the same object. The frame
of a generator or coroutine comes second (``refchain_labels`` reads it to label the frame's locals).
Reading ``cell_contents`` of an empty cell raises ValueError. Runs on whichever thread walks.
"""

from __future__ import annotations

import types
from typing import Any

# Descriptors of CPython's own types, called directly so that reading a module's or a class's
# namespace never runs a module subclass's or a metaclass's code.
_MODULE_DICT: Any = vars(types.ModuleType)["__dict__"]
TYPE_DICT: Any = vars(type)["__dict__"]
TYPE_MRO: Any = vars(type)["__mro__"]
TYPE_DICTOFFSET: Any = vars(type)["__dictoffset__"]
MISSING = object()  # "no such attribute": None is a value an attribute can hold

# Descriptor types whose __get__ is CPython's own (reading them runs no host code).
_PLAIN_GET = (types.FunctionType, staticmethod, classmethod, types.BuiltinFunctionType)

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


def namespace(module: object) -> dict[str, object] | None:
    """A module's globals, or None for other objects (cffi's ``Lib`` passes isinstance but has none)."""
    if not isinstance(module, types.ModuleType):
        return None
    try:
        ns = _MODULE_DICT.__get__(module, types.ModuleType)
    except TypeError:
        return None
    return ns if isinstance(ns, dict) else None


def class_attr(cls: type, name: str) -> object:
    """``name`` as the class and its bases define it (read from their own dicts), or MISSING."""
    for klass in TYPE_MRO.__get__(cls, type):
        ns = TYPE_DICT.__get__(klass, type)
        if name in ns:
            return ns[name]
    return MISSING


def _codes(value: object) -> list[types.CodeType]:
    if isinstance(value, staticmethod | classmethod):
        value = value.__func__
    funcs = [value.fget, value.fset, value.fdel] if isinstance(value, property) else [value]
    todo = [f.__code__ for f in funcs if isinstance(f, types.FunctionType)]
    codes = []
    while todo:  # nested functions, lambdas and comprehensions store attributes too
        code = todo.pop()
        codes.append(code)
        todo.extend(c for c in code.co_consts if isinstance(c, types.CodeType))
    return codes


def attribute_names(cls: type) -> list[str]:
    """Names an instance may hold: annotations and every attribute name the class's methods use.
    Reading the instance's own dict would materialise it on 3.11 (+ a dict per instance)."""
    names: dict[str, None] = {}
    for klass in TYPE_MRO.__get__(cls, type):
        if klass is object:
            continue
        ns = TYPE_DICT.__get__(klass, type)
        annotations = ns.get("__annotations__")
        if isinstance(annotations, dict):
            names.update(dict.fromkeys(k for k in annotations if isinstance(k, str)))
        for value in list(ns.values()):
            for code in _codes(value):
                names.update(dict.fromkeys(code.co_names))
    return list(names)


def instance_value(obj: object, name: str) -> object:
    """The instance's own attribute ``name``, or MISSING; never runs host code (properties, custom
    descriptors and ``__getattr__`` are left alone) and reads inline values without a dict."""
    attr = class_attr(type(obj), name)
    if attr is not MISSING:
        kind = type(attr)
        if class_attr(kind, "__set__") is not MISSING or class_attr(kind, "__delete__") is not MISSING:
            return MISSING
        if class_attr(kind, "__get__") is not MISSING and not isinstance(attr, _PLAIN_GET):
            return MISSING
    try:
        value = object.__getattribute__(obj, name)
    except Exception:
        return MISSING
    return MISSING if value is attr else value
