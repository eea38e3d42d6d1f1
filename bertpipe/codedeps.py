"""The project code a script runs: its import closure over the project's own packages.

Computed from the source (ast), not by importing it, so it costs nothing and runs nothing. Used
by the test that checks each stage's deps in dvc.yaml, and by train's resume key (a saved state is
continued only by the same code).
"""

from __future__ import annotations

import ast
import hashlib
from pathlib import Path

PROJECT_PACKAGES = ("bertpipe", "stages")
ROOT = Path(__file__).resolve().parents[1]


def module_file(module: str, root: Path = ROOT) -> Path | None:
    """The file of a dotted project module (a .py file or a package's __init__.py), or None."""
    base = root.joinpath(*module.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _imported_modules(path: Path) -> set[str]:
    """Dotted names of the modules path imports, anywhere in it (lazy imports in functions too).

    `from pkg import name` yields pkg and, in case name is a submodule, pkg.name; names that are
    not modules are dropped later, when no file is found for them."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _with_parents(module: str) -> list[str]:
    # Importing a.b.c runs a/__init__.py and a/b/__init__.py first.
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


def import_closure(script: str | Path, root: Path = ROOT) -> list[str]:
    """Project files (relative to root, '/'-separated, sorted) that running script imports,
    directly or through other project modules, script itself included."""
    root = root.resolve()
    start = (root / script).resolve()
    # `python -m stages.train` runs stages/__init__.py before the script itself.
    package = ".".join(start.parent.relative_to(root).parts)
    todo = [start, *_files(_with_parents(package) if package else [], root)]
    seen: set[Path] = set()
    while todo:
        path = todo.pop()
        if path not in seen:
            seen.add(path)
            names = [n for n in _imported_modules(path) if n.split(".")[0] in PROJECT_PACKAGES]
            todo.extend(_files((m for n in names for m in _with_parents(n)), root))
    return sorted(p.relative_to(root).as_posix() for p in seen)


def _files(modules, root: Path) -> list[Path]:
    return [f.resolve() for m in modules if (f := module_file(m, root)) is not None]


def code_digest(script: str | Path, root: Path = ROOT) -> str:
    """sha256 over the names and bytes of script's import closure."""
    h = hashlib.sha256()
    for rel in import_closure(script, root):
        h.update(rel.encode() + b"\0" + (root / rel).read_bytes() + b"\0")
    return h.hexdigest()
