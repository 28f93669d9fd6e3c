"""Speed of teacher training and DMD on one device: the authors' configuration vs our fast path.

    python bench/bench_mnist.py                      # paper MNIST UNet on the default device
    python bench/bench_mnist.py --unet quick --device cpu --steps 5 --warmup 2

(a) reference: fp32, TF32 off, eager, unfused Adam (as the authors ran it);
(b) fast: TF32, bf16 autocast, channels_last, torch.compile, fused optimizers.
For each it times teacher training (images/s) and DMD iterations (it/s, the
1:5 schedule included) and prints peak GPU memory and the ratios. It also
times Delta_E at N = 1,000 and N = 10,000 on the CPU (float64, exact
assignment), and checks that bf16 training leaves the fp32 sampler's output
unchanged (:func:`sampler_check`: Phi_K of one network before and after a
fast-path training run, and inside bf16 autocast with TF32 on; the sampler
runs in fp32 whatever the caller set, so both differences are 0; printed
beside what a bf16 forward pass would differ by). It then times ``--students``
DMD students (distinct teachers, the teacher-convergence sweep) trained one
after another and side by side (dmdlib.concurrent), fp32, and prints the
speed-up. Results go to stdout and, with
--json, to a file. Goals (issue tracker): >= 5x for both on an H100;
Delta_E <= 0.1 s at N = 1,000 and <= 20 s at N = 10,000 on a 2-core CPU.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import dmdlib  # noqa: E402
from dmdlib import accel  # noqa: E402
from dmdlib.specs import denoiser as mnist_denoiser  # noqa: E402


def _sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _peak_reset(dev):
    if dev.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(dev)


def _peak(dev):
    return torch.cuda.max_memory_allocated(dev) / 2 ** 30 if dev.type == "cuda" else float("nan")


def time_teacher(p, speed, dev, steps, warmup):
    torch.manual_seed(0)
    net = mnist_denoiser(p)
    data = torch.rand(4096, 1, 32, 32, device=dev) * 2 - 1
    cfg = dataclasses.replace(p.teacher, iterations=warmup + steps, checkpoint_every=warmup + steps,
                              log_every=warmup + steps, snapshots=())
    n = data.shape[0]
    data_fn = lambda b, g: data[torch.randint(0, n, (b,), generator=g, device=dev)]  # noqa: E731
    _peak_reset(dev)
    # warm-up run (compilation), then the timed run continues from a fresh start of the same length
    dmdlib.train_teacher(net, data_fn, dataclasses.replace(cfg, iterations=warmup, checkpoint_every=warmup,
                                                           log_every=warmup), device=dev, progress_bar=False,
                         speed=speed)
    _sync(dev)
    t = time.perf_counter()
    dmdlib.train_teacher(net, data_fn, dataclasses.replace(cfg, iterations=steps, checkpoint_every=steps,
                                                           log_every=steps), device=dev, progress_bar=False,
                         speed=speed)
    _sync(dev)
    dt = time.perf_counter() - t
    return {"images_per_s": steps * cfg.batch_size / dt, "s_per_it": dt / steps, "peak_gib": _peak(dev)}


def time_dmd(p, speed, dev, steps, warmup):
    torch.manual_seed(0)
    teacher = mnist_denoiser(p).to(dev)
    shape = (p.unet.in_channels, p.unet.img_resolution, p.unet.img_resolution)
    _peak_reset(dev)
    w = max(warmup, p.dmd.gen_every)
    dmdlib.distill(teacher, shape, dataclasses.replace(p.dmd, iterations=w, checkpoint_every=w, log_every=w,
                                                       eval_every=0), device=dev, progress_bar=False, speed=speed)
    _sync(dev)
    steps = max(steps, p.dmd.gen_every) // p.dmd.gen_every * p.dmd.gen_every
    t = time.perf_counter()
    dmdlib.distill(teacher, shape, dataclasses.replace(p.dmd, iterations=steps, checkpoint_every=steps,
                                                       log_every=steps, eval_every=0),
                   device=dev, progress_bar=False, speed=speed)
    _sync(dev)
    dt = time.perf_counter() - t
    return {"it_per_s": steps / dt, "s_per_it": dt / steps, "peak_gib": _peak(dev)}


def sampler_check(p, dev, speed, n=8, k=4):
    """Max |difference| of Phi_K of a random network on ``n`` seeds: fp32 as is vs (a) after a 2-iteration training run at ``speed``
    (global flags it might leave behind) and (b) inside bf16 autocast with TF32 on; both must be 0. ``bf16_forward``:
    what one bf16-autocast forward pass of the same network differs by from fp32, the scale a bf16 sampler would
    have."""
    torch.manual_seed(0)
    net = mnist_denoiser(p).to(dev).eval()
    with torch.no_grad():   # a random network whose output is not zero (ADM's output layers start at zero)
        for q in net.parameters():
            q.add_(0.02 * torch.randn_like(q))
    shape = (p.unet.in_channels, p.unet.img_resolution, p.unet.img_resolution)
    z = torch.randn((n, *shape), generator=torch.Generator().manual_seed(1)).to(dev)
    ref = dmdlib.phi_k(net, z, k)
    data = torch.rand(64, *shape, device=dev) * 2 - 1
    cfg = dataclasses.replace(p.teacher, iterations=2, batch_size=8, checkpoint_every=2, log_every=2, snapshots=())
    dmdlib.train_teacher(mnist_denoiser(p), lambda b, g: data[torch.randint(0, 64, (b,), generator=g, device=dev)],
                         cfg, device=dev, progress_bar=False, speed=speed)
    after = dmdlib.phi_k(net, z, k)
    prev = accel.set_tf32(True)
    try:
        with torch.autocast(dev.type, dtype=torch.bfloat16):
            inside = dmdlib.phi_k(net, z, k)
            sigma = torch.full((n,), 1.0, device=dev)
            with torch.no_grad():
                d_bf16 = net(z, sigma)
    finally:
        accel.set_tf32(prev[0])
    with torch.no_grad():
        d_fp32 = net(z, torch.full((n,), 1.0, device=dev))
    return {"after_training": (after - ref).abs().max().item(), "inside_bf16_tf32": (inside - ref).abs().max().item(),
            "bf16_forward": (d_bf16.float() - d_fp32).abs().max().item(), "k": k, "n": n}


def time_delta_e(n, dim=1024, repeats=3, noise=0.3):
    """Best-of-``repeats`` time of pairing_inefficiency on N x dim float32 samples.

    ``noise`` is the relative offset of the student from the teacher: 0.3 is
    the copying regime (the assignment is nearly the identity, the solver's
    easy case); ``None`` draws independent sets (no structure, the hard case).
    """
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, dim)).astype(np.float32)
    y = (x + noise * rng.standard_normal((n, dim)) if noise is not None
         else rng.standard_normal((n, dim))).astype(np.float32)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        dmdlib.pairing_inefficiency(x, y)
        best = min(best, time.perf_counter() - t)
    return best


def time_students(p, dev, n_students, steps, warmup, speed=None):
    """Sequential vs side-by-side training of ``n_students`` DMD students (distinct teachers), in it/s per student."""
    from dmdlib.concurrent import distill_concurrent

    shape = (p.unet.in_channels, p.unet.img_resolution, p.unet.img_resolution)
    teachers = []
    for s in range(n_students):
        torch.manual_seed(s)
        teachers.append(mnist_denoiser(p).to(dev))
    steps = max(steps, p.dmd.gen_every) // p.dmd.gen_every * p.dmd.gen_every
    w = max(warmup, p.dmd.gen_every)
    cfg = lambda n: dataclasses.replace(p.dmd, iterations=n, checkpoint_every=n, log_every=n, eval_every=0)  # noqa: E731
    out = {}
    for mode in ("sequential", "concurrent"):
        def run(n):
            if mode == "sequential":
                for t in teachers:
                    dmdlib.distill(t, shape, cfg(n), device=dev, progress_bar=False, speed=speed)
            else:
                distill_concurrent(teachers, shape, cfg(n), device=dev, progress_bar=False, speed=speed)
        _peak_reset(dev)
        run(w)
        _sync(dev)
        t = time.perf_counter()
        run(steps)
        _sync(dev)
        dt = time.perf_counter() - t
        out[mode] = {"seconds": dt, "student_it_per_s": n_students * steps / dt, "peak_gib": _peak(dev)}
    out["speedup"] = out["sequential"]["seconds"] / out["concurrent"]["seconds"]
    out["n_students"], out["steps"] = n_students, steps
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--unet", default="paper", choices=["smoke", "quick", "paper"],
                    help="which preset's UNet and batch sizes to time")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--skip-delta-e", action="store_true")
    ap.add_argument("--delta-e-sizes", type=int, nargs="*", default=[1000, 10000])
    ap.add_argument("--no-compile", action="store_true", help="fast path without torch.compile")
    ap.add_argument("--skip-training", action="store_true", help="time only Delta_E")
    ap.add_argument("--students", type=int, default=6,
                    help="students for the sequential vs side-by-side comparison (0 = skip)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    dev = dmdlib.resolve_device(args.device)
    p = dmdlib.get_preset("mnist", args.unet)
    out = {"device": str(dev), "hardware": dmdlib.hardware_info(dev), "unet": p.unet.kwargs(),
           "teacher_batch": p.teacher.batch_size, "dmd_batch": p.dmd.batch_size, "steps": args.steps}
    print(f"device {dev} ({out['hardware'].get('gpu', out['hardware']['cpu'])}), UNet preset {args.unet}, "
          f"{sum(q.numel() for q in mnist_denoiser(p).parameters()):,} parameters")
    fast = dataclasses.replace(accel.FAST, compile=not args.no_compile)
    for name, speed in (() if args.skip_training else (("reference", accel.REFERENCE), ("fast", fast))):
        tt = time_teacher(p, speed, dev, args.steps, args.warmup)
        td = time_dmd(p, speed, dev, args.steps, args.warmup)
        out[name] = {"teacher": tt, "dmd": td, "speed": dataclasses.asdict(speed)}
        print(f"{name:9s} teacher {tt['images_per_s']:9.1f} img/s  DMD {td['it_per_s']:7.2f} it/s  "
              f"peak {max(tt['peak_gib'], td['peak_gib']):.2f} GiB")
    accel.set_tf32(False)
    if not args.skip_training:
        sc = sampler_check(p, dev, dataclasses.replace(fast, compile=False))
        out["sampler_check"] = sc
        print(f"sampler (Phi_{sc['k']}, fp32): max |diff| after bf16 training {sc['after_training']:.3g}, inside bf16 "
              f"autocast with TF32 on {sc['inside_bf16_tf32']:.3g} (0 expected; one bf16 forward pass differs by "
              f"{sc['bf16_forward']:.3g})")
        out["ratio_teacher"] = out["fast"]["teacher"]["images_per_s"] / out["reference"]["teacher"]["images_per_s"]
        out["ratio_dmd"] = out["fast"]["dmd"]["it_per_s"] / out["reference"]["dmd"]["it_per_s"]
        print(f"speed-up (fast / reference): teacher {out['ratio_teacher']:.2f}x, DMD {out['ratio_dmd']:.2f}x")
    if args.students and not args.skip_training:
        # speed as the authors ran it (fp32, TF32 off): the comparison isolates the side-by-side loop
        ts = time_students(p, dev, args.students, args.steps, args.warmup, speed=accel.REFERENCE)
        out["students"] = ts
        print(f"{args.students} students x {ts['steps']} DMD iterations: sequential {ts['sequential']['seconds']:.2f} s, "
              f"side by side {ts['concurrent']['seconds']:.2f} s -> speed-up {ts['speedup']:.2f}x "
              f"(peak {ts['sequential']['peak_gib']:.2f} / {ts['concurrent']['peak_gib']:.2f} GiB)")
    if not args.skip_delta_e:
        out["delta_e_s"] = {}
        for n in args.delta_e_sizes:
            for case, noise in (("copying", 0.3), ("independent", None)):
                t = time_delta_e(n, noise=noise, repeats=3 if n <= 2000 else 1)
                out["delta_e_s"][f"{case}_{n}"] = t
                print(f"Delta_E at N = {n:6d} (1024-d, CPU, {case:11s} sets): {t:.3f} s")
    if args.json:
        dmdlib.write_json(args.json, out)
    return out


if __name__ == "__main__":
    main()
