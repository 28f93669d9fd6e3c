"""One path per experiment: preset -> data -> teacher -> student -> samples on shared noise -> metrics.

The notebooks call these functions and keep only prose, parameters and
figures. Every stage writes into ``output_dir`` and is resumed or reloaded
from there when the notebook runs again.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from .data import TOY_DATASETS, sample_toy, support_fraction
from .dmd import DMDResult, distill
from .metrics import delta_e_bootstrap, pairing_inefficiency, transport_energies
from .nets import MLPNet
from .precond import EDMPrecond
from .presets import PRESET_NAMES, ToyPreset, get_preset
from .runs import make_generator, resolve_device
from .sampler import phi_k
from .teacher import TeacherResult, train_teacher


def validate_params(preset: str, device: str, seed: int, output_dir) -> torch.device:
    """Check a notebook's parameters cell; returns the resolved device.

    Errors name the parameter and its allowed values.
    """
    if preset not in PRESET_NAMES:
        raise ValueError(f"unknown preset {preset!r}; allowed: {list(PRESET_NAMES)}")
    dev = resolve_device(device)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if not isinstance(output_dir, (str, Path)) or not str(output_dir):
        raise ValueError(f"output_dir must be a non-empty path, got {output_dir!r}")
    Path(output_dir).mkdir(parents=True, exist_ok=True)
    return dev


def toy_denoiser(p: ToyPreset) -> EDMPrecond:
    """The EDM-preconditioned MLP of the toy experiments (5 x 384, 32 Fourier features at `paper`)."""
    return EDMPrecond(MLPNet(p.dim, p.width, p.depth, p.fourier_dim), sigma_data=p.teacher.sigma_data)


@dataclass
class ToyRun:
    dataset: str
    teacher: TeacherResult
    student: DMDResult
    z: torch.Tensor                     # [n_eval, dim] shared noise seeds
    samples: dict = field(default_factory=dict)   # "phi_1", "phi_8", "g", "data": [n_eval, dim] (CPU)
    metrics: dict = field(default_factory=dict)


def eval_noise(n: int, shape: tuple, seed: int) -> torch.Tensor:
    """The evaluation seeds z_1..z_n (CPU, independent of every training generator)."""
    g = make_generator(10_000 + seed, "cpu")
    return torch.randn((n, *shape), generator=g)


def run_toy(dataset: str, preset: str | ToyPreset, output_dir, seed: int = 0, device="auto",
            progress_bar: bool = True) -> ToyRun:
    """Train the toy teacher, distil the student and evaluate Delta_E on shared seeds."""
    if dataset not in TOY_DATASETS:
        raise ValueError(f"unknown toy data set {dataset!r}; allowed: {sorted(TOY_DATASETS)}")
    p = get_preset("toy", preset) if isinstance(preset, str) else preset
    dev = resolve_device(device) if isinstance(device, str) else device
    root = Path(output_dir) / "runs" / dataset
    torch.manual_seed(seed)  # network initialisation
    net = toy_denoiser(p)
    data_fn = lambda n, g: sample_toy(dataset, n, p.dim, generator=g, device=dev)  # noqa: E731
    teacher = train_teacher(net, data_fn, p.teacher, run_dir=root / "teacher", seed=seed, device=dev,
                            progress_bar=progress_bar, desc=f"{dataset} teacher")
    z = eval_noise(p.n_eval, (p.dim,), seed)
    phi_8 = phi_k(teacher.ema, z.to(dev), p.k).cpu()
    z_dev = z.to(dev)

    def eval_fn(gen, it):
        with torch.no_grad():
            g = gen(z_dev).cpu()
        e_dt, e_ot = transport_energies(phi_8, g)
        return {"delta_e": pairing_inefficiency(phi_8, g), "e_dt": e_dt, "e_ot": e_ot}

    student = distill(teacher.ema, (p.dim,), p.dmd, run_dir=root / "student", seed=seed, device=dev,
                      progress_bar=progress_bar, eval_fn=eval_fn, desc=f"{dataset} DMD")
    with torch.no_grad():
        g = student.generator.eval()(z_dev).cpu()
    data_gen = make_generator(20_000 + seed, "cpu")
    samples = {"phi_8": phi_8, "phi_1": phi_k(teacher.ema, z_dev, 1).cpu(), "g": g,
               "data": sample_toy(dataset, p.n_eval, p.dim, generator=data_gen)}
    data_2 = sample_toy(dataset, p.n_eval, p.dim, generator=data_gen)
    e_dt, e_ot = transport_energies(phi_8, g)
    boot = delta_e_bootstrap(phi_8, g, n_boot=p.n_boot, seed=seed)
    e_dt1, e_ot1 = transport_energies(phi_8, samples["phi_1"])
    metrics = {"delta_e": boot["delta_e"], "e_dt": e_dt, "e_ot": e_ot,
               "delta_e_ci": [boot["ci_low"], boot["ci_high"]], "ci_level": boot["level"],
               "n_eval": p.n_eval, "k": p.k, "phi_1_delta_e": pairing_inefficiency(phi_8, samples["phi_1"]),
               "phi_1_e_dt": e_dt1, "teacher_iterations": teacher.iterations, "dmd_iterations": student.iterations,
               "teacher_final_loss": teacher.losses[-1] if teacher.losses else None,
               # distribution fit: squared W2 between empirical samples (E_OT of independent sets)
               "w2sq_teacher_data": transport_energies(samples["data"], phi_8)[1],
               "w2sq_student_data": transport_energies(samples["data"], g)[1],
               "w2sq_data_data": transport_energies(samples["data"], data_2)[1],
               # fraction of samples on the data set's support (1.0 for the data up to jitter)
               "support_data": support_fraction(dataset, samples["data"]),
               "support_teacher": support_fraction(dataset, phi_8),
               "support_student": support_fraction(dataset, g)}
    return ToyRun(dataset, teacher, student, z, samples, metrics)
