"""`make seeds`: exactly the seed sweeps the claims table needs, with the estimated CPU time, then run them.

Book machinery, not part of dmdlib. The plan is read from the claims (``scripts/claims.py``): every chapter whose
rule reads training seeds is swept over seeds 0 .. S-1, S the largest ``Claim.min_seeds`` among its claims (5
for the chessboard and MNIST copying, 3 per side elsewhere). Each sweep is one ``python -m dmdlib sweep`` into
``_build/sweeps/<preset>/claims/<notebook>`` (a folder of its own, so runs of older code are never reused),
published to ``results/<preset>/seeds/<notebook>/`` (what the claims table and page 08 read).

On a CPU the runs go side by side, one per core with one thread each: two small networks trained side by side
with one thread each finish 1.56 to 1.85 times sooner than one after the other with two threads
(bench/bench_parallel_teachers.py, 2 cores); on a GPU one run at a time. The runs of all planned notebooks form
one queue (:func:`run_queue`): each (notebook, seed) is its own ``sweep --seeds <s> --max-parallel 1`` into the
notebook's sweep folder, started as soon as a slot is free, so a notebook with an odd number of seeds never
leaves a core idle while its last run finishes. When every seed of a notebook has finished, the notebook's own
sweep command (:func:`commands`: all its seeds, each found finished and skipped) writes its summary and
publishes it.

The MNIST chapters 02-05 share each seed's runs folder (``--runs-per-seed _build/sweeps/<preset>/claims/mnist-runs``:
``runs_dir = .../seed-<s>``), as in the book build: a seed's teachers and its plain student are trained once (by
02, which runs first) and reloaded by 03-05. So the queue runs the MNIST chapters' jobs of one seed one after
another, in notebook order (:func:`ready`), and two jobs running side by side never write the same folder.

The estimate: per run, the median wall time of the notebook's published seed runs (``done.json``) where there
are any, else the chapter's own ``wall_time_s`` (``results/<preset>/<chapter>/metrics.json``, a book build in
which 03-05 reuse 02's runs, as the sweeps do). CPU time is wall time times the cores in use.

    python scripts/seeds.py --preset quick            # print the plan and run it
    python scripts/seeds.py --preset quick --dry-run  # print the plan only
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT))

SPEEDUP = (1.56, 1.85)       # side by side, one thread each, against one after the other with two (2 cores)
MNIST_CHAPTERS = ("02_mnist_copying", "03_ablations", "04_teacher_convergence", "05_boundary")   # share runs_dir


def plan(claims=None) -> dict:
    """``{notebook stem: number of seeds}`` for every chapter a claim reads seeds from, in notebook order."""
    if claims is None:
        from claims import CLAIMS as claims
    out = {}
    for c in claims:
        stem = c.sweep or c.chapter
        out[stem] = max(out.get(stem, 0), int(c.min_seeds))
    return dict(sorted(out.items()))


def _median_seed_wall(seeds_dir: Path, stem: str):
    walls = []
    for sub in sorted(p for p in seeds_dir.glob("*") if p.is_dir()):
        info = _json(sub / "sweep.json") or {}
        if Path(info.get("notebook", sub.name)).stem != stem:
            continue
        walls += [d.get("wall_time_s") for d in (_json(r / "done.json") for r in sub.iterdir() if r.is_dir())
                  if isinstance(d, dict) and isinstance(d.get("wall_time_s"), (int, float))]
    return statistics.median(walls) if walls else None


def _json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def run_estimate(results: Path, preset: str, stem: str) -> tuple:
    """(seconds per run or None, where the number comes from) for one chapter at ``preset``."""
    seeds_dir = results / preset / "seeds"
    seeds = _median_seed_wall(seeds_dir, stem)
    if seeds is not None:
        return seeds, "median of its published seed runs"
    wall = (_json(results / preset / stem / "metrics.json") or {}).get("wall_time_s")
    if not isinstance(wall, (int, float)):
        return None, "no recorded wall time"
    return wall, "its chapter's wall time"


def commands(preset: str, device: str, parallel: int, threads, the_plan: dict) -> list:
    """The ``python -m dmdlib sweep`` command of each planned chapter."""
    out = []
    for stem, n in the_plan.items():
        key = stem.split("_")[0]
        cmd = [sys.executable, "-m", "dmdlib", "sweep", "--notebook", key, "--preset", preset, "--seeds",
               *map(str, range(n)), "--executor", "local", "--device", device, "--max-parallel", str(parallel)]
        if threads:
            cmd += ["--threads-per-run", str(threads)]
        if stem in MNIST_CHAPTERS:
            cmd += ["--runs-per-seed", f"_build/sweeps/{preset}/claims/mnist-runs"]
        cmd += ["--out", f"_build/sweeps/{preset}/claims/{key}", "--publish", f"results/{preset}/seeds/{key}"]
        out.append(cmd)
    return out


@dataclass(frozen=True)
class Job:
    """One seed of one planned notebook: a ``sweep --seeds <seed>`` of its own."""
    stem: str
    seed: int

    @property
    def key(self) -> str:
        return self.stem.split("_")[0]

    def __str__(self) -> str:
        return f"{self.key} seed {self.seed}"


def jobs(the_plan: dict) -> list:
    """The queue: every (notebook, seed) of ``the_plan``, in notebook order, then seed order."""
    return [Job(stem, s) for stem, n in the_plan.items() for s in range(n)]


def ready(pending: list, running) -> list:
    """The jobs of ``pending`` that may start now, in queue order (``running``: the jobs under way).

    A job of an MNIST chapter (02-05, which share ``runs_dir = .../seed-<s>``) waits while another MNIST job of
    its seed runs or comes before it in the queue (notebook order): one seed's folder is written by one job at a
    time, and 02 trains the teachers and the student that 03-05 reload. Other jobs are always ready.
    """
    busy = {j.seed for j in running if j.stem in MNIST_CHAPTERS}
    out = []
    for j in pending:
        if j.stem in MNIST_CHAPTERS:
            if j.seed in busy:
                continue
            busy.add(j.seed)      # the later MNIST jobs of this seed wait for this one
        out.append(j)
    return out


def seed_command(preset: str, device: str, threads, job: Job) -> list:
    """The ``python -m dmdlib sweep`` command of one job: its notebook's sweep (same folder, same settings) for
    its one seed, without publishing."""
    (full,) = commands(preset, device, 1, threads, {job.stem: 1})
    full = full[:full.index("--publish")]
    i = full.index("--seeds")
    return full[:i + 1] + [str(job.seed)] + full[i + 2:]


def _start(cmd: list):
    return subprocess.Popen(cmd, cwd=ROOT)


def run_queue(preset: str, device: str, parallel: int, threads, the_plan: dict, *, start: Callable = _start,
              sleep: Callable = time.sleep, clock: Callable = time.monotonic, poll_s: float = 5.0,
              echo: Callable = print) -> list:
    """Run every job of ``the_plan`` (:func:`jobs`), at most ``parallel`` at a time, in the order :func:`ready`
    allows; publish each notebook (its command from :func:`commands`) once all its seeds have finished, unless
    one failed. ``start(cmd)`` launches a command and returns an object with ``poll()`` and ``wait()`` (a
    :class:`subprocess.Popen`; the tests pass a fake). Returns the notebooks with a failed run or publication.
    """
    if parallel < 1:
        raise ValueError(f"run_queue: parallel must be >= 1, got {parallel}")
    pending, running, failed = jobs(the_plan), {}, set()
    publish = {stem: cmd for stem, cmd in zip(the_plan, commands(preset, device, parallel, threads, the_plan))}
    t0 = clock()
    while pending or running:
        for job, (proc, t) in list(running.items()):
            rc = proc.poll()
            if rc is None:
                continue
            del running[job]
            echo(f"[seeds] {job}: {'finished' if rc == 0 else f'failed (exit {rc})'} after {clock() - t:.0f} s")
            if rc != 0:
                failed.add(job.stem)
            if not any(j.stem == job.stem for j in [*pending, *running]):
                if job.stem in failed:
                    echo(f"[seeds] {job.key}: not published (a run failed; rerun to retry it)")
                else:
                    echo(f"[seeds] {job.key}: every seed finished; publishing")
                    if start(publish[job.stem]).wait() != 0:
                        failed.add(job.stem)
        for job in ready(pending, list(running))[:parallel - len(running)]:
            pending.remove(job)
            echo(f"[seeds] {job}: started ({len(running) + 1} of {parallel} slots, {len(pending)} waiting)")
            running[job] = (start(seed_command(preset, device, threads, job)), clock())
        if running:
            sleep(poll_s)
    echo(f"[seeds] all {sum(the_plan.values())} runs done in {clock() - t0:.0f} s wall")
    return sorted(failed)


def _gpu(device: str) -> bool:
    if device.startswith("cuda"):
        return True
    if device == "auto":
        import torch

        return torch.cuda.is_available()
    return False


def report(preset: str, device: str, parallel: int, threads, the_plan: dict, results: Path) -> str:
    lines = [f"make seeds at preset {preset}: {sum(the_plan.values())} runs of {len(the_plan)} notebooks, "
             f"{parallel} at a time" + (f" with {threads} thread each" if threads else "")]
    total, unknown = 0.0, []
    for stem, n in the_plan.items():
        sec, where = run_estimate(results, preset, stem)
        lines.append(f"  {stem}: seeds 0-{n - 1} ({n} runs); about "
                     + (f"{sec / 60:.0f} min per run ({where})" if sec else f"? per run ({where})"))
        if sec:
            total += n * sec
        else:
            unknown.append(stem)
    cores = os.cpu_count() or 1
    lines.append(f"  one run at a time with all {cores} cores: about {total / 3600:.1f} h wall, "
                 f"{total * cores / 3600:.1f} CPU-hours" + (f" (no estimate for {', '.join(unknown)})" if unknown else ""))
    if parallel > 1 and threads == 1:
        lo, hi = (total / s / 3600 for s in SPEEDUP[::-1])
        lines.append(f"  side by side ({parallel} runs, one thread each): about {lo:.1f}-{hi:.1f} h wall "
                     f"({lo * parallel:.1f}-{hi * parallel:.1f} CPU-hours), if the measured speed-up of "
                     f"{SPEEDUP[0]}-{SPEEDUP[1]} holds")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="quick", choices=("smoke", "quick", "paper"))
    ap.add_argument("--device", default="auto")
    ap.add_argument("--parallel", type=int, default=None, help="runs at a time (default: one per core on a CPU, 1 on a GPU)")
    ap.add_argument("--threads", type=int, default=None, help="threads per run (default: 1 on a CPU, inherited on a GPU)")
    ap.add_argument("--only", nargs="+", default=None, metavar="NB", help="only these notebooks (e.g. 01 02)")
    ap.add_argument("--dry-run", action="store_true", help="print the plan and the commands, run nothing")
    args = ap.parse_args(argv)
    gpu = _gpu(args.device)
    parallel = args.parallel or (1 if gpu else max(1, os.cpu_count() or 1))
    threads = args.threads if args.threads is not None else (None if gpu else 1)
    the_plan = plan()
    if args.only:
        the_plan = {s: n for s, n in the_plan.items() if s.split("_")[0] in args.only}
        if not the_plan:
            ap.error(f"--only {' '.join(args.only)}: no planned notebook; planned: "
                     f"{', '.join(s.split('_')[0] for s in plan())}")
    print(report(args.preset, args.device, parallel, threads, the_plan, ROOT / "results"), flush=True)
    cmds = commands(args.preset, args.device, parallel, threads, the_plan)
    print(f"  one queue of (notebook, seed) runs, {parallel} at a time; then, per notebook, its sweep (each seed "
          "found finished) writes the summary and publishes:", flush=True)
    for cmd in cmds:
        print("  " + " ".join(["python"] + cmd[1:]), flush=True)
    if args.dry_run:
        return 0
    failed = run_queue(args.preset, args.device, parallel, threads, the_plan)
    if failed:
        print(f"[seeds] {len(failed)} notebook(s) had failed runs ({', '.join(failed)}: their logs are in "
              f"_build/sweeps/{args.preset}/claims/<notebook>/logs); rerun to retry them", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
