"""Execute every notebook of the book with papermill at one preset, then build the HTML book.

    python scripts/build_book.py --preset quick            # what `make book` runs
    python scripts/build_book.py --preset smoke --build-dir /tmp/b --warnings-as-errors

Executed notebooks go to ``<build-dir>/book-<preset>/notebooks/`` (a staged copy of
the book sources), each notebook's outputs (runs, checkpoints, metrics.json) to
``<build-dir>/outputs/<preset>/<notebook>/`` (teacher and student runs of the MNIST
chapters, which share them, to ``<build-dir>/outputs/<preset>/mnist-runs/``), and the HTML to ``_build/html`` (for the
default build dir ``_build``; ``<build-dir>/_build/html`` for any other).
Runs already finished in ``outputs`` are reloaded, not retrained.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PRESETS = ("smoke", "quick", "paper")


def notebooks_in_toc(root: Path) -> list[Path]:
    """The notebooks listed in _toc.yml, in book order."""
    import yaml

    toc = yaml.safe_load((root / "_toc.yml").read_text())
    files = []

    def walk(node):
        if isinstance(node, dict):
            if "file" in node:
                files.append(node["file"])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(toc)
    out = []
    for f in files:
        p = root / (f if f.endswith(".ipynb") else f + ".ipynb")
        if p.exists():
            out.append(p)
    return out


def present_notebooks(stage: Path) -> None:
    """Apply the display metadata of notebooks/ to the staged, executed notebooks (scripts/book_display.py):
    set-up cells collapsed, papermill's injected parameters hidden, figures numbered and captioned."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from book_display import present_file

    for nb in sorted((stage / "notebooks").glob("*.ipynb")):
        source = ROOT / "notebooks" / nb.name
        present_file(nb, source if source.exists() else None)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="quick", help=f"one of {PRESETS}")
    ap.add_argument("--device", default="auto", help="'auto', 'cpu', 'cuda' or 'cuda:N'")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--build-dir", default=str(ROOT / "_build"))
    ap.add_argument("--only", nargs="*", default=None, help="execute only notebooks whose name starts with these")
    ap.add_argument("--warnings-as-errors", action="store_true", help="pass -W to jupyter-book")
    ap.add_argument("--no-html", action="store_true", help="execute the notebooks but skip the HTML build")
    ap.add_argument("--results-dir", default=None,
                    help="also copy each executed notebook and its metrics.json to <results-dir>/<preset>/<notebook>/ "
                         "(the committed results: `make results`)")
    args = ap.parse_args(argv)
    if args.preset not in PRESETS:
        ap.error(f"unknown --preset {args.preset!r}; allowed: {', '.join(PRESETS)}")

    import papermill as pm

    build = Path(args.build_dir).resolve()
    stage = build / f"book-{args.preset}"
    if stage.exists():
        shutil.rmtree(stage)
    (stage / "notebooks").mkdir(parents=True)
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy2(ROOT / name, stage / name)
    shutil.copytree(ROOT / "book", stage / "book")

    shared_runs = build / "outputs" / args.preset / "mnist-runs"
    for nb in notebooks_in_toc(ROOT):
        out_nb = stage / "notebooks" / nb.name
        if args.only and not any(nb.name.startswith(o) for o in args.only):
            shutil.copy2(nb, out_nb)
            continue
        out_dir = build / "outputs" / args.preset / nb.stem
        t0 = time.perf_counter()
        print(f"[build_book] executing {nb.name} (preset={args.preset}) -> {out_nb}", flush=True)
        params = {"preset": args.preset, "device": args.device, "seed": args.seed, "output_dir": str(out_dir)}
        if "runs_dir" in pm.inspect_notebook(str(nb)):
            params["runs_dir"] = str(shared_runs)   # the MNIST chapters share one teacher and its students
        pm.execute_notebook(str(nb), str(out_nb), cwd=str(ROOT), kernel_name="python3", progress_bar=False,
                            parameters=params)
        shutil.copy2(out_nb, out_dir / nb.name)
        print(f"[build_book] {nb.name}: {time.perf_counter() - t0:.1f} s", flush=True)
        if args.results_dir:
            dest = Path(args.results_dir).resolve() / args.preset / nb.stem
            dest.mkdir(parents=True, exist_ok=True)
            for src in (out_nb, out_dir / "metrics.json"):
                shutil.copy2(src, dest / src.name)
            print(f"[build_book] results -> {dest}", flush=True)

    if args.no_html:
        return 0
    present_notebooks(stage)
    # jupyter-book writes to <path-output>/_build/html: the repository's _build/html by default
    path_output = build.parent if build.name == "_build" else build
    cmd = [str(Path(sys.executable).parent / "jupyter-book"), "build", str(stage), "--path-output", str(path_output)]
    if args.warnings_as_errors:
        cmd += ["-W", "-n", "--keep-going"]
    print("[build_book]", " ".join(cmd), flush=True)
    return subprocess.call(cmd)


if __name__ == "__main__":
    sys.exit(main())
