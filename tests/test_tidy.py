"""House rules that keep the core deterministic, checked on the source itself.

The core packages (matching/, ledger/ bar its file store, exchange/) must not read a clock,
draw randomness, touch sockets or use floats: replaying the journal must reproduce the same
state bit for bit.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORE_PACKAGES = ("matching", "ledger", "exchange")
FORBIDDEN_MODULES = {"asyncio", "socket", "time", "random", "uuid", "datetime"}
# The one module allowed to touch the disk (and so the clock-free os/fsync calls it needs).
IO_EXEMPT = {"ledger/file_store.py"}
LEAF_PACKAGES: dict[str, set[str]] = {"matching": set(), "ledger": set()}


def _core_files() -> list[Path]:
    files: list[Path] = []
    for package in CORE_PACKAGES:
        files.extend(sorted((ROOT / package).rglob("*.py")))
    return files


def _imported_modules(tree: ast.AST) -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


@pytest.mark.parametrize("path", _core_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_core_module_is_pure(path: Path) -> None:
    relative = str(path.relative_to(ROOT))
    tree = ast.parse(path.read_text(), filename=relative)
    problems: list[str] = []
    if relative not in IO_EXEMPT:
        for line, module in _imported_modules(tree):
            if module.split(".")[0] in FORBIDDEN_MODULES:
                problems.append(f"{relative}:{line} imports {module}")
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "float"
        ):
            problems.append(f"{relative}:{node.lineno} calls float()")
        if isinstance(node, ast.Constant) and isinstance(node.value, float):
            problems.append(f"{relative}:{node.lineno} has a float literal {node.value!r}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("package", sorted(LEAF_PACKAGES))
def test_leaf_packages_import_no_other_ipx_package(package: str) -> None:
    others = {"matching", "ledger", "exchange", "gateway"} - {package}
    problems = []
    for path in sorted((ROOT / package).rglob("*.py")):
        tree = ast.parse(path.read_text())
        for line, module in _imported_modules(tree):
            if module.split(".")[0] in others:
                problems.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    assert not problems, "\n".join(problems)


def test_the_tidy_check_catches_a_clock(tmp_path: Path) -> None:
    tree = ast.parse("import time\nx = float('1.5')\n")
    assert any(m == "time" for _, m in _imported_modules(tree))
