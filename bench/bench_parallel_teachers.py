"""Two teachers one after another (all threads) against side by side (one worker process each, threads split).

    python bench/bench_parallel_teachers.py --iterations 300 --json bench/calibration/parallel_teachers.jsonl

For the quick presets' manifold UNet (chapter 06, 8 x 8) and the toys' MLP (the chessboard in R^16), prints
the wall time of :func:`dmdlib.pairing.train_spec_teachers` with ``parallel=False`` and ``parallel=True``
for two seeds and their ratio (the time the sweep chapters spend on their teachers scales with it).
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import replace


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--iterations", type=int, default=300, help="teacher iterations per run")
    ap.add_argument("--json", default=None, help="append one JSON line per network here")
    args = ap.parse_args(argv)

    import torch

    from dmdlib import pairing, specs
    from dmdlib.presets import get_preset

    sp = get_preset("sweep", "quick")
    cases = {"manifold UNet 8x8 (k=4)": (specs.manifold_spec(4, sp.resolution), sp.manifold),
             "toy MLP (chessboard, d=16)": (specs.embedded_chessboard_spec(16, 0.817), replace(sp.chessboard, dim=16))}
    for name, (spec, p) in cases.items():
        p = replace(p, teacher=replace(p.teacher, iterations=args.iterations, checkpoint_every=10 ** 9))
        times = {}
        for parallel in (False, True):
            with tempfile.TemporaryDirectory() as d:
                t0 = time.perf_counter()
                pairing.train_spec_teachers(spec, p, d, [0, 1], "cpu", progress_bar=False, parallel=parallel)
                times[parallel] = time.perf_counter() - t0
        line = {"network": name, "iterations": args.iterations, "threads": torch.get_num_threads(),
                "one_after_another_s": round(times[False], 2), "side_by_side_s": round(times[True], 2),
                "speedup": round(times[False] / times[True], 2)}
        print(json.dumps(line), flush=True)
        if args.json:
            with open(args.json, "a") as f:
                f.write(json.dumps(line) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
