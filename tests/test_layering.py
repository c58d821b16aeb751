"""The layering table of the design, enforced by walking every module's imports with ast.

A row names a unit (a package, a subpackage or one module, dotted under ``opsconsole``) and
what it may import. A module belongs to the longest row that is a prefix of its dotted name;
an import target is allowed when an entry equals it or is a package above it. So moving a
module within a package, or a package that keeps its name, needs no edit here, and a
narrower row (``diagnostics.render``) gives part of a package away without the rest.
Imports inside functions and ``TYPE_CHECKING`` blocks count too: they are dependencies all
the same. Every import must be absolute so the layering stays visible.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

import opsconsole

PKG = Path(opsconsole.__file__).parent

# What every unit may import, apart from errors and log themselves: the exception tree, the
# named loggers, and the one private-file policy.
BASE = {"errors", "log", "private_files"}

# unit -> opsconsole units it may import (besides its own top-level package).
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "log": set(),
    "private_files": {"errors", "log"},
    "config": BASE,
    "diagnostics": BASE,
    "auth": BASE | {"config"},
    "audit": BASE,
    "repl": BASE | {"diagnostics", "audit"},
    "transport": BASE | {"config", "auth", "audit", "diagnostics", "repl"},
    # The composition root wires everything but the CLI.
    "console": BASE | {"config", "auth", "audit", "diagnostics", "repl", "transport"},
    # The CLI runs in the operator's process: key signing and the files an operator enrols
    # (authorized_keys line, TOTP secret, role), config, the renderers, audit verify.
    "cli": BASE
    | {
        "config",
        "audit",
        "auth.signer",
        "auth.sshsig",
        "auth.keys",
        "auth.totp",
        "auth.principal",
        "diagnostics.render",
    },
    # Host-side programs embed the console through the public API, like any service.
    "host": BASE | {"auth", "cli", "__init__"},
    "__init__": {"errors", "config", "console"},
    "__main__": {"cli", "host"},
}

HEAVY = {"tornado", "paramiko", "prompt_toolkit", "ptpython", "jedi"}
# unit -> third-party packages it never imports (longest matching row, as above).
FORBIDDEN_THIRD_PARTY: dict[str, set[str]] = {
    "errors": HEAVY | {"pyotp"},
    "log": HEAVY | {"pyotp"},
    "private_files": HEAVY | {"pyotp"},
    "config": HEAVY | {"pyotp"},
    "__init__": HEAVY | {"pyotp"},
    "__main__": HEAVY | {"pyotp"},
    "diagnostics": {"tornado", "paramiko", "prompt_toolkit", "ptpython"},
    "auth": {"tornado", "prompt_toolkit", "ptpython"},
    "audit": HEAVY | {"pyotp"},
    "repl": {"tornado", "paramiko"},
    # The CLI: tornado only for the websocket client of `opsconsole connect`, paramiko only
    # where `opsconsole login` reads a key to sign with.
    "cli": HEAVY,
    "cli.connect": HEAVY - {"tornado"},
    "cli.login": HEAVY - {"paramiko"},
}


def _dotted(path: Path) -> str:
    """``opsconsole/auth/keys.py`` -> ``auth.keys``; a package's ``__init__`` is the package."""
    parts = list(path.relative_to(PKG).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts.pop()
    return ".".join(parts)


def _row(table: dict[str, set[str]], unit: str) -> str | None:
    """The longest key of ``table`` that is ``unit`` or a package above it."""
    best = None
    for key in table:
        if (unit == key or unit.startswith(key + ".")) and (best is None or len(key) > len(best)):
            best = key
    return best


def _is_module(dotted: str) -> bool:
    base = PKG.joinpath(*dotted.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def _targets(tree: ast.AST, where: str) -> Iterator[str]:
    """Every imported module, dotted: ``from opsconsole.auth import keys`` imports
    ``opsconsole.auth.keys``; ``from opsconsole.auth.keys import parse_line``, the module."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                raise AssertionError(f"{where}: use absolute imports so layering stays visible")
            assert node.module is not None
            if node.module.split(".")[0] != "opsconsole":
                yield node.module
                continue
            inner = node.module.removeprefix("opsconsole").lstrip(".")
            for alias in node.names:
                sub = f"{inner}.{alias.name}".lstrip(".")
                yield f"opsconsole.{sub}" if _is_module(sub) else node.module


def _allowed(target: str, entries: set[str]) -> bool:
    return any(target == e or target.startswith(e + ".") for e in entries)


def _violations() -> list[str]:
    found = []
    for path in sorted(PKG.rglob("*.py")):
        unit = _dotted(path)
        row = _row(ALLOWED, unit)
        assert row is not None, f"{path}: {unit!r} has no row in the layering table"
        own = unit.split(".")[0]
        tree = ast.parse(path.read_text(), filename=str(path))
        for name in _targets(tree, str(path)):
            top, _, rest = name.partition(".")
            if top == "opsconsole":
                target = rest or "__init__"
                if target.split(".")[0] != own and not _allowed(target, ALLOWED[row]):
                    found.append(f"{path.relative_to(PKG)} imports {name} ({row} -> {target})")
            else:
                third = _row(FORBIDDEN_THIRD_PARTY, unit)
                if third is not None and top in FORBIDDEN_THIRD_PARTY[third]:
                    found.append(f"{path.relative_to(PKG)} imports {name} (never in {third})")
    return found


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def private_reach_ins(source: str, module: str) -> list[str]:
    """``module: name`` for each private name of another opsconsole module used in ``source``.

    Two shapes: ``from opsconsole.x import _y``, and ``m._y`` where ``m`` was bound by
    ``import opsconsole.x as m`` or ``from opsconsole import x`` (x a module).
    """
    tree = ast.parse(source)
    found = []
    aliases: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "opsconsole":
            inner = node.module.removeprefix("opsconsole").lstrip(".")
            for a in node.names:
                sub = f"{inner}.{a.name}".lstrip(".")
                if _is_module(sub):
                    aliases[a.asname or a.name] = sub
                elif _private(a.name) and inner != module:
                    found.append(f"{module}: {inner}.{a.name}")
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("opsconsole.") and a.asname:
                    aliases[a.asname] = a.name.removeprefix("opsconsole.")
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in aliases
            and aliases[node.value.id] != module
            and _private(node.attr)
        ):
            found.append(f"{module}: {aliases[node.value.id]}.{node.attr}")
    return found


def _private_violations() -> set[str]:
    found: set[str] = set()
    for path in sorted(PKG.rglob("*.py")):
        found.update(private_reach_ins(path.read_text(), _dotted(path)))
    return found


def test_every_import_respects_the_layering_table() -> None:
    assert _violations() == []


def test_the_walker_sees_a_violation(monkeypatch: pytest.MonkeyPatch) -> None:
    # Guard against a walker that silently finds nothing: auth really imports paramiko,
    # transport really imports auth, and the CLI really imports one auth module.
    monkeypatch.setitem(FORBIDDEN_THIRD_PARTY, "auth", {"paramiko"})
    monkeypatch.setitem(ALLOWED, "transport", {"errors"})
    monkeypatch.setitem(ALLOWED, "cli", ALLOWED["cli"] - {"auth.signer"})
    found = _violations()
    assert any("auth" in v and "paramiko" in v for v in found)
    assert any("transport" in v and "-> auth" in v for v in found)
    assert any("(cli -> auth.signer)" in v for v in found)


def test_the_cli_may_not_reach_the_rest_of_auth() -> None:
    # A per-module row gives part of a package away, not the package.
    assert _allowed("auth.signer", ALLOWED["cli"])
    assert not _allowed("auth.authenticator", ALLOWED["cli"])
    assert not _allowed("diagnostics.service", ALLOWED["cli"])
    assert _allowed("diagnostics.render.registry", ALLOWED["cli"])


def test_no_private_name_is_imported_across_modules() -> None:
    assert _private_violations() == set()


def test_the_private_name_walker_sees_both_shapes() -> None:
    source = (
        "from opsconsole.auth.keys import _ALGORITHMS, parse_line\n"
        "from opsconsole import config\n"
        "import opsconsole.auth.files as files\n"
        "config._FIELDS\nfiles.__name__\nfiles._private_open\n"
    )
    assert sorted(private_reach_ins(source, "cli.main")) == [
        "cli.main: auth.files._private_open",
        "cli.main: auth.keys._ALGORITHMS",
        "cli.main: config._FIELDS",
    ]
    # A module's own private names are its business.
    assert private_reach_ins("from opsconsole.auth.keys import _ALGORITHMS\n", "auth.keys") == []


def _subclasses(cls: type) -> set[type]:
    found = set()
    for sub in cls.__subclasses__():
        found |= {sub, *_subclasses(sub)}
    return found


def test_public_face_is_sorted_and_complete() -> None:
    assert opsconsole.__all__ == sorted(opsconsole.__all__)
    for name in opsconsole.__all__:
        assert hasattr(opsconsole, name), name
    assert callable(opsconsole.start)


def test_every_public_exception_is_in_all() -> None:
    # A host catches what it can name: every error of the one tree is exported.
    public = {c for c in _subclasses(opsconsole.OpsConsoleError) if c.__module__ == "opsconsole.errors"}
    exported = {getattr(opsconsole, name) for name in opsconsole.__all__}
    assert public, "the walk found no subclass"
    missing = sorted(c.__name__ for c in public - exported)
    assert missing == [], f"add to opsconsole.__all__: {missing}"
    assert opsconsole.OpsConsoleError in exported
