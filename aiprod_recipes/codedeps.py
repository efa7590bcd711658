"""A stage's code dependencies, derived from the import graph of the package.

The code that can change a stage's result is its module and every package module that
module imports, directly or through others, at the top of a file or inside a function,
plus the package ``__init__`` files Python runs on the way. Declared by hand, such a list
goes stale with the first refactor (a helper moves, a stage starts using ``store/``) and
DVC then skips a stage whose code did change. So render computes it here, from the source
text alone: files are parsed with ``ast``, nothing is imported or executed.

The result is written into dvc.yaml as repo-relative paths, a whole folder where every
module under it is used (DVC hashes the folder; .dvcignore keeps ``__pycache__`` out), else
the single files.
"""

from __future__ import annotations

import ast
import functools
import hashlib
from collections.abc import Iterable
from pathlib import Path

PACKAGE = "aiprod_recipes"
PACKAGE_DIR = Path(__file__).resolve().parent


def module_file(module: str, package_dir: Path = PACKAGE_DIR) -> Path | None:
    """The source file of a package module (``a.b`` -> a/b.py or a/b/__init__.py)."""
    if module != PACKAGE and not module.startswith(PACKAGE + "."):
        return None
    parts = module.split(".")[1:]
    base = package_dir.joinpath(*parts)
    for candidate in (base.with_suffix(".py") if parts else None, base / "__init__.py"):
        if candidate is not None and candidate.is_file():
            return candidate
    return None


def _resolve_relative(module: str, node: ast.ImportFrom, is_package: bool) -> str:
    """The absolute name of a relative ``from . import x`` in ``module``."""
    parts = module.split(".")
    keep = len(parts) - node.level + (1 if is_package else 0)
    base = ".".join(parts[:keep])
    return f"{base}.{node.module}" if node.module else base


def _is_type_checking(node: ast.AST) -> bool:
    """``if TYPE_CHECKING:`` (or ``typing.TYPE_CHECKING``): a block that never runs."""
    if not isinstance(node, ast.If):
        return False
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _run_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node that can run: all of the tree except the bodies of TYPE_CHECKING blocks
    (imports for annotations only, which cannot change a result)."""
    out: list[ast.AST] = []
    todo = [tree]
    while todo:
        node = todo.pop()
        out.append(node)
        if _is_type_checking(node):
            todo += node.orelse  # type: ignore[attr-defined]
            todo.append(node.test)  # type: ignore[attr-defined]
        else:
            todo += ast.iter_child_nodes(node)
    return out


@functools.lru_cache(maxsize=1024)
def _parse(path: Path, mtime_ns: int, size: int) -> ast.Module:
    """A source file's tree, parsed once while the file is unchanged."""
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def imported_modules(module: str, package_dir: Path = PACKAGE_DIR) -> set[str]:
    """The package modules one module imports anywhere in its file, at the top or inside
    a function (where a stage imports what it uses, when it uses it)."""
    path = module_file(module, package_dir)
    if path is None:
        return set()
    st = path.stat()
    return set(_file_imports(module, package_dir, path, st.st_mtime_ns, st.st_size))


@functools.lru_cache(maxsize=1024)
def _file_imports(module: str, package_dir: Path, path: Path, mtime_ns: int,
                  size: int) -> frozenset[str]:
    """``imported_modules`` of one unchanged file, worked out once per process (every
    stage's closure walks the shared modules again)."""
    found: set[str] = set()
    for node in _run_nodes(_parse(path, mtime_ns, size)):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = (_resolve_relative(module, node, path.name == "__init__.py") if node.level
                    else node.module or "")
            found.add(base)
            # ``from pkg import name``: name may be a submodule
            found |= {f"{base}.{a.name}" for a in node.names}
    return frozenset(m for m in found if module_file(m, package_dir) is not None)


def _with_parents(module: str) -> set[str]:
    """A module and the packages Python initialises to import it."""
    parts = module.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts) + 1)}


def import_closure(roots: Iterable[str], package_dir: Path = PACKAGE_DIR) -> set[str]:
    """Every package module the roots import, transitively, with their parent packages."""
    seen: set[str] = set()
    todo = [m for root in roots for m in _with_parents(root)]
    while todo:
        module = todo.pop()
        if module in seen or module_file(module, package_dir) is None:
            continue
        seen.add(module)
        for imported in imported_modules(module, package_dir):
            todo += [m for m in _with_parents(imported) if m not in seen]
    return seen


def _package_files(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*.py") if "__pycache__" not in p.parts}


def compress(files: set[Path], package_dir: Path = PACKAGE_DIR) -> list[Path]:
    """The files as a short list: a sub-package folder when all of its modules are in
    ``files``, else its files one by one (the package's top folder is always split)."""
    out: list[Path] = []

    def walk(folder: Path, top: bool) -> None:
        inside = _package_files(folder)
        if not top and inside and inside <= files:
            out.append(folder)
            return
        for entry in sorted(folder.iterdir()):
            if entry.is_dir() and entry.name != "__pycache__":
                walk(entry, top=False)
            elif entry in files:
                out.append(entry)

    walk(package_dir, top=True)
    return out


def code_dependencies(roots: tuple[str, ...], package_dir: Path = PACKAGE_DIR) -> tuple[str, ...]:
    """Repo-relative paths (posix) covering every module the roots import; the roots' own
    files first, so a stage's entry in dvc.yaml starts with its module."""
    files = {module_file(m, package_dir) for m in import_closure(roots, package_dir)}
    paths = compress({f for f in files if f is not None}, package_dir)
    first = [module_file(r, package_dir) for r in roots]
    ordered = [p for p in first if p in paths] + [p for p in paths if p not in first]
    return tuple(p.relative_to(package_dir.parent).as_posix() for p in ordered)


def code_digest(roots: tuple[str, ...], package_dir: Path = PACKAGE_DIR) -> str:
    """sha256 of the exact source of every module the roots import (names and bytes).

    Per-item stages put it in their item keys: an item stored by other code is computed
    again, so a workspace updated to new code holds what a fresh clone would compute.
    """
    files = sorted(f for m in import_closure(roots, package_dir)
                   if (f := module_file(m, package_dir)) is not None)
    digest = hashlib.sha256()
    for f in files:
        digest.update(f.relative_to(package_dir).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(f.read_bytes()).digest())
    return digest.hexdigest()
