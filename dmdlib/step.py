"""One DMD iteration and the loop that drives it, shared by both DMD loops.

:func:`dmdlib.dmd.distill` trains one student; :func:`dmdlib.concurrent.distill_concurrent`
trains S students side by side, their parameters stacked and every network
call vectorised with ``torch.func.vmap``. Both run :func:`dmd_step` inside
:func:`dmd_loop`; they differ only in the :class:`StepNets` they pass: how a
batch is generated, how the DM gradient and the fake-score loss are computed,
and how an optimizer step is taken (one student's gradient-norm clipping, or
each stacked student's own). A change to the iteration therefore lands in both.

One iteration (paper Sec. 2.2 and appendix D; DMD2's training loop):

1. draw z ``[B, *shape]`` and, for conditional data, one class per sample;
2. on a generator turn (``iteration % gen_every == 0``): x = G(z); the DM
   gradient at noise levels from the table's ``band`` (Eq. 3 in DMD2's
   normalised form, :func:`dmdlib.dmd.dm_gradient`) and the loss
   0.5 ||x - sg(x - grad)||^2; optionally DMD v1's regression term and
   DMD2's adversarial generator term; one generator update (AdamW, linear
   warm-up in iterations, gradient-norm clipping). Otherwise x = G(z)
   without gradients;
3. the fake-score turn on the pre-update sample sg(x): the denoising loss at
   noise levels from the full table, plus DMD2's discriminator loss with the
   GAN; one fake-score update.

Every random draw comes from the run's one generator, in the order above
(z, classes; on generator turns the DM gradient's sigma indices and noise,
the regression rows, the GAN's sigma indices and noise; then the fake
score's sigma indices and noise, and with the GAN the real data's draws and
both of its sigma indices and noises). Under torchrun each draw is the global
batch's, then sharded (:mod:`dmdlib.distributed`). The losses come back
detached: a scalar per term for one student, a vector [S] for S students.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional

import torch

from . import distributed
from .labels import draw_labels, split_batch
from .runs import check_finite

LOSS_KEYS = ("dm", "fake", "regression", "gan_g", "gan_d")   # the order in which the loss windows are logged


def warmup_lr(base: float, iteration: int, warmup: int) -> float:
    """The learning rate at DMD ``iteration`` (0-based): ``base * min(iteration / warmup, 1)`` (DMD2's schedule)."""
    return base * (min(iteration / warmup, 1.0) if warmup > 0 else 1.0)


def set_lr(opt, base: float, iteration: int, warmup: int) -> None:
    for g in opt.param_groups:
        g["lr"] = warmup_lr(base, iteration, warmup)


def log_due(n: int, cfg) -> bool:
    """Whether the loss windows close after ``n`` iterations: every ``log_every``, at the end, and every
    ``fine_log_every`` up to ``fine_log_until`` (the early phase that paper Fig. 4 zooms into)."""
    return (n % cfg.log_every == 0 or n == cfg.iterations
            or (cfg.fine_log_every > 0 and n <= cfg.fine_log_until and n % cfg.fine_log_every == 0))


def update(opt, loss: torch.Tensor, lr: float, iteration: int, warmup: int, clip: Callable) -> None:
    """One optimizer step: backward of ``loss`` (the sum of per-student losses), ``clip()``, warm-up lr, step."""
    opt.zero_grad(set_to_none=True)
    (loss.sum() if loss.ndim else loss).backward()
    clip()
    set_lr(opt, lr, iteration, warmup)
    opt.step()


@dataclass
class StepNets:
    """The networks of one DMD loop as :func:`dmd_step` calls them.

    ``generate(z, labels, grad)`` -> x = G(z) (``grad=False``: under
    ``no_grad``); ``dm_gradient(x, sigma, eps, labels)``; ``dm_loss(x, grad)``;
    ``fake_loss(x, sigma, eps, labels)``; ``step_generator(loss, iteration)`` and
    ``step_fake(loss, iteration)`` take one optimizer step. The optional terms
    (one student only): ``regression(rows)`` -> (G(z_reg), targets) of the
    regression pairs' ``rows``; ``gan_fake(x, sigma, eps, labels)`` -> the
    discriminator's logits of generated samples through the fake score's own
    forward (generator turn), ``gan_logits(x, sigma, eps, labels)`` the same
    through the data-parallel wrapper (fake-score turn); ``data_fn(n, rng)``
    draws the GAN's real samples. ``autocast()`` is the forward passes'
    autocast context and ``channels_last`` the memory format of z.
    """
    generate: Callable
    dm_gradient: Callable
    dm_loss: Callable
    fake_loss: Callable
    step_generator: Callable
    step_fake: Callable
    autocast: Callable
    channels_last: bool = False
    regression: Optional[Callable] = None
    n_regression: int = 0
    gan_fake: Optional[Callable] = None
    gan_logits: Optional[Callable] = None
    data_fn: Optional[Callable] = None


def dmd_step(it: int, cfg, nets: StepNets, rng: torch.Generator, table: torch.Tensor, band: tuple,
             z_shape: tuple, label_dim: int) -> dict:
    """DMD iteration ``it`` (see the module docstring); returns its detached losses."""
    B, dev = cfg.batch_size, table.device
    full = (B, *z_shape)
    amp = nets.autocast
    z = torch.randn(full, generator=rng, device=dev)
    if nets.channels_last and z.ndim == 4:
        z = z.contiguous(memory_format=torch.channels_last)
    labels = draw_labels(label_dim, B, rng, dev)           # None (and no draw) when unconditional
    z = distributed.shard(z)
    if labels is not None:
        labels = distributed.shard(labels)
    losses = {}
    if it % cfg.gen_every == 0:
        # generator turn: the DM gradient on x = G(z)
        with amp():
            x = nets.generate(z, labels, True).float()
        idx = torch.randint(band[0], band[1] + 1, (B,), generator=rng, device=dev)
        eps = torch.randn(full, generator=rng, device=dev)
        idx, eps = distributed.shard(idx, eps)
        with amp():
            grad = nets.dm_gradient(x, table[idx], eps, labels).float()
        losses["dm"] = nets.dm_loss(x, grad)
        if cfg.regression_weight > 0:
            rows = distributed.shard(torch.randint(0, nets.n_regression, (B,), generator=rng, device=dev))
            with amp():
                x_reg, target = nets.regression(rows)
            losses["regression"] = torch.nn.functional.mse_loss(x_reg.float(), target)
        if nets.gan_fake is not None:
            idx_gan = torch.randint(0, cfg.table_size, (B,), generator=rng, device=dev)
            eps_gan = torch.randn(full, generator=rng, device=dev)
            idx_gan, eps_gan = distributed.shard(idx_gan, eps_gan)
            with amp():
                logit = nets.gan_fake(x, table[idx_gan], eps_gan, labels)
            losses["gan_g"] = torch.nn.functional.softplus(-logit).mean()
        loss_g = (losses["dm"] + cfg.regression_weight * losses.get("regression", 0.0)
                  + cfg.gan_g_weight * losses.get("gan_g", 0.0))
        nets.step_generator(loss_g, it)
        x = x.detach()
    else:
        with torch.no_grad(), amp():
            x = nets.generate(z, labels, False).float()
    # fake-score turn (every iteration) on the pre-update sample sg(G(z))
    idx = torch.randint(0, cfg.table_size, (B,), generator=rng, device=dev)
    eps = torch.randn(full, generator=rng, device=dev)
    idx, eps = distributed.shard(idx, eps)
    with amp():
        loss_f = nets.fake_loss(x, table[idx], eps, labels).float()
    if nets.gan_logits is not None:
        real_x, real_l = split_batch(nets.data_fn(B, rng), B, label_dim, need_labels=label_dim > 0,
                                     where="data_fn (the GAN's real samples)")
        i_f, i_r = (torch.randint(0, cfg.table_size, (B,), generator=rng, device=dev) for _ in "fr")
        e_f, e_r = (torch.randn(full, generator=rng, device=dev) for _ in "fr")
        real_x, i_f, i_r, e_f, e_r = distributed.shard(real_x, i_f, i_r, e_f, e_r)
        if real_l is not None:
            real_l = distributed.shard(real_l)
        with amp():
            l_fake = nets.gan_logits(x.detach(), table[i_f], e_f, labels)
            l_real = nets.gan_logits(real_x, table[i_r], e_r, real_l)
        losses["gan_d"] = (torch.nn.functional.softplus(l_fake) + torch.nn.functional.softplus(-l_real)).mean()
        loss_f = loss_f + cfg.gan_d_weight * losses["gan_d"]
    losses["fake"] = loss_f
    nets.step_fake(loss_f, it)
    return {k: v.detach() for k, v in losses.items()}


def close_windows(windows: dict, logs: list, n: int, check: Callable) -> dict:
    """Append each loss window's mean (over its iterations, then over ranks) to every student's log at iteration ``n``.

    ``logs`` holds one log dict per student; ``check(value, key, student,
    first_iteration)`` is called before a value is logged (it raises on a
    non-finite one). Returns ``{key: [value per student]}`` and empties the windows.
    """
    first = n - len(windows["fake"]) + 1
    out = {}
    for key in LOSS_KEYS:
        if key not in logs[0]:
            continue
        w = windows.get(key, [])
        vals = (distributed.mean(torch.stack(w).mean(0)).reshape(-1).tolist() if w else [None] * len(logs))
        for s, v in enumerate(vals):
            if v is None:
                continue
            check(v, key, s, first)
            logs[s][key]["iteration"].append(n)
            logs[s][key]["value"].append(v)
        out[key] = vals
    for w in windows.values():
        w.clear()
    return out


def dmd_loop(cfg, start: int, step: Callable, logs: list, evaluate: Callable, checkpoint: Callable,
             stop_after: Optional[int], where, desc: str, bar) -> int:
    """Iterations ``start`` ... ``cfg.iterations - 1`` of ``step(it)`` (-> its losses); returns the iterations done.

    Closes the loss windows when :func:`log_due` (non-finite values raise
    :class:`~dmdlib.runs.NonFiniteLossError` naming ``where``, the folder whose
    checkpoint is kept), calls ``evaluate(n)`` every ``cfg.eval_every`` and at
    the end, ``checkpoint(n)`` every ``cfg.checkpoint_every`` (before the end),
    and stops early after ``stop_after`` iterations of this call.
    """
    windows = {k: [] for k in LOSS_KEYS}
    many = len(logs) > 1

    def check(v, key, s, first):
        if not math.isfinite(v):
            bar.close()
            check_finite(v, f"{key} loss" + (f" (student {s})" if many else ""), first, n, desc, where,
                         "lower the learning rates or check the teacher" + ("s" if many else ""))

    n = start
    for it in range(start, cfg.iterations):
        for k, v in step(it).items():
            windows[k].append(v)
        n = it + 1
        bar.update(1)
        if log_due(n, cfg):
            vals = close_windows(windows, logs, n, check)
            if not many:
                dm = vals["dm"][0]
                bar.set_postfix(dm=f"{dm if dm is not None else float('nan'):.3g}", fake=f"{vals['fake'][0]:.3g}")
        if cfg.eval_every and (n % cfg.eval_every == 0 or n == cfg.iterations):
            evaluate(n)
        if n % cfg.checkpoint_every == 0 and n < cfg.iterations:
            checkpoint(n)
        if stop_after is not None and n - start >= stop_after:
            break
    bar.close()
    return n


def new_logs(cfg, gan: bool = False) -> dict:
    """An empty DMD log: one ``{"iteration": [], "value": []}`` per logged loss, and the evaluations along the way."""
    logs = {"dm": {"iteration": [], "value": []}, "fake": {"iteration": [], "value": []}, "eval": []}
    for k in (["regression"] if cfg.regression_weight > 0 else []) + (["gan_g", "gan_d"] if gan else []):
        logs[k] = {"iteration": [], "value": []}
    return logs


def evaluate_along(eval_fn: Optional[Callable], gen, log: dict, it: int) -> None:
    """Record ``eval_fn(G, it)`` in ``log["eval"]`` once per iteration (G in eval mode meanwhile)."""
    if eval_fn is not None and not any(e["iteration"] == it for e in log["eval"]):
        gen.eval()
        out = {k: float(v) for k, v in eval_fn(gen, it).items()}
        gen.train()
        log["eval"].append({"iteration": it, **out})
