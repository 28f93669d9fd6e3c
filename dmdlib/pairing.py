"""The one experiment path: preset -> data spec -> teachers -> student(s) -> samples on shared seeds -> records.

Every chapter calls :func:`run_pairing` (or :func:`run_pairings` for
several teacher snapshots) with a :class:`~dmdlib.specs.DataSpec` and a
preset, and gets back plain :class:`PairingRun` records; a chapter decides
what to plot. The stages:

1. **teachers**: the teacher of the run seed and, for the reproducibility
   level, a second one from seed + 1 (:func:`train_spec_teachers`: trained,
   resumed or reloaded from their run folders; on a CPU the two train side
   by side in worker processes). For data with an exact denoiser
   (``spec.exact``, :func:`dmdlib.specs.mixture_spec`) the exact denoiser is
   the teacher, and what is trained is a network regressed onto it: the
   student starts from it (as a student starts from its teacher's weights),
   and the second one gives the reproducibility level;
2. **the teacher network** distilled: the final EMA weights, or the snapshot
   at ``snapshot`` (MNIST, notebooks 02-05), prepared for evaluation
   (:func:`teacher_net`);
3. **targets**: the evaluation seeds and the teacher's outputs on them
   (:func:`dmdlib.records.eval_targets`; cached on disk under ``root/samples``);
4. **students**: DMD from the teacher network (:func:`distill_student`),
   optionally with one extra loss term (``variant``: 'gan' or 'regression',
   notebook 03), or several snapshots' students side by side
   (``concurrent``, :func:`dmdlib.concurrent.distill_concurrent`);
5. **records**: G on the evaluation seeds and the student's evaluation
   record (:func:`dmdlib.records.student_metrics`).

Every stage writes into ``root`` and is resumed or reloaded from there: a
rerun retrains nothing, and chapters pointed at one ``root`` share their runs.
"""
from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Optional

import torch

from . import accel, distributed, records
from .dmd import DMDResult, distill
from .labels import one_hot
from .metrics import delta_e_record
from .runs import config_tag, derived_seed, make_generator, resolve_device
from .sampler import one_step, phi_k
from .specs import DataSpec, spec_denoiser
from .teacher import TeacherResult, load_snapshot, train_teacher

VARIANTS = ("baseline", "gan", "regression")


# ----------------------------------------------------------------------------- random streams of a run

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


def stream_labels(n: int, label_dim: int, seed: int, stream: str) -> Optional[torch.Tensor]:
    """n uniform one-hot labels from the run's stream ``stream`` (None when ``label_dim`` is 0)."""
    if label_dim == 0:
        return None
    g = make_generator(derived_seed(seed, stream), "cpu")
    return one_hot(torch.randint(0, label_dim, (n,), generator=g), label_dim)


# ----------------------------------------------------------------------------- teachers

def _dev(device) -> torch.device:
    return resolve_device(device) if isinstance(device, str) else device


def _arch_tag(p) -> tuple:
    unet = getattr(p, "unet", None)
    return (unet,) if unet is not None else (p.width, p.depth, p.fourier_dim)


def _teacher_config(spec: DataSpec, p):
    return replace(p.teacher, sigma_data=spec.sigma_data)


def _version_and_speed(device) -> tuple:
    """Part of every run-folder tag: the training code's version and the device's speed settings.

    A new code version or another device's settings then train into a new
    folder instead of being refused by the old one (a run folder records both
    and refuses to mix them).
    """
    from .runs import code_version

    return code_version(), accel.speed_record(accel.default_speed(device))


def spec_teacher_dir(spec: DataSpec, p, root, seed: int = 0, device="cpu") -> Path:
    """The run folder of the teacher of ``spec`` and ``seed`` under ``root`` (named by data, network, configuration)."""
    tag = config_tag(f"{spec.kind}-teacher", *spec.tag, *_arch_tag(p), _teacher_config(spec, p), seed,
                     *_version_and_speed(_dev(device)))
    return Path(root) / f"teacher-{tag}"


def train_spec_teacher(spec: DataSpec, p, root, seed: int = 0, device="cpu", progress_bar: bool = True) -> TeacherResult:
    """Train (or resume, or reload) the teacher of ``spec`` with seed ``seed`` (initialisation and training draws)."""
    dev = _dev(device)
    torch.manual_seed(seed)  # network initialisation
    net = spec_denoiser(spec, p)
    data_fn = lambda n, g: spec.sample(n, g, dev)  # noqa: E731
    what = "teacher" if spec.exact is None else "network regressed onto the exact teacher"
    return train_teacher(net, data_fn, _teacher_config(spec, p), run_dir=spec_teacher_dir(spec, p, root, seed, dev),
                         seed=seed, device=dev, progress_bar=progress_bar, desc=f"{spec.name} {what} (seed {seed})",
                         speed=accel.default_speed(dev), data_id=spec.data_id, target=spec.exact)


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
    teacher, when more than one teacher is missing, outside torchrun) the
    missing teachers are trained in spawned worker processes with
    ``torch.get_num_threads() // len(missing)`` threads each; they write their
    run folders as :func:`train_spec_teacher` does, and this process then
    reloads them. A worker's teacher equals one trained here with the same
    number of threads (not with another number: CPU kernels sum in another
    order). ``spec`` must pickle (the constructors of :mod:`dmdlib.specs`
    make it so; it travels with its data's exact tensors, so a worker trains
    on the very same data). Teachers already finished are reloaded, never retrained.
    """
    dev = _dev(device)
    seeds = [int(s) for s in seeds]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"train_spec_teachers: seeds must be distinct, got {seeds}")
    missing = [s for s in seeds if not (spec_teacher_dir(spec, p, root, s, dev) / "result.pt").exists()]
    if parallel is None:
        parallel = (dev.type == "cpu" and len(missing) > 1 and torch.get_num_threads() >= len(missing)
                    and not distributed.active())
    if parallel and len(missing) > 1:
        if dev.type != "cpu":
            raise ValueError(f"train_spec_teachers: parallel=True needs device 'cpu', got {dev}")
        import multiprocessing as mp
        import pickle

        try:
            pickle.dumps(spec)
        except Exception as e:
            raise ValueError(f"train_spec_teachers: parallel=True needs a picklable spec (its sample function must "
                             f"pickle, as the dmdlib.specs constructors' samplers do); {spec.name!r}: {e}") from None
        from concurrent.futures import ProcessPoolExecutor

        threads = max(1, torch.get_num_threads() // len(missing))
        with ProcessPoolExecutor(len(missing), mp_context=mp.get_context("spawn")) as pool:
            for f in [pool.submit(_train_teacher_in_worker, spec, p, str(root), s, str(dev), threads)
                      for s in missing]:
                f.result()
    return [train_spec_teacher(spec, p, root, s, dev, progress_bar) for s in seeds]


def teacher_net(spec: DataSpec, p, teacher: TeacherResult, snapshot: Optional[float] = None, device="cpu"):
    """The teacher network that is distilled and evaluated: the EMA weights at the end of training, or the
    EMA weights saved at ``snapshot`` (in the teacher's progress unit, e.g. kimg), on ``device``, in eval mode
    and prepared with the device's default speed settings (:func:`dmdlib.accel.prepare`: channels_last on a
    CPU), so that it computes the same whether the teacher was trained now or reloaded. The caller's
    :class:`~dmdlib.teacher.TeacherResult` is left untouched."""
    dev = _dev(device)
    if snapshot is None:
        net = copy.deepcopy(teacher.ema)
    else:
        key = float(snapshot)
        if key not in teacher.snapshots:
            raise ValueError(f"no teacher snapshot at {snapshot} {teacher.unit}; available: "
                             f"{sorted(teacher.snapshots)} ({teacher.unit})")
        net, snap = spec_denoiser(spec, p), teacher.snapshots[key]
        if isinstance(snap, dict):
            net.load_state_dict(snap)
        else:
            load_snapshot(net, snap)
    return accel.prepare(net.to(dev).eval().requires_grad_(False), accel.default_speed(dev))


# ----------------------------------------------------------------------------- teacher and student outputs

def _tensor_sha(x: torch.Tensor) -> str:
    return hashlib.sha256(x.detach().to("cpu").contiguous().numpy().tobytes()).hexdigest()


def cached_phi_k(net, z: torch.Tensor, k: int, cache_dir, batch: Optional[int] = None, device="cpu",
                 labels: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Phi_K(z) of ``net`` (CPU float32), cached in ``cache_dir`` under a key of the weights, the seeds (and labels)
    and K.

    Teacher outputs on the evaluation seeds are the costliest evaluation step
    (2K - 1 network calls per seed) and are shared by every student of a
    teacher, so they are computed once. A cache file whose key does not
    match (other weights, seeds, labels, K, or the sampling arithmetic of :func:`dmdlib.accel.sampling_key`) is
    recomputed and replaced.
    """
    from .dmd import state_fingerprint
    from .runs import atomic_torch_save, load_checkpoint

    key = {"teacher": state_fingerprint(net), "z": _tensor_sha(z), "k": int(k), "shape": list(z.shape),
           **accel.sampling_key(device)}
    if labels is not None:
        key["labels"] = _tensor_sha(labels)
    path = Path(cache_dir) / f"phi{k}-{key['teacher'][:12]}-{key['z'][:12]}{'-' + key['labels'][:8] if labels is not None else ''}.pt"
    if path.exists():
        try:
            ck = load_checkpoint(path)
            if ck.get("key") == key:
                return ck["x"]
        except Exception as e:  # a damaged cache file is recomputed, never trusted
            import warnings

            warnings.warn(f"{path}: unreadable cached samples ({type(e).__name__}: {e}); recomputing them")
    dev = _dev(device)
    x = phi_k(net, z.to(dev), k, labels=None if labels is None else labels.to(dev), batch_size=batch).cpu()
    if distributed.is_main():
        atomic_torch_save({"key": key, "x": x}, path)
    return x


@torch.no_grad()
def generate(generator, z: torch.Tensor, labels=None, batch: Optional[int] = None, device="cpu") -> torch.Tensor:
    """G(z, labels) in chunks of ``batch`` (CPU float32, G in eval mode), in fp32 with TF32 and autocast off
    (:func:`dmdlib.sampler.one_step`), like Phi_K, whatever speed the student was trained at."""
    dev = _dev(device)
    generator.eval()
    return one_step(generator, z.to(dev), None if labels is None else labels.to(dev), batch).cpu()


def delta_e_along(eval_z, phi_k_of_z, device, batch: Optional[int] = None, labels=None):
    """An ``eval_fn`` recording Delta_E(Phi_K, G) (with E_DT, E_OT) on one fixed seed set along distillation."""
    def eval_fn(gen, it):
        return delta_e_record(phi_k_of_z, generate(gen, eval_z, labels, batch, device))
    return eval_fn


# ----------------------------------------------------------------------------- students

def variant_config(p, variant: str):
    """The DMD configuration of a variant: the preset's, plus the variant's one extra term (notebook 03)."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; allowed: {list(VARIANTS)}")
    if variant == "gan":
        return replace(p.dmd, gan_d_weight=p.gan_d_weight, gan_g_weight=p.gan_g_weight)
    if variant == "regression":
        return replace(p.dmd, regression_weight=p.regression_weight)
    return p.dmd


def _snapshot_name(snapshot) -> str:
    if snapshot is None:
        return ""
    v = float(snapshot)
    return f"{int(v) if v.is_integer() else v}kimg-"


def spec_student_dir(spec: DataSpec, p, root, seed: int = 0, device="cpu", snapshot: Optional[float] = None,
                     variant: str = "baseline") -> Path:
    """The run folder of the student of ``spec``'s teacher (at ``snapshot``; with ``variant``'s extra term)."""
    tag = config_tag(f"{spec.kind}-student", spec_teacher_dir(spec, p, root, seed, device).name, snapshot,
                     variant_config(p, variant), p.k, p.n_eval, seed)
    name = "" if variant == "baseline" else f"{variant}-"
    return Path(root) / f"student-{_snapshot_name(snapshot)}{name}{tag}"


def regression_pairs(spec: DataSpec, p, net, seed: int = 0, device="cpu") -> tuple:
    """(z, Phi_K(z)[, labels]) for ``p.n_regression_pairs`` seeds, generated once by the teacher ``net`` (DMD v1's
    paired set; notebook 03).

    The seeds come from their own generator (offset 30000), independent of
    the evaluation seeds: the regression student's Delta_E is measured on
    pairs it never saw. Conditional data: uniform labels from their own stream.
    """
    g = make_generator(30_000 + seed, "cpu")
    z = torch.randn((p.n_regression_pairs, *spec.shape), generator=g)
    labels = stream_labels(z.shape[0], spec.label_dim, seed, "regression-labels")
    x = phi_k(net, z.to(device), p.k, labels=None if labels is None else labels.to(device),
              batch_size=getattr(p, "sample_batch", None)).cpu()
    return (z, x) if labels is None else (z, x, labels)


def exact_net(spec: DataSpec, device="cpu"):
    """The exact teacher of a spec that has one (``spec.exact``), on ``device`` in eval mode (a copy)."""
    if spec.exact is None:
        raise ValueError(f"spec {spec.name!r} has no exact denoiser")
    return copy.deepcopy(spec.exact).to(_dev(device)).eval()


def distill_student(spec: DataSpec, p, net, root, targets, seed: int = 0, device="cpu", snapshot=None,
                    variant: str = "baseline", progress_bar: bool = True, student_init=None) -> DMDResult:
    """Distil (or resume, or reload) the student of teacher network ``net`` (:func:`teacher_net`), recording
    Delta_E on the first seed set of ``targets`` along distillation; ``variant`` adds the GAN term (real
    samples from ``spec``) or the regression term (pairs from :func:`regression_pairs`); ``student_init``
    (an exact teacher's regressed network) is the network the student starts from instead of ``net``."""
    dev = _dev(device)
    N, batch = p.n_eval, getattr(p, "sample_batch", None)
    lab = None if targets.labels is None else targets.labels[:N]
    extra = {"label_dim": spec.label_dim} if spec.label_dim else {}
    if variant == "gan":
        extra.update(data_fn=lambda n, g: spec.sample(n, g, dev), data_id=spec.data_id)
    elif variant == "regression":
        extra["regression_pairs"] = regression_pairs(spec, p, net, seed, dev)
    return distill(net, tuple(spec.shape), variant_config(p, variant), seed=seed, device=dev,
                   run_dir=spec_student_dir(spec, p, root, seed, dev, snapshot, variant), progress_bar=progress_bar,
                   eval_fn=delta_e_along(targets.z[:N], targets.phi_k[:N], dev, batch, lab),
                   desc=f"{spec.name} DMD" + (f" {variant}" if variant != "baseline" else "")
                   + (f" from {snapshot:g}" if snapshot is not None else ""),
                   speed=accel.default_speed(dev), student_init=student_init, **extra)


# ----------------------------------------------------------------------------- the pairing run

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
    net: Optional[torch.nn.Module] = None         # the teacher network distilled and evaluated (teacher_net)
    snapshot: Optional[float] = None
    variant: str = "baseline"
    init: Optional[torch.nn.Module] = None        # an exact teacher's regressed network, the student's start


def run_pairings(spec: DataSpec, p, root, seed: int = 0, device="auto", snapshots=(None,), reference=(),
                 variant: str = "baseline", concurrent: bool = False, curve: bool = False,
                 progress_bar: bool = True, parallel: Optional[bool] = None) -> list:
    """The pairing path for one or several teacher ``snapshots`` of one training run (see the module docstring).

    ``p`` supplies the training configurations (``teacher``, ``dmd``), the
    network (``unet``, or the MLP's ``width``/``depth``/``fourier_dim``),
    ``k``, ``k_ref``, ``n_eval``, ``n_sets``, ``n_curve`` and the convergence
    ``gates`` (and, for ``variant``, the GAN and regression settings).
    ``snapshots``: None for the final EMA weights, else a snapshot of the
    teacher run; ``reference``: the snapshots at which a second teacher
    (seed + 1, same snapshot) gives the reproducibility level; ``concurrent``
    trains the snapshots' students side by side in one loop (the same
    computation); ``curve`` adds Delta_E against N; ``parallel`` trains the
    two teachers side by side (:func:`train_spec_teachers`). Returns one
    :class:`PairingRun` per snapshot, in order.
    """
    dev = _dev(device)
    root = Path(root)
    snapshots = list(snapshots)
    variant_config(p, variant)      # a bad variant is refused before anything is trained
    if concurrent and len(snapshots) > 1 and variant != "baseline":
        raise ValueError(f"concurrent students support DMD alone; variant must be 'baseline', got {variant!r}")
    with_2 = [s for s in snapshots if s in list(reference)]
    teachers = train_spec_teachers(spec, p, root, [seed, seed + 1] if with_2 else [seed], dev, progress_bar, parallel)
    nets, inits, targets = [], [], []
    for s in snapshots:
        trained = teacher_net(spec, p, teachers[0], s, dev)
        net, init = (trained, None) if spec.exact is None else (exact_net(spec, dev), trained)
        net_2 = teacher_net(spec, p, teachers[1], s, dev) if s in with_2 else None
        with distributed.main_first():   # rank 0 computes and caches the teachers' outputs, the others read them
            targets.append(records.eval_targets(spec, p, net, seed, root / "samples", dev, net_2))
        nets.append(net)
        inits.append(init)
    batch = getattr(p, "sample_batch", None)
    if concurrent and len(snapshots) > 1:
        from .concurrent import distill_concurrent

        N = p.n_eval
        students = distill_concurrent(
            nets, tuple(spec.shape), p.dmd, seed=seed, device=dev, progress_bar=progress_bar,
            run_dirs=[spec_student_dir(spec, p, root, seed, dev, s) for s in snapshots],
            eval_fns=[delta_e_along(t.z[:N], t.phi_k[:N], dev, batch, None if t.labels is None else t.labels[:N])
                      for t in targets],
            speed=accel.default_speed(dev), desc=f"{spec.name} DMD students", label_dim=spec.label_dim,
            student_inits=inits)
    else:
        students = [distill_student(spec, p, net, root, t, seed, dev, s, variant, progress_bar, init)
                    for net, init, t, s in zip(nets, inits, targets, snapshots)]
    out = []
    for s, net, init, t, student in zip(snapshots, nets, inits, targets, students):
        gen = accel.prepare(student.generator, accel.default_speed(dev))   # as trained, whether trained now or reloaded
        g = generate(gen, t.z, t.labels, batch, dev)
        metrics = records.student_metrics(spec, p, t, g, student.logs, seed, curve)
        metrics.update(teacher_iterations=teachers[0].iterations, dmd_iterations=student.iterations,
                       teacher_final_loss=teachers[0].losses[-1] if teachers[0].losses else None,
                       teacher_snapshot=s, variant=variant)
        if init is not None:
            with distributed.main_first():
                phi_1_init = cached_phi_k(init, t.z, 1, root / "samples", batch, dev, t.labels)
            metrics["regressed_start"] = records.start_gap(t, phi_1_init)
        out.append(PairingRun(spec.name, teachers[0], student, t.z, records.samples(t, g), metrics,
                              teachers[1] if s in with_2 else None, t.labels, records.maps(t, g), net, s, variant,
                              init))
    return out


def run_pairing(spec: DataSpec, p, root, seed: int = 0, device="auto", reference: bool = True,
                snapshot: Optional[float] = None, variant: str = "baseline", curve: bool = False,
                progress_bar: bool = True, parallel: Optional[bool] = None) -> PairingRun:
    """:func:`run_pairings` for one student: the teacher at ``snapshot`` (None: its final EMA weights), the
    second teacher's level with ``reference``."""
    return run_pairings(spec, p, root, seed, device, [snapshot], [snapshot] if reference else [], variant,
                        curve=curve, progress_bar=progress_bar, parallel=parallel)[0]


def per_class_delta_e(run: PairingRun, spec: DataSpec, p, n_per_class: int, n_sets: int, seed: int = 0,
                      device="cpu") -> list:
    """Delta_E(Phi_K, G) within each class of a conditional run: R sets of ``n_per_class`` seeds per class.

    Class c's seeds come from their own stream (``"class-<c>"``), all with
    label c; returns one interval record per class (``label`` beside the
    :func:`dmdlib.metrics.delta_e_interval` keys).
    """
    from .evaluation import student_record
    from .metrics import delta_e_sets

    if spec.label_dim < 1:
        raise ValueError("per_class_delta_e needs conditional data (spec.label_dim > 0)")
    dev = _dev(device)
    batch = getattr(p, "sample_batch", None)
    gen = accel.prepare(run.student.generator, accel.default_speed(dev))
    out = []
    for c in range(spec.label_dim):
        z = stream_noise(n_sets * n_per_class, tuple(spec.shape), seed, f"class-{c}")
        lab = one_hot(torch.full((z.shape[0],), c), spec.label_dim)
        t = phi_k(run.net, z.to(dev), p.k, labels=lab.to(dev), batch_size=batch).cpu()
        g = generate(gen, z, lab, batch, dev)
        out.append({"label": c, **student_record(delta_e_sets(t, g, n_sets))})
    return out
