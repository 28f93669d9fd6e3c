"""The command line: ``python -m dmdlib COMMAND`` (train-teacher, distill, evaluate, sweep).

The commands run the stages of the pairing path (:mod:`dmdlib.pairing`) on
the run folders the notebooks use, so a command and a notebook pointed at the same folder
share their runs: for ``--out DIR``, a toy experiment keeps its runs in
``DIR/runs/<dataset>/`` (as notebook 01 with ``output_dir=DIR``) and MNIST in
``DIR/runs/`` (notebook 02's default ``runs_dir``). A rerun resumes an
interrupted run and reloads a finished one. ``train-teacher`` and
``distill`` also run data-parallel under torchrun (:mod:`dmdlib.distributed`);
``evaluate`` and ``sweep`` run in one process.
"""
from __future__ import annotations

import argparse
import sys
import textwrap
from dataclasses import asdict
from pathlib import Path

EXPERIMENTS = ("toy", "mnist")
NOT_YET = ("manifold",)     # named in issue #11, not implemented

DESCRIPTION = """\
Train, distil and evaluate the experiments of "Why Are DMD Students Lazy?" from a shell.

  python -m dmdlib train-teacher --experiment toy --dataset chessboard --preset quick --out runs/chess
  python -m dmdlib distill       --experiment toy --dataset chessboard --preset quick --out runs/chess
  python -m dmdlib evaluate      --experiment toy --dataset chessboard --preset quick --out runs/chess
  python -m dmdlib sweep --notebook 01 --preset quick --seeds 0 1 2 --executor local --out runs/seeds

Data-parallel training on N devices of one machine (the global batch is split across them):

  torchrun --nproc_per_node=N -m dmdlib train-teacher --experiment mnist --preset paper --out runs/mnist

Run `python -m dmdlib COMMAND --help` for the options of a command.
"""

EPILOG_OUT = ("Output folder (--out DIR): the resumable run folders (DIR/runs/<dataset>/ for the toys, DIR/runs/ "
              "for MNIST: the layout of notebooks 01 and 02){what} and DIR/metrics.json (preset, seed, device, "
              "hardware, code version and the command's numbers). Rerunning the same command resumes an interrupted "
              "run and reloads a finished one; a run folder made with another configuration is refused.")


def _fill(text: str) -> str:
    return textwrap.fill(text, 100)


def _int_at_least(low: int, what: str):
    """An argparse type: an integer >= ``low``, with an error saying ``what`` it must be."""
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            v = None
        if v is None or v < low:
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
        return v
    return parse


_seed = _int_at_least(0, "a non-negative integer")
_positive = _int_at_least(1, "an integer >= 1")


def build_parser() -> argparse.ArgumentParser:
    from .data import TOY_DATASETS
    from .presets import PRESET_NAMES
    from .runs import ALLOWED_DEVICES

    ap = argparse.ArgumentParser(prog="python -m dmdlib", description=DESCRIPTION,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", metavar="COMMAND", required=True)

    common = argparse.ArgumentParser(add_help=False)
    g = common.add_argument_group("experiment")
    g.add_argument("--experiment", default="toy", metavar="{toy,mnist}",
                   help="toy: the low-dimensional data sets of notebook 01 (an MLP teacher); mnist: unconditional "
                        "MNIST of notebook 02 (an ADM UNet teacher). Default: toy. (The 'manifold' experiment "
                        "named in issue #11 does not exist yet.)")
    g.add_argument("--dataset", choices=sorted(TOY_DATASETS), default=None,
                   help="the toy data set (default chessboard); --experiment toy only")
    g.add_argument("--preset", choices=PRESET_NAMES, default="quick",
                   help="smoke: seconds, every code path, meaningless numbers; quick: minutes on a CPU; paper: the "
                        "paper's settings (GPU). Default: quick. Settings: dmdlib/presets.py")
    g.add_argument("--seed", type=_seed, default=0,
                   help="the run's seed: network initialisation, training draws and evaluation seeds (default 0)")
    g = common.add_argument_group("where")
    g.add_argument("--out", required=True, metavar="DIR", help="the output folder (see below)")
    g.add_argument("--device", default="auto",
                   help=f"{ALLOWED_DEVICES} (default auto: a GPU if one is visible). Under torchrun, auto and cuda "
                        "give each process the GPU of its LOCAL_RANK")

    cmds = {
        "train-teacher": ("train (or resume, or reload) the EDM teacher",
                          ", DIR/teacher.safetensors (the EMA weights: the teacher)",
                          "Train the EDM teacher of the experiment (EMA weights, snapshots for MNIST); runs "
                          "data-parallel under torchrun."),
        "distill": ("distil the teacher into a one-step student by DMD",
                    ", DIR/student.safetensors (the generator G(z) = D(80 z, 80) as a OneStepGenerator state dict)",
                    "Distil the teacher (trained first if DIR has none) into a one-step student by DMD, recording "
                    "Delta_E on the first evaluation seed set along distillation; runs data-parallel under "
                    "torchrun."),
        "evaluate": ("Delta_E of a distilled student with its interval, verdict and reference levels",
                     "",
                     "Evaluate the finished student in DIR as the notebooks do: Delta_E over R seed sets of N seeds "
                     "with its interval, the convergence verdict (fit, travel, plateau) and the reference levels "
                     "(start, random pairing, second teacher). The second teacher (seed + 1) is trained here if DIR "
                     "has none (train it beforehand with `train-teacher --seed S+1`, e.g. under torchrun). "
                     "metrics.json has the notebooks' record structure (toy: datasets.<name>.delta_e; MNIST: "
                     "delta_e and references). Runs in one process."),
    }
    for name, (short, what, desc) in cmds.items():
        sp = sub.add_parser(name, parents=[common], help=short, description=_fill(desc),
                            epilog=_fill(EPILOG_OUT.format(what=what)),
                            formatter_class=argparse.RawDescriptionHelpFormatter)
        if name != "train-teacher":
            sp.add_argument("--teacher-kimg", type=float, default=None, metavar="KIMG",
                            help="--experiment mnist: the teacher snapshot to distil, in thousands of training "
                                 "images (default: the preset's teacher_kimg)")

    sw = sub.add_parser(
        "sweep", help="run a notebook for many seeds (and grid values) through submitit",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=_fill("Run a notebook with papermill for every combination of --seeds and the -p grids, each run "
                          "in its own folder DIR/<run>/ (parameters preset, device, seed, output_dir and the grid "
                          "values), as submitit jobs on this machine (--executor local) or on Slurm (--executor "
                          "slurm). Waits for the jobs, then writes DIR/summary.csv (one row per finished run and "
                          "reported Delta_E: run, seed, the grid parameters, record, delta_e, ci_low, ci_high, n, r, "
                          "converged) and lists the failed runs with their logs (also in DIR/failed.csv). A rerun "
                          "skips the finished runs."),
        epilog="example:\n  python -m dmdlib sweep --notebook 02 --preset quick --seeds 0 1 2 "
               "-p teacher_kimg 16 128 --executor slurm --partition gpu --gpus-per-node 1 --out runs/kimg")
    sw.add_argument("--notebook", required=True, metavar="NB",
                    help="the notebook: its number in notebooks/ (e.g. 01) or a path to an .ipynb")
    sw.add_argument("--preset", choices=PRESET_NAMES, default="quick", help="the notebooks' preset (default quick)")
    sw.add_argument("--seeds", type=_seed, nargs="+", required=True, metavar="SEED", help="the seeds, e.g. 0 1 2")
    sw.add_argument("-p", dest="grid", nargs="+", action="append", metavar=("NAME", "VALUE"),
                    help="a grid over a notebook parameter: -p NAME VALUE [VALUE ...] (repeatable; values as in "
                         "papermill: numbers, true/false/null, JSON lists, else strings)")
    sw.add_argument("--out", required=True, metavar="DIR", help="the sweep's folder")
    sw.add_argument("--device", default="auto", help=f"the notebooks' device: {ALLOWED_DEVICES} (default auto)")
    sw.add_argument("--executor", choices=("local", "slurm"), default="local",
                    help="local: jobs as processes on this machine; slurm: jobs submitted to Slurm (default local)")
    sw.add_argument("--max-parallel", type=_positive, default=None, metavar="K",
                    help="at most K runs under way at a time (default: 1 for local, all for slurm)")
    sw.add_argument("--partition", default=None, help="Slurm partition (--executor slurm)")
    sw.add_argument("--gpus-per-node", type=int, default=None, metavar="G",
                    help="GPUs per job (default: the GPUs visible here for local, 0 for slurm)")
    sw.add_argument("--threads-per-run", type=_positive, default=None, metavar="T",
                    help="intra-op threads of each run (OMP_NUM_THREADS and MKL_NUM_THREADS in its job; default: "
                         "the environment's). On a 2-core CPU, --max-parallel 2 --threads-per-run 1 runs two seeds "
                         "side by side with one thread each")
    sw.add_argument("--runs-per-seed", default=None, metavar="DIR",
                    help="for notebooks with a runs_dir parameter (02-05): runs_dir = DIR/seed-<seed>, so that the "
                         "sweeps of several notebooks share each seed's teachers and students (as the book build "
                         "does) while seeds run side by side never write the same folder")
    sw.add_argument("--timeout-min", type=_positive, default=1440, metavar="M",
                    help="time limit of each job in minutes (default 1440)")
    sw.add_argument("--publish", default=None, metavar="DEST",
                    help="after the sweep, copy summary.csv, sweep.json, failed.csv and each finished run's "
                         "metrics.json and done.json to DEST (e.g. results/quick/seeds/01; no checkpoints)")
    return ap


def _check(ap: argparse.ArgumentParser, args) -> None:
    """Cross-option checks, reported as argparse errors naming the option and the allowed values."""
    import os

    from .runs import ALLOWED_DEVICES, resolve_device

    if args.command == "sweep":
        if args.executor == "local" and args.partition:
            ap.error("argument --partition: applies to --executor slurm only")
        if args.gpus_per_node is not None and args.gpus_per_node < 0:
            ap.error(f"argument --gpus-per-node: must be >= 0, got {args.gpus_per_node}")
        # only the name: the jobs check that the device exists where they run (a Slurm login node may have no GPU)
        d = args.device
        if not (d in ("auto", "cpu", "cuda") or (d.startswith("cuda:") and d[5:].isdigit())):
            ap.error(f"argument --device: unknown device {d!r}; allowed: {ALLOWED_DEVICES}")
    else:
        if args.experiment in NOT_YET:
            ap.error(f"argument --experiment: {args.experiment!r} does not exist yet; allowed: "
                     f"{', '.join(EXPERIMENTS)}")
        if args.experiment not in EXPERIMENTS:
            ap.error(f"argument --experiment: invalid choice {args.experiment!r}; allowed: {', '.join(EXPERIMENTS)}")
        if args.experiment == "mnist" and args.dataset is not None:
            ap.error("argument --dataset: applies to --experiment toy only (MNIST is one data set)")
        if args.experiment == "toy":
            if getattr(args, "teacher_kimg", None) is not None:
                ap.error("argument --teacher-kimg: applies to --experiment mnist only")
            args.dataset = args.dataset or "chessboard"
        try:
            resolve_device(args.device)
        except ValueError as e:
            ap.error(f"argument --device: {e}")
    if args.command in ("evaluate", "sweep") and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        ap.error(f"{args.command} runs in one process: start it with `python -m dmdlib {args.command} ...`, "
                 "not under torchrun")


# ----------------------------------------------------------------------------- helpers

def _echo(*a, **k):
    from . import distributed

    if distributed.is_main():
        print(*a, **k, flush=True)


def save_weights(path, module, metadata: dict) -> None:
    """Write ``module``'s state dict as safetensors (contiguous CPU tensors; string metadata), atomically."""
    from safetensors.torch import save

    from .runs import atomic_write_bytes

    state = {k: v.detach().to("cpu").contiguous() for k, v in module.state_dict().items()}
    atomic_write_bytes(path, save(state, metadata={k: str(v) for k, v in metadata.items()}))


def _losses(result) -> dict:
    return {"iteration": list(result.loss_iterations), "value": list(result.losses)}


def _teacher_info(t) -> dict:
    from .notebook import run_origin

    return {"run_dir": t.run_dir, "provenance": run_origin(t), "iterations": t.iterations, "kimg": t.kimg,
            "final_loss": t.losses[-1] if t.losses else None, "losses": _losses(t),
            "snapshots": sorted(t.snapshots), "snapshot_unit": t.unit}


def _student_info(s, run_dir) -> dict:
    from .notebook import run_origin

    return {"run_dir": str(run_dir), "provenance": run_origin(s), "iterations": s.iterations,
            "losses": {k: v for k, v in s.logs.items() if k != "eval"},
            "delta_e_along": {"iteration": [e["iteration"] for e in s.logs["eval"]],
                              "delta_e": [e["delta_e"] for e in s.logs["eval"]]}}


class _Ctx:
    """What every command needs: the parsed options, the preset, the device, the clock, the output folder."""

    def __init__(self, args, dev):
        from . import distributed
        from .presets import get_preset
        from .runs import Stopwatch, hardware_info

        self.args, self.dev, self.clock = args, dev, Stopwatch()
        self.p = get_preset(args.experiment, args.preset)
        self.out = Path(args.out)
        self.hw = {**hardware_info(dev), "world_size": distributed.world_size()}
        self.progress = distributed.is_main()

    def meta(self) -> dict:
        a = self.args
        m = {"experiment": a.experiment, "preset": a.preset, "seed": a.seed}
        if a.experiment == "toy":
            m["dataset"] = a.dataset
        return m

    def write_metrics(self, metrics: dict) -> None:
        from . import distributed
        from .notebook import write_metrics

        if distributed.is_main():
            write_metrics(self.out, {"command": self.args.command, **self.meta(),
                                     "world_size": distributed.world_size(), **metrics},
                          preset=self.args.preset, seed=self.args.seed, device=self.dev, hardware=self.hw,
                          wall_time_s=self.clock())

    def spec(self):
        """The experiment's data spec and the root of its run folders: DIR/runs/<dataset> (toy), DIR/runs (MNIST)."""
        from . import distributed, specs

        if self.args.experiment == "toy":
            return specs.toy_spec(self.args.dataset, self.p), self.out / "runs" / self.args.dataset
        with distributed.main_first():     # rank 0 fetches MNIST first
            return specs.mnist_spec(self.p, False, self.dev), self.out / "runs"

    def snapshot(self):
        """The teacher snapshot distilled: None (the final EMA weights) for the toys, --teacher-kimg for MNIST."""
        from .notebook import check_teacher_kimg

        return None if self.args.experiment == "toy" else check_teacher_kimg(self.p, self.args.teacher_kimg)

    def extra(self) -> dict:
        kimg = self.snapshot()
        return {} if kimg is None else {"teacher_snapshot": kimg, "teacher_unit": "kimg"}


# ----------------------------------------------------------------------------- the commands

def train_teacher_cmd(c: _Ctx) -> None:
    from . import distributed
    from .notebook import run_origin
    from .pairing import train_spec_teacher

    spec, root = c.spec()
    t = train_spec_teacher(spec, c.p, root, c.args.seed, c.dev, progress_bar=c.progress)
    if distributed.is_main():
        save_weights(c.out / "teacher.safetensors", t.ema,
                     {**c.meta(), "weights": "EMA teacher (EDMPrecond state dict)", "sigma_data": t.ema.sigma_data})
    c.write_metrics({"teacher": _teacher_info(t), "sigma_data": t.ema.sigma_data, "weights": "teacher.safetensors"})
    _echo(f"teacher: {run_origin(t)}; wrote {c.out / 'teacher.safetensors'} and {c.out / 'metrics.json'}")


def distill_cmd(c: _Ctx) -> None:
    from . import distributed, records
    from .notebook import run_origin
    from .pairing import distill_student, spec_student_dir, teacher_net, train_spec_teacher

    a, p = c.args, c.p
    spec, root = c.spec()
    kimg = c.snapshot()
    t = train_spec_teacher(spec, p, root, a.seed, c.dev, progress_bar=c.progress)
    net = teacher_net(spec, p, t, kimg, c.dev)
    with distributed.main_first():     # rank 0 computes and caches the teacher's outputs, the others read them
        targets = records.eval_targets(spec, p, net, a.seed, root / "samples", c.dev, full=False)
    s = distill_student(spec, p, net, root, targets, a.seed, c.dev, kimg, progress_bar=c.progress)
    run_dir = spec_student_dir(spec, p, root, a.seed, c.dev, kimg)
    if distributed.is_main():
        save_weights(c.out / "student.safetensors", s.generator,
                     {**c.meta(), "weights": "one-step generator (OneStepGenerator state dict)",
                      "sigma_max": s.generator.sigma_max, **c.extra()})
    c.write_metrics({"teacher": _teacher_info(t), "student": _student_info(s, run_dir), **c.extra(),
                     "weights": "student.safetensors"})
    along = s.logs["eval"][-1]["delta_e"] if s.logs["eval"] else float("nan")
    _echo(f"teacher: {run_origin(t)}; student: {run_origin(s)}; Delta_E on the first seed set at the end: "
          f"{along:.4g}\nwrote {c.out / 'student.safetensors'} and {c.out / 'metrics.json'}")


def _need_student(run_dir: Path, a) -> None:
    if not (run_dir / "result.pt").exists():
        raise ValueError(f"no finished student for these options in {run_dir.parent} (expected {run_dir.name}/"
                         f"result.pt); run `python -m dmdlib distill` with the same --experiment, --dataset, "
                         f"--preset, --seed, --device{' and --teacher-kimg' if a.experiment == 'mnist' else ''} "
                         f"and --out first")


def evaluate_cmd(c: _Ctx) -> None:
    from . import evaluation
    from .pairing import run_pairing, spec_student_dir
    from .paper import PAPER

    a, p = c.args, c.p
    spec, root = c.spec()
    kimg = c.snapshot()
    _need_student(spec_student_dir(spec, p, root, a.seed, c.dev, kimg), a)
    toy = a.experiment == "toy"
    # as notebook 01 (toys: second teachers side by side on a CPU) and notebook 02 (MNIST: one after the other)
    run = run_pairing(spec, p, root, a.seed, c.dev, snapshot=kimg,
                      reference=a.dataset in p.reference_datasets if toy else p.reference_teacher,
                      curve=a.dataset in p.curve_datasets if toy else True, progress_bar=c.progress,
                      parallel=None if toy else False)
    m = run.metrics
    if toy:
        metrics = {"datasets": {a.dataset: {**m, "paper_delta_e": PAPER[a.dataset]["delta_e"]}}, "gates": asdict(p.gates)}
    else:
        metrics = {**m, **c.extra(), "unet": p.unet.kwargs(), "paper_delta_e": PAPER["mnist_uncond"]["delta_e"]}
    c.write_metrics(metrics)
    label = a.dataset if toy else "MNIST"
    rec, refs = m["delta_e"], m["references"]
    _echo(evaluation.delta_e_table({label: {"delta_e": rec, "references": refs}}))
    _echo(f"{label}: Delta_E = {evaluation.interval_text(rec)} (N={rec['n']}, R={rec['r']}), "
          f"{evaluation.verdict_text(rec)}\nwrote {c.out / 'metrics.json'}")


def sweep_cmd(args) -> int:
    from . import sweep as sw

    nb = sw.find_notebook(args.notebook)
    import papermill as pm

    grid = sw.parse_grid(args.grid, set(pm.inspect_notebook(str(nb))))
    max_parallel = args.max_parallel if args.max_parallel is not None else (1 if args.executor == "local" else None)
    res = sw.sweep(nb, args.preset, args.seeds, args.out, grid=grid, device=args.device, executor=args.executor,
                   max_parallel=max_parallel, threads=args.threads_per_run, timeout_min=args.timeout_min,
                   partition=args.partition, gpus_per_node=args.gpus_per_node, runs_per_seed=args.runs_per_seed)
    done = len(res.runs) - len(res.failed)
    print(f"[sweep] {len(res.runs)} runs: {len(res.skipped)} finished earlier, {len(res.outcomes)} launched, "
          f"{len(res.failed)} failed")
    print(f"[sweep] summary of {done} finished runs ({len(res.rows)} rows): {res.out / 'summary.csv'}")
    if args.publish:
        written = sw.publish(res.out, args.publish)
        print(f"[sweep] published {len(written)} files to {args.publish}")
    if res.failed:
        print(f"[sweep] failed runs (also in {res.out / 'failed.csv'}):", file=sys.stderr)
        for o in res.failed:
            print(f"  {o.run.name}: {o.error}\n    log: {o.log}\n    notebook: {o.notebook}", file=sys.stderr)
        return 1
    return 0


def main(argv=None) -> int:
    """Parse ``argv`` (default: ``sys.argv[1:]``) and run the command; returns the exit status."""
    ap = build_parser()
    args = ap.parse_args(argv)
    _check(ap, args)
    from .runs import ConfigMismatchError, CorruptCheckpointError, NonFiniteLossError

    from . import distributed
    from .notebook import validate_params

    known = (ValueError, ConfigMismatchError, CorruptCheckpointError, NonFiniteLossError, distributed.RankZeroError)
    if args.command == "sweep":
        try:
            return sweep_cmd(args)
        except known as e:
            print(f"python -m dmdlib sweep: error: {e}", file=sys.stderr)
            return 1

    try:
        validate_params(args.preset, args.device, args.seed, args.out)
        dev = distributed.init(args.device)
        {"train-teacher": train_teacher_cmd, "distill": distill_cmd,
         "evaluate": evaluate_cmd}[args.command](_Ctx(args, dev))
    except known as e:
        print(f"python -m dmdlib {args.command}: error: {e}", file=sys.stderr)
        return 1
    finally:
        if distributed.active():
            distributed.shutdown()
    return 0
