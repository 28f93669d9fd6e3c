"""Name the project's Jupyter kernel in every notebook's metadata: ``python scripts/set_kernelspec.py [--check]``.

The kernel is the venv registered by ``make kernel`` (``ipykernel install --sys-prefix --name dmdlib``), so a
notebook opened in JupyterLab (``make lab``) or VS Code starts in the environment that has dmdlib. Only the
notebook-level ``kernelspec`` changes; cells, outputs and the source hashes of :mod:`dmdlib.provenance` do not.
The runners (``scripts/build_book.py``, ``dmdlib sweep``, the tests) name their kernel themselves
(``kernel_name="python3"``: the interpreter that runs them), so they need no registration. Re-run after a merge
that brings a notebook with another kernelspec; ``--check`` exits with 1 if a notebook names another kernel.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KERNEL = "dmdlib"
KERNELSPEC = {"display_name": f"Python ({KERNEL})", "language": "python", "name": KERNEL}


def dumps(nb: dict) -> str:
    """A notebook as Jupyter writes it (one-space indent, non-ASCII kept, a final newline)."""
    return json.dumps(nb, indent=1, ensure_ascii=False) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="change nothing; exit with 1 if a notebook differs")
    ap.add_argument("notebooks", nargs="*", type=Path, help="default: notebooks/*.ipynb")
    args = ap.parse_args(argv)
    wrong = []
    for path in args.notebooks or sorted((ROOT / "notebooks").glob("*.ipynb")):
        nb = json.loads(path.read_text(encoding="utf-8"))
        if nb.get("metadata", {}).get("kernelspec") == KERNELSPEC:
            continue
        wrong.append(path)
        if not args.check:
            nb.setdefault("metadata", {})["kernelspec"] = dict(KERNELSPEC)
            path.write_text(dumps(nb), encoding="utf-8")
    verb = "name another kernel than" if args.check else "now name"
    for path in wrong:
        print(f"{path}: {verb} {KERNEL!r}")
    return 1 if args.check and wrong else 0


if __name__ == "__main__":
    sys.exit(main())
