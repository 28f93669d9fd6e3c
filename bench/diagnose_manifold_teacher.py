"""Does a teacher learn the MLP manifold? Denoising error by noise level and the distance of Phi_K from the manifold.

    python bench/diagnose_manifold_teacher.py --k 4 --resolution 16 --net mlp --out /tmp/diag \
        --log bench/calibration/manifold_teacher.jsonl
    python bench/diagnose_manifold_teacher.py --k 4 --resolution 16 --net unet --out /tmp/diag

Trains (or reloads from ``--out``) one teacher on unconditional MLP-manifold images with the network of the
chosen preset family (``mlp``: the toys' quick MLP on the flattened image, chapter 06's first version;
``unet``: chapter 02's quick ADM UNet, what chapters 06 and 07 use now) and prints one JSON line:

- ``denoise``: the per-pixel mean squared error of D(x + sigma n, sigma) on 2000 fresh manifold images, per
  sigma, beside ``wiener``, the error of the best *linear* denoiser for the data's covariance
  (sum_i sigma^2 lambda_i / (lambda_i + sigma^2) / D over the covariance eigenvalues lambda_i) and ``identity``
  (sigma^2, a denoiser that removes nothing). A network above ``wiener`` has not even learned the data's
  covariance at that noise level;
- ``noise_<name>``: the mean distance from the manifold (:meth:`dmdlib.data.manifold.MLPManifold.distance`) of
  1000 samples of Phi_1, Phi_8 and Phi_32 and of the data, as the equivalent per-pixel noise level in units of
  the data's std (:func:`dmdlib.dimensions.manifold_fit`'s scale; chapters 06-07 call a teacher whose Phi_32 is
  above ``dimensions.OFF_MANIFOLD_MAX`` a failed one), and ``w2sq_<name>``: squared W2 to 1000 data images
  (``w2sq_data`` is the finite-sample floor).
"""
from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import replace


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--k", type=int, default=4, help="intrinsic dimension of the manifold")
    ap.add_argument("--resolution", type=int, default=16, help="image size")
    ap.add_argument("--net", choices=("mlp", "unet"), default="unet", help="the teacher's network family")
    ap.add_argument("--iterations", type=int, default=None, help="teacher iterations (default: the preset's)")
    ap.add_argument("--lr", type=float, default=None, help="teacher Adam learning rate (default: the preset's)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--out", required=True, help="run folder (a teacher found there is reloaded)")
    ap.add_argument("--log", default=None, help="append the JSON line to this file")
    args = ap.parse_args(argv)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from dmdlib import pairing, specs
    from dmdlib.data.manifold import MLPManifold
    from dmdlib.evaluation import w2_squared
    from dmdlib.presets import MNIST_PRESETS, TOY_PRESETS, manifold_preset
    from dmdlib.sampler import phi_k

    p = TOY_PRESETS["quick"] if args.net == "mlp" else manifold_preset(MNIST_PRESETS["quick"], args.resolution, "quick")
    t_kw = {k: v for k, v in (("iterations", args.iterations), ("lr", args.lr)) if v is not None}
    if "iterations" in t_kw:
        t_kw["checkpoint_every"] = t_kw["iterations"]
    p = replace(p, teacher=replace(p.teacher, **t_kw))
    spec = specs.manifold_spec(args.k, args.resolution, 0, 0)
    t0 = time.perf_counter()
    teacher = pairing.train_spec_teacher(spec, p, args.out, 0, "cpu", progress_bar=False)
    t_train = time.perf_counter() - t0
    net = teacher.ema.eval()
    man = MLPManifold(latent_dim=args.k, resolution=args.resolution, num_classes=0, seed=0)
    g = torch.Generator().manual_seed(123)
    dim = math.prod(man.image_shape)

    x0, _ = man.sample(2000, g)
    flat = x0.flatten(1).double()
    cov = torch.cov(flat.T)
    lam = torch.linalg.eigvalsh(cov).clamp(min=0)
    denoise, wiener, identity = {}, {}, {}
    with torch.no_grad():
        for s in (0.01, 0.05, 0.2, 0.5, 1.0, 2.0, 5.0, 20.0, 80.0):
            n = torch.randn(x0.shape, generator=g) * s
            d = net(x0 + n, torch.full((x0.shape[0],), s))
            denoise[s] = round(float(((d - x0) ** 2).mean()), 6)
            wiener[s] = round(float((s ** 2 * lam / (lam + s ** 2)).sum() / dim), 6)
            identity[s] = round(s ** 2, 6)
        z = torch.randn(1000, *man.image_shape, generator=g)
        samples = {f"phi{K}": phi_k(net, z, K) for K in (1, 8, 32)}
    data, _ = man.sample(1000, g)
    samples["data"] = man.sample(1000, g)[0]
    out = {"k": args.k, "resolution": args.resolution, "net": args.net, "teacher": {"iterations": p.teacher.iterations,
           "lr": p.teacher.lr, "batch": p.teacher.batch_size}, "train_s": round(t_train, 1),
           "denoise": denoise, "wiener": wiener, "identity": identity}
    for name, x in samples.items():
        out[f"noise_{name}"] = round(float(man.distance(x).mean()) / math.sqrt(dim) / man.std, 4)
        out[f"w2sq_{name}"] = round(w2_squared(x.flatten(1), data.flatten(1)), 3)
    line = json.dumps(out)
    print(line)
    if args.log:
        with open(args.log, "a") as f:
            f.write(line + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
