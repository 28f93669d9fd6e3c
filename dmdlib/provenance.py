"""Which sources produced a chapter's result, and whether the result still matches them.

:func:`sources` (recorded by :func:`dmdlib.notebook.write_metrics` as
``metrics.json["sources"]``) hashes what a chapter ran:

- ``notebook``: SHA-256 of the notebook's code and markdown cell sources
  (:func:`notebook_sha256`: not outputs, execution counts or metadata, and not
  papermill's injected-parameters cell), or None when the notebook is unknown;
- ``dmdlib``: ``{"dmdlib/<module>.py": code hash}`` for every dmdlib module
  loaded in the process when the metrics were written; the code hash
  (:func:`code_sha256`) is the SHA-256 of the module's syntax tree without its
  docstrings, so comments, docstrings and layout do not count, code does;
- ``requirements``: SHA-256 of ``requirements.txt`` (None without one).

A notebook names itself to ``write_metrics`` through its ``notebook``
argument or, as ``scripts/build_book.py`` and ``dmdlib sweep`` do for the
notebooks they execute, through the environment variable
``DMDLIB_NOTEBOOK`` (the kernel inherits it); the notebooks need no code for it.

:func:`staleness` compares a recorded ``metrics.json`` with the files now in
the repository. A result is

- **stale** when its ``sources`` differ from the current files: the
  notebook's code or markdown changed (or the notebook is gone), a recorded
  dmdlib module's code changed or the module is gone, or ``requirements.txt``
  changed (appeared, disappeared); the reasons name each such file. Outputs,
  execution counts, cell metadata (tags) and dmdlib modules the run did not
  load do not count. A ``metrics.json`` that is not readable JSON is stale.
- **unverified** when nothing recorded differs but something could not be
  checked: a ``metrics.json`` without ``sources`` (written before sources were
  recorded) or one whose notebook hash is None (written outside a notebook).
- **fresh** otherwise: every recorded hash equals the current file's.
"""
from __future__ import annotations

import ast
import contextlib
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Mapping, Optional

ENV_NOTEBOOK = "DMDLIB_NOTEBOOK"
INJECTED_TAG = "injected-parameters"
PACKAGE_DIR = Path(__file__).resolve().parent
STATUSES = ("fresh", "stale", "unverified")


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_sha256(path) -> str:
    """SHA-256 (hex) of a file's bytes."""
    return sha256_bytes(Path(path).read_bytes())


def code_sha256(path) -> str:
    """SHA-256 of a Python file's code: its syntax tree (``ast.dump``, no line numbers) with every module,
    class and function docstring removed. Comments, docstrings, blank lines and formatting do not change it;
    any change to what runs does. A file that does not parse hashes as its bytes."""
    data = Path(path).read_bytes()
    try:
        tree = ast.parse(data)
    except (SyntaxError, ValueError):
        return sha256_bytes(data)
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant) \
                    and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return sha256_bytes(ast.dump(tree, include_attributes=False).encode("utf-8"))


def notebook_sha256(path) -> str:
    """SHA-256 of a notebook's code and markdown cell sources, in order.

    Outputs, execution counts, metadata and raw cells do not count, nor does
    the cell papermill injects (tagged ``injected-parameters``): a source
    notebook and its executed copy hash the same.
    """
    nb = json.loads(Path(path).read_text(encoding="utf-8"))
    cells = []
    for c in nb.get("cells", []):
        if c.get("cell_type") not in ("code", "markdown"):
            continue
        if INJECTED_TAG in (c.get("metadata") or {}).get("tags", []):
            continue
        src = c.get("source", "")
        cells.append([c["cell_type"], "".join(src) if isinstance(src, list) else src])
    return sha256_bytes(json.dumps(cells, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))


def loaded_modules(modules: Optional[Mapping] = None, package_dir=PACKAGE_DIR) -> dict:
    """``{"dmdlib/<path>.py": code_sha256}`` for every module in ``modules`` (default ``sys.modules``) whose file is
    under ``package_dir``; the keys are relative to the package's parent (the repository root), sorted."""
    package_dir = Path(package_dir).resolve()
    modules = sys.modules if modules is None else modules
    out = {}
    for mod in list(modules.values()):
        f = getattr(mod, "__file__", None)
        if not f:
            continue
        p = Path(f).resolve()
        if p.is_file() and p.is_relative_to(package_dir):
            out[p.relative_to(package_dir.parent).as_posix()] = code_sha256(p)
    return dict(sorted(out.items()))


def sources(notebook=None, *, modules: Optional[Mapping] = None, package_dir=PACKAGE_DIR) -> dict:
    """The ``sources`` record of a result: notebook hash, loaded dmdlib modules, requirements.txt.

    ``notebook`` defaults to ``$DMDLIB_NOTEBOOK``; without either the notebook hash is None.
    """
    notebook = notebook if notebook is not None else (os.environ.get(ENV_NOTEBOOK) or None)
    req = Path(package_dir).resolve().parent / "requirements.txt"
    return {"notebook": notebook_sha256(notebook) if notebook is not None else None,
            "dmdlib": loaded_modules(modules, package_dir),
            "requirements": file_sha256(req) if req.is_file() else None}


@contextlib.contextmanager
def notebook_named(path):
    """Set ``$DMDLIB_NOTEBOOK`` to ``path`` (absolute) while a notebook runs, so that the kernel papermill starts,
    which inherits the environment, records the notebook's hash in its metrics.json; restored afterwards."""
    old = os.environ.get(ENV_NOTEBOOK)
    os.environ[ENV_NOTEBOOK] = str(Path(path).resolve())
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(ENV_NOTEBOOK, None)
        else:
            os.environ[ENV_NOTEBOOK] = old


def _shown(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(path)


def staleness(metrics_path, notebook_path, root=None) -> tuple:
    """``(status, reasons)`` of the result ``metrics_path`` against ``notebook_path`` and the repository ``root``.

    ``status`` is ``"fresh"``, ``"stale"`` or ``"unverified"`` (defined in
    this module's docstring). For ``"stale"`` the reasons name each changed
    file (relative to ``root``); for ``"unverified"`` they say what could not
    be checked; for ``"fresh"`` they are empty. ``root`` defaults to the
    repository this dmdlib is imported from. A missing ``metrics_path``
    raises FileNotFoundError.
    """
    metrics_path, notebook_path = Path(metrics_path), Path(notebook_path)
    root = Path(root) if root is not None else PACKAGE_DIR.parent
    try:
        m = json.loads(metrics_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise
    except (OSError, ValueError) as e:
        return "stale", [f"{metrics_path.name}: not readable JSON ({type(e).__name__})"]
    src = m.get("sources") if isinstance(m, dict) else None
    if not isinstance(src, dict):
        commit = m.get("commit") if isinstance(m, dict) else None
        return "unverified", [f"{metrics_path.name} records no sources (written before they were recorded"
                              + (f", commit {str(commit)[:12]})" if commit else ")")]
    changed, unchecked = [], []
    nb_shown = _shown(notebook_path, root)
    if not notebook_path.is_file():
        changed.append(f"{nb_shown}: removed")
    elif src.get("notebook") is None:
        unchecked.append(f"{nb_shown}: its sources were not recorded")
    elif notebook_sha256(notebook_path) != src["notebook"]:
        changed.append(f"{nb_shown}: code or markdown changed")
    for rel, digest in sorted((src.get("dmdlib") or {}).items()):
        p = root / rel
        if not p.is_file():
            changed.append(f"{rel}: removed")
        elif code_sha256(p) != digest:
            changed.append(f"{rel}: code changed")
    req = root / "requirements.txt"
    now = file_sha256(req) if req.is_file() else None
    if now != src.get("requirements"):
        changed.append("requirements.txt: " + ("removed" if now is None else
                                               "added" if src.get("requirements") is None else "changed"))
    if changed:
        return "stale", changed
    if unchecked:
        return "unverified", unchecked
    return "fresh", []
