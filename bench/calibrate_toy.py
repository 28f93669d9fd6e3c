"""Calibration search for the toy `quick` preset: one configuration per call, one JSON line per result.

    python bench/calibrate_toy.py --dataset chessboard --width 256 --t-iters 3000 --d-iters 8000 \
        --d-lr 3e-4 --d-batch 256 --sigma-data data --out /tmp/cal --log bench/calibration_toy.jsonl

Trains the teacher (and, unless --no-reference, a second teacher), distils the
student and prints the numbers the convergence verdict uses (fit to the
teacher's Phi_64, travel, plateau), the teacher's fit to the data and
Delta_E with its interval over R seed sets, with the wall time of each stage.
Run it with ``--threads 1`` to search two configurations at once on 2 cores.
"""
from __future__ import annotations

import argparse
import time
from dataclasses import replace

from calibration_common import add_training_options, log_line, training_overrides


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="chessboard")
    ap.add_argument("--width", type=int)
    ap.add_argument("--depth", type=int)
    ap.add_argument("--sigma-data", default=None, help="'data' or a number")
    ap.add_argument("--no-reference", action="store_true", help="skip the second teacher")
    add_training_options(ap)
    args = ap.parse_args(argv)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from dmdlib import pairing, specs
    from dmdlib.presets import get_preset

    if args.d_iters is not None and args.eval_every is None:
        args.eval_every = max(1, args.d_iters // 10)
    p, t_kw, d_kw = training_overrides(get_preset("toy", args.base), args)
    top = {k: v for k, v in (("width", args.width), ("depth", args.depth)) if v is not None}
    if args.sigma_data is not None:
        top["sigma_data"] = args.sigma_data if args.sigma_data == "data" else float(args.sigma_data)
    p = replace(p, reference_datasets=() if args.no_reference else (args.dataset,), **top)
    t0 = time.perf_counter()
    spec, root = specs.toy_spec(args.dataset, p), f"{args.out}/runs/{args.dataset}"
    pairing.train_spec_teacher(spec, p, root, args.seed, "cpu", progress_bar=False)
    t_teacher = time.perf_counter() - t0
    run = pairing.run_pairing(spec, p, root, seed=args.seed, device="cpu", reference=not args.no_reference,
                              progress_bar=False)
    total = time.perf_counter() - t0
    m = run.metrics
    d, f = m["delta_e"], m["fit"]
    out = {"dataset": args.dataset, "config": {"width": p.width, "depth": p.depth, "sigma_data": m["sigma_data"],
                                                "teacher": t_kw, "dmd": d_kw},
           "delta_e": d["delta_e"], "ci": [d["ci_low"], d["ci_high"]], "converged": d["converged"],
           "failed": d["gates"]["failed"], "fit_ratio": d["gates"]["fit_ratio"], "w2_phi8_ref": f["w2sq_phi8_ref"], "travel": d["gates"]["travel"],
           "plateau_change": d["gates"]["plateau_change"], "plateau_tol": d["gates"]["plateau_tolerance"],
           "w2_student_ref": f["w2sq_student_ref"], "w2_ref_ref": f["w2sq_ref_ref"], "w2_start_ref": f["w2sq_start_ref"],
           "w2_ref_data": f["w2sq_ref_data"], "w2_phi8_data": f["w2sq_phi8_data"], "w2_data_data": f["w2sq_data_data"],
           "support": [f["support_phi8"], f["support_ref"], f["support_student"]],
           "refs": {k: round(v["delta_e"], 4) for k, v in m["references"].items()},
           "along": [round(v, 3) for v in m["delta_e_along"]["delta_e"]],
           "time_teacher_s": round(t_teacher, 1), "time_total_s": round(total, 1)}
    log_line(out, args.log)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
