"""One path per experiment: preset -> data -> teacher -> student -> samples on shared noise -> metrics.

The notebooks call these functions and keep only prose, parameters and
figures. Every stage writes into ``output_dir`` and is resumed or reloaded
from there when the notebook runs again.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .data import TOY_DATASETS, sample_toy, support_fraction
from .dmd import DMDResult, distill
from .metrics import delta_e_bootstrap, delta_e_record, pairing_inefficiency, transport_energies
from .nets import MLPNet
from .precond import EDMPrecond
from .presets import PRESET_NAMES, ToyPreset, get_preset
from .runs import config_tag, make_generator, resolve_device
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


def provenance(result) -> str:
    """'trained now' / 'loaded from the run folder' / 'resumed at iteration n', for the notebooks' logs."""
    if result.started_at == 0:
        return f"trained now ({result.iterations} iterations)"
    if result.started_at >= result.iterations:
        return f"loaded from the run folder ({result.iterations} iterations, trained earlier)"
    return f"resumed at iteration {result.started_at} of {result.iterations}"


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
    t_tag = config_tag("toy-teacher", dataset, p.dim, p.width, p.depth, p.fourier_dim, p.teacher, seed)
    torch.manual_seed(seed)  # network initialisation
    net = toy_denoiser(p)
    data_fn = lambda n, g: sample_toy(dataset, n, p.dim, generator=g, device=dev)  # noqa: E731
    teacher = train_teacher(net, data_fn, p.teacher, run_dir=root / f"teacher-{t_tag}", seed=seed, device=dev,
                            progress_bar=progress_bar, desc=f"{dataset} teacher")
    z = eval_noise(p.n_eval, (p.dim,), seed)
    phi_8 = phi_k(teacher.ema, z.to(dev), p.k).cpu()
    z_dev = z.to(dev)

    def eval_fn(gen, it):
        with torch.no_grad():
            g = gen(z_dev).cpu()
        return delta_e_record(phi_8, g)

    s_tag = config_tag("toy-student", t_tag, p.dmd, p.k, p.n_eval, seed)
    student = distill(teacher.ema, (p.dim,), p.dmd, run_dir=root / f"student-{s_tag}", seed=seed, device=dev,
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
               # the teacher's own distribution is that of the exact ODE; Phi_64 is much closer to it than Phi_8
               "support_teacher_phi64": support_fraction(dataset, phi_k(teacher.ema, z_dev, 64).cpu()),
               "support_student": support_fraction(dataset, g)}
    return ToyRun(dataset, teacher, student, z, samples, metrics)


# ----------------------------------------------------------------------------- MNIST (notebook 02)

def mnist_denoiser(p) -> EDMPrecond:
    """EDM-preconditioned ADM UNet with the preset's configuration."""
    from .nets.adm import ADMUNet

    return EDMPrecond(ADMUNet(**p.unet.kwargs()), sigma_data=p.teacher.sigma_data)


def mnist_training_data(p, device) -> torch.Tensor:
    """The training images in [-1, 1] on ``device`` (all 70,000 unless the preset takes a subset)."""
    from .data.mnist import mnist_tensor

    x, _ = mnist_tensor("cpu")
    if p.data_subset:
        x = x[:p.data_subset]
    return x.to(device)


def train_mnist_teacher(p, runs_dir, seed: int = 0, device="auto", data=None,
                        progress_bar: bool = True) -> TeacherResult:
    """Train (or resume, or reload) the unconditional MNIST teacher with its snapshots (kimg).

    Mini-batches are drawn uniformly with replacement from the training images
    with the run's generator (EDM draws shuffled epochs; for 70,000 images
    the two are statistically indistinguishable over a run).
    """
    dev = resolve_device(device) if isinstance(device, str) else device
    data = mnist_training_data(p, dev) if data is None else data
    torch.manual_seed(seed)
    net = mnist_denoiser(p)
    n = data.shape[0]
    data_fn = lambda b, g: data[torch.randint(0, n, (b,), generator=g, device=dev)]  # noqa: E731
    tag = mnist_teacher_tag(p, seed)
    return train_teacher(net, data_fn, p.teacher, run_dir=Path(runs_dir) / f"teacher-{tag}", seed=seed, device=dev,
                         progress_bar=progress_bar, desc="MNIST teacher")


def check_teacher_kimg(p, teacher_kimg) -> float:
    """The snapshot to distil: the preset's default for None, else one of the preset's snapshots (kimg)."""
    if teacher_kimg is None:
        return float(p.teacher_kimg)
    allowed = [float(s) for s in p.teacher.snapshots]
    if isinstance(teacher_kimg, bool) or not isinstance(teacher_kimg, (int, float)) or float(teacher_kimg) not in allowed:
        raise ValueError(f"teacher_kimg={teacher_kimg!r} is not a snapshot of preset {p.name!r}; "
                         f"allowed: {list(p.teacher.snapshots)} (kimg) or None")
    return float(teacher_kimg)


def check_runs_dir(output_dir, runs_dir) -> Path:
    """Where teacher and student runs live: ``runs_dir``, or ``output_dir/runs`` when None."""
    if runs_dir is None:
        return Path(output_dir) / "runs"
    if not isinstance(runs_dir, (str, Path)) or not str(runs_dir):
        raise ValueError(f"runs_dir must be None or a non-empty path, got {runs_dir!r}")
    return Path(runs_dir)


def mnist_teacher_tag(p, seed: int) -> str:
    return config_tag("mnist-teacher", p.unet, p.teacher, p.data_subset, seed)


def mnist_snapshot(p, teacher: TeacherResult, kimg: float, device="cpu") -> EDMPrecond:
    """The EMA teacher saved at ``kimg`` thousand training images."""
    from .teacher import load_snapshot

    key = float(kimg)
    if key not in teacher.snapshots:
        raise ValueError(f"no teacher snapshot at {kimg} {teacher.unit}; available: "
                         f"{sorted(teacher.snapshots)} ({teacher.unit})")
    net = mnist_denoiser(p)
    snap = teacher.snapshots[key]
    if isinstance(snap, dict):
        net.load_state_dict(snap)
    else:
        load_snapshot(net, snap)
    return net.to(device).eval()


def distill_mnist(p, teacher_net, kimg: float, runs_dir, seed: int = 0, device="auto", eval_z=None,
                  eval_phi_8=None, progress_bar: bool = True, name: str = "", **distill_kwargs) -> DMDResult:
    """Distil the snapshot ``teacher_net`` (taken at ``kimg``) with DMD; Delta_E recorded along the way.

    ``name`` (e.g. 'gan') is added to the run folder's name; ``distill_kwargs``
    go to :func:`dmdlib.dmd.distill` (``data_fn``, ``regression_pairs``, ``speed``).
    """
    dev = resolve_device(device) if isinstance(device, str) else device
    return distill(teacher_net, (p.unet.in_channels, p.unet.img_resolution, p.unet.img_resolution), p.dmd,
                   run_dir=student_dir(p, kimg, runs_dir, seed, name), seed=seed, device=dev,
                   progress_bar=progress_bar, eval_fn=delta_e_eval(p, eval_z, eval_phi_8, dev),
                   desc=f"DMD{' ' + name if name else ''} from {kimg} kimg", **distill_kwargs)


def student_dir(p, kimg: float, runs_dir, seed: int = 0, name: str = "") -> Path:
    """The run folder of the student distilled from snapshot ``kimg`` (named by snapshot, variant and config)."""
    tag = config_tag("mnist-student", mnist_teacher_tag(p, seed), float(kimg), p.dmd, p.n_eval, seed)
    return Path(runs_dir) / f"student-{int(kimg) if float(kimg).is_integer() else kimg}kimg-{name + '-' if name else ''}{tag}"


def delta_e_eval(p, eval_z, eval_phi_8, device):
    """An ``eval_fn`` recording Delta_E(Phi_8, G) on the evaluation seeds (None when either is missing)."""
    if eval_z is None or eval_phi_8 is None:
        return None

    def eval_fn(gen, it):
        with torch.no_grad():
            g = torch.cat([gen(c.to(device)).cpu() for c in eval_z.split(p.sample_batch)])
        return delta_e_record(eval_phi_8, g)
    return eval_fn


@torch.no_grad()
def sample_maps(teacher_net, z: torch.Tensor, ks=(1, 8), generator=None, batch: int = 250,
                device="cpu") -> dict:
    """{"phi_1": ..., "phi_8": ..., "g": ...} on the seeds ``z`` (CPU float32 results)."""
    out = {f"phi_{k}": phi_k(teacher_net, z.to(device), k, batch_size=batch).cpu() for k in ks}
    if generator is not None:
        generator.eval()
        out["g"] = torch.cat([generator(c.to(device)).cpu() for c in z.split(batch)])
    return out


# ----------------------------------------------------------------------------- ablations (notebook 03)

VARIANTS = ("baseline", "gan", "regression")


def regression_pairs(p, teacher_net, seed: int = 0, device="cpu") -> tuple:
    """(z, Phi_K(z)) for ``p.n_regression_pairs`` seeds, generated once by the teacher (DMD v1's paired set).

    The seeds come from their own generator (offset 30000), disjoint in
    distribution from the evaluation seeds (offset 10000): Delta_E of the
    regression student is measured on pairs it never saw.
    """
    shape = (p.unet.in_channels, p.unet.img_resolution, p.unet.img_resolution)
    g = make_generator(30_000 + seed, "cpu")
    z = torch.randn((p.n_regression_pairs, *shape), generator=g)
    x = phi_k(teacher_net, z.to(device), p.k, batch_size=p.sample_batch).cpu()
    return z, x


def variant_config(p, variant: str):
    """The DMD configuration of an ablation variant: the preset's, plus the variant's one extra term."""
    from dataclasses import replace

    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; allowed: {list(VARIANTS)}")
    if variant == "gan":
        return replace(p.dmd, gan_d_weight=p.gan_d_weight, gan_g_weight=p.gan_g_weight)
    if variant == "regression":
        return replace(p.dmd, regression_weight=p.regression_weight)
    return p.dmd


def distill_variant(p, teacher_net, kimg: float, variant: str, runs_dir, seed: int = 0, device="auto",
                    data=None, pairs=None, eval_z=None, eval_phi_8=None, progress_bar: bool = True) -> DMDResult:
    """Distil one ablation variant ('baseline', 'gan', 'regression') from the same snapshot and seeds.

    'gan' needs ``data`` (the training images, for the discriminator's real
    side); 'regression' needs ``pairs`` from :func:`regression_pairs`.
    'baseline' is exactly :func:`distill_mnist` (same run folder).
    """
    from dataclasses import replace

    cfg = variant_config(p, variant)
    if variant == "baseline":
        return distill_mnist(p, teacher_net, kimg, runs_dir, seed=seed, device=device, eval_z=eval_z,
                             eval_phi_8=eval_phi_8, progress_bar=progress_bar)
    if variant == "gan" and data is None:
        raise ValueError("variant 'gan' needs data= (the training images)")
    if variant == "regression" and pairs is None:
        raise ValueError("variant 'regression' needs pairs= (from regression_pairs)")
    dev = resolve_device(device) if isinstance(device, str) else device
    extra = {}
    if variant == "gan":
        n = data.shape[0]
        extra["data_fn"] = lambda b, g: data[torch.randint(0, n, (b,), generator=g, device=dev)]
    else:
        extra["regression_pairs"] = pairs
    return distill_mnist(replace(p, dmd=cfg), teacher_net, kimg, runs_dir, seed=seed, device=dev, eval_z=eval_z,
                         eval_phi_8=eval_phi_8, progress_bar=progress_bar, name=variant, **extra)


def memorisation_report(p, samples, train, device="cpu") -> dict:
    """r(y) for each sample, the memorised fractions at the preset's thresholds, and the neighbours (Fig. 12)."""
    from .analysis import distance_ratio, memorised_fractions, nearest_neighbours

    d, idx = nearest_neighbours(samples, train, k=2, batch=p.nn_batch, device=device)
    r = distance_ratio(d)
    return {"r": r, "nn_dist": d, "nn_index": idx,
            "fractions": memorised_fractions(r, p.memorisation_thresholds)}


# ----------------------------------------------------------------------------- two stages (notebook 04)

def dm_curve(result: DMDResult) -> tuple:
    """(iterations, logged mean DM loss) of a student."""
    log = result.logs["dm"]
    return np.asarray(log["iteration"], dtype=np.float64), np.asarray(log["value"], dtype=np.float64)


def check_snapshots(p, teacher_snapshots) -> list:
    """The snapshots to distil (kimg): all of the preset's for None, else a validated subset in increasing order."""
    allowed = [float(s) for s in p.teacher.snapshots]
    if teacher_snapshots is None:
        return allowed
    if (not isinstance(teacher_snapshots, (list, tuple)) or not teacher_snapshots
            or any(isinstance(s, bool) or not isinstance(s, (int, float)) or float(s) not in allowed
                   for s in teacher_snapshots)):
        raise ValueError(f"teacher_snapshots must be None or a non-empty list from {list(p.teacher.snapshots)} "
                         f"(kimg) for preset {p.name!r}, got {teacher_snapshots!r}")
    return sorted({float(s) for s in teacher_snapshots})


def distill_snapshots(p, teacher: TeacherResult, kimgs, runs_dir, seed: int = 0, device="auto", eval_z=None,
                      concurrent: bool = False, progress_bar: bool = True) -> dict:
    """One student per teacher snapshot, identical settings and seeds (notebook 04).

    Returns ``{kimg: {"teacher": net, "phi_8": Phi_K(eval_z), "student": DMDResult}}``.
    ``concurrent=True`` trains the students side by side in one loop
    (:func:`dmdlib.concurrent.distill_concurrent`, the same computation);
    otherwise one after another. Both write and reuse the same run folders.
    """
    dev = resolve_device(device) if isinstance(device, str) else device
    out = {}
    for kimg in kimgs:
        net = mnist_snapshot(p, teacher, kimg, device=dev)
        phi = phi_k(net, eval_z.to(dev), p.k, batch_size=p.sample_batch).cpu() if eval_z is not None else None
        out[float(kimg)] = {"teacher": net, "phi_8": phi}
    if concurrent:
        from .concurrent import distill_concurrent

        ks = list(out)
        shape = (p.unet.in_channels, p.unet.img_resolution, p.unet.img_resolution)
        students = distill_concurrent([out[k]["teacher"] for k in ks], shape, p.dmd,
                                      run_dirs=[student_dir(p, k, runs_dir, seed) for k in ks], seed=seed,
                                      device=dev, progress_bar=progress_bar,
                                      eval_fns=[delta_e_eval(p, eval_z, out[k]["phi_8"], dev) for k in ks],
                                      desc="DMD students")
        for k, st in zip(ks, students):
            out[k]["student"] = st
    else:
        for k, r in out.items():
            r["student"] = distill_mnist(p, r["teacher"], k, runs_dir, seed=seed, device=dev, eval_z=eval_z,
                                         eval_phi_8=r["phi_8"], progress_bar=progress_bar)
    return out
