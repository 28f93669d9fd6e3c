"""The configurations a training run takes: EDM teacher training, DMD, the convergence gates, the ADM UNet.

Frozen dataclasses with validated fields; ``dataclasses.replace`` derives
variants. The named settings of every chapter (``smoke``, ``quick``,
``paper``) are built from them in :mod:`dmdlib.presets`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class TeacherConfig:
    """EDM teacher training (Karras et al. 2022; EDM's training-loop defaults)."""
    iterations: int = 10_000            # optimizer steps
    batch_size: int = 512
    lr: float = 1e-4                    # Adam, betas (0.9, 0.999), eps 1e-8
    lr_rampup_kimg: float = 10_000.0    # linear lr ramp over this many thousand images (0 = off)
    ema_halflife_kimg: float = 500.0    # EMA half-life in thousands of images
    ema_rampup_ratio: Optional[float] = 0.05  # half-life <= ratio x images seen (None = off)
    p_mean: float = -1.2                # ln(sigma) ~ N(p_mean, p_std^2)
    p_std: float = 1.2
    sigma_data: float = 0.5
    progress_unit: str = "iter"         # unit of `snapshots`: "iter" or "kimg"
    snapshots: tuple = ()               # training progress at which the EMA weights are kept
    checkpoint_every: int = 1000        # iterations between resumable checkpoints
    log_every: int = 100                # iterations per logged mean loss

    def __post_init__(self):
        _positive(self, "iterations", "batch_size", "checkpoint_every", "log_every")
        if self.progress_unit not in ("iter", "kimg"):
            raise ValueError(f"progress_unit must be 'iter' or 'kimg', got {self.progress_unit!r}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        _multiple(self)


@dataclass(frozen=True)
class DMDConfig:
    """Distribution Matching Distillation as in ../REFERENCE (DMD2 code base, no GAN/regression)."""
    iterations: int = 50_000            # fake-score updates; the generator is updated 1 in `gen_every`
    batch_size: int = 32
    lr: float = 2e-6                    # generator AdamW learning rate
    lr_fake: float = 2e-6               # fake-score AdamW learning rate
    betas: tuple = (0.9, 0.999)
    weight_decay: float = 0.01
    warmup_steps: int = 500             # linear warm-up in iterations (DMD2 steps both schedulers every iteration)
    grad_clip: float = 10.0             # gradient-norm clipping
    gen_every: int = 5                  # generator update when iteration % gen_every == 0
    table_size: int = 1000              # Karras table from which sigma is drawn
    band: tuple = (0.02, 0.98)          # index band of the table for the DM gradient
    checkpoint_every: int = 1000
    log_every: int = 50                 # iterations per logged mean loss
    fine_log_every: int = 0             # finer loss logging in the early phase (paper Fig. 4 zoom; 0 = off)
    fine_log_until: int = 0             # ... up to this iteration
    eval_every: int = 0                 # iterations between evaluations along distillation (0 = off)
    regression_weight: float = 0.0      # DMD (v1) regression term towards paired teacher outputs (0 = off)
    gan_d_weight: float = 0.0           # DMD2 GAN: discriminator loss weight in the fake-score update (DMD2: 1e-2)
    gan_g_weight: float = 0.0           # DMD2 GAN: generator loss weight (DMD2: 3e-3)

    def __post_init__(self):
        _positive(self, "iterations", "batch_size", "gen_every", "table_size", "checkpoint_every",
                  "log_every")
        if min(self.warmup_steps, self.eval_every, self.regression_weight, self.gan_d_weight,
               self.gan_g_weight, self.fine_log_every, self.fine_log_until) < 0:
            raise ValueError("warmup_steps, eval_every, fine_log_every, fine_log_until, regression_weight and the "
                             "GAN weights must be >= 0")
        if self.fine_log_every and self.fine_log_every % self.gen_every:
            raise ValueError(f"DMDConfig.fine_log_every ({self.fine_log_every}) must be a multiple of gen_every "
                             f"({self.gen_every}), so that every fine window holds the same number of generator updates")
        if not (self.lr > 0 and self.lr_fake > 0):
            raise ValueError(f"lr and lr_fake must be > 0, got {self.lr}, {self.lr_fake}")
        if not (0.0 <= self.band[0] < self.band[1] <= 1.0):
            raise ValueError(f"band must satisfy 0 <= lo < hi <= 1, got {self.band}")
        _multiple(self)


@dataclass(frozen=True)
class ConvergenceGates:
    """Thresholds of the convergence verdict (:mod:`dmdlib.evaluation`), one set per chapter.

    fit: the student's distance to the teacher's distribution relative to
    the larger of the sampling floor and the teacher's own K-step sampler's
    distance (1: as good a sample of the teacher as Phi_K); travel: how far the student
    moved from Phi_1 relative to Phi_K's distance from Phi_1; plateau: the
    trend of Delta_E along distillation over the last ``2 * plateau_window``
    evaluations (the lower end of its 95% interval), relative to the level
    and, near 0, to the record's own random-pairing level (a tolerance in the
    data's units would be loose on one data set and strict on another: MNIST's
    Delta_E is about a thousandth of the chessboard's).
    The values are justified in the book's chapters.
    """
    fit_max: float = 2.0                # fit_ratio = d(G, T) / max(d(T, T'), d(Phi_K, T)) <= fit_max
    travel_min: float = 0.5             # travel >= travel_min
    plateau_window: int = 5             # the trend is fitted to the last 2 x plateau_window evaluations
    plateau_rel_tol: float = 0.25       # lower 95% bound of |trend x span| <= rel_tol * |mean level|
    plateau_random_frac: float = 0.0005  # ... + random_frac * (the random-pairing level): 1% of the copying line

    def __post_init__(self):
        _positive(self, "plateau_window")
        if self.plateau_window < 2:
            raise ValueError(f"ConvergenceGates.plateau_window must be >= 2, got {self.plateau_window}")
        if not (self.fit_max > 0 and self.travel_min >= 0 and self.plateau_rel_tol >= 0
                and self.plateau_random_frac >= 0):
            raise ValueError("ConvergenceGates: fit_max must be > 0 and travel_min, plateau_rel_tol, "
                             "plateau_random_frac >= 0")


@dataclass(frozen=True)
class UNetConfig:
    """ADM UNet hyper-parameters (EDM's DhariwalUNet argument names)."""
    img_resolution: int = 32
    in_channels: int = 1
    out_channels: int = 1
    label_dim: int = 0
    model_channels: int = 64
    channel_mult: tuple = (1, 2, 3, 4)
    channel_mult_emb: int = 4
    num_blocks: int = 3
    attn_resolutions: tuple = (32, 16, 8)
    dropout: float = 0.0

    def kwargs(self) -> dict:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        d["channel_mult"], d["attn_resolutions"] = list(self.channel_mult), list(self.attn_resolutions)
        return d


# EDM's ImageNet-64 ADM network (Karras et al. 2022, NVlabs/edm "adm" architecture for ImageNet-64; the teacher of DMD2
# and of the paper's conditional ImageNet-64 experiment): 192 base channels, multipliers [1, 2, 3, 4], 3 blocks
# per resolution, attention at 32/16/8, embedding width 4 x 192 and 1000 class labels; 295,899,267 parameters
# (tests/test_imagenet64.py). EDM trained it with dropout (0.10, ADMUNet's default); dropout has no weights and
# is off when distilling, so 0 here. Loaded from converted weights by dmdlib.nets.adm.load_imagenet64.
IMAGENET64_UNET = UNetConfig(img_resolution=64, in_channels=3, out_channels=3, label_dim=1000, model_channels=192,
                             channel_mult=(1, 2, 3, 4), num_blocks=3, attn_resolutions=(32, 16, 8), dropout=0.0)


def _positive(cfg, *names):
    for n in names:
        v = getattr(cfg, n)
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{type(cfg).__name__}.{n} must be an integer >= 1, got {v!r}")


def _multiple(cfg):
    # logs are closed at every checkpoint, so a resumed run logs exactly what an uninterrupted one does
    if cfg.checkpoint_every % cfg.log_every:
        raise ValueError(f"{type(cfg).__name__}.checkpoint_every ({cfg.checkpoint_every}) must be a multiple "
                         f"of log_every ({cfg.log_every})")
