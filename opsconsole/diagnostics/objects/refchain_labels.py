"""How one object on a found reference chain is described: the step labels and short summaries.

Computed only for the few objects on the chain ``refchain`` found, after the walk. Nothing here runs
host code: namespaces, slots and attributes are read through CPython's own descriptors and getsets
(never a module subclass's, a metaclass's, a property's or a ``__getattr__``), keys are shown only when
their repr is CPython's own, and a summary never holds the contents of a str or bytes.
"""

from __future__ import annotations

import sys
import types

from opsconsole.diagnostics.objects.census import type_name
from opsconsole.diagnostics.objects.introspection import (
    BUILTIN_ATTRS,
    MISSING,
    TYPE_DICT,
    TYPE_DICTOFFSET,
    TYPE_MRO,
    attribute_names,
    builtin_attr,
    instance_value,
    namespace,
)

_SIMPLE_KEYS = (str, bytes, int, float, bool, type(None))
_SIZED = (str, bytes, bytearray, list, tuple, dict, set, frozenset)
_RUNNING = (types.GeneratorType, types.CoroutineType, types.AsyncGeneratorType)
_EXC_ATTRS = ("args", "__traceback__", "__context__", "__cause__")


def _slot_or_attribute(obj: object, child: object) -> str | None:
    cls = type(obj)
    for klass in TYPE_MRO.__get__(cls, type):
        for key, attr in list(TYPE_DICT.__get__(klass, type).items()):
            if type(attr) is types.MemberDescriptorType:
                try:
                    if attr.__get__(obj, cls) is child:
                        return f".{key}"
                except AttributeError:  # an empty slot
                    continue
    for name in attribute_names(cls):
        if instance_value(obj, name) is child:
            return f".{name}"
    return None


def _is_namespace(parent: object, child: object) -> bool:
    """Is ``child`` the __dict__ of module, class or instance ``parent``? Without materialising one."""
    if type(child) is not dict:
        return False
    if isinstance(parent, types.ModuleType):
        return child is namespace(parent)
    items = list(child.items())
    if isinstance(parent, type):
        ns = TYPE_DICT.__get__(parent, type)
        return len(ns) == len(items) and all(ns.get(k, MISSING) is v for k, v in items)
    if TYPE_DICTOFFSET.__get__(type(parent), type) == 0 or _slot_or_attribute(parent, child) is not None:
        return False
    # A materialised instance dict: every key reads back (inline lookup, no new dict) as its value.
    if not items or not all(isinstance(k, str) for k, _ in items):
        return False
    return all(instance_value(parent, k) is v for k, v in items)


def dict_key(d: dict[object, object], child: object) -> object:
    for key, value in list(dict.items(d)):
        if value is child:
            return key
    return MISSING


def _plain(key: object) -> bool:
    """Is repr(key) CPython's own (no host __repr__ runs)? Atoms, and small tuples of them."""
    if type(key) is tuple:
        return len(key) <= 8 and all(_plain(k) for k in key)
    return type(key) in _SIMPLE_KEYS


def dict_key_label(key: object) -> str:
    if _plain(key):
        text = repr(key)
        return f"[{text[:77]}...]" if len(text) > 80 else f"[{text}]"
    return f"[<{type_name(type(key))} object>]"  # a host __repr__ is never called


def _frame_local(frame: object, child: object) -> str | None:
    if not isinstance(frame, types.FrameType):
        return None
    for key, value in list(frame.f_locals.items()):  # read once, for a frame on the chain only
        if value is child:
            return f"local {key}"
    return None


def _container_label(parent: object, child: object) -> str | None:
    if isinstance(parent, dict):
        key = dict_key(parent, child)
        if key is not MISSING:
            return dict_key_label(key)
        if any(k is child for k in list(dict.keys(parent))):
            return f"key {type_name(type(child))}"
    elif isinstance(parent, list | tuple):
        items = list.copy(parent) if isinstance(parent, list) else tuple.__getitem__(parent, slice(None))
        for i, value in enumerate(items):
            if value is child:
                return f"[{i}]"
    elif isinstance(parent, set | frozenset):
        return "{member}"
    elif type(parent) is types.CellType:
        return ".cell_contents"
    return None


def _builtin_attr_label(parent: object, child: object) -> str | None:
    kind = type(parent)
    for name in BUILTIN_ATTRS.get(kind, ()):  # CPython's own getsets: no host code runs
        if builtin_attr(parent, name, None) is child:
            return f".{name}"
    if kind in _RUNNING:
        return _frame_local(builtin_attr(parent, BUILTIN_ATTRS[kind][1], None), child)
    if isinstance(parent, BaseException):
        for name in _EXC_ATTRS:
            if vars(BaseException)[name].__get__(parent, kind) is child:
                return f".{name}"
    if isinstance(parent, type):
        for name in ("__mro__", "__bases__", "__base__"):
            if vars(type)[name].__get__(parent, type) is child:
                return f".{name}"
    return _frame_local(parent, child)


def link_label(parent: object, child: object) -> str:
    """How ``parent`` refers to ``child``, for humans: [key], [i], .attr, local x, ..."""
    found = _container_label(parent, child)
    if found is None and _is_namespace(parent, child):
        found = ".__dict__"
    if found is None:
        found = _builtin_attr_label(parent, child)
    if found is None and not isinstance(parent, type | types.ModuleType):
        found = _slot_or_attribute(parent, child)
    return found if found is not None else f"referent of {type_name(type(parent))}"


def summary(obj: object) -> str:
    """Short and safe: lengths and names only. Never a str/bytes repr (secrets), never a host __repr__."""
    kind = type(obj)
    text = ""
    if kind in _SIZED:
        text = f"len {len(obj)}"  # type: ignore[arg-type]
    elif isinstance(obj, types.ModuleType):
        text = f"module {(namespace(obj) or {}).get('__name__', '?')}"
    elif isinstance(obj, type):
        text = f"class {type_name(obj)}"
    elif isinstance(obj, types.FunctionType):
        text = f"function {obj.__qualname__}"
    elif isinstance(obj, types.FrameType):
        text = f"{obj.f_code.co_name} ({obj.f_code.co_filename}:{obj.f_lineno})"
    elif kind in _RUNNING:
        text = str(getattr(obj, "__qualname__", ""))
    elif obj is None or kind is bool:
        text = repr(obj)
    return text


def object_size(obj: object) -> int:
    try:
        return sys.getsizeof(obj)
    except Exception:  # a host __sizeof__ may raise
        return 0
