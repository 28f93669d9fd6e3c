"""EDM teacher training with an EMA teacher (Karras et al. 2022, training/training_loop.py defaults).

Per iteration: a batch y ~ p_data, the EDM loss (:func:`dmdlib.precond.edm_loss`)
summed over coordinates and averaged over the batch, Adam with a linear
learning-rate ramp-up over ``lr_rampup_kimg`` thousand images, and an EMA of
the weights with half-life ``min(ema_halflife_kimg, ema_rampup_ratio x
images seen)``. The EMA network is the teacher.

Training progress is counted both in iterations and in kimg (thousands of
training images, EDM's unit); ``TeacherConfig.progress_unit`` says which one
the snapshot names use. Snapshots are the EMA weights, saved atomically as
``snapshots/teacher-<progress><unit>.pt``.

Conditional data: ``data_fn`` may return ``(x, labels)`` with one-hot float
labels [batch, label_dim] (:mod:`dmdlib.labels`); they reach the denoiser
through the EDM loss, D(y + n, sigma, labels). Unlabelled data draws and
computes exactly as before.

Under torchrun the loop is data-parallel (:mod:`dmdlib.distributed`): every
rank draws the global batch (with its labels) and its noise and keeps its own rows, gradients
are averaged over ranks before the optimizer step, and rank 0 writes.
"""
from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterator, Optional

import torch
from torch import nn

from . import accel, distributed
from .labels import model_label_dim, split_batch
from .precond import edm_loss, edm_noise
from .configs import TeacherConfig
from .runs import (atomic_torch_save, check_data_id, check_finite, check_stop_after, code_version, device_record,
                   load_checkpoint, make_generator, prepare_run_dir, resolve_device, resume_state)

DataFn = Callable[[int, torch.Generator], object]   # a tensor x [n, ...], or a pair (x, one-hot labels [n, label_dim])


@dataclass
class TeacherState:
    """What one training iteration leaves behind (yielded by :func:`teacher_steps`)."""
    iteration: int          # iterations completed
    kimg: float             # thousands of images seen
    loss: torch.Tensor      # this iteration's mean loss (a device scalar: no host sync)


@dataclass
class TeacherResult:
    denoiser: nn.Module     # the raw (non-EMA) weights
    ema: nn.Module          # the teacher
    losses: list = field(default_factory=list)       # mean loss per `log_every` iterations
    loss_iterations: list = field(default_factory=list)
    snapshots: dict = field(default_factory=dict)    # progress value -> path
    unit: str = "iter"
    iterations: int = 0
    kimg: float = 0.0
    started_at: int = 0     # iterations already done (loaded from the run folder) when this call began
    run_dir: Optional[str] = None   # the run folder (None when trained in memory)


def progress(iteration: int, cfg: TeacherConfig) -> float:
    """Training progress after ``iteration`` iterations in the config's unit."""
    return float(iteration) if cfg.progress_unit == "iter" else iteration * cfg.batch_size / 1000.0


def snapshot_name(value: float, unit: str) -> str:
    v = int(value) if float(value).is_integer() else value
    return f"teacher-{v}{unit}.pt"


@torch.no_grad()
def ema_update(ema: nn.Module, net: nn.Module, cfg: TeacherConfig, nimg_before: int) -> None:
    """EDM's EMA: beta = 0.5^(batch / half-life), half-life ramped by images seen."""
    halflife = cfg.ema_halflife_kimg * 1000
    if cfg.ema_rampup_ratio is not None:
        halflife = min(halflife, nimg_before * cfg.ema_rampup_ratio)
    beta = 0.5 ** (cfg.batch_size / max(halflife, 1e-8))
    torch._foreach_lerp_(list(ema.parameters()), [p.detach() for p in net.parameters()], 1.0 - beta)


def teacher_steps(denoiser: nn.Module, ema: nn.Module, optimizer: torch.optim.Optimizer,
                  data_fn: DataFn, cfg: TeacherConfig, generator: torch.Generator,
                  start: int = 0, speed: Optional[accel.Speed] = None,
                  target: Optional[nn.Module] = None) -> Iterator[TeacherState]:
    """Train from iteration ``start`` to ``cfg.iterations``, yielding after every iteration.

    Under torchrun (an active process group) each rank computes the loss on
    its rows of the global batch (:func:`dmdlib.distributed.shard`) through
    a ``DistributedDataParallel`` wrapper, which averages the gradients; the
    yielded loss is this rank's mean. Labels returned by ``data_fn`` (a pair
    ``(x, labels)``) are checked against the network's ``label_dim`` when it
    has one, sharded with their rows and passed to the loss.
    """
    distributed.check_batch(cfg.batch_size, "TeacherConfig.batch_size")
    denoiser.train()
    net = distributed.wrap(denoiser)
    label_dim = model_label_dim(denoiser)
    for it in range(start, cfg.iterations):
        nimg = it * cfg.batch_size
        y, labels = split_batch(data_fn(cfg.batch_size, generator), cfg.batch_size, label_dim)  # the global batch
        y = accel.to_memory_format(y, speed)
        with accel.autocast(y.device, speed):
            sigma, n = edm_noise(y, generator, p_mean=cfg.p_mean, p_std=cfg.p_std)
            if labels is None:
                y, sigma, n = distributed.shard(y, sigma, n)                  # this rank's rows
            else:
                y, sigma, n, labels = distributed.shard(y, sigma, n, labels)
            loss = edm_loss(net, y, labels=labels, sigma_data=cfg.sigma_data, noise=(sigma, n), target=target)
        loss = loss.float().sum() / y.shape[0]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        ramp = min(nimg / max(cfg.lr_rampup_kimg * 1000, 1e-8), 1.0) if cfg.lr_rampup_kimg > 0 else 1.0
        for g in optimizer.param_groups:
            g["lr"] = cfg.lr * ramp
        for p in denoiser.parameters():
            if p.grad is not None:
                torch.nan_to_num(p.grad, nan=0, posinf=1e5, neginf=-1e5, out=p.grad)
        optimizer.step()
        ema_update(ema, denoiser, cfg, nimg)
        yield TeacherState(it + 1, (nimg + cfg.batch_size) / 1000, loss.detach())


def run_config(denoiser: nn.Module, cfg: TeacherConfig, seed: int, speed: Optional[accel.Speed] = None,
               data_id: Optional[str] = None, device=None, target: Optional[nn.Module] = None) -> dict:
    """What identifies a teacher run (recorded in its folder; a different one is refused there).

    The configuration (with the loss's ``sigma_data``), the seed, the
    denoiser's own ``sigma_data`` (its preconditioning; None if it has
    none), the speed settings, the training data's ``data_id``, the
    version of the training code and, when ``device`` is given, its type
    (``"device"``: the run's random streams are drawn there;
    :func:`dmdlib.runs.prepare_run_dir` refuses another one) and, for a
    network regressed onto a ``target`` denoiser, the target's weights
    fingerprint (recorded only then, so other run folders read as before).
    """
    from .dmd import state_fingerprint

    return {"kind": "teacher", "seed": seed, "config": asdict(cfg),
            "denoiser_sigma_data": getattr(denoiser, "sigma_data", None), "speed": accel.speed_record(speed),
            "data_id": data_id, "code_version": code_version(), **device_record(device),
            **({"target": state_fingerprint(target)} if target is not None else {})}


@accel.tf32_from_speed
def train_teacher(denoiser: nn.Module, data_fn: DataFn, cfg: TeacherConfig,
                  run_dir=None, seed: int = 0, device="auto", progress_bar: bool = True,
                  stop_after: Optional[int] = None, desc: str = "teacher",
                  speed: Optional[accel.Speed] = None, data_id: Optional[str] = None,
                  target: Optional[nn.Module] = None) -> TeacherResult:
    """Train an EDM teacher; resumable from ``run_dir/checkpoint.pt``.

    ``data_fn(n, generator)`` returns a batch of n training samples on the
    device, drawing randomness only from ``generator``: a tensor, or a pair
    ``(x, labels)`` with one-hot float labels [n, label_dim] for a
    class-conditional denoiser (give such data its own ``data_id``). Every
    ``cfg.checkpoint_every`` iterations the full state (weights, EMA, Adam,
    RNG, logs) is written atomically, so a killed run restarted with the same
    arguments ends with bit-identical weights (on CPU). A finished run is
    loaded, not retrained. ``stop_after`` stops this call after that many
    iterations (to simulate an interruption in tests). A non-finite loss
    raises :class:`~dmdlib.runs.NonFiniteLossError` and leaves the last good checkpoint.
    ``speed`` (None: the reference, fp32 with TF32 off) selects the fast path
    of :mod:`dmdlib.accel`; the global TF32 flags are restored on return.
    ``data_id`` names the training data (e.g. ``"toy:chessboard:dim=4"`` or
    MNIST's pinned checksum); it is recorded in the run folder with the
    rest of :func:`run_config`, and a run is resumed or reloaded only with
    the same. With a ``target`` denoiser (an exact one: :class:`dmdlib.data.mixture.GaussianMixture`)
    the network regresses onto it (:func:`dmdlib.precond.edm_loss`'s ``target``) instead of denoising
    the data: a network that starts distillation at the exact teacher's Phi_1 (the exact-teacher chapter).

    Under torchrun (:mod:`dmdlib.distributed`) every process calls this with
    the same arguments; the global batch ``cfg.batch_size`` is split across
    them, rank 0 writes the run folder, and every rank returns the same
    weights. A stopped run resumes under torchrun as in one process.
    """
    from tqdm.auto import tqdm

    check_stop_after(stop_after)
    check_data_id(data_id)
    distributed.check_batch(cfg.batch_size, "TeacherConfig.batch_size")
    main = distributed.is_main()

    dev = resolve_device(device) if isinstance(device, str) else torch.device(device)
    denoiser = denoiser.to(dev)
    ema = copy.deepcopy(denoiser).eval().requires_grad_(False)
    optimizer = torch.optim.Adam(denoiser.parameters(), lr=cfg.lr, betas=(0.9, 0.999), eps=1e-8,
                                 **accel.optimizer_kwargs(dev, speed))
    generator = make_generator(seed, dev)
    res = TeacherResult(denoiser, ema, unit=cfg.progress_unit, run_dir=None if run_dir is None else str(run_dir))
    start = 0
    run_dir = distributed.on_main(prepare_run_dir, run_dir, run_config(denoiser, cfg, seed, speed, data_id, dev, target)) \
        if run_dir is not None else None
    if run_dir is not None:
        ck = resume_state(run_dir, map_location=dev)
        if ck is not None:
            denoiser.load_state_dict(ck["denoiser"])
            ema.load_state_dict(ck["ema"])
            if "optimizer" in ck:
                optimizer.load_state_dict(ck["optimizer"])
                generator.set_state(ck["rng"].to("cpu", torch.uint8))
            start = int(ck["iteration"])
            res.losses, res.loss_iterations = list(ck["losses"]), list(ck["loss_iterations"])
            res.snapshots = {float(k): str(run_dir / "snapshots" / snapshot_name(float(k), cfg.progress_unit))
                             for k in ck["snapshots"]}
    res.iterations, res.kimg, res.started_at = start, start * cfg.batch_size / 1000, start
    if start >= cfg.iterations:
        return res

    def save(path, final=False):
        state = {"denoiser": denoiser.state_dict(), "ema": ema.state_dict(), "iteration": res.iterations,
                 "losses": res.losses, "loss_iterations": res.loss_iterations,
                 "snapshots": sorted(res.snapshots)}
        if not final:
            state["optimizer"] = optimizer.state_dict()
            state["rng"] = generator.get_state()
        atomic_torch_save(state, path)

    pending = set(float(s) for s in cfg.snapshots) - set(res.snapshots)
    window = []
    bar = tqdm(total=cfg.iterations, initial=start, desc=desc, disable=not (progress_bar and main), leave=False)
    accel.prepare(denoiser, speed)
    if speed is not None and speed.channels_last:   # the EMA in the network's layout: each update reads both alike
        ema.to(memory_format=torch.channels_last)
    if target is not None:
        target = target.to(dev).eval()
    for st in teacher_steps(denoiser, ema, optimizer, data_fn, cfg, generator, start, speed, target):
        window.append(st.loss)
        res.iterations, res.kimg = st.iteration, st.kimg
        bar.update(1)
        at_log = st.iteration % cfg.log_every == 0 or st.iteration == cfg.iterations
        at_ckpt = st.iteration % cfg.checkpoint_every == 0 or st.iteration == cfg.iterations
        done_snaps = [s for s in pending if progress(st.iteration, cfg) >= s]
        if at_log or at_ckpt or done_snaps:
            mean = distributed.mean(torch.stack(window).mean()).item()  # one host sync per log window
            if not math.isfinite(mean):
                bar.close()
                check_finite(mean, "EDM loss", st.iteration - len(window) + 1, st.iteration, desc, run_dir,
                             "lower the learning rate or check the data")
            if at_log:
                res.losses.append(mean)
                res.loss_iterations.append(st.iteration)
                window = []
                bar.set_postfix(loss=f"{mean:.4f}")
            if run_dir is not None:
                for s in sorted(done_snaps):
                    path = run_dir / "snapshots" / snapshot_name(s, cfg.progress_unit)
                    if main:
                        atomic_torch_save({"ema": ema.state_dict(), "iteration": st.iteration, "kimg": st.kimg,
                                           "unit": cfg.progress_unit, "progress": s}, path)
                    res.snapshots[s] = str(path)
                    pending.discard(s)
                if at_ckpt and main:
                    save(run_dir / "checkpoint.pt")
            else:
                for s in done_snaps:
                    res.snapshots[s] = copy.deepcopy(ema.state_dict())
                    pending.discard(s)
        if stop_after is not None and st.iteration - start >= stop_after:
            break
    bar.close()
    ema.to(memory_format=torch.contiguous_format)   # returned in the layout a reloaded run has (the same values)
    if run_dir is not None and res.iterations >= cfg.iterations and main:
        save(run_dir / "result.pt", final=True)
        (run_dir / "checkpoint.pt").unlink(missing_ok=True)
    distributed.barrier()   # every rank returns once rank 0's files (snapshots, result) exist
    return res


def load_snapshot(denoiser: nn.Module, path, map_location="cpu") -> nn.Module:
    """Load EMA weights saved by :func:`train_teacher` into ``denoiser`` (weights_only load)."""
    ck = load_checkpoint(path, map_location=map_location)
    denoiser.load_state_dict(ck["ema"])
    return denoiser
