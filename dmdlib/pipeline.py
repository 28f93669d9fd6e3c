"""One path per experiment: preset -> data -> teacher -> student -> samples on shared noise -> metrics.

The notebooks call these functions and keep only prose, parameters and
figures. Every stage writes into ``output_dir`` and is resumed or reloaded
from there when the notebook runs again.
"""
from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

from . import accel, evaluation
from .data import TOY_DATASETS, sample_toy, support_fraction
from .dmd import DMDResult, distill
from .labels import one_hot
from .evaluation import fit_numbers, reference_levels, student_record, w2_squared
from .metrics import delta_e_record, delta_e_sets, delta_e_vs_n, pair_distances
from .nets import MLPNet
from .precond import EDMPrecond
from .presets import PRESET_NAMES, ToyPreset, get_preset
from .runs import config_tag, derived_seed, make_generator, resolve_device
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
    try:
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=output_dir).close()   # can we write there?
    except OSError as e:
        raise ValueError(f"output_dir {str(output_dir)!r} cannot be created or written to "
                         f"({type(e).__name__}: {e.strerror or e}); choose a writable folder") from None
    return dev


def write_metrics(output_dir, metrics: dict, *, preset: str, seed: int, device, hardware: dict,
                  wall_time_s: float, notebook=None) -> dict:
    """Write ``output_dir/metrics.json`` with the provenance every chapter records, and return it.

    Adds ``preset``, ``seed``, ``device``, ``hardware``, ``wall_time_s``, the
    code version (``commit``, ``dirty``: see :func:`dmdlib.runs.git_state`) and
    ``sources`` (hashes of the notebook, of the dmdlib modules loaded now and
    of requirements.txt: see :func:`dmdlib.provenance.sources`; ``notebook``
    defaults to ``$DMDLIB_NOTEBOOK``, which ``scripts/build_book.py`` sets) to
    the chapter's own ``metrics``.
    """
    from .provenance import sources
    from .runs import git_state, write_json

    out = {"preset": preset, "seed": seed, "device": str(device), "hardware": hardware, **git_state(),
           **metrics, "wall_time_s": float(wall_time_s), "sources": sources(notebook)}
    write_json(Path(output_dir) / "metrics.json", out)
    return out


def provenance(result) -> str:
    """'trained now' / 'loaded from the run folder' / 'resumed at iteration n', for the notebooks' logs."""
    if result.started_at == 0:
        return f"trained now ({result.iterations} iterations)"
    if result.started_at >= result.iterations:
        return f"loaded from the run folder ({result.iterations} iterations, trained earlier)"
    return f"resumed at iteration {result.started_at} of {result.iterations}"


def stream_noise(n: int, shape: tuple, seed: int, stream: str) -> torch.Tensor:
    """n standard normal draws ``[n, *shape]`` (CPU) from the run's independent random stream ``stream``."""
    g = make_generator(derived_seed(seed, stream), "cpu")
    return torch.randn((n, *shape), generator=g)


def eval_seed_sets(r: int, n: int, shape: tuple, seed: int) -> torch.Tensor:
    """The evaluation seeds: R disjoint, independent sets of N, stacked as ``[R*N, *shape]`` (set i = rows iN..iN+N-1).

    They come from their own stream (``"eval"``), independent of every
    training, data and regression generator; set 0 is also the set on which
    Delta_E is followed along distillation.
    """
    g = make_generator(derived_seed(seed, "eval"), "cpu")
    return torch.cat([torch.randn((n, *shape), generator=g) for _ in range(r)])   # set by set: set 0 = eval_noise(n)


def eval_noise(n: int, shape: tuple, seed: int) -> torch.Tensor:
    """The first n evaluation seeds (= the first rows of :func:`eval_seed_sets`)."""
    return stream_noise(n, shape, seed, "eval")


def curve_columns(rows: list) -> dict:
    """A list of per-point dicts -> one array per key (how metrics.json stores curves)."""
    return {k: [r[k] for r in rows] for k in rows[0]} if rows else {}


# ----------------------------------------------------------------------------- any data set (notebooks 01, 06, 07)

@dataclass(frozen=True)
class DataSpec:
    """A training distribution as the generic teacher -> student -> evaluation path sees it.

    ``sample(n, generator, device)`` returns n samples ``[n, *shape]`` drawn
    only from ``generator``; with ``label_dim > 0`` it returns ``(x, labels)``
    with one-hot labels ``[n, label_dim]``. ``sigma_data`` is the teacher's
    EDM preconditioning constant. ``tag`` names the data in run-folder names,
    ``data_id`` identifies it inside run folders (a run trained on other
    data is refused there). ``kind`` prefixes the run-folder names.
    A spec pickles (for worker processes) when its ``sample`` does: the
    ``*_spec`` constructors of this module use picklable samplers that carry
    their data's exact tensors.
    """
    name: str
    shape: tuple
    sample: Callable
    data_id: str
    sigma_data: float
    label_dim: int = 0
    tag: tuple = ()
    kind: str = "toy"

    def __post_init__(self):
        if isinstance(self.label_dim, bool) or not isinstance(self.label_dim, int) or self.label_dim < 0:
            raise ValueError(f"DataSpec.label_dim must be an integer >= 0, got {self.label_dim!r}")
        if not self.sigma_data > 0:
            raise ValueError(f"DataSpec.sigma_data must be > 0, got {self.sigma_data!r}")

    def images(self, n: int, generator, device="cpu") -> torch.Tensor:
        """n samples without their labels."""
        out = self.sample(n, generator, device)
        return out[0] if isinstance(out, tuple) else out


@dataclass
class PairingRun:
    """What :func:`run_pairing` returns: the networks, the evaluation seeds (and labels), samples and metrics."""
    dataset: str
    teacher: TeacherResult
    student: DMDResult
    z: torch.Tensor                     # [n_sets * n_eval, *shape]: R independent sets of N evaluation seeds
    samples: dict = field(default_factory=dict)   # "phi_1", "phi_8", "g", "data", "ref": the first set's N samples (CPU)
    metrics: dict = field(default_factory=dict)
    teacher_2: Optional[TeacherResult] = None     # the second teacher (another seed): the reproducibility level
    labels: Optional[torch.Tensor] = None         # one-hot labels of the evaluation seeds (conditional data)
    maps: dict = field(default_factory=dict)      # "phi_1", "phi_8", "g" (and "phi_8_2") on all R*N seeds (CPU)


ToyRun = PairingRun


def stream_labels(n: int, label_dim: int, seed: int, stream: str) -> Optional[torch.Tensor]:
    """n uniform one-hot labels from the run's stream ``stream`` (None when ``label_dim`` is 0)."""
    if label_dim == 0:
        return None
    g = make_generator(derived_seed(seed, stream), "cpu")
    return one_hot(torch.randint(0, label_dim, (n,), generator=g), label_dim)


def _arch_tag(p) -> tuple:
    unet = getattr(p, "unet", None)
    return (unet,) if unet is not None else (p.width, p.depth, p.fourier_dim)


def spec_denoiser(spec: DataSpec, p) -> EDMPrecond:
    """The teacher network for ``spec``: the preset's ADM UNet (a preset with ``unet``) or its MLP, preconditioned."""
    if getattr(p, "unet", None) is not None:
        from .nets.adm import ADMUNet

        net = ADMUNet(**replace(p.unet, label_dim=spec.label_dim).kwargs())
    else:
        from .nets import FlatNet

        extra = {"label_dim": spec.label_dim} if spec.label_dim else {}
        net = MLPNet(math.prod(spec.shape), p.width, p.depth, p.fourier_dim, **extra)
        net = net if len(spec.shape) == 1 else FlatNet(net)
    return EDMPrecond(net, sigma_data=spec.sigma_data)


def _teacher_config(spec: DataSpec, p):
    return replace(p.teacher, sigma_data=spec.sigma_data)


def spec_teacher_dir(spec: DataSpec, p, root, seed: int = 0, device="cpu") -> Path:
    """The run folder of the teacher of ``spec`` and ``seed`` under ``root`` (named by data, network, configuration)."""
    dev = resolve_device(device) if isinstance(device, str) else device
    tag = config_tag(f"{spec.kind}-teacher", *spec.tag, *_arch_tag(p), _teacher_config(spec, p), seed,
                     *_version_and_speed(dev))
    return Path(root) / f"teacher-{tag}"


def train_spec_teacher(spec: DataSpec, p, root, seed: int = 0, device="cpu", progress_bar: bool = True) -> TeacherResult:
    """Train (or resume, or reload) the teacher of ``spec`` with seed ``seed`` (initialisation and training draws)."""
    dev = resolve_device(device) if isinstance(device, str) else device
    torch.manual_seed(seed)  # network initialisation
    net = spec_denoiser(spec, p)
    data_fn = lambda n, g: spec.sample(n, g, dev)  # noqa: E731
    return train_teacher(net, data_fn, _teacher_config(spec, p), run_dir=spec_teacher_dir(spec, p, root, seed, dev),
                         seed=seed, device=dev, progress_bar=progress_bar, desc=f"{spec.name} teacher (seed {seed})",
                         speed=accel.default_speed(dev), data_id=spec.data_id)


def _train_teacher_in_worker(spec: DataSpec, p, root, seed: int, device: str, threads: int) -> str:
    """One teacher in a worker process of :func:`train_spec_teachers` (``threads`` intra-op threads); returns its
    run folder, where it leaves ``result.pt``."""
    torch.set_num_threads(threads)
    train_spec_teacher(spec, p, root, seed, device, progress_bar=False)
    return str(spec_teacher_dir(spec, p, root, seed, device))


def train_spec_teachers(spec: DataSpec, p, root, seeds, device="cpu", progress_bar: bool = True,
                        parallel: Optional[bool] = None) -> list:
    """The teachers of ``spec`` for several seeds (:func:`train_spec_teacher` for each), trained side by side on the CPU.

    On a CPU the small networks of the quick presets use two intra-op threads
    poorly: two teachers trained at the same time in two worker processes with
    one thread each finish 1.85 times (8 x 8 manifold UNet, 2000 iterations)
    and 1.56 times (toys' MLP, 2000 iterations) sooner than one after the
    other with two threads (bench/bench_parallel_teachers.py on 2 cores; a
    worker costs a few seconds to start, so short runs gain nothing). With
    ``parallel`` (default: on a CPU with at least one thread per missing
    teacher, when more than one teacher is missing) the missing teachers are
    trained in spawned worker processes with ``torch.get_num_threads() //
    len(missing)`` threads each; they write their run folders as
    :func:`train_spec_teacher` does, and this process then reloads them. A
    worker's teacher equals one trained here with the same number of threads.
    ``spec`` must pickle (the ``*_spec`` constructors of this module make it
    so; it travels with its data's exact tensors, so a worker trains on the
    very same data). Teachers already finished are reloaded, never retrained.
    """
    dev = resolve_device(device) if isinstance(device, str) else device
    seeds = [int(s) for s in seeds]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"train_spec_teachers: seeds must be distinct, got {seeds}")
    missing = [s for s in seeds if not (spec_teacher_dir(spec, p, root, s, dev) / "result.pt").exists()]
    if parallel is None:
        parallel = dev.type == "cpu" and len(missing) > 1 and torch.get_num_threads() >= len(missing)
    if parallel and len(missing) > 1:
        if dev.type != "cpu":
            raise ValueError(f"train_spec_teachers: parallel=True needs device 'cpu', got {dev}")
        import multiprocessing as mp
        import pickle

        try:
            pickle.dumps(spec)
        except Exception as e:
            raise ValueError(f"train_spec_teachers: parallel=True needs a picklable spec (its sample function must "
                             f"pickle, as the *_spec constructors' samplers do); {spec.name!r}: {e}") from None
        from concurrent.futures import ProcessPoolExecutor

        threads = max(1, torch.get_num_threads() // len(missing))
        with ProcessPoolExecutor(len(missing), mp_context=mp.get_context("spawn")) as pool:
            for f in [pool.submit(_train_teacher_in_worker, spec, p, str(root), s, str(dev), threads)
                      for s in missing]:
                f.result()
    return [train_spec_teacher(spec, p, root, s, dev, progress_bar) for s in seeds]


def spec_student_dir(spec: DataSpec, p, root, seed: int = 0, device="cpu") -> Path:
    """The run folder of the student of ``spec``'s teacher; it holds ``result.pt`` once the student is finished."""
    tag = config_tag(f"{spec.kind}-student", spec_teacher_dir(spec, p, root, seed, device).name, p.dmd, p.k,
                     p.n_eval, seed)
    return Path(root) / f"student-{tag}"


@torch.no_grad()
def generate_labelled(generator, z: torch.Tensor, labels=None, batch: Optional[int] = None, device="cpu") -> torch.Tensor:
    """G(z, labels) in chunks of ``batch`` (CPU float32)."""
    dev = resolve_device(device) if isinstance(device, str) else device
    n = z.shape[0]
    step = batch or n
    out = []
    for i in range(0, n, step):
        lab = None if labels is None else labels[i:i + step].to(dev)
        out.append((generator(z[i:i + step].to(dev)) if lab is None else generator(z[i:i + step].to(dev), lab)).cpu())
    return torch.cat(out)


def delta_e_along(eval_z, phi_k_of_z, device, batch: Optional[int] = None, labels=None):
    """An ``eval_fn`` recording Delta_E(Phi_K, G) (with E_DT, E_OT) on one fixed seed set along distillation."""
    def eval_fn(gen, it):
        return delta_e_record(phi_k_of_z, generate_labelled(gen, eval_z, labels, batch, device))
    return eval_fn


def distill_spec(spec: DataSpec, p, teacher: TeacherResult, root, z: torch.Tensor, phi_8: torch.Tensor,
                 seed: int = 0, device="cpu", progress_bar: bool = True, labels=None) -> DMDResult:
    """Distil (or resume, or reload) the student of ``teacher``, recording Delta_E on the first seed set along
    distillation (``z``, ``phi_8`` and ``labels`` from :func:`spec_eval_targets`)."""
    dev = resolve_device(device) if isinstance(device, str) else device
    N = p.n_eval
    extra = {"label_dim": spec.label_dim} if spec.label_dim else {}
    lab = None if labels is None else labels[:N]
    return distill(teacher.ema, tuple(spec.shape), p.dmd, run_dir=spec_student_dir(spec, p, root, seed, dev), seed=seed,
                   device=dev, progress_bar=progress_bar,
                   eval_fn=delta_e_along(z[:N], phi_8[:N], dev, getattr(p, "sample_batch", None), lab),
                   desc=f"{spec.name} DMD", speed=accel.default_speed(dev), **extra)


def spec_eval_targets(spec: DataSpec, p, teacher: TeacherResult, seed: int = 0, device="cpu") -> tuple:
    """The evaluation seeds z (R sets of N, :func:`eval_seed_sets`), their labels (conditional data: uniform,
    from their own stream; else None) and the teacher's Phi_K(z) on them (CPU)."""
    dev = resolve_device(device) if isinstance(device, str) else device
    z = eval_seed_sets(p.n_sets, p.n_eval, tuple(spec.shape), seed)
    labels = stream_labels(z.shape[0], spec.label_dim, seed, "eval-labels")
    return z, labels, _phi(teacher.ema, z, p.k, labels, p, dev)


def _phi(net, z, k, labels, p, dev) -> torch.Tensor:
    return phi_k(net, z.to(dev), k, labels=None if labels is None else labels.to(dev),
                 batch_size=getattr(p, "sample_batch", None)).cpu()


def run_pairing(spec: DataSpec, p, output_root, seed: int = 0, device="auto", reference: bool = True,
                curve: bool = False, distance: Optional[Callable] = None, distance_name: str = "w2sq",
                progress_bar: bool = True, parallel: Optional[bool] = None) -> PairingRun:
    """Teacher, second teacher, student, and the full evaluation on any data set (notebooks 01, 06, 07).

    ``p`` supplies the training configurations (``teacher``, ``dmd``), the
    network (``width``/``depth``/``fourier_dim`` of the MLP, or ``unet``),
    ``k``, ``k_ref``, ``n_eval``, ``n_sets``, ``n_curve`` and the convergence
    ``gates``. Delta_E(Phi_K, G) over ``n_sets`` independent sets of
    ``n_eval`` seeds with its interval; the reference levels (start, random
    pairing and, with ``reference``, a second teacher trained from seed + 1);
    Delta_E against N (``curve``); the fit of teacher and student to the
    teacher's distribution (Phi_{k_ref} on independent seeds) in
    ``distance`` (default: squared W2 by exact optimal transport) and the
    convergence verdict (:mod:`dmdlib.evaluation`). For conditional data
    (``spec.label_dim > 0``) every seed carries a uniform label, the same for
    teacher and student. ``parallel``: train the two teachers side by side
    (:func:`train_spec_teachers`; default: on a CPU).
    """
    dev = resolve_device(device) if isinstance(device, str) else device
    distance = w2_squared if distance is None else distance
    dn = distance_name
    root = Path(output_root)
    teachers = train_spec_teachers(spec, p, root, [seed, seed + 1] if reference else [seed], dev, progress_bar,
                                   parallel)
    teacher, teacher_2 = teachers[0], (teachers[1] if reference else None)
    R, N = p.n_sets, p.n_eval
    z, labels, phi_8 = spec_eval_targets(spec, p, teacher, seed, dev)
    student = distill_spec(spec, p, teacher, root, z, phi_8, seed, dev, progress_bar, labels)
    g = generate_labelled(student.generator.eval(), z, labels, getattr(p, "sample_batch", None), dev)
    phi_1 = _phi(teacher.ema, z, 1, labels, p, dev)
    phi_8_2 = _phi(teacher_2.ema, z, p.k, labels, p, dev) if teacher_2 is not None else None

    # the teacher's distribution (Phi at large K) and the data, on their own independent seeds
    ref_labels = stream_labels(2 * N, spec.label_dim, seed, "reference-labels")
    ref = _phi(teacher.ema, stream_noise(2 * N, tuple(spec.shape), seed, "reference"), p.k_ref, ref_labels, p, dev)
    ref_a, ref_b = ref[:N], ref[N:]
    data_gen = make_generator(derived_seed(seed, "data"), "cpu")
    data_a, data_b = (spec.images(N, data_gen) for _ in range(2))
    fit = fit_numbers(distance, g[:N], ref_a, distance(ref_b, ref_a), sampler=phi_8[:N], start=phi_1[:N])
    verdict = evaluation.verdict(p.gates, fit, evaluation.travel(g, phi_1, phi_8),
                                 evaluation.plateau(student.logs["eval"], p.gates.plateau_window))
    interval = delta_e_sets(phi_8, g, R)
    metrics = {
        "delta_e": student_record(interval, verdict),
        "references": reference_levels(phi_8, phi_1, g, R, phi_8_2, seed=seed),
        "delta_e_vs_n": (curve_columns(delta_e_vs_n(phi_8, g, [n for n in p.n_curve if n <= R * N]))
                         if curve else None),
        "fit": {  # `distance` between sets of N on independent seeds
            f"{dn}_data_data": distance(data_a, data_b),
            f"{dn}_phi8_data": distance(phi_8[:N], data_a),
            f"{dn}_ref_data": distance(ref_a, data_a),
            f"{dn}_student_data": distance(g[:N], data_a),
            f"{dn}_student_ref": fit["d_student"], f"{dn}_start_ref": fit["d_start"], f"{dn}_ref_ref": fit["d_floor"],
            f"{dn}_phi8_ref": fit["d_sampler"], "k_ref": p.k_ref},
        "sigma_data": teacher.ema.sigma_data, "label_dim": spec.label_dim, "data_id": spec.data_id,
        "n_eval": N, "n_sets": R, "k": p.k,
        "teacher_iterations": teacher.iterations, "dmd_iterations": student.iterations,
        "teacher_final_loss": teacher.losses[-1] if teacher.losses else None,
        "delta_e_along": {"iteration": [e["iteration"] for e in student.logs["eval"]],
                          "delta_e": [e["delta_e"] for e in student.logs["eval"]]},
        "delta_e_start_set0": delta_e_record(phi_8[:N], phi_1[:N])["delta_e"],   # = the first point along
        "mean_dist_g_phi8": float(pair_distances(g, phi_8).mean()),
        "mean_dist_phi1_phi8": float(pair_distances(phi_1, phi_8).mean()),
    }
    samples = {"phi_8": phi_8[:N], "phi_1": phi_1[:N], "g": g[:N], "data": data_a, "ref": ref_a}
    maps = {"phi_1": phi_1, "phi_8": phi_8, "g": g, **({"phi_8_2": phi_8_2} if phi_8_2 is not None else {})}
    return PairingRun(spec.name, teacher, student, z, samples, metrics, teacher_2, labels, maps)


def per_class_delta_e(run: PairingRun, spec: DataSpec, p, n_per_class: int, n_sets: int, seed: int = 0,
                      device="cpu") -> list:
    """Delta_E(Phi_K, G) within each class of a conditional run: R sets of ``n_per_class`` seeds per class.

    Class c's seeds come from their own stream (``"class-<c>"``), all with
    label c; returns one interval record per class (``label`` beside the
    :func:`dmdlib.metrics.delta_e_interval` keys).
    """
    if spec.label_dim < 1:
        raise ValueError("per_class_delta_e needs conditional data (spec.label_dim > 0)")
    dev = resolve_device(device) if isinstance(device, str) else device
    out = []
    for c in range(spec.label_dim):
        z = stream_noise(n_sets * n_per_class, tuple(spec.shape), seed, f"class-{c}")
        lab = one_hot(torch.full((z.shape[0],), c), spec.label_dim)
        t = _phi(run.teacher.ema, z, p.k, lab, p, dev)
        g = generate_labelled(run.student.generator.eval(), z, lab, getattr(p, "sample_batch", None), dev)
        rec = evaluation.student_record(delta_e_sets(t, g, n_sets))
        out.append({"label": c, **rec})
    return out


# ----------------------------------------------------------------------------- the toys (notebook 01)

def toy_sigma_data(p: ToyPreset, dataset: str) -> float:
    """The toy teacher's sigma_data: the preset's number, or the data set's own std for ``"data"``."""
    from .data.toy import data_std

    return data_std(dataset, p.dim) if p.sigma_data == "data" else float(p.sigma_data)


def toy_spec(dataset: str, p: ToyPreset) -> DataSpec:
    """A toy data set in R^{p.dim} (first two coordinates) as a :class:`DataSpec`."""
    if dataset not in TOY_DATASETS:
        raise ValueError(f"unknown toy data set {dataset!r}; allowed: {sorted(TOY_DATASETS)}")
    return DataSpec(dataset, (p.dim,), partial(_toy_sample, dataset, p.dim),
                    data_id=f"toy:{dataset}:dim={p.dim}", sigma_data=toy_sigma_data(p, dataset), tag=(dataset, p.dim))


def _toy_sample(dataset: str, dim: int, n: int, generator, device="cpu") -> torch.Tensor:
    return sample_toy(dataset, n, dim, generator=generator, device=device)


def toy_teacher_dir(dataset: str, p: ToyPreset, root, seed: int = 0, device="cpu") -> Path:
    """The run folder of the toy teacher of ``dataset`` and ``seed`` under ``root`` (named by its configuration)."""
    return spec_teacher_dir(toy_spec(dataset, p), p, root, seed, device)


def train_toy_teacher(dataset: str, p: ToyPreset, root, seed: int = 0, device="cpu",
                      progress_bar: bool = True) -> TeacherResult:
    """The toy teacher of ``dataset`` with seed ``seed`` (network initialisation and training draws)."""
    return train_spec_teacher(toy_spec(dataset, p), p, root, seed, device, progress_bar)


def toy_student_dir(dataset: str, p: ToyPreset, root, seed: int = 0, device="cpu") -> Path:
    """The run folder of the toy student of ``dataset`` and ``seed`` under ``root``."""
    return spec_student_dir(toy_spec(dataset, p), p, root, seed, device)


def run_toy(dataset: str, preset: str | ToyPreset, output_dir, seed: int = 0, device="auto",
            progress_bar: bool = True) -> PairingRun:
    """Teacher, second teacher, student, and the full evaluation of one toy data set (notebook 01).

    :func:`run_pairing` on the toy, plus the toys' own fit numbers: the
    fraction of samples on the data's support and the data std.
    """
    from .data.toy import data_std

    p = get_preset("toy", preset) if isinstance(preset, str) else preset
    spec = toy_spec(dataset, p)
    run = run_pairing(spec, p, Path(output_dir) / "runs" / dataset, seed, device,
                      reference=dataset in p.reference_datasets, curve=dataset in p.curve_datasets,
                      progress_bar=progress_bar)
    s = run.samples
    run.metrics["fit"].update({"support_data": support_fraction(dataset, s["data"]),
                               "support_phi8": support_fraction(dataset, s["phi_8"]),
                               "support_ref": support_fraction(dataset, s["ref"]),
                               "support_student": support_fraction(dataset, s["g"])})
    run.metrics["data_std"] = data_std(dataset, p.dim)
    return run


def toy_eval_targets(p: ToyPreset, teacher: TeacherResult, seed: int = 0, device="cpu") -> tuple:
    """The evaluation seeds z (R sets of N, :func:`eval_seed_sets`) and the teacher's Phi_K(z) on them (CPU)."""
    dev = resolve_device(device) if isinstance(device, str) else device
    z = eval_seed_sets(p.n_sets, p.n_eval, (p.dim,), seed)
    return z, phi_k(teacher.ema, z.to(dev), p.k).cpu()


def distill_toy(dataset: str, p: ToyPreset, teacher: TeacherResult, root, z: torch.Tensor, phi_8: torch.Tensor,
                seed: int = 0, device="cpu", progress_bar: bool = True) -> DMDResult:
    """Distil (or resume, or reload) the toy student of ``teacher`` (:func:`distill_spec` on the toy)."""
    return distill_spec(toy_spec(dataset, p), p, teacher, root, z, phi_8, seed, device, progress_bar)


# ----------------------------------------------------------------------------- MNIST (notebook 02)

def mnist_denoiser(p) -> EDMPrecond:
    """EDM-preconditioned ADM UNet with the preset's configuration."""
    from .nets.adm import ADMUNet

    return EDMPrecond(ADMUNet(**p.unet.kwargs()), sigma_data=p.teacher.sigma_data)


def at_resolution(x: torch.Tensor, resolution: int) -> torch.Tensor:
    """32x32 digits at the preset's resolution: unchanged at 32, else averaged over (32/r) x (32/r) blocks."""
    if x.shape[-1] == resolution:
        return x
    if x.shape[-1] % resolution:
        raise ValueError(f"img_resolution must divide {x.shape[-1]}, got {resolution}")
    return torch.nn.functional.avg_pool2d(x, x.shape[-1] // resolution)


def mnist_training_data(p, device) -> torch.Tensor:
    """The training images in [-1, 1] on ``device`` (all 70,000 unless the preset takes a subset).

    At ``p.unet.img_resolution`` < 32 (a CPU preset) the 32x32 digits are
    average-pooled to that size.
    """
    from .data.mnist import mnist_tensor

    x, _ = mnist_tensor("cpu")
    if p.data_subset:
        x = x[:p.data_subset]
    return at_resolution(x, p.unet.img_resolution).to(device)


def mnist_data_id(p) -> str:
    """The training images' identity recorded in the run folders: MNIST's pinned checksum, the preset's subset and
    resolution."""
    from .data.mnist import MNIST_SHA256

    res = p.unet.img_resolution
    return f"mnist:sha256={MNIST_SHA256}:subset={p.data_subset}" + ("" if res == 32 else f":avgpool={32 // res}")


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
    return train_teacher(net, data_fn, p.teacher, run_dir=mnist_teacher_dir(p, runs_dir, seed, dev), seed=seed, device=dev,
                         progress_bar=progress_bar, desc=f"MNIST teacher (seed {seed})", speed=accel.default_speed(dev),
                         data_id=mnist_data_id(p))


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


def _version_and_speed(device) -> tuple:
    """Part of every run-folder tag: the training code's version and the device's speed settings.

    A new code version or another device's settings then train into a new
    folder instead of being refused by the old one (a run folder records both
    and refuses to mix them).
    """
    from .runs import code_version

    return code_version(), accel.speed_record(accel.default_speed(device))


def mnist_teacher_tag(p, seed: int, device="cpu") -> str:
    return config_tag("mnist-teacher", p.unet, p.teacher, p.data_subset, seed, *_version_and_speed(device))


def mnist_teacher_dir(p, runs_dir, seed: int = 0, device="cpu") -> Path:
    """The run folder of the MNIST teacher with seed ``seed`` under ``runs_dir``."""
    return Path(runs_dir) / f"teacher-{mnist_teacher_tag(p, seed, device)}"


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
    distill_kwargs.setdefault("speed", accel.default_speed(dev))
    return distill(teacher_net, (p.unet.in_channels, p.unet.img_resolution, p.unet.img_resolution), p.dmd,
                   run_dir=student_dir(p, kimg, runs_dir, seed, name, dev), seed=seed, device=dev,
                   progress_bar=progress_bar, eval_fn=delta_e_eval(p, eval_z, eval_phi_8, dev),
                   desc=f"DMD{' ' + name if name else ''} from {kimg} kimg", **distill_kwargs)


def student_dir(p, kimg: float, runs_dir, seed: int = 0, name: str = "", device="cpu") -> Path:
    """The run folder of the student distilled from snapshot ``kimg`` (named by snapshot, variant and config)."""
    tag = config_tag("mnist-student", mnist_teacher_tag(p, seed, device), float(kimg), p.dmd, p.n_eval, seed)
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


# ----------------------------------------------------------------------------- evaluating MNIST students

def _tensor_sha(x: torch.Tensor) -> str:
    import hashlib

    return hashlib.sha256(x.detach().to("cpu").contiguous().numpy().tobytes()).hexdigest()


def cached_phi_k(net, z: torch.Tensor, k: int, cache_dir, batch: int = 250, device="cpu") -> torch.Tensor:
    """Phi_K(z) of ``net`` (CPU float32), cached in ``cache_dir`` under a key of the weights, the seeds and K.

    Teacher outputs on the evaluation seeds are the costliest evaluation step
    (2K - 1 network calls per seed) and are shared by every student of a
    snapshot, so the chapters compute them once. A cache file whose key does
    not match (other weights, seeds or K) is recomputed and replaced.
    """
    from .dmd import state_fingerprint
    from .runs import atomic_torch_save, load_checkpoint

    key = {"teacher": state_fingerprint(net), "z": _tensor_sha(z), "k": int(k), "shape": list(z.shape)}
    path = Path(cache_dir) / f"phi{k}-{key['teacher'][:12]}-{key['z'][:12]}.pt"
    if path.exists():
        try:
            ck = load_checkpoint(path)
            if ck.get("key") == key:
                return ck["x"]
        except Exception as e:  # a damaged cache file is recomputed, never trusted
            import warnings

            warnings.warn(f"{path}: unreadable cached samples ({type(e).__name__}: {e}); recomputing them")
    dev = resolve_device(device) if isinstance(device, str) else device
    x = phi_k(net, z.to(dev), k, batch_size=batch).cpu()
    atomic_torch_save({"key": key, "x": x}, path)
    return x


@torch.no_grad()
def generate(generator, z: torch.Tensor, batch: int = 250, device="cpu") -> torch.Tensor:
    """G(z) in chunks (CPU float32)."""
    dev = resolve_device(device) if isinstance(device, str) else device
    generator.eval()
    return torch.cat([generator(c.to(dev)).cpu() for c in z.split(batch)])


@dataclass
class MnistEval:
    """What every MNIST student of one teacher snapshot is measured against (notebooks 02-04).

    ``z`` holds R independent sets of N evaluation seeds [R*N, 1, 32, 32];
    ``phi_8``/``phi_1`` are the teacher's outputs on them (``phi_8`` is
    Phi_K with the preset's K), ``phi_8_2`` the second teacher's Phi_K (the
    reproducibility level; None when not computed). ``feats`` caches
    classifier features; ``real`` holds the features of held-out real digits.
    """
    p: object
    z: torch.Tensor
    phi_8: torch.Tensor
    phi_1: torch.Tensor
    phi_8_2: Optional[torch.Tensor]
    classifier: object
    classifier_info: dict
    feats: dict = field(default_factory=dict)
    device: object = "cpu"
    floor: float = 0.0              # FD(Phi_K on half A, Phi_K on half B): the sampling floor at n_fd
    d_sampler: float = 0.0          # FD(Phi_K on half A, T): the K-step map's gap to the teacher's distribution

    @property
    def halves(self) -> tuple:
        """Row slices A and B of ``n_fd`` seeds each, from two disjoint halves of the seed sets (independent seeds)."""
        n, h = self.p.n_eval, self.p.n_sets // 2
        m = min(self.p.n_fd, h * n)
        return slice(0, m), slice(h * n, h * n + m)


def mnist_eval_targets(p, teacher_net, runs_dir, seed: int = 0, device="cpu") -> tuple:
    """The evaluation seeds z (R sets of N) and the teacher's Phi_K(z), cached in ``runs_dir/samples``.

    What a student's Delta_E along distillation is measured against
    (:func:`distill_mnist`'s ``eval_z``/``eval_phi_8`` are their first N rows);
    :func:`mnist_eval_setup` starts from them.
    """
    dev = resolve_device(device) if isinstance(device, str) else device
    shape = (p.unet.in_channels, p.unet.img_resolution, p.unet.img_resolution)
    z = eval_seed_sets(p.n_sets, p.n_eval, shape, seed)
    accel.prepare(teacher_net, accel.default_speed(dev))
    return z, cached_phi_k(teacher_net, z, p.k, Path(runs_dir) / "samples", p.sample_batch, dev)


def mnist_eval_setup(p, teacher_net, runs_dir, seed: int = 0, device="cpu", teacher_2_net=None) -> MnistEval:
    """Evaluation seeds, teacher outputs (cached in ``runs_dir/samples``), the feature classifier and real digits.

    The teacher's distribution T is Phi_{k_ref} on the ``n_fd`` seeds of
    half B (:attr:`MnistEval.halves`); students and Phi_K are compared with
    it on half A. The sampling floor is FD(Phi_K(A), Phi_K(B)): two
    independent samples of (nearly) the teacher's distribution, at n_fd each.
    The real digits for the distances to the data are two disjoint sets of
    n_fd: ``"real_test"`` from the 10,000 test digits (held out from the
    feature classifier) and ``"real_train"`` from the training digits, whose
    distance is the data's own floor.
    """
    from .data.mnist import mnist_tensor
    from .features import classifier_features, frechet_distance, mnist_classifier

    dev = resolve_device(device) if isinstance(device, str) else device
    z, phi_8 = mnist_eval_targets(p, teacher_net, runs_dir, seed, dev)
    cache = Path(runs_dir) / "samples"
    phi_1 = cached_phi_k(teacher_net, z, 1, cache, p.sample_batch, dev)
    phi_8_2 = None
    if teacher_2_net is not None:
        accel.prepare(teacher_2_net, accel.default_speed(dev))
        phi_8_2 = cached_phi_k(teacher_2_net, z, p.k, cache, p.sample_batch, dev)
    clf, info = mnist_classifier()
    ev = MnistEval(p, z, phi_8, phi_1, phi_8_2, clf, info, device=dev)
    a, b = ev.halves
    half = a.stop - a.start
    x, _ = mnist_tensor("cpu")
    g = make_generator(derived_seed(seed, "real-digits"), "cpu")
    test_idx = 60_000 + torch.randperm(10_000, generator=g)[:min(half, 10_000)]
    train_idx = torch.randperm(60_000, generator=g)[:min(half, 10_000)]
    res = p.unet.img_resolution
    ev.feats["real_test"] = classifier_features(clf, at_resolution(x[test_idx], res))
    ev.feats["real_train"] = classifier_features(clf, at_resolution(x[train_idx], res))
    for name in ("phi_8", "phi_1") + (("phi_8_2",) if phi_8_2 is not None else ()):
        ev.feats[name] = classifier_features(clf, getattr(ev, name))
    t = cached_phi_k(teacher_net, z[b], p.k_ref, cache, p.sample_batch, dev)
    ev.feats["teacher"] = classifier_features(clf, t)
    ev.floor = frechet_distance(ev.feats["phi_8"][a], ev.feats["phi_8"][b])
    ev.d_sampler = frechet_distance(ev.feats["phi_8"][a], ev.feats["teacher"])
    return ev


def mnist_student_eval(ev: MnistEval, generator, logs: dict, gates=None) -> dict:
    """Everything the book reports for one MNIST student: Delta_E with its interval and verdict, the references.

    Returns ``{"g", "record", "references", "fit", "mean_dist_g_phi8", "mean_dist_phi1_phi8"}``.
    The fit gate uses Frechet distances in classifier features: G on half A
    of the seeds against the teacher's distribution T (Phi_{k_ref} on half B),
    scaled by the larger of the floor and Phi_K's own distance to T (see
    :func:`mnist_eval_setup` and :mod:`dmdlib.evaluation`).
    """
    from .features import classifier_features, frechet_distance

    p = ev.p
    gates = p.gates if gates is None else gates
    g = generate(generator, ev.z, p.sample_batch, ev.device)
    f_g = classifier_features(ev.classifier, g)
    a, _ = ev.halves
    fit = fit_numbers(frechet_distance, f_g[a], ev.feats["teacher"], ev.floor, start=ev.feats["phi_1"][a])
    fit["d_sampler"] = ev.d_sampler
    scale = max(ev.floor, ev.d_sampler)
    fit["fit_ratio"] = fit["d_student"] / scale if scale > 0 else math.inf
    real = ev.feats["real_test"]
    fit.update({"fd_student_data": frechet_distance(f_g[a], real),
                "fd_teacher_data": frechet_distance(ev.feats["phi_8"][a], real),
                "fd_start_data": frechet_distance(ev.feats["phi_1"][a], real),
                "fd_data_data": frechet_distance(ev.feats["real_train"], real),
                "n_fd": int(a.stop - a.start), "k_ref": p.k_ref, "feature_net_sha256": ev.classifier_info["sha256"],
                "distance": "Frechet distance in MNIST-classifier features (not Inception FID)"})
    verdict = evaluation.verdict(gates, fit, evaluation.travel(g, ev.phi_1, ev.phi_8),
                                 evaluation.plateau(logs["eval"], gates.plateau_window))
    interval = delta_e_sets(ev.phi_8, g, p.n_sets)
    d_g = pair_distances(g, ev.phi_8)
    return {"g": g, "record": student_record(interval, verdict),
            "references": reference_levels(ev.phi_8, ev.phi_1, g, p.n_sets, ev.phi_8_2, seed=0),
            "fit": fit, "mean_dist_g_phi8": float(d_g.mean()),
            "mean_dist_phi1_phi8": float(pair_distances(ev.phi_1, ev.phi_8).mean())}


# ----------------------------------------------------------------------------- the MLP manifold and the embedded
# chessboard (notebook 06), conditional data (notebook 07)

def manifold_spec(latent_dim: int, resolution: int, num_classes: int = 0, manifold_seed: int = 0) -> DataSpec:
    """MLP-manifold images (:class:`dmdlib.data.manifold.MLPManifold`) as a :class:`DataSpec`; one-hot labels when
    ``num_classes`` > 0. sigma_data is the data set's std."""
    from .data.manifold import MLPManifold

    base = MLPManifold(latent_dim=latent_dim, resolution=resolution, num_classes=num_classes, seed=manifold_seed)
    name = f"manifold-k{latent_dim}" + (f"-c{num_classes}" if num_classes else "")
    return DataSpec(name, base.image_shape, _ManifoldSampler(base), base.data_id, sigma_data=base.std,
                    label_dim=num_classes, tag=("manifold", base.data_id), kind="manifold")


class _ManifoldSampler:
    """``DataSpec.sample`` of :func:`manifold_spec`: draws from one fixed :class:`MLPManifold` (picklable with it)."""

    def __init__(self, base):
        self.base = base
        self.copies = {str(base.device): base}

    def __call__(self, n, generator, device="cpu"):
        from .data.manifold import MLPManifold

        b = self.base
        dev = str(generator.device) if generator is not None else str(torch.device(device))
        if dev not in self.copies:   # the same fixed map, on another device
            self.copies[dev] = MLPManifold(b.latent_dim, b.resolution, b.num_classes, b.seed).to(dev)
        x, lab = self.copies[dev].sample(n, generator=generator)
        x = x.to(device)
        return x if b.num_classes == 0 else (x, one_hot(lab, b.num_classes).to(device))


def embedded_chessboard_spec(dim: int, sigma_data: float, embedding_seed: int = 0) -> DataSpec:
    """The chessboard embedded in R^dim by a fixed random orthogonal map (:func:`dmdlib.data.toy.orthogonal_embedding`)
    as a :class:`DataSpec`, with the given ``sigma_data`` (notebook 06 uses the R^4 chessboard's for every dim)."""
    sample = partial(_embedded_chessboard_sample, dim, embedding_seed)
    data_id = f"toy:chessboard:dim={dim}:orthogonal:seed={embedding_seed}"
    return DataSpec(f"chessboard-d{dim}", (dim,), sample, data_id, sigma_data=float(sigma_data),
                    tag=("chessboard-orthogonal", dim, embedding_seed, float(sigma_data)))


def _embedded_chessboard_sample(dim: int, embedding_seed: int, n: int, generator, device="cpu") -> torch.Tensor:
    return sample_toy("chessboard", n, dim, generator=generator, device=device, embedding="orthogonal",
                      embedding_seed=embedding_seed)


def mnist_spec(p, conditional: bool, device="cpu") -> DataSpec:
    """MNIST at the preset's resolution (:func:`mnist_training_data`) as a :class:`DataSpec`; with
    ``conditional`` each image comes with its one-hot digit label (label_dim 10). Mini-batches are drawn
    uniformly with replacement, as in :func:`train_mnist_teacher`."""
    from .data.mnist import mnist_tensor

    dev = resolve_device(device) if isinstance(device, str) else device
    x, y = mnist_tensor("cpu")
    if p.data_subset:
        x, y = x[:p.data_subset], y[:p.data_subset]
    x = at_resolution(x, p.unet.img_resolution).to(dev)
    y = one_hot(torch.as_tensor(y), 10).to(dev)
    shape = (p.unet.in_channels, p.unet.img_resolution, p.unet.img_resolution)
    return DataSpec("mnist" + ("-cond" if conditional else ""), shape, _MnistSampler(x, y, conditional),
                    mnist_data_id(p) + (":labels" if conditional else ""), sigma_data=p.teacher.sigma_data,
                    label_dim=10 if conditional else 0, tag=("mnist", p.data_subset, 10 if conditional else 0),
                    kind="mnist")


class _MnistSampler:
    """``DataSpec.sample`` of :func:`mnist_spec`: uniform draws with replacement from the images (and one-hot labels)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, conditional: bool):
        self.x, self.y, self.conditional = x, y, conditional

    def __call__(self, n, generator, device="cpu"):
        idx = torch.randint(0, self.x.shape[0], (n,), generator=generator,
                            device=generator.device if generator is not None else "cpu").to(self.x.device)
        x = self.x[idx].to(device)
        return (x, self.y[idx].to(device)) if self.conditional else x


IMAGENET64_HELP = """No ImageNet-64 weights were supplied, so this section shows nothing. To evaluate them, run this
notebook with the parameter `imagenet_teacher` set to the path of a converted state dict of EDM's class-conditional
ImageNet-64 ADM teacher (`edm-imagenet-64x64-cond-adm.pkl`: 192 base channels, 1000 classes, 295,899,267
parameters), and optionally `imagenet_student` to a converted DMD2 ImageNet-64 one-step generator of the same
architecture, e.g.

    papermill notebooks/07_conditioning.ipynb out.ipynb -p preset paper -p imagenet_teacher edm64.safetensors \\
        -p imagenet_student dmd2_64.safetensors

Both must be plain state dicts (parameter name -> tensor, EDM's names, with or without the `model.` prefix) saved
with safetensors or `torch.save`; dmdlib never unpickles a file. How to convert EDM's or DMD2's pickles once, in a
checkout of the code that wrote them: see `dmdlib.nets.adm.load_imagenet64`. The teacher is then evaluated
($\\Phi_1$ and $\\Phi_8$ on R sets of N seeds with uniform random classes); with a student, its $\\Delta_E$
with the interval and the start and random-pairing levels (a GPU is needed: 15 network calls of a 296M-parameter
network per seed)."""


def imagenet64_section(teacher_path="", student_path="", n_eval: int = 1000, n_sets: int = 10, k: int = 8,
                       n_show: int = 8, seed: int = 0, device="auto", batch: int = 50, config=None) -> dict:
    """Notebook 07's ImageNet-64 section: the pairing of a supplied conditional teacher (and one-step student).

    With no ``teacher_path``: ``{"status": "not supplied", "instructions": ...}`` (what to supply and how).
    Otherwise both networks are loaded strictly (:func:`dmdlib.nets.adm.load_imagenet64`; ``config`` replaces
    ``dmdlib.presets.IMAGENET64_UNET``, for tests), the evaluation seeds are R sets of N with uniform one-hot
    classes, and the result holds the start level Delta_E(Phi_K, Phi_1) and, with a student (used as
    G(z, c) = D(sigma_max z, sigma_max, c), DMD2's generator), its Delta_E interval with the start and
    random-pairing references; ``samples`` holds the first ``n_show`` images of each map. A supplied student
    has no convergence verdict (its training is not ours to check).
    """
    from .dmd import OneStepGenerator
    from .nets.adm import load_imagenet64

    if not teacher_path:
        if student_path:
            raise ValueError("imagenet_student was given without imagenet_teacher; Delta_E needs the teacher's Phi_K")
        return {"status": "not supplied", "instructions": IMAGENET64_HELP}
    for name, path in (("imagenet_teacher", teacher_path), ("imagenet_student", student_path)):
        if path and not Path(path).is_file():
            raise FileNotFoundError(f"{name}: no file at {str(path)!r}")
    dev = resolve_device(device) if isinstance(device, str) else device
    teacher = load_imagenet64(teacher_path, dev, config=config)
    net = teacher.model
    shape, label_dim = (net.in_channels, net.img_resolution, net.img_resolution), int(net.label_dim)
    z = eval_seed_sets(n_sets, n_eval, shape, seed)
    labels = stream_labels(z.shape[0], label_dim, seed, "eval-labels")

    class _P:   # what _phi reads
        sample_batch = batch

    phi_1, phi_8 = (_phi(teacher, z, kk, labels, _P, dev) for kk in (1, k))
    out = {"status": "teacher", "teacher": str(teacher_path), "n_params": sum(p.numel() for p in teacher.parameters()),
           "n_eval": n_eval, "n_sets": n_sets, "k": k,
           "start": evaluation.student_record(delta_e_sets(phi_8, phi_1, n_sets)),
           "samples": {r"$\Phi_1$": phi_1[:n_show], rf"$\Phi_{{{k}}}$": phi_8[:n_show]}}
    if student_path:
        gen = OneStepGenerator(load_imagenet64(student_path, dev, config=config)).eval()
        g = generate_labelled(gen, z, labels, batch, dev)
        rec = evaluation.student_record(delta_e_sets(phi_8, g, n_sets))
        out.update(status="teacher and student", student=str(student_path), delta_e=rec,
                   references=reference_levels(phi_8, phi_1, g, n_sets, seed=seed),
                   converged="not assessed (supplied weights)")
        out["samples"]["$G$"] = g[:n_show]
    return out


def feature_distance():
    """The MNIST chapters' fit distance as a function of two image sets: the Frechet distance in the features of
    our MNIST classifier (:mod:`dmdlib.features`), for :func:`run_pairing`'s ``distance``."""
    from .features import classifier_features, frechet_distance, mnist_classifier

    clf, _ = mnist_classifier()
    return lambda a, b: frechet_distance(classifier_features(clf, a), classifier_features(clf, b))


# ----------------------------------------------------------------------------- where copying begins (notebook 06)

def sweep_record(key: str, value: int, run: PairingRun) -> dict:
    """One point of a dimension sweep as metrics.json stores it: ``key`` (``intrinsic_dim`` or ``ambient_dim``)
    beside the student's Delta_E interval and verdict, its reference levels, its regime
    (:func:`dmdlib.evaluation.regime`) and its fit."""
    m = run.metrics
    return {key: int(value), **m["delta_e"], "references": m["references"],
            "regime": evaluation.regime(m["delta_e"], m["references"]), "fit": m["fit"],
            "sigma_data": m["sigma_data"], "data_id": m["data_id"], "delta_e_along": m["delta_e_along"],
            "mean_dist_g_phi8": m["mean_dist_g_phi8"], "mean_dist_phi1_phi8": m["mean_dist_phi1_phi8"]}


OFF_PLANE_MAX = 0.1   # a teacher whose samples lie farther from the board's plane (cells have side 1) failed


def embedded_chessboard_fit(run: PairingRun, dim: int, embedding_seed: int = 0) -> dict:
    """How well the samples of an ambient-dimension point sit on the embedded chessboard (notebook 06).

    For the data, the teacher's distribution (``ref``), Phi_K and the student: the fraction of samples on
    a black cell of the board in the embedding plane (:func:`dmdlib.data.toy.support_fraction`), and the
    mean distance from the plane (the noise the network left in the d - 2 empty directions; 0 for data).
    ``teacher_ok``: the teacher's distribution lies within ``OFF_PLANE_MAX`` (a tenth of a board
    cell) of the plane on average. Where it does not, every pairing costs about the same (the residual
    noise dominates the distances), Delta_E and its random level both shrink, and the point says nothing
    about the pairing on the board; the fit gate cannot see this, since it compares the student with that
    same noisy teacher.
    """
    from .data.toy import orthogonal_embedding

    e = orthogonal_embedding(dim, embedding_seed).double()
    out = {}
    for name in ("data", "ref", "phi_8", "g"):
        x = run.samples[name].double()
        off = x - (x @ e) @ e.T
        out[name] = {"support": support_fraction("chessboard", x, embedding="orthogonal", embedding_seed=embedding_seed),
                     "off_plane": float(off.norm(dim=1).mean())}
    out["teacher_ok"] = out["ref"]["off_plane"] <= OFF_PLANE_MAX
    return out


OFF_MANIFOLD_MAX = 0.5   # a teacher whose samples sit as far from the manifold as noise of half the data's std failed


def manifold_fit(run: PairingRun, manifold, n: int = 250, seed: int = 0) -> dict:
    """How well the samples of an MLP-manifold point sit on the manifold (notebooks 06 and 07).

    For the data, the teacher's distribution (``ref``), Phi_K and the student: the mean distance of the
    first ``n`` samples from the manifold (:meth:`dmdlib.data.manifold.MLPManifold.distance`, an upper
    bound; with labels, from the manifold of each sample's class), and the same as an equivalent noise
    level relative to the data: ``noise = distance / sqrt(D) / std``, the per-pixel standard deviation of
    isotropic noise that would put data this far from a k-dimensional manifold in D >> k pixels, in units
    of the data's std (0 for the data, about 1 for samples as noisy as the data is varied).
    ``teacher_ok``: the teacher's distribution has ``noise`` <= ``OFF_MANIFOLD_MAX``. Where it has
    not, the teacher did not learn the manifold (its samples are mostly noise around it), and the
    point's Delta_E and fit say nothing about distilling a teacher of this data; the fit gate cannot see
    this, since it compares the student with that same teacher.
    """
    dim = math.prod(manifold.image_shape)
    labels = None
    if run.labels is not None:
        labels = run.labels[:n].argmax(1).to(manifold.device)
    out = {}
    for name in ("data", "ref", "phi_8", "g"):
        x = run.samples[name][:n]
        lab = None if labels is None else labels[:x.shape[0]]   # the first set's seeds, as many as samples
        if name in ("data", "ref"):   # drawn with their own labels: measure against the nearest class
            lab = None
        d = _manifold_distance(manifold, x, lab, seed)
        mean = float(d.mean())
        out[name] = {"distance": mean, "noise": mean / math.sqrt(dim) / manifold.std}
    out["teacher_ok"] = out["ref"]["noise"] <= OFF_MANIFOLD_MAX
    return out


def _manifold_distance(manifold, x, labels, seed):
    """Distance from the manifold of each sample's class, or (labels None, conditional manifold) of the nearest class."""
    if manifold.num_classes == 0 or labels is not None:
        return manifold.distance(x, labels, seed=seed)
    per_class = [manifold.distance(x, torch.full((x.shape[0],), c, dtype=torch.long), seed=seed)
                 for c in range(manifold.num_classes)]
    return torch.stack(per_class).min(0).values


def copying_onset(points: list, key: str) -> Optional[int]:
    """The smallest dimension from which every point of the sweep (sorted by ``key``) is converged and copies;
    None when the largest point does not (no onset within the sweep). A point whose record says
    ``teacher_ok: False`` is no result and ends the run of copying points like an unconverged one."""
    pts = sorted(points, key=lambda p: p[key])
    onset = None
    for p in reversed(pts):
        if p.get("converged") and p.get("teacher_ok", True) and p["regime"] == "copies":
            onset = p[key]
        else:
            break
    return onset


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
        extra["data_id"] = mnist_data_id(p)
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
                      concurrent: bool = False, progress_bar: bool = True, eval_phi_8: Optional[dict] = None) -> dict:
    """One student per teacher snapshot, identical settings and seeds (notebook 04).

    Returns ``{kimg: {"teacher": net, "phi_8": Phi_K(eval_z), "student": DMDResult}}``.
    ``eval_phi_8`` ({kimg: Phi_K(eval_z)}, e.g. from :func:`mnist_eval_setup`)
    avoids recomputing the teachers' outputs.
    ``concurrent=True`` trains the students side by side in one loop
    (:func:`dmdlib.concurrent.distill_concurrent`, the same computation);
    otherwise one after another. Both write and reuse the same run folders.
    """
    dev = resolve_device(device) if isinstance(device, str) else device
    out = {}
    for kimg in kimgs:
        net = mnist_snapshot(p, teacher, kimg, device=dev)
        if eval_phi_8 is not None and float(kimg) in eval_phi_8:
            phi = eval_phi_8[float(kimg)]
        else:
            phi = phi_k(net, eval_z.to(dev), p.k, batch_size=p.sample_batch).cpu() if eval_z is not None else None
        out[float(kimg)] = {"teacher": net, "phi_8": phi}
    if concurrent:
        from .concurrent import distill_concurrent

        ks = list(out)
        shape = (p.unet.in_channels, p.unet.img_resolution, p.unet.img_resolution)
        students = distill_concurrent([out[k]["teacher"] for k in ks], shape, p.dmd,
                                      run_dirs=[student_dir(p, k, runs_dir, seed, "", dev) for k in ks], seed=seed,
                                      device=dev, progress_bar=progress_bar, speed=accel.default_speed(dev),
                                      eval_fns=[delta_e_eval(p, eval_z, out[k]["phi_8"], dev) for k in ks],
                                      desc="DMD students")
        for k, st in zip(ks, students):
            out[k]["student"] = st
    else:
        for k, r in out.items():
            r["student"] = distill_mnist(p, r["teacher"], k, runs_dir, seed=seed, device=dev, eval_z=eval_z,
                                         eval_phi_8=r["phi_8"], progress_bar=progress_bar)
    return out
