"""Calibration search for the MLP-manifold points of chapter 06 (`quick`): one configuration per call, one JSON line.

    python bench/calibrate_manifold.py --k 8 --resolution 16 --d-iters 12000 --eval-every 600 --threads 1 \
        --out _build/outputs/quick/06_where_copying_begins/runs/k8 --log bench/calibration/manifold.jsonl

Runs :func:`dmdlib.pairing.run_pairing` on unconditional manifold images of intrinsic dimension k with the
sweep preset's manifold settings and the overrides, reusing teachers and students already in ``--out``
(the chapter's run folder reloads them), and prints Delta_E with its interval, the convergence gates and
Delta_E along distillation, with the wall time.
"""
from __future__ import annotations

import argparse
import time

from calibration_common import add_training_options, log_line, training_overrides


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--k", type=int, required=True, help="intrinsic dimension of the manifold")
    ap.add_argument("--resolution", type=int, default=None, help="image size (default: the sweep preset's)")
    ap.add_argument("--no-reference", action="store_true", help="skip the second teacher")
    add_training_options(ap)
    args = ap.parse_args(argv)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from dmdlib import notebook, pairing, specs
    from dmdlib.presets import get_preset

    sp = get_preset("sweep", args.base)
    if args.d_iters is not None and args.eval_every is None:
        args.eval_every = max(1, args.d_iters // 20)
    p, t_kw, d_kw = training_overrides(sp.manifold, args)
    res = args.resolution or sp.resolution
    t0 = time.perf_counter()
    run = pairing.run_pairing(specs.manifold_spec(args.k, res, 0, sp.manifold_seed), p, args.out, args.seed, "cpu",
                         reference=not args.no_reference, progress_bar=False)
    m = run.metrics
    d, g = m["delta_e"], m["delta_e"]["gates"]
    out = {"k": args.k, "resolution": res, "config": {"teacher": t_kw, "dmd": d_kw},
           "delta_e": d["delta_e"], "ci": [d["ci_low"], d["ci_high"]], "converged": d["converged"],
           "failed": g["failed"], "fit_ratio": g["fit_ratio"], "travel": g["travel"],
           "plateau_change": g["plateau_change"], "plateau_tol": g["plateau_tolerance"],
           "refs": {k: round(v["delta_e"], 4) for k, v in m["references"].items()},
           "along_iter": m["delta_e_along"]["iteration"], "along": [round(v, 3) for v in m["delta_e_along"]["delta_e"]],
           "student": notebook.run_origin(run.student), "time_s": round(time.perf_counter() - t0, 1)}
    log_line(out, args.log)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
