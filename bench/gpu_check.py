"""One command that checks a GPU (issue #24): ``bench/gpu_check.sh [--json PATH] [--no-compile] [--skip-notebooks]``.

On a CUDA machine (at most about 8 minutes on an H100) it

1. prints the device and the torch, CUDA and cuDNN versions;
2. runs the tests marked ``cuda`` (``pytest -m cuda``: TF32 off while sampling in reference mode, two one-iteration
   reference runs bit-identical, a reference resume bit-identical, the fast path's DM gradient at cosine >= 0.99
   to fp32, the teacher and DMD benchmarks run);
3. executes every notebook at ``smoke`` with ``device=cuda`` (``scripts/build_book.py --fresh --no-html``; the
   MNIST chapters need MNIST in ``$DMDLIB_DATA_DIR``, or a network to fetch it);
4. times teacher training and DMD with the paper's MNIST UNet at batch 32 in the authors' configuration
   (``accel.REFERENCE``: fp32, TF32 off, eager) and on the fast path (``accel.FAST``; without torch.compile when
   ``--no-compile`` is given or less than :data:`COMPILE_NEEDS_S` of the budget is left), with
   ``bench/bench_mnist.py``'s timing code: images/s, their ratio, and the fraction of the GPU's dense bf16 peak
   from the FLOP count (8.07 GFLOP per forward pass of a 32x32 image; a training step is 3 forward passes, a DMD
   iteration 4.8 per image, book/paper_scale.md);
5. checks that Phi_K is unchanged by a fast-path training run and by bf16 autocast with TF32 on
   (``bench_mnist.sampler_check``);

and writes everything to one JSON (default ``results/gpu/gpu_check.json``). It exits with 1 if a part failed.

On a CPU it says there is no GPU and runs its CPU part in well under a minute: the CPU tests of the fast-path
numerics (``tests/test_gpu_path.py`` without the ``cuda`` ones), the sampler check and a tiny throughput run
(the smoke UNet, no compile, no peak fraction); the JSON goes to ``_build/gpu/gpu_check.json`` by default (a CPU's
numbers are no GPU result). ``tests/test_gpu_check.py`` runs this part in CI.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import torch  # noqa: E402

import dmdlib  # noqa: E402
from dmdlib import accel  # noqa: E402

PAPER_FORWARD_GFLOP = 8.07      # one forward pass of the paper's MNIST UNet on a 32x32 image (book/paper_scale.md)
BUDGET_S = 480                  # the whole check on a GPU
COMPILE_NEEDS_S = 240           # the fast path is timed with torch.compile only if this much of the budget is left
# dense bf16 tensor-core peaks (TFLOP/s, vendor data sheets), matched in order against the device name
BF16_PEAK_TFLOPS = (("H200", 989.4), ("GH200", 989.4), ("H100 NVL", 835.5), ("H100 PCIe", 756.5), ("H100", 989.4),
                    ("A100", 312.0), ("L40S", 362.1), ("L4", 121.0), ("A10", 125.0))


def versions(dev: torch.device) -> dict:
    out = {"device": str(dev), "torch": torch.__version__, "cuda": torch.version.cuda,
           "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
           "python": sys.version.split()[0], "hardware": dmdlib.hardware_info(dev)}
    if dev.type == "cuda":
        prop = torch.cuda.get_device_properties(dev)
        out.update(gpu=prop.name, capability=f"{prop.major}.{prop.minor}", memory_gib=prop.total_memory / 2 ** 30)
    return out


def bf16_peak(name: str):
    return next((peak for key, peak in BF16_PEAK_TFLOPS if key in name), None)


def run(cmd: list, timeout: float, env=None) -> dict:
    """A subprocess with its return code, wall time and output tail (printed as it comes)."""
    t = time.perf_counter()
    print("[gpu_check] $", " ".join(map(str, cmd)), flush=True)
    try:
        proc = subprocess.run([str(c) for c in cmd], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, **(env or {})})
        rc, out = proc.returncode, proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as e:
        rc, out = "timeout", ((e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes)
                              else (e.stdout or "")) + f"\n[gpu_check] timed out after {timeout:.0f} s"
    tail = out.strip().splitlines()[-15:]
    print("\n".join("    " + line for line in tail), flush=True)
    return {"returncode": rc, "seconds": time.perf_counter() - t, "summary": tail[-1] if tail else "", "tail": tail}


def throughput(dev: torch.device, unet: str, compile_: bool, steps: int, warmup: int, peak_tflops) -> dict:
    """Teacher and DMD speed at batch 32, reference against the fast path (bench_mnist's timing code)."""
    import bench_mnist

    p = dmdlib.get_preset("mnist", unet)
    p = dataclasses.replace(p, teacher=dataclasses.replace(p.teacher, batch_size=32),
                            dmd=dataclasses.replace(p.dmd, batch_size=32))
    gflop = PAPER_FORWARD_GFLOP if unet == "paper" else None
    g = p.dmd.gen_every
    dmd_passes = (8 + 4 * (g - 1)) / g     # forward-pass equivalents per image and DMD iteration (4.8 at 1:5)
    out = {"unet": unet, "batch": 32, "steps": steps, "warmup": warmup, "forward_gflop": gflop,
           "bf16_peak_tflops": peak_tflops, "dmd_forward_passes_per_image": dmd_passes}
    fast = dataclasses.replace(accel.FAST, compile=compile_)
    for name, speed in (("reference", accel.REFERENCE), ("fast", fast)):
        tt = bench_mnist.time_teacher(p, speed, dev, steps, warmup)
        td = bench_mnist.time_dmd(p, speed, dev, steps, warmup)
        rec = {"speed": dataclasses.asdict(speed), "teacher_images_per_s": tt["images_per_s"],
               "dmd_images_per_s": td["it_per_s"] * 32, "dmd_it_per_s": td["it_per_s"],
               "peak_gib": max(tt["peak_gib"], td["peak_gib"])}
        if gflop and peak_tflops:
            rec["teacher_fraction_of_bf16_peak"] = tt["images_per_s"] * 3 * gflop / (peak_tflops * 1e3)
            rec["dmd_fraction_of_bf16_peak"] = rec["dmd_images_per_s"] * dmd_passes * gflop / (peak_tflops * 1e3)
        out[name] = rec
        frac = (f", {rec['teacher_fraction_of_bf16_peak']:.1%} / {rec['dmd_fraction_of_bf16_peak']:.1%} of bf16 peak"
                if "teacher_fraction_of_bf16_peak" in rec else "")
        print(f"[gpu_check] {name:9s} teacher {rec['teacher_images_per_s']:9.1f} img/s, DMD "
              f"{rec['dmd_images_per_s']:9.1f} img/s ({rec['dmd_it_per_s']:.2f} it/s){frac}", flush=True)
    accel.set_tf32(False)
    out["ratio_teacher"] = out["fast"]["teacher_images_per_s"] / out["reference"]["teacher_images_per_s"]
    out["ratio_dmd"] = out["fast"]["dmd_images_per_s"] / out["reference"]["dmd_images_per_s"]
    print(f"[gpu_check] fast / reference: teacher {out['ratio_teacher']:.2f}x, DMD {out['ratio_dmd']:.2f}x", flush=True)
    return out


def phase(report: dict, name: str, fn) -> None:
    """Run one part, record its result (or its error) and its wall time under ``report[name]``."""
    t = time.perf_counter()
    try:
        report[name] = fn()
        ok = not isinstance(report[name], dict) or report[name].get("returncode", 0) == 0
    except Exception as e:   # a failed part is recorded and the check goes on
        traceback.print_exc()
        report[name], ok = {"error": f"{type(e).__name__}: {e}"}, False
    report[name]["seconds"] = report[name].get("seconds", time.perf_counter() - t)
    report[name]["ok"] = ok


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", default=None, help="where the report goes (default: results/gpu/gpu_check.json on a "
                                                 "GPU, _build/gpu/gpu_check.json on a CPU)")
    ap.add_argument("--no-compile", action="store_true", help="time the fast path without torch.compile")
    ap.add_argument("--skip-notebooks", action="store_true", help="do not execute the notebooks at smoke")
    ap.add_argument("--steps", type=int, default=20, help="timed iterations per measurement on a GPU")
    ap.add_argument("--peak-tflops", type=float, default=None,
                    help="the GPU's dense bf16 peak (TFLOP/s) when its name is not in BF16_PEAK_TFLOPS")
    args = ap.parse_args(argv)
    start = time.perf_counter()
    cuda = torch.cuda.is_available()
    dev = torch.device("cuda" if cuda else "cpu")
    report = {"cuda_available": cuda, **versions(dev)}
    print(f"[gpu_check] device {dev}" + (f" ({report.get('gpu')}, capability {report.get('capability')}, "
                                         f"{report.get('memory_gib', 0):.0f} GiB)" if cuda else ": no GPU visible")
          + f"; torch {report['torch']}, CUDA {report['cuda']}, cuDNN {report['cudnn']}", flush=True)
    py = sys.executable
    if cuda:
        peak = args.peak_tflops or bf16_peak(str(report.get("gpu", "")))
        phase(report, "cuda_tests", lambda: run([py, "-m", "pytest", "-q", "-rs", "-m", "cuda", "tests"], 240))
        if not args.skip_notebooks:
            build = ROOT / "_build" / "gpu_check"
            phase(report, "notebooks", lambda: run([py, "scripts/build_book.py", "--preset", "smoke", "--device", "cuda",
                                                    "--fresh", "--no-html", "--build-dir", build], 300))
        left = BUDGET_S - (time.perf_counter() - start)
        use_compile = not args.no_compile and left >= COMPILE_NEEDS_S
        report["fast_path_compiled"] = use_compile
        if not use_compile and not args.no_compile:
            print(f"[gpu_check] {left:.0f} s of the {BUDGET_S} s budget left: the fast path is timed without "
                  f"torch.compile", flush=True)
        phase(report, "throughput", lambda: throughput(dev, "paper", use_compile, args.steps, 5, peak))
    else:
        print("[gpu_check] no CUDA GPU: running the CPU part (the fast path's numerics on the CPU, the sampler "
              "check, a tiny throughput run); the GPU parts need a CUDA machine", flush=True)
        phase(report, "cpu_tests", lambda: run([py, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not cuda",
                                                "tests/test_gpu_path.py"], 300))
        phase(report, "throughput", lambda: throughput(dev, "smoke", False, 2, 1, None))
    import bench_mnist

    p = dmdlib.get_preset("mnist", "paper" if cuda else "smoke")
    phase(report, "sampler_check", lambda: bench_mnist.sampler_check(p, dev, dataclasses.replace(accel.FAST,
                                                                                                 compile=False)))
    sc = report["sampler_check"]
    if "after_training" in sc:
        sc["ok"] = sc["after_training"] == 0 and sc["inside_bf16_tf32"] == 0
        print(f"[gpu_check] sampler: Phi_{sc['k']} max |diff| after bf16 training {sc['after_training']:.3g}, inside "
              f"bf16 autocast with TF32 on {sc['inside_bf16_tf32']:.3g} (0 expected)", flush=True)
    parts = [k for k, v in report.items() if isinstance(v, dict) and "ok" in v]
    report["ok"] = all(report[k]["ok"] for k in parts)
    report["seconds"] = time.perf_counter() - start
    path = Path(args.json) if args.json else ROOT / ("results/gpu" if cuda else "_build/gpu") / "gpu_check.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    dmdlib.write_json(path, report)
    print(f"[gpu_check] {'passed' if report['ok'] else 'FAILED: ' + ', '.join(k for k in parts if not report[k]['ok'])}"
          f" in {report['seconds']:.0f} s; report: {path}", flush=True)
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
