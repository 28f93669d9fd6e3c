"""Calibration search for the exact-teacher `quick` preset (chapter 09): one point per call, one JSON line per result.

    python bench/calibrate_exact.py --family ring --dim 4 --tau 0 --t-iters 1500 --d-iters 3000 \
        --d-lr 2.5e-4 --out /tmp/calx --threads 1 --log bench/calibration/exact.jsonl

Regresses the network (and a second one, seed + 1) onto the exact teacher, distils the student and prints
the numbers of its record: Delta_E with its interval and reference levels, mode agreement with chance and
the second network's level, intrinsic Delta_E, relative pairing error, the reading, the gates, how far the
regressed start is from the exact Phi_1, and the wall time of each stage.
"""
from __future__ import annotations

import argparse
import time
from dataclasses import replace

from calibration_common import log_line


def _spec(args, P):
    from dmdlib import exact

    if args.family == "ring":
        return exact.ring_spec(args.dim, args.tau, P.ring_components, P.ring_radius, P.ring_std)
    if args.family == "sphere":
        return exact.sphere_spec(P.components, args.k, args.dim, P.radius, P.std, P.separation, args.tau,
                                 P.sphere_seed, P.embedding_seed)
    return exact.gaussian_spec(P.gaussian_std)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--family", choices=("ring", "sphere", "gaussian"), default="ring")
    ap.add_argument("--dim", type=int, default=4)
    ap.add_argument("--k", type=int, default=2)
    ap.add_argument("--tau", type=float, default=0.0)
    ap.add_argument("--base", default="quick")
    ap.add_argument("--width", type=int)
    ap.add_argument("--depth", type=int)
    ap.add_argument("--t-iters", type=int)
    ap.add_argument("--t-lr", type=float)
    ap.add_argument("--d-iters", type=int)
    ap.add_argument("--d-lr", type=float)
    ap.add_argument("--d-batch", type=int)
    ap.add_argument("--eval-every", type=int)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-reference", action="store_true")
    ap.add_argument("--out", required=True)
    ap.add_argument("--log", default=None)
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from dmdlib import pairing
    from dmdlib.presets import get_preset

    P = get_preset("exact", args.base)
    p = P.point
    t_kw = {k: v for k, v in (("iterations", args.t_iters), ("lr", args.t_lr)) if v is not None}
    d_kw = {k: v for k, v in (("iterations", args.d_iters), ("lr", args.d_lr), ("lr_fake", args.d_lr),
                              ("batch_size", args.d_batch), ("eval_every", args.eval_every)) if v is not None}
    top = {k: v for k, v in (("width", args.width), ("depth", args.depth)) if v is not None}
    p = replace(p, teacher=replace(p.teacher, **t_kw), dmd=replace(p.dmd, **d_kw), **top)
    spec = _spec(args, P)
    root = f"{args.out}/runs"
    t0 = time.perf_counter()
    pairing.train_spec_teachers(spec, p, root, [args.seed] + ([] if args.no_reference else [args.seed + 1]), "cpu",
                                progress_bar=False)
    t_reg = time.perf_counter() - t0
    run = pairing.run_pairing(spec, p, root, seed=args.seed, device="cpu", reference=not args.no_reference,
                              progress_bar=False)
    total = time.perf_counter() - t0
    m = run.metrics
    d, ms, rd = m["delta_e"], m["measures"] or {}, m["reading"]
    v = lambda x: None if x is None else round(x["value"], 4)  # noqa: E731
    agr = ms.get("agreement") or {}
    out = {"family": args.family, "dim": args.dim, "k": args.k if args.family == "sphere" else None, "tau": args.tau,
           "config": {"width": p.width, "depth": p.depth, "teacher": t_kw, "dmd": d_kw, "threads": args.threads},
           "delta_e": d["delta_e"], "ci": [d["ci_low"], d["ci_high"]], "converged": d["converged"],
           "failed": d["gates"]["failed"], "fit_ratio": d["gates"]["fit_ratio"], "travel": d["gates"]["travel"],
           "plateau_change": d["gates"]["plateau_change"], "plateau_tol": d["gates"]["plateau_tolerance"],
           "refs": {k: round(r["delta_e"], 4) for k, r in m["references"].items()},
           "agreement": {k: v(agr.get(k)) for k in ("student", "chance", "start", "second", "random")},
           "intrinsic": {k: round(r["delta_e"], 4) for k, r in (ms.get("intrinsic_delta_e") or {}).items()},
           "relative_error": {k: round(r["value"], 4) for k, r in (ms.get("relative_error") or {}).items()},
           "reading": rd, "regressed_start": round(m["regressed_start"]["relative"], 4),
           "along": [round(x, 3) for x in m["delta_e_along"]["delta_e"]],
           "time_regression_s": round(t_reg, 1), "time_total_s": round(total, 1)}
    log_line(out, args.log)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
