"""Chapter 09's laboratory: exact teachers whose structure, dimension and resolution are knobs.

Three constructions, each a :class:`~dmdlib.specs.DataSpec` whose ``exact``
denoiser is the teacher on the pairing path (:mod:`dmdlib.pairing`):

* :func:`sphere_spec`: M modes on a sphere of radius R in k dimensions,
  embedded in R^d (the structure-dimension sweep). The means are drawn at
  random (:meth:`dmdlib.data.mixture.GaussianMixture.sphere`) and the
  first draw whose closest two means lie at least ``min_separation`` apart
  is kept (:func:`separated_seed`), so the modes are well separated at
  every k;
* :func:`ring_spec`: the paper's 4-D mixture (App. A, Fig. 5) in R^d
  (the ambient-dimension and teacher-resolution sweeps);
* :func:`gaussian_spec`: one Gaussian N(mu, diag(s^2)) (M = 1), whose exact
  denoiser is :class:`ExactGaussian` (:class:`dmdlib.analytic.GaussianDenoiser`
  made usable as ``spec.exact``: it carries ``sigma_data`` and samples).

The linear-Gaussian limit in closed form. For data N(0, S) and a linear
student G(z) = A z, z ~ N(0, I), the student's noised law at level t is
N(0, A A^T + t^2 I); with the exact fake score, DMD's gradient of paper
Eq. 3 with respect to A at one noise level is

    E_{z, eps}[(s_fake - s_real)(A z + t eps) z^T] = ((S + t^2 I)^-1 - (A A^T + t^2 I)^-1) A,

because s(x) = -(C + t^2 I)^-1 x for N(0, C) and E[z z^T] = I, E[eps z^T] = 0.
:func:`linear_dm_gradient` averages it over the noise levels t with weights
w(t) (default t^2: the denoiser difference D_fake - D_real = t^2 (s_fake -
s_real) that DMD2 computes, before its per-sample normalisation). When A is
symmetric and commutes with S, (S + t^2)^-1, (A^2 + t^2)^-1 and A commute
and are symmetric, so the gradient is symmetric and commutes with S: the
flow A <- A - lr grad (:func:`linear_dmd_flow`) stays in that set and
cannot rotate the pairing. Phi_1 of N(0, diag(s^2)) is such an A
(:func:`phi_1_matrix`), and the flow ends at A A^T = S, A = S^(1/2), the
probability-flow (= optimal-transport) map (:func:`flow_matrix`).
"""
from __future__ import annotations

import math
from functools import partial
from typing import Optional

import torch

from .analytic import GaussianDenoiser
from .data.mixture import GaussianMixture
from .schedule import SIGMA_MAX, band_indices, karras_table
from .specs import DataSpec, mixture_spec


# ----------------------------------------------------------------------------- the sphere of modes

def min_separation(means: torch.Tensor) -> float:
    """The smallest distance between two of the M means [M, d] (inf for M = 1)."""
    if means.shape[0] < 2:
        return math.inf
    d = torch.cdist(means.double(), means.double())
    d.fill_diagonal_(math.inf)
    return float(d.min())


def separated_seed(components: int, k: int, radius: float, separation: float, seed: int = 0,
                   max_tries: int = 200_000) -> int:
    """The first seed >= ``seed`` whose ``GaussianMixture.sphere`` means (M = ``components`` directions of
    Gaussian vectors in R^k scaled to ``radius``) lie at least ``separation`` apart; ValueError after
    ``max_tries`` seeds (the separation is then out of reach, e.g. above 2 R sin(pi / M) at k = 2)."""
    for name, v in (("components", components), ("k", k), ("seed", seed), ("max_tries", max_tries)):
        if isinstance(v, bool) or not isinstance(v, int) or v < (0 if name == "seed" else 1):
            raise ValueError(f"{name} must be an integer >= {0 if name == 'seed' else 1}, got {v!r}")
    if not (radius > 0 and separation >= 0):
        raise ValueError(f"radius must be > 0 and separation >= 0, got {radius!r}, {separation!r}")
    for s in range(seed, seed + max_tries):
        u = torch.randn(components, k, generator=torch.Generator().manual_seed(s), dtype=torch.float64)
        if min_separation(radius * u / u.norm(dim=1, keepdim=True)) >= separation:
            return s
    raise ValueError(f"no seed in [{seed}, {seed + max_tries}) puts {components} means on the sphere of radius "
                     f"{radius} in R^{k} at least {separation} apart; lower separation or components")


def sphere_mixture(components: int, k: int, dim: int, radius: float, std: float, separation: float,
                   seed: int = 0, embedding_seed: int = 0) -> GaussianMixture:
    """M = ``components`` modes at random on the sphere of radius ``radius`` in R^k, at least ``separation``
    apart (:func:`separated_seed`), embedded in R^dim, component std ``std`` in every coordinate."""
    s = separated_seed(components, k, radius, separation, seed)
    return GaussianMixture.sphere(components, k, dim, radius=radius, std=std, seed=s, embedding_seed=embedding_seed)


def sphere_spec(components: int, k: int, dim: int, radius: float, std: float, separation: float, tau: float = 0.0,
                seed: int = 0, embedding_seed: int = 0) -> DataSpec:
    """:func:`sphere_mixture` as a spec whose teacher is its exact denoiser at resolution ``tau``."""
    mix = sphere_mixture(components, k, dim, radius, std, separation, seed, embedding_seed)
    return mixture_spec(mix, f"sphere-M{components}-k{k}-d{dim}" + (f"-tau{tau:g}" if tau else ""), tau)


def ring_spec(dim: int, tau: float = 0.0, components: int = 32, radius: float = 2.0, std: float = 0.2) -> DataSpec:
    """The paper's 4-D mixture recipe in R^dim (``GaussianMixture.ring``) as a spec with the exact teacher
    blurred to resolution ``tau``."""
    mix = GaussianMixture.ring(dim=dim, components=components, radius=radius, std=std)
    return mixture_spec(mix, f"ring-d{dim}" + (f"-tau{tau:g}" if tau else ""), tau)


# ----------------------------------------------------------------------------- one Gaussian (M = 1)

class ExactGaussian(GaussianDenoiser):
    """The exact denoiser of N(mean, diag(std^2)) in R^d (:class:`dmdlib.analytic.GaussianDenoiser`) as a teacher
    of the pairing path: ``sigma_data`` (the data's std over all coordinates, sqrt(mean_i s_i^2), which DMD
    reads as the fake score's weight), ``dim``, :meth:`sample` and :meth:`structured`."""

    def __init__(self, mean, std):
        std = torch.as_tensor(std, dtype=torch.float64)
        if std.ndim != 1 or std.numel() < 1 or not bool((std > 0).all()) or not bool(torch.isfinite(std).all()):
            raise ValueError(f"std must be a vector of finite values > 0 (one per coordinate), got {std.tolist()}")
        mean = torch.zeros_like(std) if mean is None else torch.as_tensor(mean, dtype=torch.float64)
        if mean.shape != std.shape or not bool(torch.isfinite(mean).all()):
            raise ValueError(f"mean must be finite with the shape of std {tuple(std.shape)}, got {tuple(mean.shape)}")
        super().__init__(mean, std)

    @property
    def dim(self) -> int:
        return self.std.numel()

    @property
    def sigma_data(self) -> float:
        return float(self.std.double().pow(2).mean().sqrt())

    def sample(self, n: int, generator: Optional[torch.Generator] = None, dtype=torch.float32) -> torch.Tensor:
        """n samples mean + std * eps, eps ~ N(0, I) from ``generator`` (float64, cast to ``dtype``)."""
        eps = torch.randn(n, self.dim, generator=generator, dtype=torch.float64, device=self.std.device)
        return (self.mean + self.std * eps).to(dtype)

    def structured(self, x: torch.Tensor, labels=None) -> torch.Tensor:
        """Every coordinate (float64): a Gaussian has no lower-dimensional structure."""
        return x.reshape(x.shape[0], -1).double()


def gaussian_spec(std, mean=None, name: str = "gaussian") -> DataSpec:
    """One Gaussian N(mean, diag(std^2)) (mean default 0) as a spec with its exact denoiser as the teacher.

    It has one mode, so mode agreement is not defined (no ``modes``); its
    "intrinsic" coordinates are all d coordinates, so the measures record
    holds the relative pairing error (and repeats Delta_E as the intrinsic
    Delta_E).
    """
    from .dmd import state_fingerprint

    exact = ExactGaussian(mean, std)
    data_id = f"gaussian:{state_fingerprint(exact)[:16]}"
    return DataSpec(name, (exact.dim,), partial(_gaussian_sample, exact), data_id, sigma_data=exact.sigma_data,
                    tag=("gaussian", data_id), kind="gaussian", intrinsic=exact.structured,
                    intrinsic_name="every coordinate (one Gaussian has no lower-dimensional structure)", exact=exact)


def _gaussian_sample(exact: ExactGaussian, n: int, generator, device="cpu") -> torch.Tensor:
    return exact.sample(n, generator).to(device)


# ----------------------------------------------------------------------------- the linear-Gaussian limit

def dmd_sigmas(table_size: int = 1000, band: tuple = (0.02, 0.98)) -> torch.Tensor:
    """The noise levels of DMD's DM gradient: the Karras table's entries in the index band (float64)."""
    lo, hi = band_indices(table_size, *band)
    return karras_table(table_size)[lo:hi + 1]


def _square(name: str, m) -> torch.Tensor:
    m = torch.as_tensor(m, dtype=torch.float64)
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise ValueError(f"{name} must be a square matrix [d, d], got shape {tuple(m.shape)}")
    return m


def linear_dm_gradient(A, S, sigmas, weights=None) -> torch.Tensor:
    """(1/T) sum_t w_t ((S + t^2 I)^-1 - (A A^T + t^2 I)^-1) A: DMD's gradient with respect to A for G(z) = A z
    on data N(0, S) with the exact fake score (module docstring), averaged over the T noise levels ``sigmas``
    with ``weights`` (default t^2: the denoiser-difference form, what :func:`sampled_linear_gradient`
    estimates without its normaliser). float64."""
    A, S = _square("A", A), _square("S", S)
    if A.shape != S.shape:
        raise ValueError(f"A and S must have the same shape, got {tuple(A.shape)} and {tuple(S.shape)}")
    t2 = torch.as_tensor(sigmas, dtype=torch.float64).reshape(-1) ** 2
    w = t2 if weights is None else torch.as_tensor(weights, dtype=torch.float64).reshape(-1)
    if t2.numel() < 1 or w.shape != t2.shape or not bool((w >= 0).all()) or float(w.sum()) <= 0:
        raise ValueError("sigmas must be non-empty and weights (one per sigma) >= 0 with a positive sum")
    eye = torch.eye(S.shape[0], dtype=torch.float64)
    C = A @ A.T
    diff = torch.linalg.inv(S + t2[:, None, None] * eye) - torch.linalg.inv(C + t2[:, None, None] * eye)
    return (w[:, None, None] * diff).mean(0) @ A


def linear_dmd_flow(A, S, sigmas, lr: float, steps: int, weights=None) -> torch.Tensor:
    """Explicit gradient steps A <- A - lr grad (:func:`linear_dm_gradient`) from ``A``: the trajectory
    [steps + 1, d, d] (float64), the start first."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be an integer >= 0, got {steps!r}")
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr!r}")
    out = [_square("A", A)]
    for _ in range(steps):
        out.append(out[-1] - lr * linear_dm_gradient(out[-1], S, sigmas, weights))
    return torch.stack(out)


def _dm_direction(A: torch.Tensor, S: torch.Tensor, z: torch.Tensor, t: torch.Tensor, eps: torch.Tensor,
                  normalised: bool) -> tuple:
    """x = A z and DMD2's per-sample direction (D_fake - D_real)(x_t) [/ mean_i |x - D_real(x_t)|_i] for exact
    scores, D(x_t) = C (C + t^2 I)^-1 x_t of N(0, C) (C = A A^T for the fake score, S for the real one)."""
    d = S.shape[0]
    x = z @ A.T
    x_t = x + t[:, None] * eps
    eye = torch.eye(d, dtype=torch.float64)
    t2 = (t ** 2)[:, None, None]
    with torch.no_grad():
        C = A.detach() @ A.detach().T
        d_real = torch.einsum("nij,nj->ni", S @ torch.linalg.inv(S + t2 * eye), x_t.detach())
        diff = torch.einsum("nij,nj->ni", C @ torch.linalg.inv(C + t2 * eye), x_t.detach()) - d_real
        if normalised:
            diff = diff / (x.detach() - d_real).abs().mean(1, keepdim=True)
    return x, diff


def sampled_linear_gradient(A, S, sigmas, n: int, seed: int = 0, normalised: bool = True) -> torch.Tensor:
    """Monte Carlo of DMD2's generator gradient with respect to A for G(z) = A z on N(0, S) with exact real and
    fake scores: the mean over n draws of g z^T, with t uniform over ``sigmas``, x = A z, x_t = x + t eps and::

        g = (D_fake(x_t) - D_real(x_t)) / mean_i |x - D_real(x_t)|_i,   D(x_t) = C (C + t^2 I)^-1 x_t for N(0, C)

    (DMD2's per-sample normaliser; ``normalised=False`` drops it, and the mean then estimates
    :func:`linear_dm_gradient` with its default weights t^2, since D_fake - D_real = t^2 (s_fake - s_real)).
    The normaliser is a per-sample L1 norm over the coordinates: it is invariant under sign flips of single
    coordinates, so for S and A diagonal the off-diagonal entries vanish in expectation, but not under
    rotations, so the argument does not carry over to an S that is not diagonal in the coordinates."""
    A, S = _square("A", A), _square("S", S)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an integer >= 1, got {n!r}")
    g = torch.Generator().manual_seed(seed)
    d = S.shape[0]
    sig = torch.as_tensor(sigmas, dtype=torch.float64).reshape(-1)
    t = sig[torch.randint(0, sig.numel(), (n,), generator=g)]
    z = torch.randn(n, d, generator=g, dtype=torch.float64)
    _, diff = _dm_direction(A, S, z, t, torch.randn(n, d, generator=g, dtype=torch.float64), normalised)
    return diff.T @ z / n


OPTIMIZERS = ("adamw", "sgd")
STARTS = ("phi_1", "flow")


def linear_dmd(std, steps: int, batch: int, lr: float, optimizer: str = "adamw", start: str = "phi_1",
               warmup: int = 100, weight_decay: float = 0.01, seed: int = 0, record_every: int = 10) -> dict:
    """DMD2's generator updates for a linear student G(z) = A z on N(0, diag(std^2)), with the exact real score
    and the exact fake score of the student's current law N(0, A A^T) (a fake score that tracks the student
    perfectly), so that only the optimiser and the mini-batch remain of DMD's loop.

    Each of ``steps`` updates draws ``batch`` seeds z, noise levels t uniform over :func:`dmd_sigmas` and
    noise eps, forms DMD2's normalised direction g (:func:`sampled_linear_gradient`) and the loss
    0.5 mean ||x - sg(x - g)||^2, and takes one step of ``optimizer``: ``"adamw"`` (DMD2's: betas (0.9,
    0.999), ``weight_decay``) or ``"sgd"`` (plain gradient descent), with a linear warm-up over ``warmup``
    updates. ``start``: ``"phi_1"`` (:func:`phi_1_matrix`, DMD's start) or ``"flow"`` (:func:`flow_matrix`,
    the converged copy). Returns ``{"A": final A, "step": [...], "rotation": [...], "commutator": [...],
    "scale": [...]}`` (:func:`rotation_part`, :func:`commutator` and ||A||_F every ``record_every`` updates);
    float64 throughout.
    """
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {list(OPTIMIZERS)}, got {optimizer!r}")
    if start not in STARTS:
        raise ValueError(f"start must be one of {list(STARTS)}, got {start!r}")
    for name, v, low in (("steps", steps, 0), ("batch", batch, 1), ("warmup", warmup, 0), ("seed", seed, 0),
                         ("record_every", record_every, 1)):
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {v!r}")
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr!r}")
    std = torch.as_tensor(std, dtype=torch.float64)
    S = torch.diag(std ** 2)
    A = (phi_1_matrix(std) if start == "phi_1" else flow_matrix(std)).clone().requires_grad_(True)
    opt = (torch.optim.AdamW([A], lr=lr, betas=(0.9, 0.999), weight_decay=weight_decay) if optimizer == "adamw"
           else torch.optim.SGD([A], lr=lr))
    g, sig, d = torch.Generator().manual_seed(seed), dmd_sigmas(), std.numel()
    out = {"step": [], "rotation": [], "commutator": [], "scale": []}
    for it in range(steps + 1):
        if it % record_every == 0 or it == steps:
            a = A.detach()
            for k, v in (("step", it), ("rotation", rotation_part(a)), ("commutator", commutator(a, S)),
                         ("scale", float(a.norm()))):
                out[k].append(v)
        if it == steps:
            break
        z = torch.randn(batch, d, generator=g, dtype=torch.float64)
        t = sig[torch.randint(0, sig.numel(), (batch,), generator=g)]
        x, direction = _dm_direction(A, S, z, t, torch.randn(batch, d, generator=g, dtype=torch.float64), True)
        loss = 0.5 * torch.nn.functional.mse_loss(x, x.detach() - direction)
        opt.zero_grad()
        loss.backward()
        for group in opt.param_groups:
            group["lr"] = lr * (min(it / warmup, 1.0) if warmup > 0 else 1.0)
        opt.step()
    out["A"] = A.detach()
    return out


def rotation_part(A) -> float:
    """||(A - A^T) / 2||_F: the antisymmetric part of A (0 for a symmetric A)."""
    A = _square("A", A)
    return float(((A - A.T) / 2).norm())


def commutator(A, S) -> float:
    """||A S - S A||_F (0 when A commutes with S)."""
    A, S = _square("A", A), _square("S", S)
    return float((A @ S - S @ A).norm())


def phi_1_matrix(std, sigma_max: float = SIGMA_MAX) -> torch.Tensor:
    """Phi_1 of N(0, diag(s^2)) as a matrix: Phi_1(z) = D(sigma_max z; sigma_max) = diag(s^2 sigma_max / (s^2 +
    sigma_max^2)) z."""
    s2 = torch.as_tensor(std, dtype=torch.float64) ** 2
    return torch.diag(s2 * sigma_max / (s2 + sigma_max ** 2))


def flow_matrix(std, sigma_max: float = SIGMA_MAX) -> torch.Tensor:
    """The exact probability-flow map Phi_inf of N(0, diag(s^2)) as a matrix, diag(s sigma_max / sqrt(s^2 +
    sigma_max^2)) (:func:`dmdlib.analytic.gaussian_flow_map`): the optimal-transport map from z's law."""
    s = torch.as_tensor(std, dtype=torch.float64)
    return torch.diag(s * sigma_max / torch.sqrt(s ** 2 + sigma_max ** 2))
