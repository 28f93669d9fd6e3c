"""Several DMD students trained side by side in one process (the teacher-convergence sweep of notebook 04).

The students of a sweep share the architecture, the DMD configuration and
the seed; each distils its own teacher snapshot. Their parameters are
stacked (``torch.func.stack_module_state``) and the three networks of all
students are evaluated with ``torch.func.vmap``, so S students cost one
pass of S-wide batched kernels per step instead of S sequential passes: on
a GPU this removes most of the launch overhead of small per-student
batches.

The computation is :func:`dmdlib.dmd.distill`'s, for every student:

* with one seed, distill's draws (z, class labels, sigma indices, eps) do not depend on
  the networks, so one shared draw per step is exactly what each
  sequential run draws;
* AdamW acts element by element, so one optimizer over the stacked
  parameters performs each student's own update, warm-up included;
* gradient-norm clipping is per student (the norm of that student's slice);
* losses are per student (the stacked loss is their sum, whose gradient
  with respect to a student's slice is that student's gradient).

Results equal sequential ones up to floating-point summation order (tested).
Each finished student is written to its own run folder in distill's format,
so the sequential path reloads it, and vice versa. The group keeps one
resumable checkpoint while it trains. Only the paper's setting is supported
(no GAN or regression term); ``speed`` may enable TF32, bf16 autocast and
fused optimizers; compilation and channels_last are not applied to the
stacked networks (channels_last only changes the memory layout, so a speed
that asks for it describes the same computation; it is recorded as given,
so that the sequential path reloads these students and vice versa).
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from . import accel, distributed
from .dmd import (DMDResult, OneStepGenerator, check_label_setup, distill, dm_gradient, dm_loss, fake_score_loss,
                  run_config, teacher_sigma_data)
from .configs import DMDConfig
from .runs import (atomic_torch_save, check_stop_after, config_tag, load_checkpoint, make_generator,
                   prepare_run_dir, resolve_device)
from .schedule import band_indices, karras_table
from .step import StepNets, dmd_loop, dmd_step, evaluate_along, new_logs, update


def _bind(base: nn.Module, params: dict, buffers: dict):
    """A denoiser callable D(x, sigma, labels) running ``base`` with the given (unstacked) weights."""
    return lambda x, sigma, labels=None: functional_call(base, (params, buffers), (x, sigma, labels))


def clip_stacked_(params: Sequence[torch.Tensor], max_norm: float) -> torch.Tensor:
    """Per-student gradient-norm clipping of stacked parameters [S, ...] (torch's rule: coef = max/(norm+1e-6) <= 1).

    Returns the S norms before clipping.
    """
    grads = [p.grad for p in params if p.grad is not None]
    norms = torch.stack([g.detach().flatten(1).float().pow(2).sum(1) for g in grads]).sum(0).sqrt()
    coef = (max_norm / (norms + 1e-6)).clamp(max=1.0)
    for g in grads:
        g.mul_(coef.reshape(-1, *([1] * (g.ndim - 1))).to(g.dtype))
    return norms


def _unstack_into(module: nn.Module, stacked: dict, s: int) -> nn.Module:
    with torch.no_grad():
        own = dict(module.named_parameters())
        own.update(dict(module.named_buffers()))
        for name, t in stacked.items():
            own[name].copy_(t[s])
    return module


@accel.tf32_from_speed
def distill_concurrent(teachers: Sequence[nn.Module], z_shape: tuple, cfg: DMDConfig, run_dirs=None, seed: int = 0,
                       device="auto", progress_bar: bool = True, stop_after: Optional[int] = None,
                       eval_fns: Optional[Sequence[Optional[Callable]]] = None, sigma_data: Optional[float] = None,
                       desc: str = "DMD (concurrent)", speed: Optional[accel.Speed] = None,
                       student_inits: Optional[Sequence[Optional[nn.Module]]] = None, label_dim: int = 0) -> list:
    """Distil each of ``teachers`` (same architecture) into its own one-step student, all in one loop.

    ``run_dirs`` (one per teacher, or None) are the folders distill() would
    use; finished students are loaded from them, students with a partial
    sequential checkpoint are finished by distill(), and the rest train
    together (group checkpoint in ``<parent of run_dirs[0]>/concurrent-<tag>``).
    ``eval_fns[i](G_i, iteration)`` as distill's ``eval_fn``;
    ``student_inits[i]`` as distill's ``student_init`` (None: start from the
    teacher). ``label_dim`` as distill's: the classes are drawn right after z,
    as there, and shared by all students. Each student's folder records
    distill's :func:`~dmdlib.dmd.run_config`.
    Returns one :class:`~dmdlib.dmd.DMDResult` per teacher, in order.
    """
    from tqdm.auto import tqdm

    check_stop_after(stop_after)
    if distributed.active():
        raise ValueError("distill_concurrent runs in one process; under torchrun train the students one after "
                         "another with dmdlib.dmd.distill (data-parallel), or run without torchrun")
    n = len(teachers)
    if n < 1:
        raise ValueError("teachers must hold at least one denoiser")
    label_dim = check_label_setup(teachers[0], label_dim)
    for t in teachers[1:]:
        check_label_setup(t, label_dim)
    if cfg.regression_weight > 0 or cfg.gan_d_weight > 0 or cfg.gan_g_weight > 0:
        raise ValueError("distill_concurrent supports DMD alone (regression_weight and the GAN weights must be 0); "
                         "use distill() for the ablation variants")
    run_dirs = [None] * n if run_dirs is None else list(run_dirs)
    eval_fns = [None] * n if eval_fns is None else list(eval_fns)
    inits = [None] * n if student_inits is None else list(student_inits)
    if len(run_dirs) != n or len(eval_fns) != n or len(inits) != n:
        raise ValueError(f"run_dirs, eval_fns and student_inits need one entry per teacher ({n})")
    if sum(d is None for d in run_dirs) not in (0, n):
        raise ValueError("run_dirs must be all paths or all None")
    dev = resolve_device(device) if isinstance(device, str) else torch.device(device)
    sigma_data = teacher_sigma_data(teachers[0], sigma_data)

    results: list = [None] * n
    todo = []
    for i, (t, d) in enumerate(zip(teachers, run_dirs)):
        if d is not None:
            d = prepare_run_dir(d, run_config(t, z_shape, cfg, seed, sigma_data, speed, student_init=inits[i],
                                              label_dim=label_dim, device=dev))
            run_dirs[i] = d
            if (d / "result.pt").exists() or (d / "checkpoint.pt").exists():   # finished, or begun sequentially
                results[i] = distill(t, z_shape, cfg, run_dir=d, seed=seed, device=dev, progress_bar=progress_bar,
                                     eval_fn=eval_fns[i], sigma_data=sigma_data, speed=speed,
                                     desc=f"{desc} [{i}] (sequential)", student_init=inits[i],
                                     label_dim=label_dim)
                continue
        todo.append(i)
    if not todo:
        return results

    # vmap needs contiguous weights: a teacher prepared with channels_last is copied back to the default layout
    plain = lambda m: copy.deepcopy(m).to(dev, memory_format=torch.contiguous_format)  # noqa: E731
    reals = [plain(teachers[i]).eval().requires_grad_(False) for i in todo]
    starts = [teachers[i] if inits[i] is None else inits[i] for i in todo]
    gens = [OneStepGenerator(plain(m).requires_grad_(True)).to(dev).train() for m in starts]
    fakes = [plain(m).requires_grad_(True).train() for m in starts]
    rp, rb = stack_module_state(reals)
    gp, gb = stack_module_state(gens)
    fp, fb = stack_module_state(fakes)
    rp = {k: v.detach() for k, v in rp.items()}
    real_base, gen_base, fake_base = (copy.deepcopy(m[0]).to("meta") for m in (reals, gens, fakes))
    okw = accel.optimizer_kwargs(dev, speed)
    opt_g = torch.optim.AdamW(list(gp.values()), lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay,
                              **okw)
    opt_f = torch.optim.AdamW(list(fp.values()), lr=cfg.lr_fake, betas=tuple(cfg.betas),
                              weight_decay=cfg.weight_decay, **okw)
    rng = make_generator(seed, dev)
    table = karras_table(cfg.table_size).to(dev, torch.float32)
    logs = [new_logs(cfg) for _ in todo]
    start, counts = 0, {"g": 0, "f": 0}

    group_dir = None
    if run_dirs[0] is not None:
        names = [run_dirs[i].name for i in todo]
        shared = {k: v for k, v in run_config(reals[0], z_shape, cfg, seed, sigma_data, speed,
                                              label_dim=label_dim, device=dev).items()
                  if k not in ("teacher", "teacher_sigma_data", "student_init")}   # per member, in its own folder
        group_dir = prepare_run_dir(Path(run_dirs[todo[0]]).parent / f"concurrent-{config_tag(names)}",
                                    {**shared, "kind": "dmd-concurrent", "members": names})
        if (group_dir / "checkpoint.pt").exists():
            ck = load_checkpoint(group_dir / "checkpoint.pt", map_location=dev)
            with torch.no_grad():
                for mine, saved in ((gp, ck["gen"]), (fp, ck["fake"])):
                    for k, v in mine.items():
                        v.copy_(saved[k])
            opt_g.load_state_dict(ck["opt_g"])
            opt_f.load_state_dict(ck["opt_f"])
            rng.set_state(ck["rng"].to("cpu", torch.uint8))
            start, logs = int(ck["iteration"]), ck["logs"]
            counts = {"g": int(ck["steps_g"]), "f": int(ck["steps_f"])}

    # labels (None, or one-hot [B, label_dim] shared by the students) are closed over, not mapped
    def gen_one(p, b, z, labels=None):
        return functional_call(gen_base, (p, b), (z,) if labels is None else (z, labels))

    def dm_grad_one(fp_, fb_, rp_, rb_, x, sigma, eps, labels=None):
        return dm_gradient(x, _bind(fake_base, fp_, fb_), _bind(real_base, rp_, rb_), sigma, eps, labels)

    def fake_loss_one(fp_, fb_, x, sigma, eps, labels=None):
        return fake_score_loss(_bind(fake_base, fp_, fb_), x, sigma, eps, sigma_data, labels)

    G = vmap(gen_one, in_dims=(0, 0, None, None))
    DMG = vmap(dm_grad_one, in_dims=(0, 0, 0, 0, 0, None, None, None))
    FSL = vmap(fake_loss_one, in_dims=(0, 0, 0, None, None, None))

    def stepper(opt, params, lr, key):
        def step(loss, it):
            update(opt, loss, lr, it, cfg.warmup_steps, lambda: clip_stacked_(params, cfg.grad_clip))
            counts[key] += 1
        return step

    nets = StepNets(generate=lambda z, labels, grad: G(gp, gb, z, labels),
                    dm_gradient=lambda x, sigma, eps, labels: DMG(fp, fb, rp, rb, x, sigma, eps, labels),
                    dm_loss=vmap(dm_loss),
                    fake_loss=lambda x, sigma, eps, labels: FSL(fp, fb, x, sigma, eps, labels),
                    step_generator=stepper(opt_g, list(gp.values()), cfg.lr, "g"),
                    step_fake=stepper(opt_f, list(fp.values()), cfg.lr_fake, "f"),
                    autocast=lambda: accel.autocast(dev, speed))
    band = band_indices(cfg.table_size, *cfg.band)

    def evaluate(it):
        for j, i in enumerate(todo):
            if eval_fns[i] is not None and not any(e["iteration"] == it for e in logs[j]["eval"]):
                evaluate_along(eval_fns[i], _unstack_into(gens[j], gp, j), logs[j], it)

    def checkpoint(n):
        if group_dir is not None:
            atomic_torch_save({"gen": {k: v.detach() for k, v in gp.items()},
                               "fake": {k: v.detach() for k, v in fp.items()},
                               "opt_g": opt_g.state_dict(), "opt_f": opt_f.state_dict(), "rng": rng.get_state(),
                               "iteration": n, "steps_g": counts["g"], "steps_f": counts["f"], "logs": logs},
                              group_dir / "checkpoint.pt")

    if start == 0:
        evaluate(0)
    bar = tqdm(total=cfg.iterations, initial=start, desc=f"{desc} x{len(todo)}", disable=not progress_bar, leave=False)
    it_done = dmd_loop(cfg, start, lambda it: dmd_step(it, cfg, nets, rng, table, band, z_shape, label_dim), logs,
                       evaluate, checkpoint, stop_after, group_dir, desc, bar)

    finished = it_done >= cfg.iterations
    if finished:
        evaluate(cfg.iterations)
    for j, i in enumerate(todo):
        gen = _unstack_into(gens[j], {**gp, **gb}, j)
        fake = _unstack_into(fakes[j], {**fp, **fb}, j)
        results[i] = DMDResult(gen, fake, logs[j], it_done, start)
        if finished and run_dirs[i] is not None:
            atomic_torch_save({"generator": gen.state_dict(), "fake": fake.state_dict(), "iteration": it_done,
                               "steps_g": counts["g"], "steps_f": counts["f"], "logs": logs[j]},
                              run_dirs[i] / "result.pt")
    if finished and group_dir is not None:
        (group_dir / "checkpoint.pt").unlink(missing_ok=True)
    return results
