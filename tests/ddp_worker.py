"""Runs under torchrun for tests/test_distributed.py: tiny teacher and DMD runs, data-parallel on CPU (Gloo).

    python -m torch.distributed.run --standalone --nproc_per_node=2 tests/ddp_worker.py PHASE OUT

PHASE ``first``: complete runs into OUT/<name>-full and the same runs stopped
after a few iterations (``stop_after``) into OUT/<name>-part; PHASE
``resume``: the stopped runs again, which resume from their checkpoints. The
configurations are defined here and imported by the test, which trains the
same runs in one process. Rank 0 writes OUT/report-PHASE.json with the largest
weight difference between ranks.
"""
import json
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import dmdlib  # noqa: E402
from dmdlib import DMDConfig, TeacherConfig, distributed  # noqa: E402

TCFG = TeacherConfig(iterations=8, batch_size=32, lr=1e-3, lr_rampup_kimg=0.0, checkpoint_every=4, log_every=2,
                     ema_halflife_kimg=0.2, snapshots=(3,))
DCFG = DMDConfig(iterations=10, batch_size=16, lr=1e-3, lr_fake=1e-3, warmup_steps=2, checkpoint_every=5,
                 log_every=5, eval_every=5)
# the GAN and regression terms on a tiny UNet: the generator and the fake score run several forward passes per update
UCFG = DMDConfig(iterations=6, batch_size=4, lr=1e-3, lr_fake=1e-3, warmup_steps=2, checkpoint_every=3, log_every=3,
                 gan_d_weight=0.1, gan_g_weight=0.1, regression_weight=1.0)
STOP = {"teacher": 6, "dmd": 7, "unet": 4, "cteacher": 6, "cunet": 4}
K = 3   # classes of the conditional runs (labels sharded with their rows)


def mlp(seed=0):
    torch.manual_seed(seed)
    return dmdlib.EDMPrecond(dmdlib.MLPNet(4, 32, 2, 8), sigma_data=0.5)


def unet(label_dim=0):
    torch.manual_seed(0)
    return dmdlib.EDMPrecond(dmdlib.ADMUNet(img_resolution=8, in_channels=1, out_channels=1, model_channels=8,
                                            channel_mult=[1, 2], num_blocks=1, attn_resolutions=[4], dropout=0.0,
                                            label_dim=label_dim), sigma_data=0.5)


def chess(n, g):
    return dmdlib.sample_toy("chessboard", n, 4, generator=g)


IMAGES = torch.linspace(-1, 1, 32 * 64).reshape(32, 1, 8, 8).sin()
PAIRS = (torch.linspace(-2, 2, 5 * 64).reshape(5, 1, 8, 8).cos(), torch.linspace(-1, 1, 5 * 64).reshape(5, 1, 8, 8))
EVAL_Z = torch.linspace(-2, 2, 40).reshape(10, 4)


def images(n, g):
    return IMAGES[torch.randint(0, IMAGES.shape[0], (n,), generator=g)]


CLASSES = torch.arange(32) % K
CPAIRS = (*PAIRS, torch.eye(K)[torch.arange(5) % K])


def labelled_images(n, g):
    i = torch.randint(0, IMAGES.shape[0], (n,), generator=g)
    return IMAGES[i], torch.eye(K)[CLASSES[i]]


def labelled_chess(n, g):
    x = chess(n, g)
    return x, torch.eye(K)[(x[:, 0] > 0).long() + (x[:, 1] > 0).long()]


def mean_output(gen, it):
    with torch.no_grad():
        return {"mean": gen(EVAL_Z).mean().item()}


def runs(out: Path, part: bool):
    """The three runs (teacher, DMD, DMD with GAN and regression on a UNet); ``part`` stops each early."""
    stop = (lambda k: STOP[k]) if part else (lambda k: None)
    tag = "part" if part else "full"
    kw = dict(device="cpu", progress_bar=False)
    t = dmdlib.train_teacher(mlp(), chess, TCFG, run_dir=None if out is None else out / f"teacher-{tag}", seed=3,
                             stop_after=stop("teacher"), **kw)
    d = dmdlib.distill(mlp(1), (4,), DCFG, run_dir=None if out is None else out / f"dmd-{tag}", seed=4,
                       stop_after=stop("dmd"), eval_fn=mean_output, **kw)
    u = dmdlib.distill(unet(), (1, 8, 8), UCFG, run_dir=None if out is None else out / f"unet-{tag}", seed=5,
                       stop_after=stop("unet"), data_fn=images, data_id="test:images", regression_pairs=PAIRS, **kw)
    ct = dmdlib.train_teacher(dmdlib.EDMPrecond(dmdlib.MLPNet(4, 32, 2, 8, label_dim=K)), labelled_chess, TCFG,
                              run_dir=None if out is None else out / f"cteacher-{tag}", seed=6,
                              stop_after=stop("cteacher"), **kw)
    cu = dmdlib.distill(unet(K), (1, 8, 8), UCFG, run_dir=None if out is None else out / f"cunet-{tag}", seed=7,
                        stop_after=stop("cunet"), data_fn=labelled_images, data_id="test:labelled-images",
                        regression_pairs=CPAIRS, label_dim=K, **kw)
    return {"teacher": t, "dmd": d, "unet": u, "cteacher": ct, "cunet": cu}


def weights(results: dict) -> dict:
    """Every trained tensor of the three runs, by name."""
    out = {}
    for name, r in results.items():
        mods = ({"denoiser": r.denoiser, "ema": r.ema} if name.endswith("teacher")
                else {"generator": r.generator, "fake": r.fake})
        for m, mod in mods.items():
            out.update({f"{name}.{m}.{k}": v.detach().clone() for k, v in mod.state_dict().items()})
    return out


def main(phase: str, out: Path):
    torch.set_num_threads(1)
    distributed.init("cpu")
    assert distributed.world_size() == int(os.environ["WORLD_SIZE"])
    results = runs(out, part=False) if phase == "first" else {}
    if phase == "first":
        runs(out, part=True)
    else:
        results = runs(out, part=True)           # resumes the stopped runs
    # every rank holds the same weights: compare with rank 0's
    w = weights(results)
    flat = torch.cat([v.flatten().double() for _, v in sorted(w.items())])
    ref = flat.clone()
    torch.distributed.broadcast(ref, src=0)
    spread = (flat - ref).abs().max()
    torch.distributed.all_reduce(spread, op=torch.distributed.ReduceOp.MAX)
    if distributed.is_main():
        logs = {"teacher_losses": results["teacher"].losses, "dmd_logs": results["dmd"].logs,
                "unet_logs": results["unet"].logs, "cunet_logs": results["cunet"].logs,
                "cteacher_losses": results["cteacher"].losses, "started_at": {k: r.started_at for k, r in results.items()}}
        (out / f"report-{phase}.json").write_text(json.dumps({"rank_spread": spread.item(),
                                                              "world_size": distributed.world_size(), **logs}))
    distributed.shutdown()


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
