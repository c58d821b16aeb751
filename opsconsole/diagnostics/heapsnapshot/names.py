"""What the ``.heapsnapshot`` calls things: node types and names, edge names, and the redaction rule.

Chrome DevTools groups the Summary view by node name, so an instance is named by its class
(``module.QualName``, as the census names it), a class ``class module.QualName``, a module by its
``__name__``, a function or code object by its qualified name. str and bytes are ``string`` nodes:
redacted by default to their type and length (``(str, 12 chars)``), with their contents only on an
explicit request. Dict keys that are str name their edge; by default only keys that look like names
from code do, any other key (a token, an e-mail address...) is replaced by its type and length too.

Nothing here runs host code: names come from CPython's own getsets and descriptors, never from a
host ``__repr__``, property or ``__getattr__``. Runs on the thread doing the export.
"""

from __future__ import annotations

import json
import sys
import types
from collections.abc import Callable
from itertools import repeat
from operator import add, mul
from typing import Any

from opsconsole.diagnostics.objects.census import shallow_sizes, type_name
from opsconsole.diagnostics.objects.introspection import (
    BUILTIN_ATTRS,
    MISSING,
    attribute_names,
    class_attr,
    namespace,
)

NODE_TYPES = (
    "hidden",
    "array",
    "string",
    "object",
    "code",
    "closure",
    "regexp",
    "number",
    "native",
    "synthetic",
    "concatenated string",
    "sliced string",
    "symbol",
    "bigint",
    "object shape",
)
EDGE_TYPES = ("context", "element", "property", "internal", "hidden", "shortcut", "weak")
N_STRING, N_OBJECT, N_CODE, N_CLOSURE, N_NUMBER, N_SYNTHETIC = 2, 3, 4, 5, 7, 9
E_ELEMENT, E_PROPERTY, E_INTERNAL = 1, 2, 3

_TYPE_QUALNAME: Any = vars(type)["__qualname__"]
_FUNC_QUALNAME: Any = vars(types.FunctionType)["__qualname__"]
_CODE_QUALNAME: Any = vars(types.CodeType)["co_qualname"]
_ITEMSIZE: Any = vars(type)["__itemsize__"]
_OBJECT_SIZEOF = vars(object)["__sizeof__"]
_TUPLE_ITEM = _ITEMSIZE.__get__(tuple, type)
_TUPLE_HEAD = sys.getsizeof(())  # includes the GC header, as getsizeof counts it
_HEAPTYPE = 1 << 9  # Py_TPFLAGS_HEAPTYPE: a class made by a class statement (its instances are "objects")

# How the walk treats each kind of object (the ``how`` of ``Kind``).
ATOM, LIST, TUPLE, DICT, MODULE, CLASS, INSTANCE, PROBED, MEMBERS, OTHER = range(10)
_CLOSURE_IDS = frozenset(
    map(id, (types.FunctionType, types.BuiltinFunctionType, types.MethodType, types.MethodWrapperType))
)
PROBES = BUILTIN_ATTRS  # named referents of builtin kinds (read through CPython's own getsets)


class Strings:
    """The snapshot's string table: each distinct text once, by index."""

    __slots__ = ("index", "items")

    def __init__(self) -> None:
        self.index: dict[str, int] = {"": 0}
        self.items: list[str] = [""]

    def add(self, text: str) -> int:
        found = self.index.get(text)
        if found is None:
            found = self.index[text] = len(self.items)
            self.items.append(text)
        return found


def looks_like_name(key: str) -> bool:
    """Is this str key shown in a redacted export? Short ASCII identifiers, and longer ones only when
    single-case without digits: code names pass, tokens and hex digests (mixed case or digits) do not."""
    if not (key.isascii() and key.isidentifier() and len(key) <= 40):
        return False
    if len(key) < 12:
        return True
    return not any(c.isdigit() for c in key) and (key.islower() or key.isupper())


MAX_TEXT = 1024  # characters (or bytes) of a str/bytes node's contents shown with contents=full


def shown(obj: Any, kind: type) -> str:
    """A str/bytes node's name (or a str key's edge name) in full: the first MAX_TEXT, and how much more.

    Bounded because the name is held in the strings table until the export ends, and a repr
    is up to four times the bytes of the object it names.
    """
    if kind is str:
        head = obj if len(obj) <= MAX_TEXT else obj[:MAX_TEXT]
    else:
        head = repr(obj if len(obj) <= MAX_TEXT else obj[:MAX_TEXT])
    rest = len(obj) - MAX_TEXT
    return head if rest <= 0 else f"{head}… (+{rest} {'chars' if kind is str else 'bytes'})"


def redacted(obj: Any) -> str:
    return redacted_name(type(obj)) % len(obj)


def redacted_name(kind: type) -> str:
    """The name of a redacted str or bytes-like object, with ``%d`` for its length."""
    if issubclass(kind, str):
        return "(str, %d chars)"
    return "(" + kind.__name__.replace("%", "%%") + ", %d bytes)"


def key_edge_name(key: Any) -> str:
    """An edge name for a dict value under a key that is not a str: CPython's own repr of numbers."""
    kind = type(key)
    if (kind is int and key.bit_length() <= 64) or kind is bool or kind is float or key is None:
        return f"[{key!r}]"
    return f"[{type_name(type(key))}]"


_NAMERS: dict[int, Callable[[Any], object]] = {  # per-object names of builtin kinds, by id(kind)
    id(types.FunctionType): lambda f: _FUNC_QUALNAME.__get__(f, types.FunctionType),
    id(types.CodeType): lambda c: _CODE_QUALNAME.__get__(c, types.CodeType),
    id(types.BuiltinFunctionType): lambda f: f.__qualname__,
}


def object_name(obj: Any, kind: type, full: bool) -> str:
    """The node name of an object whose name depends on the object itself (see ``Kind.name``)."""
    if kind is str or kind is bytes or kind is bytearray:
        return shown(obj, kind) if full else redacted(obj)
    namer = _NAMERS.get(id(kind))
    if namer is not None:
        return str(namer(obj))
    if isinstance(obj, types.ModuleType):
        name = (namespace(obj) or {}).get("__name__")
        return name if type(name) is str else "module"
    return f"class {type_name(obj)}" if isinstance(obj, type) else type_name(kind)


def _exact_kinds() -> dict[int, tuple[int, int, bool]]:
    """id(kind) → (how, node type, named by its class) for builtin kinds. Keyed by id and compared by
    identity: hashing or comparing a class could run its metaclass's code."""
    table: dict[int, tuple[int, int, bool]] = {}
    kind: type
    for kind in (str, bytes, bytearray):
        table[id(kind)] = (ATOM, N_STRING, False)
    for kind in (int, float, complex, bool):
        table[id(kind)] = (ATOM, N_NUMBER, True)
    for kind in (type(None), type(Ellipsis), type(NotImplemented)):
        table[id(kind)] = (ATOM, N_OBJECT, True)
    for kind, how in ((list, LIST), (tuple, TUPLE), (dict, DICT), (set, MEMBERS), (frozenset, MEMBERS)):
        table[id(kind)] = (how, N_OBJECT, True)
    for kind in PROBES:
        node_type = N_CLOSURE if id(kind) in _CLOSURE_IDS else N_CODE if kind is types.CodeType else N_OBJECT
        table[id(kind)] = (PROBED, node_type, id(kind) not in _NAMERS)
    return table


_EXACT = _exact_kinds()
_PROBES = {id(kind): names for kind, names in PROBES.items()}


class Kind:
    """How the walk treats every object of one class: node type, name (-1: per object) and ``how``."""

    __slots__ = (
        "attrs",
        "candidates",
        "fixed_size",
        "how",
        "layout",
        "misses",
        "name",
        "node_type",
        "probes",
    )

    def __init__(self, kind: type, strings: Strings) -> None:
        self.probes: tuple[str, ...] = _PROBES.get(id(kind), ())
        self.attrs: list[str] = []  # INSTANCE: attribute names found on instances so far
        self.misses = 0  # INSTANCE: searches of the class's full candidate list so far
        self.candidates: list[str] | None = None  # INSTANCE: attribute_candidates(kind), once needed
        # INSTANCE: edge names and types of an instance holding every attribute the class's instances
        # usually hold (learned from one), in the order CPython visits them; None until learned
        self.layout: tuple[int, ...] | None = None  # edge labels
        found = _EXACT.get(id(kind))
        if found is not None:
            self.how, self.node_type, by_class = found
        elif issubclass(kind, types.ModuleType):
            self.how, self.node_type, by_class = MODULE, N_SYNTHETIC, False
        elif issubclass(kind, type):
            self.how, self.node_type, by_class = CLASS, N_OBJECT, False
        else:
            self.how = INSTANCE if kind.__flags__ & _HEAPTYPE else OTHER
            self.node_type, by_class = N_OBJECT, True
        self.name = strings.add(type_name(kind)) if by_class else -1
        # Every object of the class has the same size (object's own __sizeof__, no items): measured
        # once per group instead of once per object (``sys.getsizeof`` is a Python-level call each).
        self.fixed_size = (
            _ITEMSIZE.__get__(kind, type) == 0
            and not issubclass(kind, type)
            and class_attr(kind, "__sizeof__") is _OBJECT_SIZEOF
        )


def candidate_value(obj: object, name: str) -> object:
    """An instance's attribute through ``object.__getattribute__`` (no host ``__getattr__``); the names
    come from ``attribute_candidates``, which leaves out properties and custom descriptors."""
    try:
        return object.__getattribute__(obj, name)
    except Exception:
        return MISSING


def edge_type(name: str) -> int:
    return E_INTERNAL if name.startswith("__") else E_PROPERTY


def candidates(kind: type, info: Kind) -> list[str]:
    if info.candidates is None:
        info.candidates = attribute_candidates(kind)
    return info.candidates


def learn_layout(kind: type, info: Kind, obj: object, refs: list[object]) -> list[str] | None:
    """The attribute names behind ``gc.get_referents(obj)`` of an instance with inline attributes: CPython
    visits the values in the class's shared-key order, then the class. None unless every value is found
    under exactly one name (two attributes holding the same object make the order ambiguous)."""
    if not refs or refs[-1] is not kind:
        return None
    holders: dict[int, list[str]] = {}
    for name in candidates(kind, info):
        value = candidate_value(obj, name)
        if value is not MISSING:
            holders.setdefault(id(value), []).append(name)
    names = []
    for ref in refs[:-1]:
        found = holders.get(id(ref))
        if found is None or len(found) != 1:
            return None
        names.append(found[0])
    if len(set(names)) != len(names):
        return None
    return [*names, "__class__"]


def attribute_candidates(cls: type) -> list[str]:
    """Names an instance of ``cls`` may hold (annotations, names its methods use) whose class attribute,
    if any, is a plain value or a CPython function: reading them never runs host code."""
    safe = []
    for name in attribute_names(cls):
        attr = class_attr(cls, name)
        if (
            attr is MISSING
            or isinstance(attr, types.FunctionType | staticmethod | classmethod)
            or not any(
                class_attr(type(attr), hook) is not MISSING for hook in ("__get__", "__set__", "__delete__")
            )
        ):
            safe.append(name)
    return safe


def string_literals(strings: list[str], start: int, stop: int) -> str:
    """``"a","b",...`` for part of the string table (ASCII JSON: lone surrogates survive)."""
    encode = json.encoder.encode_basestring_ascii
    return ",".join(map(encode, strings[start:stop]))


def sizes(kind: type, info: Kind, objs: list[Any]) -> list[int]:
    """Shallow sizes of a group of objects of one class (as ``sys.getsizeof`` gives them)."""
    if info.fixed_size:
        return [sys.getsizeof(objs[0])] * len(objs)
    if kind is tuple:  # its header plus one pointer per item: no call per tuple
        return list(map(add, map(mul, map(len, objs), repeat(_TUPLE_ITEM)), repeat(_TUPLE_HEAD)))
    return safe_sizes(objs)


def safe_sizes(chunk: list[object]) -> list[int]:
    """Shallow sizes; a host ``__sizeof__`` written in Python is not run, one in C that raises counts 0."""
    return shallow_sizes(chunk)
