"""Grids of notebook runs through submitit: one papermill run per seed and grid point, locally or on Slurm.

``python -m dmdlib sweep --notebook 01 --preset quick --seeds 0 1 2 --executor local --out DIR``
(:mod:`dmdlib.cli`) runs every combination of the seeds and of the optional
``-p NAME VALUE [VALUE ...]`` grids. Each run executes the notebook with
papermill into its own folder, with the parameters ``preset``, ``device``,
``seed``, ``output_dir`` (that folder) and its grid values, as a submitit job:
``submitit.LocalExecutor`` runs the jobs as processes on this machine (at
most ``max_parallel`` at a time), ``submitit.SlurmExecutor`` submits them to
Slurm. The folder ``DIR`` holds::

    sweep.json    the notebook, preset and device (a rerun with others is refused; 'auto' compares as the device
                  it is on this machine, and the local executor records it so, so 'auto' and 'cpu' resume each other)
    <run>/        one run ("seed-0", "seed-0_teacher_kimg-64", ...): the executed notebook, its metrics.json,
                  its training runs, and done.json once the notebook has run to the end
    logs/         submitit's job files and logs (<job id>_0_log.out / .err)
    summary.csv   one row per finished run and reported Delta_E (``SUMMARY_COLUMNS`` of :mod:`dmdlib.across_seeds`)
    failed.csv    the runs that failed in the last invocation, with their logs

:func:`publish` copies what a results folder keeps of a sweep (``--publish
DEST``): the summary, ``sweep.json``, ``failed.csv`` and each finished run's
``metrics.json`` and ``done.json``, never its training runs or checkpoints.
:func:`dmdlib.across_seeds.read_summaries` reads the published summaries of several notebooks
(``results/<preset>/seeds/<notebook>/summary.csv``) as one table.

A rerun skips the runs that finished (their ``done.json`` records the same
parameters) and launches the others again; the summary covers every finished
run of the grid, so the runs that did finish are summarised even when others
failed. Nothing here imports submitit or papermill until a sweep is launched.
"""
from __future__ import annotations

import itertools
import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from .presets import PRESET_NAMES
from .across_seeds import RECORD_COLUMNS, headline_students, reading_cells, summary_columns, write_csv
from .provenance import notebook_named
from .runs import resolve_device, write_json

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
RESERVED = ("preset", "device", "seed", "output_dir")   # set by the sweep for every run
EXECUTORS = ("local", "slurm")


# ----------------------------------------------------------------------------- the grid

def find_notebook(key: str, folder: Path = NOTEBOOK_DIR) -> Path:
    """The notebook named by ``key``: a path to an .ipynb, or the prefix of one in ``notebooks/`` (e.g. '01')."""
    p = Path(key)
    if p.suffix == ".ipynb":
        if not p.exists():
            raise ValueError(f"--notebook {key!r}: no such file")
        return p.resolve()
    found = sorted(folder.glob(f"{key}*.ipynb")) if folder.is_dir() else []
    if len(found) != 1:
        names = sorted(f.stem.split("_")[0] for f in folder.glob("*.ipynb")) if folder.is_dir() else []
        what = "matches several notebooks" if found else "matches no notebook"
        raise ValueError(f"--notebook {key!r} {what} in {folder}; allowed: {', '.join(names) or '(none found)'} "
                         f"or a path to an .ipynb")
    return found[0]


def parse_value(text: str):
    """A grid value from the command line: JSON (``64``, ``0.5``, ``true``, ``null``, ``["gan"]``), Python's
    ``None``/``True``/``False``, else the string itself (as papermill's ``-p``)."""
    if text in ("None", "True", "False"):
        return {"None": None, "True": True, "False": False}[text]
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_grid(pairs, allowed) -> dict:
    """``[[name, v1, v2, ...], ...]`` (repeated ``-p``) -> ``{name: [values]}``, checked against the notebook's
    parameters ``allowed``."""
    grid = {}
    for item in pairs or []:
        if len(item) < 2:
            raise ValueError(f"-p needs a parameter name and at least one value, got {' '.join(item)!r}")
        name, values = item[0], [parse_value(v) for v in item[1:]]
        if name in RESERVED:
            flag = {"preset": "--preset", "device": "--device", "seed": "--seeds", "output_dir": "--out"}[name]
            raise ValueError(f"-p {name}: set by the sweep itself; use {flag}")
        if name not in allowed:
            raise ValueError(f"-p {name}: not a parameter of the notebook; allowed: "
                             f"{', '.join(sorted(set(allowed) - set(RESERVED))) or '(none)'}")
        if name in grid:
            raise ValueError(f"-p {name} is given twice; list all its values after one -p")
        grid[name] = values
    return grid


def _slug(value) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return re.sub(r"[^A-Za-z0-9.+-]+", "_", text).strip("_") or "_"


@dataclass(frozen=True)
class Run:
    """One run of a sweep: a seed and one value per grid parameter."""
    seed: int
    grid: tuple = ()        # ((name, value), ...) in the order of the -p options

    @property
    def name(self) -> str:
        """The run's folder name, e.g. ``seed-0`` or ``seed-0_teacher_kimg-64``."""
        return "_".join([f"seed-{self.seed}"] + [f"{k}-{_slug(v)}" for k, v in self.grid])

    def parameters(self, preset: str, device: str, run_dir, runs_per_seed=None) -> dict:
        """The notebook's parameters for this run; with ``runs_per_seed`` (a folder) also ``runs_dir =
        runs_per_seed/seed-<seed>``, where the runs of one seed are shared with other notebooks' sweeps."""
        shared = {} if runs_per_seed is None else {"runs_dir": str(Path(runs_per_seed) / f"seed-{self.seed}")}
        return {"preset": preset, "device": device, "seed": self.seed, "output_dir": str(run_dir), **shared,
                **dict(self.grid)}


def plan(seeds, grid: Optional[dict] = None) -> list:
    """Every combination of ``seeds`` and the grid values, seed-major, in the order given."""
    seeds = list(seeds)
    if not seeds or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seeds):
        raise ValueError(f"--seeds must be non-negative integers, got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"--seeds has repeated values: {seeds}")
    grid = grid or {}
    combos = list(itertools.product(*[[(k, v) for v in vals] for k, vals in grid.items()]))
    runs = [Run(s, tuple(c)) for s in seeds for c in combos]
    names = [r.name for r in runs]
    if len(set(names)) != len(names):
        raise ValueError("two grid points give the same run folder name; use values that differ in letters or digits")
    return runs


# ----------------------------------------------------------------------------- one run (the submitit job)

DONE = "done.json"
PUBLISHED = ("summary.csv", "sweep.json", "failed.csv")   # the sweep-level files publish() copies
PUBLISHED_RUN = ("metrics.json", DONE)                   # and per finished run


def device_here(device):
    """``device`` as runs on this machine get it: 'auto' as :func:`dmdlib.runs.resolve_device` resolves it."""
    return str(resolve_device(device)) if device == "auto" else device


def _comparable(params: dict) -> dict:
    """Parameters as two runs are compared: without ``output_dir``, and 'auto' as the device it is here, so a
    folder recorded with 'auto' (before the local executor resolved it) and one recorded with 'cpu' agree."""
    out = {k: v for k, v in params.items() if k != "output_dir"}
    if "device" in out:
        out["device"] = device_here(out["device"])
    return json.loads(json.dumps(out))


def is_finished(run_dir, parameters: dict) -> bool:
    """Whether ``run_dir`` holds a run that went to the end with these parameters (``done.json``, metrics.json)."""
    run_dir = Path(run_dir)
    try:
        done = json.loads((run_dir / DONE).read_text())
    except (OSError, ValueError):
        return False
    return (run_dir / "metrics.json").exists() and _comparable(done.get("parameters", {})) == _comparable(parameters)


def run_notebook(notebook: str, run_dir: str, parameters: dict, cwd: str) -> dict:
    """Execute ``notebook`` with papermill into ``run_dir`` (the job of one run); write ``done.json`` at the end.

    A failing cell raises papermill's error (the job then fails, and its
    log holds the traceback); the executed notebook, with the error in it,
    is kept in ``run_dir``.
    """
    import papermill as pm

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / DONE).unlink(missing_ok=True)
    t0 = time.perf_counter()
    executed = run_dir / Path(notebook).name
    with notebook_named(notebook):   # metrics.json then records the notebook's hash (dmdlib.provenance)
        pm.execute_notebook(str(notebook), str(executed), parameters=parameters, cwd=str(cwd), kernel_name="python3",
                            progress_bar=False)
    info = {"notebook": str(notebook), "parameters": parameters, "executed": str(executed),
            "wall_time_s": time.perf_counter() - t0}
    write_json(run_dir / DONE, info)
    return info


# ----------------------------------------------------------------------------- launching

@dataclass
class Outcome:
    """What became of one launched run."""
    run: Run
    ok: bool
    job_id: str = ""
    error: str = ""         # the exception's last line, for a failed run
    log: str = ""           # the job's stderr (submitit) with the traceback
    notebook: str = ""      # the executed notebook (holds the failing cell's error)


def error_line(exc: BaseException) -> str:
    """The most telling line of a job's exception: the last 'SomethingError: ...' line of its trace."""
    text = str(exc)
    lines = [ln.strip() for ln in text.splitlines() if re.match(r"^\s*[A-Za-z_][\w.]*(Error|Exception|Interrupt)\b", ln)]
    if lines:
        return lines[-1]
    first = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def launch(tasks: list, executor, max_parallel: Optional[int] = None, poll_s: float = 1.0,
           fn: Callable = run_notebook, echo: Callable = print) -> list:
    """Submit ``fn(*args)`` for each ``(run, args)`` of ``tasks`` to a submitit ``executor`` and wait for all.

    At most ``max_parallel`` jobs run at a time (None: all at once). Returns
    one :class:`Outcome` per task, in the order of ``tasks``.
    """
    pending, running, outcomes = list(tasks), [], {}
    while pending or running:
        while pending and (max_parallel is None or len(running) < max_parallel):
            run, args = pending.pop(0)
            job = executor.submit(fn, *args)
            echo(f"[sweep] {run.name}: submitted as job {job.job_id}")
            running.append((run, args, job))
        finished = [t for t in running if t[2].done()]
        for t in finished:
            running.remove(t)
            run, args, job = t
            exc = job.exception()
            out = Outcome(run, exc is None, str(job.job_id), log=str(job.paths.stderr),
                          notebook=str(Path(args[1]) / Path(args[0]).name))
            if exc is not None:
                out.error = error_line(exc)
            outcomes[run] = out
            echo(f"[sweep] {run.name}: {'finished' if out.ok else 'FAILED: ' + out.error}")
        if not finished:
            time.sleep(poll_s)
    return [outcomes[run] for run, _ in tasks]


def make_executor(kind: str, folder, timeout_min: int = 1440, partition: Optional[str] = None,
                  gpus_per_node: Optional[int] = None, threads: Optional[int] = None):
    """A submitit executor: ``'local'`` (``submitit.LocalExecutor``: processes on this machine) or ``'slurm'``
    (``submitit.SlurmExecutor``), one task on one node per job.

    ``gpus_per_node`` defaults to the GPUs visible here for ``'local'`` (the
    local executor hides the others from its jobs) and to 0 for Slurm;
    ``partition`` is Slurm's (None: the cluster's default); ``threads`` sets
    each job's OMP_NUM_THREADS and MKL_NUM_THREADS (None: inherited). Without Slurm's
    ``srun`` on the PATH, ``'slurm'`` raises a ValueError saying so.
    """
    import submitit

    params = executor_parameters(kind, timeout_min, partition, gpus_per_node, threads)
    if kind == "local":
        ex = submitit.LocalExecutor(folder=str(folder))
    else:
        try:
            ex = submitit.SlurmExecutor(folder=str(folder))
        except RuntimeError as e:   # no srun here
            raise ValueError(f"--executor slurm: {e} Run the sweep where Slurm's srun and sbatch are available.") \
                from None
    ex.update_parameters(**params)
    return ex


def executor_parameters(kind: str, timeout_min: int = 1440, partition: Optional[str] = None,
                        gpus_per_node: Optional[int] = None, threads: Optional[int] = None) -> dict:
    """The submitit parameters of :func:`make_executor` (LocalExecutor's or SlurmExecutor's names). ``threads``
    becomes shell lines run before each job (``setup``: the job, papermill and its kernel inherit them) and, on
    Slurm, ``cpus_per_task``."""
    if kind not in EXECUTORS:
        raise ValueError(f"unknown executor {kind!r}; allowed: {', '.join(EXECUTORS)}")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ValueError(f"--threads-per-run must be an integer >= 1, got {threads!r}")
    setup = ({"setup": [f"export OMP_NUM_THREADS={threads}", f"export MKL_NUM_THREADS={threads}"]}
             if threads else {})
    if gpus_per_node is None:
        import torch

        gpus_per_node = torch.cuda.device_count() if kind == "local" else 0
    if kind == "local":
        return {"timeout_min": int(timeout_min), "gpus_per_node": int(gpus_per_node), "nodes": 1,
                "tasks_per_node": 1, **setup}
    return {"time": int(timeout_min), "gpus_per_node": int(gpus_per_node), "nodes": 1, "ntasks_per_node": 1,
            "job_name": "dmdlib-sweep", **({"partition": partition} if partition else {}),
            **({"cpus_per_task": threads, **setup} if threads else {})}


# ----------------------------------------------------------------------------- the whole sweep

# ----------------------------------------------------------------------------- the summary and publishing

def summary_rows(out, runs: list, parameters: Callable[[Run], dict]) -> list:
    """One row per finished run of ``runs`` under ``out`` and per headline Delta_E of its metrics.json."""
    rows = []
    for run in runs:
        run_dir = Path(out) / run.name
        if not is_finished(run_dir, parameters(run)):
            continue
        metrics = json.loads((run_dir / "metrics.json").read_text())
        for label, rec, student in headline_students(metrics):
            row = {"run": run.name, "seed": run.seed, **dict(run.grid), "record": label}
            row.update({k: rec.get(k) for k in RECORD_COLUMNS if k != "record"})
            row.update(reading_cells(student))
            rows.append(row)
    return rows


def publish(out, dest) -> list:
    """Copy the results of the sweep in ``out`` to ``dest`` (for ``results/``): no training runs, no checkpoints.

    Copies ``PUBLISHED`` and, for every run folder with a ``done.json``,
    ``PUBLISHED_RUN`` to ``dest/<run>/``; each file is written
    atomically. Returns the paths written.
    """
    from .runs import atomic_write_bytes

    out, dest = Path(out), Path(dest)
    if not (out / "summary.csv").is_file():
        raise ValueError(f"publish: {out} holds no summary.csv; run the sweep first")
    if out.resolve() == dest.resolve():
        raise ValueError(f"publish: the destination is the sweep's own folder {out}")
    written = []
    files = [(out / name, dest / name) for name in PUBLISHED if (out / name).is_file()]
    for run_dir in sorted(p for p in out.iterdir() if p.is_dir() and (p / DONE).is_file()):
        files += [(run_dir / name, dest / run_dir.name / name) for name in PUBLISHED_RUN if (run_dir / name).is_file()]
    for src, dst in files:
        dst.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(dst, src.read_bytes())
        written.append(dst)
    return written


@dataclass
class SweepResult:
    out: Path
    runs: list                                   # every run of the grid
    skipped: list = field(default_factory=list)  # finished before this invocation
    outcomes: list = field(default_factory=list)  # the launched runs
    rows: list = field(default_factory=list)     # summary.csv's rows

    @property
    def failed(self) -> list:
        return [o for o in self.outcomes if not o.ok]


def check_sweep_dir(out, record: dict) -> None:
    """Record what the sweep in ``out`` runs (``sweep.json``); refuse a folder holding another sweep."""
    path = Path(out) / "sweep.json"
    if path.exists():
        old, new = _comparable(json.loads(path.read_text())), _comparable(record)
        diff = [k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
        if diff:
            raise ValueError(f"{out} holds a sweep with other settings ({', '.join(f'{k}: {old.get(k)!r}' for k in diff)}"
                             f"); rerun with its settings to resume it, or choose another --out")
    else:
        write_json(path, record)


def sweep(notebook, preset: str, seeds, out, grid: Optional[dict] = None, device: str = "auto", executor="local",
          max_parallel: Optional[int] = 1, poll_s: float = 1.0, echo: Callable = print, fn: Callable = run_notebook,
          threads: Optional[int] = None, runs_per_seed=None, **executor_kwargs) -> SweepResult:
    """Run ``notebook`` for every seed and grid point into ``out`` (skipping finished runs) and write the summary.

    ``executor`` is ``'local'``, ``'slurm'`` (with ``executor_kwargs`` for
    :func:`make_executor`) or a submitit executor; at most ``max_parallel``
    runs are under way at a time (None: all), each with ``threads`` intra-op
    threads (None: inherited; recorded in ``sweep.json`` when given, since
    CPU results depend on it). ``runs_per_seed`` (a folder; for notebooks
    with a ``runs_dir`` parameter, the MNIST chapters 02-05) gives each run
    ``runs_dir = runs_per_seed/seed-<seed>``: the sweeps of several notebooks
    then share each seed's teachers and students, as the book build does,
    while seeds run side by side never write the same folder. ``fn`` is the job
    (:func:`run_notebook`; the tests replace it). Writes
    ``out/summary.csv`` (every finished run of the grid) and
    ``out/failed.csv`` (the runs that failed now).
    """
    if preset not in PRESET_NAMES:
        raise ValueError(f"unknown preset {preset!r}; allowed: {list(PRESET_NAMES)}")
    nb = find_notebook(str(notebook))
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    if executor == "local":  # the runs execute on this machine: record the device they get
        device = device_here(device)
    check_sweep_dir(out, {"notebook": nb.name, "preset": preset, "device": device,
                          **({"threads": threads} if threads else {})})
    runs = plan(seeds, grid)
    if runs_per_seed is not None:
        import papermill as pm

        if "runs_dir" not in pm.inspect_notebook(str(nb)):
            raise ValueError(f"--runs-per-seed: {nb.name} has no runs_dir parameter; it applies to the notebooks "
                             "that take one (02-05)")
        runs_per_seed = Path(runs_per_seed).resolve()
    params = lambda run: run.parameters(preset, device, out / run.name, runs_per_seed)  # noqa: E731
    skipped = [r for r in runs if is_finished(out / r.name, params(r))]
    todo = [r for r in runs if r not in skipped]
    for r in skipped:
        echo(f"[sweep] {r.name}: finished earlier, skipped")
    outcomes = []
    if todo:
        ex = (make_executor(executor, out / "logs", threads=threads, **executor_kwargs) if isinstance(executor, str)
              else executor)
        tasks = [(r, (str(nb), str(out / r.name), params(r), str(ROOT))) for r in todo]
        outcomes = launch(tasks, ex, max_parallel=max_parallel, poll_s=poll_s, fn=fn, echo=echo)
    names = list(grid or {})
    rows = summary_rows(out, runs, params)
    write_csv(out / "summary.csv", rows, summary_columns(names))
    failed = [o for o in outcomes if not o.ok]
    write_csv(out / "failed.csv", [{"run": o.run.name, "seed": o.run.seed, **dict(o.run.grid), "error": o.error,
                                    "log": o.log, "notebook": o.notebook} for o in failed],
              ["run", "seed", *names, "error", "log", "notebook"])
    return SweepResult(out, runs, skipped, outcomes, rows)
