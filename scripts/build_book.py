"""Build the HTML book from the committed results, executing (papermill) only the chapters that need it.

    python scripts/build_book.py --preset quick            # what `make book` runs
    python scripts/build_book.py --preset quick --fresh    # re-execute every chapter (`make book FRESH=1`)
    python scripts/build_book.py --preset paper            # paper results where committed, placeholders elsewhere
    python scripts/build_book.py --preset smoke --fresh --build-dir /tmp/b --warnings-as-errors

Each chapter of ``_toc.yml`` (a notebook ``notebooks/<stem>.ipynb``) is, by
:func:`plan_chapter`:

- **rendered** from ``results/<preset>/<stem>/<stem>.ipynb`` (the committed
  executed notebook) when that result exists and is fresh or unverified (see
  :mod:`dmdlib.provenance`; an unverified page gets a note saying so);
- **executed** with papermill when its result is missing or stale, or with
  ``--fresh``; at ``--preset paper`` (which needs a GPU) only with
  ``--execute-missing`` (or ``--fresh``): otherwise a missing chapter gets a
  **placeholder** page saying that no paper-scale result is committed and the
  command that produces it, and a stale one is rendered with a note;
- staged unexecuted (**source**) when ``--only`` leaves it out and it has no result
  (at paper: a placeholder).

Executed notebooks go to ``<build-dir>/book-<preset>/notebooks/`` (a staged copy of
the book sources), each notebook's outputs (runs, checkpoints, metrics.json) to
``<build-dir>/outputs/<preset>/<notebook>/`` (teacher and student runs of the MNIST
chapters, which share them, to ``<build-dir>/outputs/<preset>/mnist-runs/``), and with
``--results-dir DIR`` also to ``DIR/<preset>/<notebook>/`` (`make results`); results are
always read from ``results/`` of this checkout. Runs already finished in ``outputs`` are
reloaded, not retrained. A "Reproducibility" page (``book/reproducibility.md``, generated)
lists per chapter where it was rendered from and what its metrics.json records; the landing page
(``book/intro.md``) gets the claims table of ``scripts/claims.py`` in place of its slot. The HTML
goes to ``_build/html`` (for the default build dir ``_build``; ``<build-dir>/_build/html``
for any other).
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))   # this checkout's dmdlib, as the notebooks' kernels (cwd = ROOT) import it

PRESETS = ("smoke", "quick", "paper")
NEEDS_GPU = ("paper",)              # presets that are never executed unless asked (--execute-missing, --fresh)
REPRO_PAGE = "book/reproducibility.md"
INTRO_PAGE = "book/intro.md"                # its slot <!-- claims-table --> gets the claims table (scripts/claims.py)
SCRIPTS = Path(__file__).resolve().parent


def toc_files(root: Path) -> list[str]:
    """Every page of _toc.yml as written there (its ``root`` first, then each ``file`` in book order)."""
    import yaml

    toc = yaml.safe_load((root / "_toc.yml").read_text())
    files = [toc["root"]]

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
    return files


def notebooks_in_toc(root: Path) -> list[Path]:
    """The notebooks listed in _toc.yml, in book order."""
    out = []
    for f in toc_files(root):
        p = root / (f if f.endswith(".ipynb") else f + ".ipynb")
        if p.exists():
            out.append(p)
    return out


# ----------------------------------------------------------------------------- what to do with each chapter

@dataclass(frozen=True)
class Plan:
    """What the build does with one chapter: ``action`` in ACTIONS, the result's ``status`` and why."""
    stem: str
    action: str        # "render" | "execute" | "placeholder" | "source"
    status: str        # "fresh" | "stale" | "unverified" | "missing"
    reasons: tuple     # the staleness reasons (changed files) or what could not be checked
    why: str           # one line for the build log


ACTIONS = ("render", "execute", "placeholder", "source")
RESULT_STATUSES = ("fresh", "stale", "unverified", "missing")


def plan_chapter(stem: str, status: str, reasons=(), *, preset: str, fresh: bool = False,
                 execute_missing: bool = False, selected: bool = True) -> Plan:
    """Decide what happens to chapter ``stem`` whose committed result has ``status``.

    ``selected``: the chapter matches ``--only`` (always true without it);
    only selected chapters are executed. ``fresh``: ``--fresh``.
    ``execute_missing``: ``--execute-missing``, which lets presets in
    NEEDS_GPU (paper) execute missing or stale chapters.
    """
    if status not in RESULT_STATUSES:
        raise ValueError(f"unknown result status {status!r}; allowed: {', '.join(RESULT_STATUSES)}")
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; allowed: {', '.join(PRESETS)}")
    reasons = tuple(reasons)
    detail = f" ({'; '.join(reasons)})" if reasons else ""
    may_execute = selected and (preset not in NEEDS_GPU or execute_missing or fresh)
    where = f"results/{preset}/{stem}/"
    if selected and fresh:
        return Plan(stem, "execute", status, reasons, f"--fresh (result: {status})")
    if status == "missing":
        if may_execute:
            return Plan(stem, "execute", status, reasons, f"no result in {where}")
        if preset in NEEDS_GPU:
            why = (f"no result in {where}; not executed: {preset} needs a GPU, pass --execute-missing to execute it"
                   if selected else f"no result in {where}; not selected by --only")
            return Plan(stem, "placeholder", status, reasons, why)
        return Plan(stem, "source", status, reasons, f"no result in {where}; not selected by --only, staged unexecuted")
    if status == "stale":
        if may_execute:
            return Plan(stem, "execute", status, reasons, f"stale result{detail}")
        why = ("not selected by --only" if not selected else
               f"not executed: {preset} needs a GPU, pass --execute-missing to execute it")
        return Plan(stem, "render", status, reasons, f"stale result{detail}, rendered as it is: {why}")
    return Plan(stem, "render", status, reasons, f"{status} result{detail}")


def result_status(root: Path, preset: str, nb: Path) -> tuple:
    """``(status, reasons)`` of the committed result of notebook ``nb``: "missing" without its executed
    notebook or metrics.json, else :func:`dmdlib.provenance.staleness`."""
    from dmdlib.provenance import staleness

    d = root / "results" / preset / nb.stem
    missing = [f.name for f in (d / nb.name, d / "metrics.json") if not f.is_file()]
    if missing:
        return "missing", [f"results/{preset}/{nb.stem}/{m}: missing" for m in missing]
    return staleness(d / "metrics.json", nb, root=root)


# ----------------------------------------------------------------------------- staged pages

def _title(nb: dict, fallback: str) -> str:
    """The first markdown heading of a notebook (its page title)."""
    for c in nb.get("cells", []):
        if c.get("cell_type") == "markdown":
            for line in "".join(c.get("source", "")).splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return fallback


def _md_cell(text: str, cell_id: str) -> dict:
    return {"cell_type": "markdown", "id": cell_id, "metadata": {}, "source": text}


def placeholder_notebook(nb_path: Path, preset: str) -> dict:
    """The page staged for a chapter that has no committed result at ``preset`` and was not executed."""
    src = json.loads(nb_path.read_text(encoding="utf-8"))
    stem = nb_path.stem
    text = (f"# {_title(src, stem)}\n\n"
            f"No {preset}-scale result of this chapter is committed: `results/{preset}/{stem}/` holds no executed "
            f"notebook and metrics.json, and this build did not execute the chapter (the {preset} preset needs a "
            f"GPU). On a machine with a GPU, this command produces it:\n\n"
            f"```bash\n"
            f"python scripts/build_book.py --preset {preset} --device cuda --only {stem} --execute-missing "
            f"--results-dir results --no-html\n"
            f"```\n\n"
            f"(`make results PRESET={preset} DEVICE=cuda` produces every missing chapter). Commit "
            f"`results/{preset}/{stem}/` and build again with `make book PRESET={preset}`.\n")
    return {"cells": [_md_cell(text, "placeholder")], "metadata": src.get("metadata", {}), "nbformat": 4,
            "nbformat_minor": src.get("nbformat_minor", 5)}


def flagged_notebook(nb: dict, status: str, reasons) -> dict:
    """``nb`` with a note after its first markdown cell (the title): its result is stale or unverified, and why."""
    what = {"stale": "was computed by code that has changed since (stale); it was not re-executed for this build",
            "unverified": "cannot be checked against the current code (unverified)"}[status]
    text = f"```{{note}}\nThis page shows a committed result that {what}. See the Reproducibility page.\n```\n"
    if reasons:
        text += "\n" + "".join(f"- {r}\n" for r in reasons)
    note = _md_cell(text, "build-book-note")
    at = next((i + 1 for i, c in enumerate(nb["cells"]) if c.get("cell_type") == "markdown"), 0)   # after the title
    out = dict(nb)
    out["cells"] = nb["cells"][:at] + [note] + nb["cells"][at:]
    return out


def _write_notebook(path: Path, nb: dict) -> None:
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def _cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _hardware(hw) -> str:
    if not isinstance(hw, dict):
        return "not recorded"
    where = hw.get("gpu") or hw.get("cpu") or "?"
    n = hw.get("cpu_count")
    cores = "" if n is None else f", {n} CPU core" + ("" if n == 1 else "s")
    return f"{where}{cores}"


def _wall(s) -> str:
    if not isinstance(s, (int, float)):
        return "not recorded"
    return f"{s:.1f} s" if s < 120 else f"{s / 60:.1f} min"


def reproducibility_page(rows: list, preset: str, build_git: dict) -> str:
    """The Reproducibility page: one row per chapter from the metrics.json it was rendered from.

    ``rows``: ``(plan, metrics dict or None, where the metrics came from)`` per chapter. Every number
    comes from those files; chapters without one (placeholders, unexecuted) say so.
    """
    commit = build_git.get("commit")
    lines = ["# Reproducibility", "",
             f"This book was built at preset `{preset}` from commit "
             f"`{(commit or 'unknown')[:12]}`" + (" with uncommitted changes" if build_git.get("dirty") else "")
             + ". Each chapter is either rendered from its committed result (`results/<preset>/<chapter>/`: the "
             "executed notebook and its `metrics.json`) or executed during the build. The table reads each "
             "chapter's `metrics.json`. A result is *stale* when the code or markdown of its notebook, the code of a "
             "dmdlib module it loaded (docstrings and comments do not count), or `requirements.txt` differs from "
             "the hashes its `metrics.json` records; "
             "*unverified* when it records no such hashes (written before they were recorded); *fresh* otherwise. "
             "The wall time is that of the execution that wrote the result: an execution reloads the runs it "
             "finds finished in its output folder instead of retraining them, so it is the cost of training only "
             "when the chapter's log says 'trained now' (the first executions' times are in the README).",
             "",
             "| chapter | page from | preset | hardware | seed | wall time | commit | dirty | result |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    notes = []
    for plan, m, source in rows:
        origin = {"render": "committed result", "execute": "executed in this build",
                  "placeholder": "placeholder (no result)", "source": "unexecuted notebook"}[plan.action]
        if m is None:
            lines.append(f"| `{plan.stem}` | {origin} | | | | | | | {plan.status} |")
        else:
            c = m.get("commit")
            lines.append("| " + " | ".join(_cell(x) for x in (
                f"`{plan.stem}`", origin, m.get("preset", "not recorded"), _hardware(m.get("hardware")),
                m.get("seed", "not recorded"), _wall(m.get("wall_time_s")), f"`{c[:12]}`" if c else "not recorded",
                {True: "yes", False: "no"}.get(m.get("dirty"), "not recorded"), plan.status)) + " |")
        if source:
            notes.append(f"- `{plan.stem}`: metrics from `{source}`")
        for r in plan.reasons:
            notes.append(f"  - {plan.status}: {r}" if source else f"- `{plan.stem}`: {r}")
    return "\n".join(lines + ["", "## Sources and reasons", ""] + (notes or ["(none)"])) + "\n"


def stage_claims(stage: Path, preset: str, rows: list, in_book) -> bool:
    """Write the claims table (:func:`claims.claims_table`) into the staged landing page in place of its slot.

    The numbers come from ``results/<preset>/<chapter>/metrics.json``, or for chapters executed in this build
    from their fresh metrics (``rows``, as for the Reproducibility page); ``in_book``: the chapter stems of this
    book (only those are linked). The repository's ``book/intro.md`` keeps its slot. False when the staged page
    has no slot (nothing written).
    """
    if str(SCRIPTS) not in sys.path:
        sys.path.insert(0, str(SCRIPTS))
    from claims import SLOT, claims_table, fill_slot

    page = stage / INTRO_PAGE
    text = page.read_text(encoding="utf-8") if page.is_file() else ""
    if SLOT not in text:
        print(f"[build_book] {INTRO_PAGE} has no {SLOT} slot: no claims table", flush=True)
        return False
    executed = {plan.stem: m for plan, m, _ in rows if plan.action == "execute" and m is not None}
    table = claims_table(ROOT / "results", preset, executed=executed, in_book=set(in_book))
    page.write_text(fill_slot(text, table), encoding="utf-8")
    return True


HEADLINE_SLOT = "<!-- headline-figure -->"
# the landing page's headline: (chapter, cell id, its n-th image output, what it shows); taken from the chapter's
# executed notebook in this build (the committed result or a fresh execution), never drawn by hand
HEADLINE = (("01_lowdim_remapping", "cell-09", 0, "In two dimensions the student remaps: the chessboard's seeds "
             "$z$, the teacher $\\Phi_8(z)$, its one-step start $\\Phi_1(z)$ and the student $G(z)$, each seed in "
             "the same colour in every panel (chapter 01, paper Fig. 2)."),
            ("02_mnist_copying", "cell-13", 0, "On MNIST the student copies: for the same seeds, the teacher's "
             "$\\Phi_1$, $\\Phi_8$ and many-step outputs, and the student $G$ (chapter 02, paper Fig. 1, top)."))


def _png_output(nb: dict, cell_id: str, index: int):
    """The ``index``-th PNG output (base64) of the cell ``cell_id`` of an executed notebook; None if absent."""
    for cell in nb.get("cells", []):
        if cell.get("id") == cell_id:
            pngs = [o["data"]["image/png"] for o in cell.get("outputs", []) if "image/png" in o.get("data", {})]
            return pngs[index] if -len(pngs) <= index < len(pngs) else None
    return None


def stage_headline(stage: Path, preset: str) -> bool:
    """Put the headline figures (:data:`HEADLINE`) into the staged landing page in place of its slot.

    Each image is copied from the staged, executed notebook of its chapter into ``book/`` of the staged book;
    a chapter without outputs in this build (unexecuted, placeholder) gets a sentence instead. False when the
    staged page has no slot.
    """
    import base64

    page = stage / INTRO_PAGE
    text = page.read_text(encoding="utf-8") if page.is_file() else ""
    if HEADLINE_SLOT not in text:
        return False
    parts = []
    for stem, cell_id, index, caption in HEADLINE:
        nb_path = stage / "notebooks" / f"{stem}.ipynb"
        png = _png_output(json.loads(nb_path.read_text(encoding="utf-8")), cell_id, index) if nb_path.is_file() else None
        if png is None:
            parts.append(f"*(Chapter `{stem}` has no executed result at preset `{preset}` in this build: no figure.)*")
            continue
        name = f"headline-{stem}.png"
        (page.parent / name).write_bytes(base64.b64decode(png))
        parts.append(f":::{{figure}} {name}\n:name: fig-headline-{stem[:2]}\n:width: 100%\n\n"
                     f"{caption} Preset `{preset}`.\n:::")
    page.write_text(text.replace(HEADLINE_SLOT, "\n\n".join(parts)), encoding="utf-8")
    return True


# ----------------------------------------------------------------------------- the build

def present_notebooks(stage: Path) -> None:
    """Apply the display metadata of notebooks/ to the staged, executed notebooks (scripts/book_display.py):
    set-up cells collapsed, papermill's injected parameters hidden, figures numbered and captioned."""
    if str(SCRIPTS) not in sys.path:
        sys.path.insert(0, str(SCRIPTS))
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
    ap.add_argument("--only", nargs="*", default=None,
                    help="execute only notebooks whose name starts with these (the others are rendered from their "
                         "results, or staged unexecuted without one)")
    ap.add_argument("--fresh", action="store_true", help="re-execute every (selected) chapter, whatever its result")
    ap.add_argument("--execute-missing", action="store_true",
                    help="at --preset paper, execute the chapters whose result is missing or stale "
                         "(without it they get a placeholder page, or are rendered stale); needs a GPU")
    ap.add_argument("--warnings-as-errors", action="store_true", help="pass -W to jupyter-book")
    ap.add_argument("--no-html", action="store_true", help="execute the notebooks but skip the HTML build")
    ap.add_argument("--dry-run", action="store_true", help="print what would be done with each chapter, and stop")
    ap.add_argument("--results-dir", default=None,
                    help="also copy each executed notebook and its metrics.json to <results-dir>/<preset>/<notebook>/ "
                         "(the committed results: `make results`)")
    args = ap.parse_args(argv)
    if args.preset not in PRESETS:
        ap.error(f"unknown --preset {args.preset!r}; allowed: {', '.join(PRESETS)}")

    from dmdlib.provenance import notebook_named, staleness
    from dmdlib.runs import git_state

    plans = []
    for nb in notebooks_in_toc(ROOT):
        selected = not args.only or any(nb.name.startswith(o) for o in args.only)
        status, reasons = result_status(ROOT, args.preset, nb)
        plans.append((nb, plan_chapter(nb.stem, status, reasons, preset=args.preset, fresh=args.fresh,
                                       execute_missing=args.execute_missing, selected=selected)))
    if args.dry_run:
        for nb, plan in plans:
            print(f"[build_book] {nb.stem}: would {plan.action}: {plan.why}", flush=True)
        return 0

    build = Path(args.build_dir).resolve()
    stage = build / f"book-{args.preset}"
    if stage.exists():
        shutil.rmtree(stage)
    (stage / "notebooks").mkdir(parents=True)
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy2(ROOT / name, stage / name)
    shutil.copytree(ROOT / "book", stage / "book")

    shared_runs = build / "outputs" / args.preset / "mnist-runs"
    rows, t_all = [], time.perf_counter()
    for nb, plan in plans:
        out_nb = stage / "notebooks" / nb.name
        result = ROOT / "results" / args.preset / nb.stem
        metrics, source = None, None
        if plan.action == "render":
            print(f"[build_book] {nb.stem}: rendered from {result.relative_to(ROOT)}/{nb.name}: {plan.why}", flush=True)
            executed = json.loads((result / nb.name).read_text(encoding="utf-8"))
            if plan.status in ("stale", "unverified"):
                executed = flagged_notebook(executed, plan.status, plan.reasons)
            _write_notebook(out_nb, executed)
            metrics, source = result / "metrics.json", f"results/{args.preset}/{nb.stem}/metrics.json"
        elif plan.action == "placeholder":
            print(f"[build_book] {nb.stem}: placeholder page: {plan.why}", flush=True)
            _write_notebook(out_nb, placeholder_notebook(nb, args.preset))
        elif plan.action == "source":
            print(f"[build_book] {nb.stem}: staged unexecuted: {plan.why}", flush=True)
            shutil.copy2(nb, out_nb)
        else:
            import papermill as pm

            out_dir = build / "outputs" / args.preset / nb.stem
            t0 = time.perf_counter()
            print(f"[build_book] {nb.stem}: executing (preset={args.preset}) -> {out_nb}: {plan.why}", flush=True)
            params = {"preset": args.preset, "device": args.device, "seed": args.seed, "output_dir": str(out_dir)}
            if "runs_dir" in pm.inspect_notebook(str(nb)):
                params["runs_dir"] = str(shared_runs)   # the MNIST chapters share one teacher and its students
            with notebook_named(nb):                    # metrics.json records the notebook's hash
                pm.execute_notebook(str(nb), str(out_nb), cwd=str(ROOT), kernel_name="python3", progress_bar=False,
                                    parameters=params)
            shutil.copy2(out_nb, out_dir / nb.name)
            print(f"[build_book] {nb.stem}: executed in {time.perf_counter() - t0:.1f} s", flush=True)
            metrics = out_dir / "metrics.json"
            source = f"<build-dir>/outputs/{args.preset}/{nb.stem}/metrics.json (not committed)"
            if args.results_dir:
                dest = Path(args.results_dir).resolve() / args.preset / nb.stem
                dest.mkdir(parents=True, exist_ok=True)
                for src in (out_nb, out_dir / "metrics.json"):
                    shutil.copy2(src, dest / src.name)
                print(f"[build_book] {nb.stem}: results -> {dest}", flush=True)
                if dest.parent.parent.resolve() == (ROOT / "results").resolve():
                    source = f"results/{args.preset}/{nb.stem}/metrics.json"
            status, reasons = staleness(metrics, nb, root=ROOT)
            plan = Plan(plan.stem, plan.action, status, tuple(reasons), plan.why)
        rows.append((plan, json.loads(metrics.read_text(encoding="utf-8")) if metrics else None, source))
    (stage / REPRO_PAGE).write_text(reproducibility_page(rows, args.preset, git_state(ROOT)), encoding="utf-8")
    stage_claims(stage, args.preset, rows, [nb.stem for nb, _ in plans])
    stage_headline(stage, args.preset)
    counts = {a: sum(p.action == a for p, _, _ in rows) for a in ACTIONS}
    print(f"[build_book] chapters: {counts['render']} rendered from results, {counts['execute']} executed, "
          f"{counts['placeholder']} placeholders, {counts['source']} unexecuted "
          f"({time.perf_counter() - t_all:.1f} s)", flush=True)

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
