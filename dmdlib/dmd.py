"""Distribution Matching Distillation (Yin et al. 2024a,b; paper section 2.2, appendix D).

Three networks share the teacher's architecture:

* the teacher ("real score") D_real, frozen;
* the fake score D_fake, initialised from the teacher and trained every
  iteration with the denoising loss on sg(G(z)) + sigma eps, sigma uniform over
  a 1000-entry Karras table, weight 1/sigma^2 + 1/sigma_data^2;
* the one-step generator G(z) = D_G(sigma_max z, sigma_max), initialised from
  the teacher (so G = Phi_1 at the start) and updated when
  ``iteration % gen_every == 0`` (the 1:5 schedule) with the DM gradient of
  paper Eq. 3 in DMD2's normalised form::

      x_t = x + sigma eps,  sigma from the table's [2%, 98%] index band,
      grad = (D_fake(x_t) - D_real(x_t)) / mean_pixels |x - D_real(x_t)|,
      L_DM = 0.5 ||x - sg(x - grad)||^2  (averaged over all entries),

  whose gradient with respect to x is ``grad`` / (number of entries).

Both networks use AdamW (betas 0.9/0.999, weight decay 0.01) with a linear
warm-up and gradient-norm clipping. The warm-up counts *iterations* for both
optimizers, as in DMD2, whose two schedulers step every iteration: at
iteration ``it`` the learning rate is ``lr * min(it / warmup_steps, 1)``, so
the generator reaches its full rate after ``warmup_steps / gen_every`` of its
own updates (100 for the paper's 500 and 1:5). Further generator terms add to the ``losses`` dictionary of the
generator turn; the DM term alone is the paper's setting. Implemented:

* ``regression_weight > 0``: DMD (v1)'s regression term, pulling G(z) towards
  the teacher's own output Phi_K(z) on a fixed set of pairs generated once
  by the teacher (``regression_pairs=(z, Phi_K(z))``). DMD v1 used LPIPS;
  we use the mean squared L2 distance per entry, which needs no pretrained
  feature network. This term ties G to the teacher's pairing by
  construction: the positive control for copying.
* ``gan_d_weight``, ``gan_g_weight > 0``: DMD2's adversarial term. A
  :class:`GANHead` reads the fake score's UNet bottleneck (the output of its
  last encoder block) for real images (``data_fn``) and generated ones, both
  noised at sigma from the full table; the discriminator loss
  softplus(D(fake)) + softplus(-D(real)) joins the fake-score update and
  softplus(-D(fake)) the generator update.

Class-conditional distillation (``label_dim > 0``, paper Figs. 6-8): every
iteration draws one class per sample, uniformly, right after z (one
``randint`` from the run's generator, :func:`dmdlib.labels.draw_labels`),
and the one-hot labels go to G(z, labels), to both scores in the DM
gradient, to the fake-score loss and to the GAN logits of the generated
samples; the GAN's real samples carry the labels that ``data_fn`` returns
with them, and the regression pairs carry their own labels. With
``label_dim = 0`` nothing is drawn and every call is label-free, exactly
the unconditional loop.

Under torchrun the loop is data-parallel (:mod:`dmdlib.distributed`): every
rank draws the global batch's z, labels, sigma indices, noise and data and keeps its
own rows; the generator, the fake score and the GAN head average their
gradients over ranks (``DistributedDataParallel``) before clipping, so the
clipped norm is the global gradient's; rank 0 writes.
"""
from __future__ import annotations

import copy
import hashlib
from dataclasses import asdict, dataclass, field
from typing import Callable, Optional

import torch
from torch import nn

from . import accel, distributed
from .labels import check_label_dim, check_labels, model_label_dim
from .configs import DMDConfig
from .precond import denoising_weight
from .runs import (atomic_torch_save, check_data_id, check_stop_after, code_version, device_record, make_generator,
                   prepare_run_dir, resolve_device, resume_state, tensors_sha256)
from .schedule import SIGMA_MAX, band_indices, karras_table
from .step import StepNets, dmd_loop, dmd_step, evaluate_along, new_logs, update


class OneStepGenerator(nn.Module):
    """G(z) = D(sigma_max z, sigma_max): a denoiser used as a one-step generator."""

    def __init__(self, denoiser: nn.Module, sigma_max: float = SIGMA_MAX):
        super().__init__()
        self.denoiser = denoiser
        self.sigma_max = float(sigma_max)

    def forward(self, z: torch.Tensor, labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        sigma = torch.full((z.shape[0],), self.sigma_max, device=z.device, dtype=torch.float32)
        return self.denoiser(self.sigma_max * z, sigma, labels)


def _bcast(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return v.reshape(-1, *([1] * (x.ndim - 1)))


def dm_gradient(x: torch.Tensor, fake: nn.Module, real: nn.Module, sigma: torch.Tensor,
                eps: torch.Tensor, labels=None) -> torch.Tensor:
    """The normalised DM gradient (D_fake(x_t) - D_real(x_t)) / mean|x - D_real(x_t)| (no grad; paper Eq. 3).

    Computed in float32 whatever the caller's autocast and TF32 settings
    (:func:`dmdlib.accel.fp32`; bf16 or fp16 inputs are cast up): D_fake -
    D_real is a small difference of two nearly equal outputs, and bf16
    rounding of the two passes drowns it (cosine about 0 to the fp32
    gradient for a fake score 1e-3 away from the teacher, tests/test_gpu_path.py).
    """
    with torch.no_grad(), accel.fp32(x):
        up = lambda t: t.float() if t.dtype in (torch.float16, torch.bfloat16) else t  # noqa: E731
        x, sigma, eps = up(x.detach()), up(sigma), up(eps)
        x_t = x + _bcast(sigma, x) * eps
        d_fake = fake(x_t, sigma, labels)
        d_real = real(x_t, sigma, labels)
        norm = (x - d_real).abs().flatten(1).mean(1)
        grad = (d_fake - d_real) / _bcast(norm, x)
        return torch.nan_to_num(grad)


def dm_loss(x: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """0.5 ||x - sg(x - grad)||^2 averaged over all entries: d/dx = grad / numel."""
    return 0.5 * torch.nn.functional.mse_loss(x, (x - grad).detach(), reduction="mean")


def fake_score_loss(fake: nn.Module, x: torch.Tensor, sigma: torch.Tensor, eps: torch.Tensor,
                    sigma_data: float = 0.5, labels=None) -> torch.Tensor:
    """Denoising loss of the fake score on x = sg(G(z)): mean of (1/sigma^2 + 1/sigma_data^2)|D(x+sigma eps) - x|^2."""
    x = x.detach()
    pred = fake(x + _bcast(sigma, x) * eps, sigma, labels)
    return (_bcast(denoising_weight(sigma, sigma_data), x) * (pred - x) ** 2).mean()


class GANHead(nn.Module):
    """DMD2-style classifier on UNet bottleneck features [B, C, H, W] -> one logit per sample."""

    def __init__(self, channels: int):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1),
                                 nn.GroupNorm(min(32, channels // 4) or 1, channels), nn.SiLU(),
                                 nn.Conv2d(channels, 1, 1))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.net(h.float()).mean(dim=(1, 2, 3))


def bottleneck_module(denoiser: nn.Module) -> nn.Module:
    """The last encoder block of an EDMPrecond-wrapped ADMUNet (the bottleneck DMD2 classifies)."""
    model = getattr(denoiser, "model", None)
    enc = getattr(model, "enc", None)
    if enc is None:
        raise ValueError("the GAN term needs an EDMPrecond-wrapped ADMUNet fake score (no encoder found)")
    return list(enc.values())[-1]


class _Capture:
    """A forward hook keeping the last output of a module."""

    def __init__(self, module: nn.Module):
        self.out = None
        self.handle = module.register_forward_hook(lambda m, i, o: setattr(self, "out", o))


def _gan_logits(fake, head, capture, x, sigma, eps, labels=None):
    fake(x + _bcast(sigma, x) * eps, sigma, labels)
    return head(capture.out)


@dataclass
class DMDResult:
    """What :func:`distill` returns: the one-step generator, the fake score, the logs and the iteration counts."""
    generator: OneStepGenerator
    fake: nn.Module
    logs: dict = field(default_factory=dict)   # "dm" / "fake": {"iteration": [...], "value": [...]}, "eval": [...]
    iterations: int = 0
    started_at: int = 0     # iterations already done (loaded from the run folder) when this call began


def state_fingerprint(module: nn.Module) -> str:
    """SHA-256 of a module's parameters and buffers (identifies the teacher a run was distilled from)."""
    h = hashlib.sha256()
    for k, v in sorted(module.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().to("cpu").contiguous().numpy().tobytes())
    return h.hexdigest()


def teacher_sigma_data(teacher: nn.Module, sigma_data: Optional[float] = None) -> float:
    """``sigma_data`` if given, else the teacher's (an EDMPrecond's attribute), else EDM's 0.5."""
    if sigma_data is not None:
        if not sigma_data > 0:
            raise ValueError(f"sigma_data must be > 0, got {sigma_data}")
        return float(sigma_data)
    return float(getattr(teacher, "sigma_data", 0.5))


def run_config(teacher: nn.Module, z_shape: tuple, cfg: DMDConfig, seed: int, sigma_data: Optional[float] = None,
               speed: Optional[accel.Speed] = None, data_id: Optional[str] = None,
               regression_pairs: Optional[tuple] = None, student_init: Optional[nn.Module] = None,
               label_dim: int = 0, device=None) -> dict:
    """What identifies a DMD run (recorded in its folder; a different one is refused there).

    Everything that changes the result: the teacher (weights fingerprint and
    its preconditioning ``sigma_data``), the fake-score weight ``sigma_data``
    (resolved by :func:`teacher_sigma_data`), the configuration, seed and
    noise shape, the speed settings, the GAN's real data (``data_id``, when
    the GAN term is on), the regression pairs (SHA-256, when the regression
    term is on, labels included), the network the student starts from (None: the teacher),
    the number of classes ``label_dim`` (recorded only when > 0, so
    unconditional run folders read as before), the version of the
    training code and, when ``device`` is given, its type (the run's random
    streams are drawn there; :func:`dmdlib.runs.prepare_run_dir` refuses
    another one). ``distill_concurrent`` records the
    same for each of its students, so either path reloads the other's runs.
    """
    use_gan = cfg.gan_d_weight > 0 or cfg.gan_g_weight > 0
    pairs = regression_pairs if cfg.regression_weight > 0 else None
    init = None if student_init is None else {"weights": state_fingerprint(student_init),
                                              "sigma_data": getattr(student_init, "sigma_data", None)}
    return {"kind": "dmd", "seed": seed, "z_shape": list(z_shape), "teacher": state_fingerprint(teacher),
            "teacher_sigma_data": getattr(teacher, "sigma_data", None),
            "sigma_data": teacher_sigma_data(teacher, sigma_data), "config": asdict(cfg),
            "speed": accel.speed_record(speed), "data_id": data_id if use_gan else None,
            "regression_pairs": tensors_sha256(*pairs) if pairs is not None else None,
            "student_init": init, **({"label_dim": label_dim} if label_dim else {}),
            "code_version": code_version(), **device_record(device)}


def check_label_setup(teacher: nn.Module, label_dim) -> int:
    """``label_dim`` validated, and consistent with the teacher's network when that one states its own."""
    label_dim = check_label_dim(label_dim)
    own = model_label_dim(teacher)
    if label_dim > 0 and own is not None and own != label_dim:
        raise ValueError(f"label_dim = {label_dim}, but the teacher's network has label_dim = {own}")
    return label_dim


def check_regression_pairs(pairs, label_dim: int, device) -> tuple:
    """``(z, targets, labels or None)`` on ``device`` (float32) from ``regression_pairs``, validated:
    ``(z, targets)`` when unconditional, ``(z, targets, one-hot labels)`` when ``label_dim > 0``."""
    want = "(z, phi_k_of_z, labels)" if label_dim else "(z, phi_k_of_z)"
    if pairs is None or len(pairs) != (3 if label_dim else 2) or pairs[0].shape[0] < 1:
        raise ValueError(f"regression_weight > 0 needs regression_pairs={want} with at least one pair"
                         + (f" (label_dim = {label_dim})" if label_dim else ""))
    if pairs[0].shape[0] != pairs[1].shape[0]:
        raise ValueError("regression_pairs: z and targets must have the same number of rows")
    z, x = (t.to(device, torch.float32) for t in pairs[:2])
    labels = None
    if label_dim:
        labels = check_labels(pairs[2], z.shape[0], label_dim, "regression_pairs").to(device, torch.float32)
    return z, x, labels


@accel.tf32_from_speed
def distill(teacher: nn.Module, z_shape: tuple, cfg: DMDConfig, run_dir=None, seed: int = 0,
            device="auto", progress_bar: bool = True, stop_after: Optional[int] = None,
            eval_fn: Optional[Callable[[OneStepGenerator, int], dict]] = None,
            sigma_data: Optional[float] = None, desc: str = "DMD", speed: Optional[accel.Speed] = None,
            regression_pairs: Optional[tuple] = None,
            data_fn: Optional[Callable[[int, torch.Generator], object]] = None,
            data_id: Optional[str] = None, student_init: Optional[nn.Module] = None,
            label_dim: int = 0) -> DMDResult:
    """Distil ``teacher`` (a denoiser D(x, sigma)) into a one-step generator by DMD.

    ``z_shape`` is the shape of one noise sample (e.g. ``(4,)`` or ``(1, 32, 32)``).
    ``eval_fn(G, iteration)`` (optional) is called before the first iteration,
    every ``cfg.eval_every`` iterations and at the end; it must not draw from
    the run's random generator, and returns a dict of floats recorded in
    ``logs["eval"]``. Checkpointing, resume, caching of finished runs and the
    non-finite guard work as in :func:`dmdlib.teacher.train_teacher`.
    ``sigma_data`` (the fake-score loss weight 1/sigma^2 + 1/sigma_data^2)
    defaults to the teacher's own (``teacher.sigma_data`` of an
    :class:`~dmdlib.precond.EDMPrecond`, else 0.5). ``speed`` as in
    ``train_teacher`` (None: fp32, TF32 off). ``data_id`` names the real
    images of ``data_fn`` (the GAN term's data) in the run folder.
    ``student_init`` (default: the teacher, as in DMD) is the denoiser the
    generator and the fake score start from, with the teacher's call
    signature; the tests use it to start a student away from a closed-form
    teacher. Everything that changes the result is recorded in the run
    folder (:func:`run_config`).

    ``label_dim > 0`` distils a class-conditional teacher (D(x, sigma,
    labels) with one-hot labels [batch, label_dim]). Per iteration the draws
    from the run's generator are, in this order: z; the classes
    (``randint(0, label_dim, (B,))``, one-hot); on generator turns the DM
    gradient's sigma indices and noise, the regression rows, the GAN's sigma
    indices and noise; then the fake score's sigma indices and noise, and
    with the GAN ``data_fn``'s draws followed by its sigma indices and noise.
    The drawn labels condition G, the fake and real scores, the fake-score
    loss and the GAN logits of generated samples; ``data_fn`` must then
    return ``(x, labels)`` (the real samples' own labels) and
    ``regression_pairs`` be ``(z, targets, labels)``. ``eval_fn`` passes its
    own labels to G. ``label_dim = 0`` draws nothing new and passes no labels:
    the unconditional loop, unchanged.

    Under torchrun (:mod:`dmdlib.distributed`) every process calls this with
    the same arguments: the global batch ``cfg.batch_size`` is split across
    them, ``eval_fn`` runs on every rank, rank 0 writes the run folder, and
    every rank returns the same weights; a stopped run resumes under torchrun.
    """
    from tqdm.auto import tqdm

    check_stop_after(stop_after)
    check_data_id(data_id)
    distributed.check_batch(cfg.batch_size, "DMDConfig.batch_size")
    main = distributed.is_main()
    label_dim = check_label_setup(teacher, label_dim)

    dev = resolve_device(device) if isinstance(device, str) else torch.device(device)
    sigma_data = teacher_sigma_data(teacher, sigma_data)
    reg = check_regression_pairs(regression_pairs, label_dim, dev) if cfg.regression_weight > 0 else None
    init = teacher if student_init is None else student_init
    real = copy.deepcopy(teacher).to(dev).eval().requires_grad_(False)  # the caller's modules are untouched
    gen = OneStepGenerator(copy.deepcopy(init).requires_grad_(True)).to(dev).train()
    fake = copy.deepcopy(init).requires_grad_(True).to(dev).train()
    okw = accel.optimizer_kwargs(dev, speed)
    opt_g = torch.optim.AdamW(gen.parameters(), lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay,
                              **okw)
    opt_f = torch.optim.AdamW(fake.parameters(), lr=cfg.lr_fake, betas=tuple(cfg.betas),
                              weight_decay=cfg.weight_decay, **okw)
    use_gan = cfg.gan_d_weight > 0 or cfg.gan_g_weight > 0
    head, capture = None, None
    if use_gan:
        if data_fn is None:
            raise ValueError("the GAN term (gan_d_weight/gan_g_weight > 0) needs data_fn(n, generator) for real images")
        block = bottleneck_module(fake)
        capture = _Capture(block)
        with torch.random.fork_rng(devices=[]):  # the head's initialisation depends on the seed only
            torch.manual_seed(seed)
            head = GANHead(block.out_channels).to(dev)
        opt_f.add_param_group({"params": list(head.parameters()), "lr": cfg.lr_fake})
    rng = make_generator(seed, dev)
    table = karras_table(cfg.table_size).to(dev, torch.float32)
    logs = new_logs(cfg, use_gan)
    start, counts = 0, {"g": 0, "f": 0}

    if run_dir is not None:
        run_dir = distributed.on_main(prepare_run_dir, run_dir,
                                      run_config(real, z_shape, cfg, seed, sigma_data, speed, data_id,
                                                 regression_pairs, student_init, label_dim, dev))
        ck = resume_state(run_dir, map_location=dev)
        if ck is not None:
            gen.load_state_dict(ck["generator"])
            fake.load_state_dict(ck["fake"])
            if head is not None:
                head.load_state_dict(ck["gan_head"])
            if "opt_g" in ck:
                opt_g.load_state_dict(ck["opt_g"])
                opt_f.load_state_dict(ck["opt_f"])
                rng.set_state(ck["rng"].to("cpu", torch.uint8))
            start, counts = int(ck["iteration"]), {"g": int(ck["steps_g"]), "f": int(ck["steps_f"])}
            logs = ck["logs"]
    result = DMDResult(gen, fake, logs, start, start)
    if start >= cfg.iterations:
        return result

    def save(path, n, final=False):
        state = {"generator": gen.state_dict(), "fake": fake.state_dict(), "iteration": n,
                 **({"gan_head": head.state_dict()} if head is not None else {}),
                 "steps_g": counts["g"], "steps_f": counts["f"], "logs": logs}
        if not final:
            state.update(opt_g=opt_g.state_dict(), opt_f=opt_f.state_dict(), rng=rng.get_state())
        atomic_torch_save(state, path)

    if start == 0:
        evaluate_along(eval_fn, gen, logs, 0)
    for m in (real, gen, fake):
        accel.prepare(m, speed)
    # forward passes whose gradients are averaged over ranks go through these (the modules themselves in one process)
    gen_dp, fake_dp = distributed.wrap(gen), distributed.wrap(fake)
    head_dp = distributed.wrap(head) if head is not None else None

    def step_generator(loss, it):
        update(opt_g, loss, cfg.lr, it, cfg.warmup_steps, lambda: torch.nn.utils.clip_grad_norm_(gen.parameters(),
                                                                                                cfg.grad_clip))
        counts["g"] += 1

    def step_fake(loss, it):
        params = [q for g in opt_f.param_groups for q in g["params"]]
        update(opt_f, loss, cfg.lr_fake, it, cfg.warmup_steps,
               lambda: torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip))
        counts["f"] += 1

    nets = StepNets(
        generate=lambda z, labels, grad: (gen_dp if grad else gen)(z, labels),
        dm_gradient=lambda x, sigma, eps, labels: dm_gradient(x, fake, real, sigma, eps, labels),
        dm_loss=dm_loss,
        fake_loss=lambda x, sigma, eps, labels: fake_score_loss(fake_dp, x, sigma, eps, sigma_data, labels),
        step_generator=step_generator, step_fake=step_fake,
        autocast=lambda: accel.autocast(dev, speed), channels_last=bool(speed is not None and speed.channels_last))
    if reg is not None:
        reg_z, reg_x, reg_l = reg
        nets.regression = lambda j: (gen_dp(reg_z[j], None if reg_l is None else reg_l[j]), reg_x[j])
        nets.n_regression = reg_z.shape[0]
    if use_gan:
        nets.gan_fake = lambda x, sigma, eps, labels: _gan_logits(fake, head, capture, x, sigma, eps, labels)
        nets.gan_logits = lambda x, sigma, eps, labels: _gan_logits(fake_dp, head_dp, capture, x, sigma, eps, labels)
        nets.data_fn = data_fn
    band = band_indices(cfg.table_size, *cfg.band)

    def checkpoint(n):
        if run_dir is not None and main:
            save(run_dir / "checkpoint.pt", n)

    bar = tqdm(total=cfg.iterations, initial=start, desc=desc, disable=not (progress_bar and main), leave=False)
    result.iterations = dmd_loop(cfg, start, lambda it: dmd_step(it, cfg, nets, rng, table, band, z_shape, label_dim),
                                 [logs], lambda n: evaluate_along(eval_fn, gen, logs, n), checkpoint, stop_after,
                                 run_dir, desc, bar)
    if result.iterations >= cfg.iterations:
        evaluate_along(eval_fn, gen, logs, cfg.iterations)
        if run_dir is not None and main:
            save(run_dir / "result.pt", result.iterations, final=True)
            (run_dir / "checkpoint.pt").unlink(missing_ok=True)
    distributed.barrier()   # every rank returns once rank 0's files exist
    return result
