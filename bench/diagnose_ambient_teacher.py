"""Does the toys' MLP teacher learn the chessboard embedded in R^d? Its samples' distance from the plane and board.

    python bench/diagnose_ambient_teacher.py --dim 64 --iterations 12000 --out /tmp/diag-d64 \
        --log bench/calibration/ambient_teacher.jsonl

Trains (or reloads from ``--out``) one teacher of chapter 06's ambient-dimension sweep (the chessboard embedded by
a fixed random orthogonal map, the toys' quick MLP and training, sigma_data of the R^4 chessboard) with the
given number of iterations, and prints one JSON line with, for 2000 samples of Phi_8 and Phi_64, the mean
distance from the embedding plane (``off_*``: the noise left in the d - 2 empty directions, 0 for data; chapter
06 calls a teacher whose Phi_64 lies farther than ``dimensions.OFF_PLANE_MAX`` a failed one) and the fraction on a
black cell of the board in the plane (``support_*``: 1 for data, about 0.5 for samples spread evenly over the
board's square).
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dim", type=int, required=True, help="ambient dimension d")
    ap.add_argument("--iterations", type=int, default=None, help="teacher iterations (default: the preset's 3000)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--out", required=True, help="run folder (a teacher found there is reloaded)")
    ap.add_argument("--log", default=None, help="append the JSON line to this file")
    args = ap.parse_args(argv)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from dmdlib import pairing, specs
    from dmdlib.data.toy import data_std, orthogonal_embedding, support_fraction
    from dmdlib.presets import get_preset
    from dmdlib.sampler import phi_k

    sp = get_preset("sweep", "quick")
    p = replace(sp.chessboard, dim=args.dim)
    if args.iterations is not None:
        p = replace(p, teacher=replace(p.teacher, iterations=args.iterations, checkpoint_every=args.iterations))
    spec = specs.embedded_chessboard_spec(args.dim, data_std("chessboard", 4), sp.embedding_seed)
    t0 = time.perf_counter()
    teacher = pairing.train_spec_teacher(spec, p, args.out, 0, "cpu", progress_bar=False)
    out = {"dim": args.dim, "iterations": p.teacher.iterations, "train_s": round(time.perf_counter() - t0, 1)}
    e = orthogonal_embedding(args.dim, sp.embedding_seed).double()
    z = torch.randn(2000, args.dim, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        for k in (8, 64):
            x = phi_k(teacher.ema.eval(), z, k).double()
            out[f"off_phi{k}"] = round(float((x - (x @ e) @ e.T).norm(dim=1).mean()), 4)
            out[f"support_phi{k}"] = round(support_fraction("chessboard", x, embedding="orthogonal",
                                                            embedding_seed=sp.embedding_seed), 4)
    line = json.dumps(out)
    print(line)
    if args.log:
        with open(args.log, "a") as f:
            f.write(line + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
