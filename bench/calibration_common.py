"""What the two calibration scripts share: teacher and DMD overrides of a preset, threads, the JSON log."""
from __future__ import annotations

import json
from dataclasses import replace


def add_training_options(ap) -> None:
    """The teacher (--t-*) and DMD (--d-*) overrides, the seed, threads, the output folder and the log."""
    ap.add_argument("--base", default="quick", help="the preset the configuration starts from")
    ap.add_argument("--t-iters", type=int, help="teacher iterations")
    ap.add_argument("--t-batch", type=int, help="teacher batch")
    ap.add_argument("--t-lr", type=float, help="teacher Adam learning rate")
    ap.add_argument("--t-ema", type=float, help="teacher EMA half-life (kimg)")
    ap.add_argument("--d-iters", type=int, help="DMD iterations")
    ap.add_argument("--d-batch", type=int, help="DMD batch")
    ap.add_argument("--d-lr", type=float, help="learning rate of both DMD networks")
    ap.add_argument("--d-lr-fake", type=float, help="the fake score's learning rate, if other than --d-lr")
    ap.add_argument("--d-warmup", type=int, help="DMD warm-up (iterations)")
    ap.add_argument("--eval-every", type=int, help="iterations between evaluations along distillation")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (1: two searches at once on 2 cores)")
    ap.add_argument("--out", required=True, help="run folder")
    ap.add_argument("--log", default=None, help="append the JSON line to this file")


def _checkpoint_every(iterations: int, log_every: int) -> int:
    """About five checkpoints per run, on a multiple of log_every (the loops require it)."""
    return max(log_every, (iterations // 5) // log_every * log_every)


def training_overrides(p, args):
    """``p`` with the teacher and DMD overrides of ``args``; returns (preset, teacher overrides, DMD overrides)."""
    t_kw = {k: v for k, v in (("iterations", args.t_iters), ("batch_size", args.t_batch), ("lr", args.t_lr),
                              ("ema_halflife_kimg", args.t_ema)) if v is not None}
    d_kw = {k: v for k, v in (("iterations", args.d_iters), ("batch_size", args.d_batch), ("lr", args.d_lr),
                              ("lr_fake", args.d_lr_fake or args.d_lr), ("warmup_steps", args.d_warmup),
                              ("eval_every", args.eval_every)) if v is not None}
    if "iterations" in t_kw:
        t_kw["checkpoint_every"] = _checkpoint_every(t_kw["iterations"], p.teacher.log_every)
    if "iterations" in d_kw:
        d_kw["checkpoint_every"] = _checkpoint_every(d_kw["iterations"], p.dmd.log_every)
    return replace(p, teacher=replace(p.teacher, **t_kw), dmd=replace(p.dmd, **d_kw)), t_kw, d_kw


def log_line(out: dict, path=None) -> None:
    """Print ``out`` as one JSON line and append it to ``path``."""
    line = json.dumps(out)
    print(line, flush=True)
    if path:
        with open(path, "a") as fh:
            fh.write(line + "\n")
