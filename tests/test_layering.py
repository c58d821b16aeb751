"""The layering table of the design, enforced by walking every module's imports with ast."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import opsconsole

PKG = Path(opsconsole.__file__).parent

# package (first component under opsconsole) -> opsconsole packages it may import.
# Third-party rules are listed separately below.
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "log": set(),
    "config": {"errors"},
    "diagnostics": {"errors", "log"},
    "auth": {"errors", "log", "config", "auth"},
    "audit": {"errors", "log", "audit"},
    "repl": {"errors", "log", "diagnostics", "audit", "repl"},
    "transport": {"errors", "log", "config", "auth", "audit", "diagnostics", "repl", "transport"},
    # The composition root wires everything but the CLI.
    "console": {"errors", "log", "config", "auth", "audit", "diagnostics", "repl", "transport"},
    # The CLI runs in the operator's process: key signing, files, config, rendering, audit verify.
    "cli": {"errors", "log", "config", "auth", "audit", "diagnostics", "cli"},
    # Host-side programs embed the console through the public API, like any service.
    "host": {"errors", "log", "auth", "cli", "host", "__init__"},
    "__init__": {"errors", "config", "console"},
    "__main__": {"cli", "host"},
    "private_files": {"errors", "log"},
}
# The one policy for private files and directories: every layer may import it.
EVERY_LAYER_MAY_IMPORT = {"private_files"}
FORBIDDEN_THIRD_PARTY: dict[str, set[str]] = {
    "errors": {"tornado", "paramiko", "prompt_toolkit", "ptpython", "pyotp"},
    "log": {"tornado", "paramiko", "prompt_toolkit", "ptpython", "pyotp"},
    "config": {"tornado", "paramiko", "prompt_toolkit", "ptpython", "pyotp"},
    "diagnostics": {"tornado", "paramiko", "prompt_toolkit", "ptpython"},
    "auth": {"tornado", "prompt_toolkit", "ptpython"},
    "audit": {"tornado", "paramiko", "prompt_toolkit", "ptpython"},
    "repl": {"tornado", "paramiko"},
    # tornado is allowed in cli only for its websocket client (opsconsole connect).
    "cli": {"prompt_toolkit", "ptpython"},
}


def _layer(path: Path) -> str:
    rel = path.relative_to(PKG)
    return rel.parts[0].removesuffix(".py")


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                raise AssertionError(f"{path}: use absolute imports so layering stays visible")
            assert node.module is not None
            if node.module == "opsconsole":
                names += [f"opsconsole.{a.name}" for a in node.names]
            else:
                names.append(node.module)
    return names


def _violations() -> list[str]:
    found = []
    for path in sorted(PKG.rglob("*.py")):
        layer = _layer(path)
        assert layer in ALLOWED, f"{path}: package {layer!r} is not in the layering table"
        for name in _imports(path):
            top, _, rest = name.partition(".")
            if top == "opsconsole":
                target = rest.split(".")[0] or "__init__"
                if target not in ALLOWED[layer] | EVERY_LAYER_MAY_IMPORT and target != layer:
                    found.append(f"{path.relative_to(PKG)} imports {name} ({layer} -> {target})")
            elif top in FORBIDDEN_THIRD_PARTY.get(layer, set()):
                found.append(f"{path.relative_to(PKG)} imports {name} (never in {layer})")
    return found


def test_every_import_respects_the_layering_table() -> None:
    assert _violations() == []


def test_the_walker_sees_a_violation(monkeypatch: pytest.MonkeyPatch) -> None:
    # Guard against a walker that silently finds nothing: auth really imports paramiko and
    # transport really imports auth, so forbidding either must produce violations.
    monkeypatch.setitem(FORBIDDEN_THIRD_PARTY, "auth", {"paramiko"})
    monkeypatch.setitem(ALLOWED, "transport", {"errors"})
    found = _violations()
    assert any("auth" in v and "paramiko" in v for v in found)
    assert any("transport" in v and "-> auth" in v for v in found)


def test_public_face_is_sorted_and_complete() -> None:
    assert opsconsole.__all__ == sorted(opsconsole.__all__)
    for name in opsconsole.__all__:
        assert hasattr(opsconsole, name), name
    assert callable(opsconsole.start)
