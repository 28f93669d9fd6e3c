"""Calibration search for the MNIST `quick` preset: does the DMD student converge, and how fast?

    python bench/calibrate_mnist.py --out /tmp/calm --d-lr 3e-4 --d-iters 2000 --log bench/calibration_mnist.jsonl

Trains (or reloads) the quick teacher, then distils one student and records
along distillation, on 2 x 1000 evaluation seeds: Delta_E(Phi_8, G), the
student's travel from Phi_1 towards Phi_8, and the Frechet distance in
classifier features of G against the teacher's Phi_8 (other seeds), next to
the floor FD(Phi_8, Phi_8') and the start FD(Phi_1, Phi_8'). Prints one
JSON line with the curves and the wall times.
"""
from __future__ import annotations

import argparse
import time
from dataclasses import replace

from calibration_common import add_training_options, log_line, training_overrides


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--channels", type=int, help="UNet model_channels")
    ap.add_argument("--resolution", type=int, help="image resolution (16: average-pooled digits)")
    ap.add_argument("--mult", type=str, help="UNet channel_mult, e.g. 1,2")
    ap.add_argument("--kimg", type=float, default=None, help="snapshot to distil (default: the preset's)")
    ap.add_argument("--k-check", type=int, default=0, help="also measure FD(Phi_8, Phi_k) for this k")
    add_training_options(ap)
    args = ap.parse_args(argv)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from dmdlib import accel, evaluation, features
    from dmdlib import pairing, specs
    from dmdlib.dmd import distill
    from dmdlib.metrics import delta_e_record
    from dmdlib.presets import get_preset
    from dmdlib.sampler import phi_k

    if args.eval_every is None:
        args.eval_every = 250
    p, t_kw, d_kw = training_overrides(get_preset("mnist", args.base), args)
    unet = replace(p.unet, model_channels=args.channels) if args.channels else p.unet
    if args.resolution:
        unet = replace(unet, img_resolution=args.resolution)
    if args.mult:
        unet = replace(unet, channel_mult=tuple(int(c) for c in args.mult.split(",")))
    p = replace(p, unet=unet)
    kimg = args.kimg if args.kimg is not None else p.teacher_kimg
    dev = torch.device("cpu")
    clf, info = features.mnist_classifier()
    t0 = time.perf_counter()
    spec = specs.mnist_spec(p, False, dev)
    teacher = pairing.train_spec_teacher(spec, p, f"{args.out}/runs", seed=args.seed, device=dev, progress_bar=False)
    t_teacher = time.perf_counter() - t0
    net = pairing.teacher_net(spec, p, teacher, kimg, device=dev)
    shape = (1, p.unet.img_resolution, p.unet.img_resolution)
    z = pairing.eval_seed_sets(2, 1000, shape, args.seed)
    t1 = time.perf_counter()
    phi8 = phi_k(net, z, p.k, batch_size=500).cpu()
    t_phi8 = time.perf_counter() - t1
    phi1 = phi_k(net, z, 1, batch_size=500).cpu()
    f8a, f8b = features.classifier_features(clf, phi8[:1000]), features.classifier_features(clf, phi8[1000:])
    ref_stats = features.gaussian_stats(f8b)
    floor = features.frechet_distance(f8a, ref_stats)
    start = features.frechet_distance(features.classifier_features(clf, phi1[:1000]), ref_stats)
    check = None
    if args.k_check:
        phik = phi_k(net, z[1000:], args.k_check, batch_size=500).cpu()
        check = {"k": args.k_check, "fd_phi8_phik_same_seeds": features.frechet_distance(f8b, features.classifier_features(clf, phik)),
                 "fd_phi8a_phik": features.frechet_distance(f8a, features.classifier_features(clf, phik)),
                 "delta_e_phi8_phik": delta_e_record(phi8[1000:], phik)["delta_e"],
                 "mean_dist": float((phik - phi8[1000:]).flatten(1).norm(dim=1).mean())}

    def eval_fn(gen, it):
        with torch.no_grad():
            g = torch.cat([gen(c) for c in z[:1000].split(500)]).cpu()
        rec = delta_e_record(phi8[:1000], g)
        rec["fd"] = features.frechet_distance(features.classifier_features(clf, g), ref_stats)
        rec["travel"] = evaluation.travel(g, phi1[:1000], phi8[:1000])
        return rec

    t2 = time.perf_counter()
    student = distill(net, shape, p.dmd, run_dir=pairing.spec_student_dir(spec, p, f"{args.out}/runs", args.seed, dev, kimg),
                         seed=args.seed, device=dev, progress_bar=False, eval_fn=eval_fn,
                         speed=accel.default_speed(dev))
    t_dmd = time.perf_counter() - t2
    ev = student.logs["eval"]
    out = {"config": {"channels": p.unet.model_channels, "resolution": p.unet.img_resolution,
                      "mult": list(p.unet.channel_mult), "teacher": t_kw, "dmd": d_kw, "kimg": kimg},
           "fd_floor": floor, "fd_start": start, "check": check,
           "iteration": [e["iteration"] for e in ev], "delta_e": [round(e["delta_e"], 5) for e in ev],
           "fd": [round(e["fd"], 3) for e in ev], "travel": [round(e["travel"], 3) for e in ev],
           "dm": student.logs["dm"]["value"][-5:],
           "time_teacher_s": round(t_teacher, 1), "time_phi8_2000_s": round(t_phi8, 1), "time_dmd_s": round(t_dmd, 1),
           "classifier": info["sha256"][:12]}
    log_line(out, args.log)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
