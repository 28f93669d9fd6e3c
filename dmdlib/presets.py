"""Every preset in one place: configurations for teacher training, DMD and each experiment.

Three presets exist for every experiment:

* ``smoke``: seconds on a CPU; exercises every code path (used by CI);
* ``quick``: minutes on a 2-core CPU; shows the effect where it can, with
  the deviations from the paper listed in the preset's ``notes``;
* ``paper``: the paper's settings (GPU).

Presets and configurations (:mod:`dmdlib.configs`) are frozen dataclasses;
``dataclasses.replace`` derives variants. Nothing else in dmdlib or the
notebooks hard-codes a setting.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from .configs import IMAGENET64_UNET, ConvergenceGates, DMDConfig, TeacherConfig, UNetConfig, _positive  # noqa: F401  (re-exported)

PRESET_NAMES = ("smoke", "quick", "paper")


@dataclass(frozen=True)
class ToyPreset:
    """Notebook 01: low-dimensional remapping."""
    name: str
    datasets: tuple = ("chessboard", "moons", "gaussian_mixture")
    dim: int = 4                        # ambient dimension (structure in the first two coordinates)
    width: int = 384                    # MLP: 5 hidden layers of width 384, 32 Fourier features
    depth: int = 5
    fourier_dim: int = 32
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    dmd: DMDConfig = field(default_factory=DMDConfig)
    sigma_data: object = "data"         # EDM's sigma_data: "data" (the data set's std) or a number (EDM: 0.5)
    k: int = 8                          # Phi_K steps (paper: K = 8 everywhere)
    k_ref: int = 64                     # the teacher's distribution (close to its exact ODE) for the fit gate
    n_eval: int = 1000                  # N seeds per set for Delta_E (paper: 1000)
    n_sets: int = 10                    # R independent seed sets (the interval)
    n_curve: tuple = (125, 250, 500, 1000, 2000, 4000)   # N values of the Delta_E-against-N curve
    curve_datasets: tuple = ("chessboard",)   # the students whose Delta_E is also shown against N
    n_heatmap: int = 100                # samples in the distance heatmap
    reference_datasets: tuple = ("chessboard", "moons", "gaussian_mixture")  # second teacher (seed + 1) for these
    gates: ConvergenceGates = field(default_factory=ConvergenceGates)
    notes: str = ""                     # deviations from the paper, shown in the notebook

    def __post_init__(self):
        _positive(self, "k", "k_ref", "n_eval", "n_sets", "n_heatmap")
        if self.n_eval < 2 or self.n_sets < 2:
            raise ValueError(f"ToyPreset: n_eval and n_sets must be >= 2, got {self.n_eval}, {self.n_sets}")
        if not (self.sigma_data == "data" or (isinstance(self.sigma_data, (int, float))
                                              and not isinstance(self.sigma_data, bool) and self.sigma_data > 0)):
            raise ValueError(f"ToyPreset.sigma_data must be 'data' or a number > 0, got {self.sigma_data!r}")


@dataclass(frozen=True)
class MnistPreset:
    """Notebook 02: high-dimensional copying on unconditional MNIST."""
    name: str
    unet: UNetConfig = field(default_factory=UNetConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    dmd: DMDConfig = field(default_factory=DMDConfig)
    teacher_kimg: float = 8192          # the snapshot distilled by default (kimg)
    k: int = 8                          # Phi_K steps
    n_eval: int = 1000                  # N seeds per set for Delta_E (paper: 1000)
    n_sets: int = 10                    # R independent seed sets (the interval)
    n_curve: tuple = (125, 250, 500, 1000, 2000, 4000)   # N values of the Delta_E-against-N curve
    k_ref: int = 32                     # the teacher's distribution (close to its exact ODE) for the fit gate
    n_fd: int = 5000                    # samples per set of the feature-space Frechet distances
    gates: ConvergenceGates = field(default_factory=ConvergenceGates)
    reference_teacher: bool = True      # train a second teacher (seed + 1) for the reproducibility level
    reference_all_snapshots: bool = True   # notebook 04: the second teacher's level at every snapshot (else the default one)
    n_pca: int = 2000                   # triplets in the PCA figure
    n_grid: int = 30                    # seeds in the image grid
    n_heatmap: int = 100
    n_boot: int = 200                   # bootstrap replicates of the correlation intervals (notebook 05)
    sample_batch: int = 250             # batch for Phi_K evaluations
    data_subset: int = 0                # use only the first n training images (0 = all 70,000)
    # notebook 03 (ablations, paper 4.1)
    regression_weight: float = 1.0      # DMD v1 regression term (mean squared L2 per pixel; DMD v1: LPIPS x 0.25)
    n_regression_pairs: int = 10_000    # (z, Phi_K(z)) pairs generated once by the teacher, seeds disjoint from eval
    gan_d_weight: float = 1e-2          # DMD2 discriminator loss weight (REFERENCE)
    gan_g_weight: float = 3e-3          # DMD2 generator adversarial loss weight (REFERENCE)
    memorisation_thresholds: tuple = (1 / 3, 0.25, 0.1, 0.05)
    n_show_nn: int = 12                 # samples shown with their nearest training images
    # the memorisation control (dmdlib.controls): a teacher trained long on a tiny subset must be flagged
    memorisation_control_subset: int = 32           # its training images (the first n of MNIST)
    memorisation_control_iterations: int = 3000     # its iterations (the preset's teacher otherwise, no lr ramp-up)
    memorisation_control_min_fraction: float = 0.5  # it fires when at least this fraction of its samples has r < 1/3
    nn_batch: int = 1024                # query batch of the 70,000-image neighbour search
    # notebook 04 (teacher convergence)
    zoom_iterations: int = 900          # the zoomed DM-loss panel (paper Fig. 4 right)
    turning_window: int = 5             # moving-average window (logged points) for the turning point
    two_stage_skip: int = 3             # the two-stage test (dmdlib.stats.two_stages): logged points left out at the start,
    two_stage_window: int = 5           # ... pairs of logged points per window (early, peak, late),
    two_stage_alpha: float = 0.05       # ... and the level of each one-sided test
    notes: str = ""

    def __post_init__(self):
        _positive(self, "k", "n_eval", "n_sets", "k_ref", "n_fd", "sample_batch")
        if self.n_eval < 2 or self.n_sets < 2:
            raise ValueError(f"MnistPreset: n_eval and n_sets must be >= 2, got {self.n_eval}, {self.n_sets}")
        if self.n_regression_pairs < 1 or self.n_show_nn < 1 or self.nn_batch < 1:
            raise ValueError("n_regression_pairs, n_show_nn and nn_batch must be >= 1")
        if not all(0 < t <= 1 for t in self.memorisation_thresholds):
            raise ValueError(f"memorisation_thresholds must lie in (0, 1], got {self.memorisation_thresholds}")
        _positive(self, "memorisation_control_subset", "memorisation_control_iterations", "two_stage_window")
        if self.memorisation_control_subset < 3 or self.two_stage_window < 2 or self.two_stage_skip < 0:
            raise ValueError("MnistPreset: memorisation_control_subset must be >= 3 (r needs two neighbours), "
                             "two_stage_window >= 2 and two_stage_skip >= 0")
        if not (0 < self.memorisation_control_min_fraction <= 1 and 0 < self.two_stage_alpha < 1):
            raise ValueError("MnistPreset: memorisation_control_min_fraction must lie in (0, 1], two_stage_alpha in (0, 1)")


TOY_PRESETS = {
    "smoke": ToyPreset(
        name="smoke", width=64, depth=2,
        teacher=TeacherConfig(iterations=150, batch_size=256, lr=1e-3, lr_rampup_kimg=0.0,
                              ema_halflife_kimg=5.0, checkpoint_every=50, log_every=10),
        dmd=DMDConfig(iterations=100, batch_size=256, lr=1e-4, lr_fake=1e-4, warmup_steps=10,
                      checkpoint_every=50, log_every=10, eval_every=10),
        n_eval=100, n_sets=3, n_curve=(25, 50, 100), k_ref=16, n_heatmap=40,
        notes="smoke: a tiny MLP (2 x 64) and a few hundred steps; numbers are meaningless."),
    "quick": ToyPreset(
        name="quick",
        teacher=TeacherConfig(iterations=3000, batch_size=256, lr=1e-3, lr_rampup_kimg=0.0,
                              ema_halflife_kimg=50.0, checkpoint_every=500, log_every=50),
        dmd=DMDConfig(iterations=4000, batch_size=128, lr=2.5e-4, lr_fake=2.5e-4, warmup_steps=500,
                      checkpoint_every=1000, log_every=50, fine_log_every=10, fine_log_until=500, eval_every=200),
        notes=("quick: deviations from the paper so that the three data sets fit in about ten minutes on a 2-core "
               "CPU: teacher 3000 iterations at batch 256 with Adam lr 1e-3 (no lr ramp-up, EMA half-life 50 kimg); "
               "DMD 4000 iterations (800 generator updates) at batch 128 (paper: 512) with AdamW lr 2.5e-4 for both "
               "networks (paper: 2e-6; at 5e-4 the ring's pairing kept drifting). sigma_data is each data set's std (EDM's 0.5 gave a worse chessboard teacher "
               "and student in the calibration, bench/calibration/). Architecture (5 x 384 MLP), warm-up (500 "
               "iterations), schedule (1:5, 2%-98% band), weight decay, clipping, K = 8 and N = 1000 are the "
               "paper's; Delta_E on R = 10 independent seed sets.")),
    "paper": ToyPreset(
        name="paper",
        teacher=TeacherConfig(iterations=50_000, batch_size=512, lr=1e-4, checkpoint_every=5000,
                              log_every=100),
        dmd=DMDConfig(iterations=50_000, batch_size=512, lr=2e-6, lr_fake=2e-6, warmup_steps=500,
                      checkpoint_every=5000, log_every=100, eval_every=5000),
        notes=("paper: DMD with the paper's settings (AdamW lr 2e-6, wd 0.01, 500-step warm-up, "
               "batch 512, 50k iterations). The toy teacher's training length is not stated in "
               "the paper; we train it with EDM's defaults for 50k iterations at batch 512.")),
}


_MNIST_SNAPSHOTS = (1024, 2048, 3072, 4096, 6144, 8192)

MNIST_PRESETS = {
    "smoke": MnistPreset(
        name="smoke",
        unet=UNetConfig(img_resolution=16, model_channels=8, channel_mult=(1, 2), num_blocks=1, attn_resolutions=(8,)),
        teacher=TeacherConfig(iterations=16, batch_size=16, lr=1e-3, lr_rampup_kimg=0.0, ema_halflife_kimg=0.1,
                              progress_unit="kimg", snapshots=(0.128, 0.256), checkpoint_every=8, log_every=4),
        dmd=DMDConfig(iterations=10, batch_size=8, lr=1e-4, lr_fake=1e-4, warmup_steps=2, checkpoint_every=5,
                      log_every=5, fine_log_every=5, fine_log_until=5, eval_every=1),
        teacher_kimg=0.256, n_eval=64, n_sets=4, n_curve=(16, 32, 64, 128), k_ref=4, n_fd=128, n_pca=64, n_grid=8,
        n_heatmap=32, n_boot=10, sample_batch=64,
        data_subset=2048, n_regression_pairs=64, n_show_nn=4, zoom_iterations=6, turning_window=1,
        memorisation_control_subset=16, memorisation_control_iterations=200, two_stage_skip=0, two_stage_window=2,
        notes="smoke: a tiny UNet and a handful of steps on 2048 images; every code path runs, numbers are meaningless."),
    "quick": MnistPreset(
        name="quick",
        unet=UNetConfig(img_resolution=16, model_channels=8, channel_mult=(1, 2, 2), num_blocks=1,
                        attn_resolutions=(8,)),
        teacher=TeacherConfig(iterations=2000, batch_size=64, lr=1e-3, lr_rampup_kimg=0.0, ema_halflife_kimg=10.0,
                              progress_unit="kimg", snapshots=(4, 16, 64, 128), checkpoint_every=500, log_every=50),
        dmd=DMDConfig(iterations=2000, batch_size=32, lr=1e-4, lr_fake=1e-4, warmup_steps=100,
                      checkpoint_every=500, log_every=50, fine_log_every=10, fine_log_until=900, eval_every=200),
        teacher_kimg=128, k_ref=32, n_fd=2000, n_boot=100, n_regression_pairs=2000, zoom_iterations=900,
        turning_window=3, sample_batch=1000, reference_all_snapshots=False,
        notes=("quick: MNIST at 16x16 (each 32x32 digit averaged over 2x2 blocks; 256 dimensions instead of 1024) "
               "and a small ADM UNet (8 base channels, mult [1,2,2], 1 block per resolution, attention at 8x8; "
               "83k parameters instead of 31M), so that every chapter runs on a 2-core CPU. Teacher 2000 "
               "iterations (128 kimg, paper: 8192 kimg) at batch 64 with Adam lr 1e-3 and no ramp-up (EMA "
               "half-life 10 kimg), snapshots 4-128 kimg; DMD 2000 iterations (paper: 50k) at batch 32 with AdamW "
               "lr 1e-4 for both networks (paper: 2e-6) and a 100-iteration warm-up (paper: 500). Sampler, "
               "schedule (1:5, 2%-98% band), K = 8 and N = 1000 are the paper's; Delta_E on R = 10 independent "
               "seed sets; the fit gate compares with Phi_32 on 2000 seeds; the second teacher's level is measured "
               "at the default snapshot only. At 32x32 the same student needs "
               "about four times the time per iteration (bench/calibration/).")),
    "paper": MnistPreset(
        name="paper",
        unet=UNetConfig(),
        teacher=TeacherConfig(iterations=8192 * 1000 // 64, batch_size=64, lr=1e-4, lr_rampup_kimg=10_000.0,
                              ema_halflife_kimg=500.0, ema_rampup_ratio=0.05, progress_unit="kimg",
                              snapshots=_MNIST_SNAPSHOTS, checkpoint_every=2000, log_every=100),
        dmd=DMDConfig(iterations=50_000, batch_size=32, lr=2e-6, lr_fake=2e-6, warmup_steps=500,
                      checkpoint_every=2000, log_every=100, fine_log_every=10, fine_log_until=900, eval_every=2500),
        teacher_kimg=8192, k_ref=32, n_fd=5000,
        notes=("paper: the paper's MNIST settings: ADM UNet (64 channels, mult [1,2,3,4], 3 blocks, attention at "
               "32/16/8; 31,118,593 parameters), EDM teacher at batch 64 with EDM's defaults (lr 1e-4 ramped over "
               "10,000 kimg, EMA half-life 500 kimg) and snapshots at 1024-8192 kimg; DMD 50k iterations at batch "
               "32, AdamW lr 2e-6, weight decay 0.01, 500-step warm-up.")),
}


@dataclass(frozen=True)
class SweepPreset:
    """Notebook 06: where copying begins (an intrinsic-dimension and an ambient-dimension sweep).

    ``manifold`` (a :class:`MnistPreset` for the ADM UNet, whose
    ``unet.img_resolution`` must equal ``resolution``, or a :class:`ToyPreset`
    for the MLP on the flattened image) trains and evaluates every
    intrinsic-dimension point on unconditional MLP-manifold images of
    ``resolution`` x ``resolution``;
    ``chessboard`` every ambient-dimension point (its ``dim`` is replaced by
    each d, its teacher's sigma_data by the chessboard's std in R^4 for every d).
    """
    name: str
    manifold: object
    chessboard: ToyPreset
    intrinsic_dims: tuple = (1, 2, 4, 8, 16, 32)
    resolution: int = 32
    manifold_seed: int = 0               # the random MLP that defines the manifold (the same map for every run seed)
    ambient_dims: tuple = (2, 4, 16, 64, 256)
    embedding_seed: int = 0              # the random orthogonal embedding of the chessboard
    reference_teacher: bool = True       # a second teacher per point (the reproducibility level)
    notes: str = ""

    def __post_init__(self):
        for n in ("intrinsic_dims", "ambient_dims"):
            v = getattr(self, n)
            if not v or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in v):
                raise ValueError(f"SweepPreset.{n} must be a non-empty tuple of integers >= 1, got {v!r}")
        if min(self.ambient_dims) < 2:
            raise ValueError(f"SweepPreset.ambient_dims must be >= 2 (the chessboard is 2-D), got {self.ambient_dims}")
        _positive(self, "resolution")
        _same_resolution(self)


@dataclass(frozen=True)
class ConditioningPreset:
    """Notebook 07: conditional against unconditional students on MNIST and on the MLP manifold (paper Figs. 6-8)."""
    name: str
    mnist: MnistPreset
    manifold: object                     # MnistPreset (UNet at `resolution`) or ToyPreset (MLP), as in SweepPreset
    manifold_dim: int = 16               # intrinsic dimension k of the manifold (paper: 16)
    resolution: int = 32                 # the manifold's image size
    num_classes: int = 10
    manifold_seed: int = 0
    n_per_class: int = 100               # N per class set of the within-class Delta_E
    n_class_sets: int = 10               # R sets per class
    n_grid: int = 30                     # seeds of the image grids
    n_pca: int = 1000                    # triplets of the PCA figure
    reference_teacher: bool = True       # second teachers (the reproducibility level)
    notes: str = ""

    def __post_init__(self):
        _positive(self, "manifold_dim", "resolution", "num_classes", "n_per_class", "n_class_sets", "n_grid", "n_pca")
        if self.n_per_class < 2 or self.n_class_sets < 2:
            raise ValueError("ConditioningPreset: n_per_class and n_class_sets must be >= 2")
        _same_resolution(self)


def _same_resolution(cfg):
    unet = getattr(cfg.manifold, "unet", None)
    if unet is not None and unet.img_resolution != cfg.resolution:
        raise ValueError(f"{type(cfg).__name__}: manifold.unet.img_resolution ({unet.img_resolution}) must equal "
                         f"resolution ({cfg.resolution}), the size of the manifold's images")


def manifold_preset(base: MnistPreset, resolution: int, name: str, notes: str = "") -> MnistPreset:
    """The MLP-manifold points' training and evaluation: ``base``'s ADM UNet at ``resolution`` (its attention
    resolutions scaled with the image), its DMD and evaluation settings, and its teacher recipe counted in
    iterations without snapshots (one teacher per point).

    The toys' MLP is not used for these images: on 16 x 16 manifold images it denoised worse than the linear
    (Wiener) filter below sigma = 1 even after 10,000 iterations, and its 8-step samples lay as far from the
    manifold as the data's own spread (bench/calibration/README.md); the small UNet learned the manifold.
    """
    scale = resolution / base.unet.img_resolution   # attention at the same relative depth of the UNet
    attn = tuple(int(a * scale) for a in base.unet.attn_resolutions)
    return replace(base, name=name, unet=replace(base.unet, img_resolution=resolution, attn_resolutions=attn),
                   teacher=replace(base.teacher, progress_unit="iter", snapshots=()), notes=notes)


_MANIFOLD_QUICK_NOTES = (" The manifold points use chapter 02's quick MNIST network and training (the 83k-parameter "
                         "ADM UNet: 8 base channels, mult [1,2,2], 1 block, attention at the second level; "
                         "teacher 2000 iterations at batch 64, Adam lr 1e-3; DMD 2000 iterations at batch 32, AdamW "
                         "lr 1e-4) on 8 x 8 images, so that six points fit the chapter's half hour (at 16 x 16 a "
                         "point costs about twice as much; paper scale: 32 x 32 with the paper's ADM UNet); the fit "
                         "gate compares with Phi_32.")
_MANIFOLD_SMOKE = manifold_preset(
    replace(MNIST_PRESETS["smoke"], unet=UNetConfig(img_resolution=8, model_channels=8, channel_mult=(1, 2),
                                                    num_blocks=1, attn_resolutions=(4,)),
            teacher=replace(MNIST_PRESETS["smoke"].teacher, iterations=20, checkpoint_every=10, log_every=5),
            n_eval=64, n_sets=3),
    8, "smoke")

SWEEP_PRESETS = {
    "smoke": SweepPreset(
        name="smoke", manifold=_MANIFOLD_SMOKE, chessboard=TOY_PRESETS["smoke"], intrinsic_dims=(1, 4),
        resolution=8, ambient_dims=(2, 16),
        notes=("smoke: two intrinsic and two ambient dimensions with the MNIST and toy smoke settings; numbers are "
               "meaningless.")),
    "quick": SweepPreset(
        name="quick", manifold=manifold_preset(MNIST_PRESETS["quick"], 8, "quick"), chessboard=TOY_PRESETS["quick"],
        resolution=8,
        notes="quick: the ambient points with the toys' quick settings (chapter 01)." + _MANIFOLD_QUICK_NOTES),
    "paper": SweepPreset(
        name="paper", manifold=manifold_preset(MNIST_PRESETS["paper"], 32, "paper"), chessboard=TOY_PRESETS["paper"],
        resolution=32,
        notes=("paper: the manifold points with MNIST's paper settings (ADM UNet at 32 x 32, EDM teacher, DMD 50k "
               "iterations at lr 2e-6); the ambient points with the toys' paper settings. Not run by us (GPU).")),
}

CONDITIONING_PRESETS = {
    "smoke": ConditioningPreset(
        name="smoke", mnist=MNIST_PRESETS["smoke"], manifold=_MANIFOLD_SMOKE, manifold_dim=4, resolution=8,
        n_per_class=8, n_class_sets=2, n_grid=8, n_pca=64,
        notes="smoke: the MNIST smoke settings for both data sets; numbers are meaningless."),
    "quick": ConditioningPreset(
        name="quick", mnist=MNIST_PRESETS["quick"], manifold=manifold_preset(MNIST_PRESETS["quick"], 8, "quick"),
        resolution=8,
        notes=("quick: MNIST with chapter 02's quick settings (16 x 16, 83k-parameter UNet, teacher 128 kimg, "
               "DMD 2000 iterations), the class label as the UNet's one-hot label input; the manifold (k = 16, "
               "10 classes) on 8 x 8 images with the same UNet and training (chapter 06's manifold points).")),
    "paper": ConditioningPreset(
        name="paper", mnist=MNIST_PRESETS["paper"], manifold=manifold_preset(MNIST_PRESETS["paper"], 32, "paper"),
        resolution=32,
        notes="paper: MNIST and the manifold at 32 x 32 with MNIST's paper settings. Not run by us (GPU)."),
}


CALIBRATION_FAMILIES = ("mixture", "ring", "chessboard", "manifold")   # dmdlib.calibration.FAMILIES


@dataclass(frozen=True)
class CalibrationPreset:
    """Notebook 00: what Delta_E can see (constructed students with known pairings, :mod:`dmdlib.calibration`).

    Nothing is trained: the sizes below set what is drawn and measured.
    """
    name: str
    families: tuple = CALIBRATION_FAMILIES
    dims: tuple = (2, 4, 8, 16, 32, 64, 128, 256)   # ambient dimensions of the mixture, ring and chessboard
    resolutions: tuple = (8, 16)        # MLP-manifold images (ambient dimension resolution^2)
    latent_dim: int = 16                # the manifold's k (paper: 16)
    manifold_seed: int = 0
    n_eval: int = 1000                  # N seeds per set (paper: 1000)
    n_sets: int = 10                    # R independent seed sets (the interval)
    noise: float = 0.05                 # std of the noisy copy's noise in every coordinate
    bank: int = 10_000                  # MLPManifold.project: bank of decoded latents ...
    steps: int = 200                    # ... and Adam steps of the latent search
    notes: str = ""

    def __post_init__(self):
        _positive(self, "latent_dim", "n_eval", "n_sets", "bank")
        if self.n_eval < 2 or self.n_sets < 2:
            raise ValueError(f"CalibrationPreset: n_eval and n_sets must be >= 2, got {self.n_eval}, {self.n_sets}")
        if not self.families or any(f not in CALIBRATION_FAMILIES for f in self.families):
            raise ValueError(f"CalibrationPreset.families must be a non-empty tuple of {list(CALIBRATION_FAMILIES)}, "
                             f"got {self.families!r}")
        for n, v, low in (("dims", self.dims, 2), ("resolutions", self.resolutions, 4)):
            if not v or any(isinstance(d, bool) or not isinstance(d, int) or d < low for d in v):
                raise ValueError(f"CalibrationPreset.{n} must be a non-empty tuple of integers >= {low}, got {v!r}")
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 0:
            raise ValueError(f"CalibrationPreset.steps must be an integer >= 0, got {self.steps!r}")
        if not self.noise >= 0:
            raise ValueError(f"CalibrationPreset.noise must be >= 0, got {self.noise!r}")


CALIBRATION_PRESETS = {
    "smoke": CalibrationPreset(
        name="smoke", dims=(2, 16), resolutions=(8,), n_eval=100, n_sets=3, bank=1000, steps=20,
        notes="smoke: two dimensions, 3 sets of 100 seeds and a coarse latent search; numbers are meaningless."),
    "quick": CalibrationPreset(
        name="quick",
        notes=("quick: N = 1000 seeds per set and R = 10 sets, as every chapter; the toy families in d = 2 ... 256, "
               "the MLP manifold (k = 16, 10 classes) at 8 x 8 and 16 x 16 (chapters 06 and 07 use 8 x 8), its "
               "latents recovered from a bank of 10,000 decoded latents and 200 Adam steps.")),
    "paper": CalibrationPreset(
        name="paper", dims=(2, 4, 8, 16, 32, 64, 128, 256, 512, 1024), resolutions=(8, 16, 32), bank=50_000,
        notes=("paper: as quick, with d up to 1024 and the manifold also at the paper's 32 x 32, its latents "
               "recovered from MLPManifold.distance's default bank of 50,000.")),
}


@dataclass(frozen=True)
class ExactPreset:
    """Notebook 09: an exact teacher (:mod:`dmdlib.exact`): copying against structure dimension, ambient dimension
    and teacher resolution, and the one-Gaussian limit.

    ``point`` (a :class:`ToyPreset`) trains and evaluates every point: its MLP
    is the network regressed onto the exact denoiser (its ``teacher``
    configuration drives the regression), from which the student starts;
    ``dmd``, ``k``, ``k_ref``, ``n_eval``, ``n_sets`` and ``gates`` as in the
    toy chapter (its ``dim``, ``datasets`` and ``sigma_data`` are not used:
    each point's data set and sigma_data come from its exact teacher).
    """
    name: str
    point: ToyPreset
    # structure dimension: M modes at random on a sphere in R^k (closest two at least `separation` apart) in R^structure_dim
    components: int = 8
    radius: float = 2.0
    std: float = 0.2                     # component std in every coordinate
    separation: float = 1.2              # 6 std: a sample lies nearer another mode's mean with probability <= 0.13%
    structure_ks: tuple = (2, 4, 8, 16, 32)
    structure_dim: int = 32
    sphere_seed: int = 0                 # the first seed of the search for separated means (dmdlib.exact.separated_seed)
    embedding_seed: int = 0
    # ambient dimension: the paper's 4-D mixture (32 components on a circle of radius 2, std 0.2) in R^d
    ambient_dims: tuple = (2, 4, 16, 64, 256)
    ring_components: int = 32
    ring_radius: float = 2.0
    ring_std: float = 0.2
    # teacher resolution: the ring's teacher blurred to component std sqrt(std^2 + tau^2), at each of phase_dims
    taus: tuple = (0.0, 0.1, 0.2, 0.4, 0.8)
    phase_dims: tuple = (4, 64)          # the phase diagram's dimensions; the first and last give the tau sweep
    # one Gaussian (M = 1): N(0, diag(gaussian_std^2))
    gaussian_std: tuple = (1.0, 0.6, 0.35, 0.2)
    flow_lr: float = 1.0                 # the closed-form linear flow from Phi_1 (dmdlib.exact.linear_dmd_flow)
    flow_steps: int = 200
    linear_updates: int = 3000           # the stochastic linear student with exact scores (dmdlib.exact.linear_dmd)
    linear_batch: int = 128              # DMD's batch (the quick DMD's)
    linear_big_batch: int = 2048         # the large-batch SGD run
    adam_lr: float = 1e-3                # AdamW (DMD2's optimiser) for the linear student
    sgd_lr: float = 1.0                  # plain gradient descent for the linear student
    reference_teacher: bool = True       # a second regressed network per point (the reproducibility level)
    notes: str = ""

    def __post_init__(self):
        _positive(self, "components", "structure_dim", "ring_components", "flow_steps", "linear_updates",
                  "linear_batch", "linear_big_batch")
        for n, low in (("structure_ks", 1), ("ambient_dims", 2), ("phase_dims", 2)):
            v = getattr(self, n)
            if not v or any(isinstance(d, bool) or not isinstance(d, int) or d < low for d in v):
                raise ValueError(f"ExactPreset.{n} must be a non-empty tuple of integers >= {low}, got {v!r}")
        if max(self.structure_ks) > self.structure_dim:
            raise ValueError(f"ExactPreset.structure_ks must be <= structure_dim ({self.structure_dim}), "
                             f"got {self.structure_ks!r}")
        if not self.taus or any(isinstance(t, bool) or not isinstance(t, (int, float)) or not t >= 0 for t in self.taus):
            raise ValueError(f"ExactPreset.taus must be a non-empty tuple of numbers >= 0, got {self.taus!r}")
        if 0 not in self.taus:
            raise ValueError(f"ExactPreset.taus must include 0 (the converged teacher), got {self.taus!r}")
        if not (len(self.gaussian_std) >= 1 and all(isinstance(s, (int, float)) and s > 0 for s in self.gaussian_std)):
            raise ValueError(f"ExactPreset.gaussian_std must be a non-empty tuple of numbers > 0, got {self.gaussian_std!r}")
        for n in ("radius", "std", "ring_radius", "ring_std", "flow_lr", "adam_lr", "sgd_lr"):
            if not getattr(self, n) > 0:
                raise ValueError(f"ExactPreset.{n} must be > 0, got {getattr(self, n)!r}")
        if not self.separation >= 0:
            raise ValueError(f"ExactPreset.separation must be >= 0, got {self.separation!r}")


_EXACT_QUICK_POINT = ToyPreset(
    name="quick", width=256, depth=4,
    teacher=TeacherConfig(iterations=1500, batch_size=256, lr=1e-3, lr_rampup_kimg=0.0, ema_halflife_kimg=20.0,
                          p_mean=0.0, p_std=2.5, checkpoint_every=500, log_every=50),
    dmd=DMDConfig(iterations=4000, batch_size=128, lr=2.5e-4, lr_fake=2.5e-4, warmup_steps=500,
                  checkpoint_every=1000, log_every=50, eval_every=200))

EXACT_PRESETS = {
    "smoke": ExactPreset(
        name="smoke", point=replace(TOY_PRESETS["smoke"], n_eval=64, n_sets=3, k_ref=8), components=4,
        structure_ks=(2, 4), structure_dim=4, ambient_dims=(2, 8), ring_components=8, taus=(0.0, 0.4),
        phase_dims=(2, 8), gaussian_std=(1.0, 0.3), flow_steps=20, linear_updates=40, linear_big_batch=256,
        notes="smoke: two points per sweep with the toy smoke settings (a 2 x 64 MLP, 150 regression and 100 DMD "
              "iterations, 3 sets of 64 seeds); numbers are meaningless."),
    "quick": ExactPreset(
        name="quick", point=_EXACT_QUICK_POINT, phase_dims=(4, 16, 64),
        notes=("quick: every point's student is a 4 x 256 MLP (the toys' is 5 x 384: half the cost per point), "
               "regressed onto the exact teacher for 1500 iterations at batch 256 (Adam lr 1e-3, EMA half-life 20 "
               "kimg) with ln sigma ~ N(0, 2.5^2) instead of EDM's N(-1.2, 1.2^2), so that the network is trained at "
               "sigma_max, where G = D(80 z, 80) reads it (bench/calibration/exact.jsonl). DMD as the toys' quick "
               "preset: 4000 iterations (800 generator updates) at batch 128 (paper: 512), AdamW lr 2.5e-4 for both "
               "networks (paper: 2e-6), 500-iteration warm-up; K = 8, N = 1000, R = 10, the teacher's distribution "
               "and the flow level from Phi_64. Fewer points than at paper: k = 2, 4, 8, 16, 32 in d = 32; d = 2, 4, "
               "16, 64, 256; tau = 0, 0.1, 0.2, 0.4, 0.8 at d = 4, 16 and 64 only (paper: five dimensions). The linear "
               "student runs 3000 updates (AdamW lr 1e-3, SGD lr 1).")),
    "paper": ExactPreset(
        name="paper", point=TOY_PRESETS["paper"], structure_ks=(2, 4, 8, 16, 32), ambient_dims=(2, 4, 8, 16, 32, 64, 128, 256),
        taus=(0.0, 0.05, 0.1, 0.2, 0.4, 0.8), phase_dims=(2, 4, 16, 64, 256),
        notes=("paper: every point with the toys' paper settings (5 x 384 MLP regressed for 50k iterations at batch "
               "512; DMD 50k iterations at batch 512, AdamW lr 2e-6), more dimensions and teacher resolutions. "
               "Not run by us.")),
}

def get_preset(experiment: str, preset: str):
    """The preset ``preset`` of ``experiment`` ('toy', 'mnist', 'sweep', 'conditioning', 'calibration' or 'exact'), with a
    clear error for unknown names."""
    table = {"toy": TOY_PRESETS, "mnist": MNIST_PRESETS, "sweep": SWEEP_PRESETS, "conditioning": CONDITIONING_PRESETS,
             "calibration": CALIBRATION_PRESETS, "exact": EXACT_PRESETS}
    if experiment not in table:
        raise ValueError(f"unknown experiment {experiment!r}; allowed: {sorted(table)}")
    if preset not in table[experiment]:
        raise ValueError(f"unknown preset {preset!r}; allowed: {list(table[experiment])}")
    return table[experiment][preset]
