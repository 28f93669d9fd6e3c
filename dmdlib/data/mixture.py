"""An isotropic Gaussian mixture with its exact denoiser: a closed-form teacher in any dimension.

The mixture p = sum_m w_m N(mu_m, s_m^2 I) in R^d noised at level sigma is
p_sigma = sum_m w_m N(mu_m, (s_m^2 + sigma^2) I), and its posterior mean (the
ideal denoiser that a trained EDM network approximates) is

    D(x; sigma) = sum_m r_m(x) [mu_m + s_m^2 / (s_m^2 + sigma^2) (x - mu_m)],
    r_m(x) proportional to w_m N(x; mu_m, (s_m^2 + sigma^2) I),

(Tweedie's formula applied component by component). At d = 256 the
densities underflow in float32 and even in float64 (exp(-d/2) and below), so
the responsibilities are formed from their logarithms,

    log r_m = log w_m - d/2 log(2 pi v_m) - ||x - mu_m||^2 / (2 v_m) - logsumexp(...),  v_m = s_m^2 + sigma^2,

and the whole computation runs in float64 whatever the input dtype (the
result is cast back to x's dtype): the float32 output then differs from
the float64 reference only by its final rounding (tests/test_mixture.py
checks this at d = 256 for sigma from 0.002 to 80). ||x - mu_m||^2 is
expanded as ||x||^2 - 2 x.mu_m + ||mu_m||^2, which costs one matrix product;
in float64 the cancellation of that form loses at most ~1e-16 ||x||^2, far
below the spread of the exponents that matters.

:class:`GaussianMixture` is an ``nn.Module`` whose ``forward(x, sigma,
labels=None)`` is :meth:`~GaussianMixture.denoise`, with the calling
convention of a trained denoiser (``sigma`` a [batch] tensor): it is a
teacher for :func:`~dmdlib.sampler.phi_k` and DMD's real score. It has no parameters;
the means, stds and weights are buffers, so
:func:`dmdlib.dmd.state_fingerprint` identifies it, and ``sigma_data`` is the
data's standard deviation over all coordinates, which DMD reads as
``teacher.sigma_data``.

Two families (issue "An exact teacher"):

* :meth:`GaussianMixture.ring`: the paper's 4-D recipe (App. A, Fig. 5)
  embedded in R^d: 32 equally weighted components, std 0.2 in every
  coordinate, means 2 (cos 2 pi m / 32, sin 2 pi m / 32, 0, ..., 0), as
  :func:`dmdlib.data.toy.gaussian_mixture` samples it (optionally rotated by
  ``orthogonal_matrix(d, embedding_seed)``). Structured coordinates: the
  plane of the means.
* :meth:`GaussianMixture.sphere`: M means drawn uniformly on the sphere of
  radius ``radius`` in R^k (seeded), optionally embedded in R^d, d >= k, by
  the first k columns of ``orthogonal_matrix(d, embedding_seed)``.
  Structured coordinates: the k-dimensional span of the embedding.

``structured(x)`` returns those coordinates (x @ basis, basis [d, k] with
orthonormal columns).
"""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import nn

from .toy import EMBEDDINGS, orthogonal_matrix

LOG_2PI = math.log(2 * math.pi)


def _float_tensor(value, name: str) -> torch.Tensor:
    try:
        t = torch.as_tensor(value, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(f"{name} must be a number or a tensor of numbers, got {type(value).__name__}") from None
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} must be finite, got {value!r}")
    return t


def _check_int(name, value, low):
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")


def _check_positive(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")


class GaussianMixture(nn.Module):
    """sum_m w_m N(mu_m, s_m^2 I) in R^d with its exact denoiser D(x; sigma) (module doc).

    ``means`` [M, d]; ``std`` a number or one value per component (> 0);
    ``weights`` one positive value per component summing to 1 (None:
    uniform). ``basis`` [d, k] (optional) spans the structured coordinates
    (orthonormal columns); by default the span of the means (their SVD,
    directions with singular value above 1e-9 of the largest), or the first
    coordinate if every mean is 0. Call it as a denoiser, ``mixture(x,
    sigma)``, or use :meth:`denoise`.
    """

    def __init__(self, means, std, weights=None, basis=None):
        super().__init__()
        means = _float_tensor(means, "means")
        if means.ndim != 2 or means.shape[0] < 1 or means.shape[1] < 1:
            raise ValueError(f"means must have shape [M, d] with M >= 1 and d >= 1, got {tuple(means.shape)}")
        m, d = means.shape
        std = _float_tensor(std, "std")
        if std.ndim == 0:
            std = std.expand(m).clone()
        if std.shape != (m,):
            raise ValueError(f"std must be a number or have shape [M] = [{m}], got shape {tuple(std.shape)}")
        if not (std > 0).all():
            raise ValueError(f"std must be > 0 for every component, got {std.tolist()}")
        if weights is None:
            weights = torch.full((m,), 1.0 / m, dtype=torch.float64)
        weights = _float_tensor(weights, "weights")
        if weights.shape != (m,):
            raise ValueError(f"weights must have shape [M] = [{m}], got shape {tuple(weights.shape)}")
        if not (weights > 0).all():
            raise ValueError(f"weights must be > 0 for every component, got {weights.tolist()}")
        if abs(float(weights.sum()) - 1.0) > 1e-6:
            raise ValueError(f"weights must sum to 1 (within 1e-6), got sum {float(weights.sum())!r}")
        weights = weights / weights.sum()
        basis = self._default_basis(means) if basis is None else _float_tensor(basis, "basis")
        if basis.ndim != 2 or basis.shape[0] != d or not 1 <= basis.shape[1] <= d:
            raise ValueError(f"basis must have shape [d, k] = [{d}, k] with 1 <= k <= {d}, got {tuple(basis.shape)}")
        if not torch.allclose(basis.T @ basis, torch.eye(basis.shape[1], dtype=torch.float64), atol=1e-9):
            raise ValueError("basis must have orthonormal columns (basis.T @ basis = I)")
        self.register_buffer("means", means.clone())
        self.register_buffer("std", std.clone())
        self.register_buffer("weights", weights)
        self.register_buffer("basis", basis.clone(), persistent=False)

    @staticmethod
    def _default_basis(means: torch.Tensor) -> torch.Tensor:
        _, s, vt = torch.linalg.svd(means, full_matrices=False)
        if float(s[0]) == 0.0:
            return torch.eye(means.shape[1], 1, dtype=torch.float64)
        return vt[s > 1e-9 * s[0]].T.contiguous()

    # --- the two families of the exact-teacher laboratory -----------------------------------------------------------
    @classmethod
    def ring(cls, dim: int = 4, components: int = 32, radius: float = 2.0, std: float = 0.2,
             embedding: str = "pad", embedding_seed: int = 0) -> "GaussianMixture":
        """The paper's 4-D recipe in R^dim: ``components`` equal weights, std ``std`` in every coordinate, means
        ``radius`` (cos 2 pi m / M, sin 2 pi m / M, 0, ...); ``embedding="orthogonal"`` rotates the means by
        ``orthogonal_matrix(dim, embedding_seed)`` (as :func:`dmdlib.data.toy.gaussian_mixture`)."""
        _check_int("dim", dim, 2)
        _check_int("components", components, 1)
        _check_positive("radius", radius)
        _check_positive("std", std)
        if embedding not in EMBEDDINGS:
            raise ValueError(f"embedding must be one of {list(EMBEDDINGS)}, got {embedding!r}")
        angle = 2 * math.pi * torch.arange(components, dtype=torch.float64) / components
        means = torch.zeros(components, dim, dtype=torch.float64)
        means[:, 0], means[:, 1] = radius * angle.cos(), radius * angle.sin()
        frame = orthogonal_matrix(dim, embedding_seed) if embedding == "orthogonal" else torch.eye(dim, dtype=torch.float64)
        return cls(means @ frame.T, std, basis=frame[:, :2])

    @classmethod
    def sphere(cls, components: int, k: int, dim: Optional[int] = None, radius: float = 2.0, std: float = 0.2,
               seed: int = 0, embedding_seed: int = 0) -> "GaussianMixture":
        """``components`` means uniform on the sphere of radius ``radius`` in R^k (directions of Gaussian vectors
        drawn in float64 from ``torch.Generator().manual_seed(seed)``), equal weights, std ``std`` in every
        coordinate; in R^dim (default k) through the first k columns of ``orthogonal_matrix(dim, embedding_seed)``
        when dim > k. Structured coordinates: those k columns (the identity when dim == k)."""
        _check_int("components", components, 1)
        _check_int("k", k, 1)
        dim = k if dim is None else dim
        _check_int("dim", dim, k)
        _check_positive("radius", radius)
        _check_positive("std", std)
        _check_int("seed", seed, 0)
        _check_int("embedding_seed", embedding_seed, 0)
        g = torch.Generator().manual_seed(seed)
        u = torch.randn(components, k, generator=g, dtype=torch.float64)
        u = radius * u / u.norm(dim=1, keepdim=True)
        frame = (orthogonal_matrix(dim, embedding_seed)[:, :k] if dim > k
                 else torch.eye(k, dtype=torch.float64))
        return cls(u @ frame.T, std, basis=frame)

    # --- properties -------------------------------------------------------------------------------------------------
    @property
    def num_components(self) -> int:
        return self.means.shape[0]

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    @property
    def sigma_data(self) -> float:
        """The data's standard deviation over all coordinates: sqrt((sum_m w_m ||mu_m - mu||^2 + d sum_m w_m s_m^2) / d)."""
        w, mu = self.weights.double(), self.means.double()
        centre = w @ mu
        var = (w * ((mu - centre) ** 2).sum(1)).sum() + self.dim * (w * self.std.double() ** 2).sum()
        return float(torch.sqrt(var / self.dim))

    def extra_repr(self) -> str:
        return f"components={self.num_components}, dim={self.dim}, sigma_data={self.sigma_data:.4g}"

    # --- the exact denoiser -----------------------------------------------------------------------------------------
    def _flat(self, x: torch.Tensor, name: str = "x") -> torch.Tensor:
        if not torch.is_tensor(x) or not x.is_floating_point() or x.ndim < 1:
            raise ValueError(f"{name} must be a floating-point tensor of shape [batch, ...], got "
                             f"{type(x).__name__ if not torch.is_tensor(x) else (x.dtype, tuple(x.shape))}")
        flat = x.reshape(x.shape[0], -1)
        if flat.shape[1] != self.dim:
            raise ValueError(f"{name} must have {self.dim} entries per sample (the mixture's dimension d), "
                             f"got shape {tuple(x.shape)}")
        return flat.to(torch.float64)

    def _sigma(self, sigma, batch: int, device) -> torch.Tensor:
        s = torch.as_tensor(sigma, dtype=torch.float64, device=device).reshape(-1)
        if s.numel() == 1:
            s = s.expand(batch)
        if s.numel() != batch:
            raise ValueError(f"sigma must be a number or hold one value per row ({batch}), got {s.numel()} values")
        if not (torch.isfinite(s).all() and (s >= 0).all()):
            raise ValueError("sigma must be finite and >= 0")
        return s

    def log_responsibilities(self, x: torch.Tensor, sigma) -> torch.Tensor:
        """log r_m(x) [batch, M] at noise level ``sigma`` (float64): log-softmax over m of
        log w_m - d/2 log(2 pi v_m) - ||x - mu_m||^2 / (2 v_m), v_m = s_m^2 + sigma^2."""
        flat = self._flat(x)
        v = self.std.double()[None, :] ** 2 + self._sigma(sigma, flat.shape[0], flat.device)[:, None] ** 2
        return torch.log_softmax(self._log_joint(flat, v), dim=1)

    def _log_joint(self, flat: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        mu = self.means.double()
        d2 = ((flat * flat).sum(1, keepdim=True) - 2.0 * flat @ mu.T + (mu * mu).sum(1)[None, :]).clamp_min(0.0)
        return self.weights.double().log()[None, :] - 0.5 * self.dim * (LOG_2PI + v.log()) - 0.5 * d2 / v

    def denoise(self, x: torch.Tensor, sigma) -> torch.Tensor:
        """D(x; sigma) = sum_m r_m(x) [mu_m + s_m^2/(s_m^2 + sigma^2)(x - mu_m)] (computed in float64, returned in
        x's dtype and shape). ``sigma``: a number, or one value per row (any shape with ``batch`` entries)."""
        flat = self._flat(x)
        sig = self._sigma(sigma, flat.shape[0], flat.device)
        s2 = self.std.double()[None, :] ** 2
        v = s2 + sig[:, None] ** 2
        r = torch.softmax(self._log_joint(flat, v), dim=1)                      # [B, M]
        # sum_m r_m [mu_m + s2/v (x - mu_m)] = (sum_m r_m s2/v) x + sum_m r_m (sigma^2 / v) mu_m
        out = (r * s2 / v).sum(1, keepdim=True) * flat + (r * (sig[:, None] ** 2 / v)) @ self.means.double()
        return out.to(x.dtype).reshape(x.shape)

    def forward(self, x: torch.Tensor, sigma, labels=None) -> torch.Tensor:
        """The denoiser's calling convention (``net(x, sigma[, labels])``): :meth:`denoise`; an unconditional teacher."""
        if labels is not None:
            raise ValueError("labels must be None: a GaussianMixture is an unconditional denoiser")
        return self.denoise(x, sigma)

    # --- samples and components -------------------------------------------------------------------------------------
    def sample(self, n: int, generator: Optional[torch.Generator] = None, return_components: bool = False,
               dtype: torch.dtype = torch.float32):
        """n i.i.d. samples [n, d] in ``dtype`` on the mixture's device: the components c by
        ``torch.multinomial(weights, n, replacement=True, generator)``, then offsets eps ~ N(0, I) [n, d] from the
        same generator, x = mu_c + s_c eps (in float64, then cast). With ``return_components``: ``(x, c)``; the
        within-component offsets are (x - means[c]) / std[c]."""
        _check_int("n", n, 1)
        dev = self.means.device
        c = torch.multinomial(self.weights.double(), n, replacement=True, generator=generator)
        eps = torch.randn(n, self.dim, generator=generator, dtype=torch.float64, device=dev)
        c = c.to(dev)
        x = (self.means.double()[c] + self.std.double()[c, None] * eps).to(dtype)
        return (x, c) if return_components else x

    def component(self, x: torch.Tensor) -> torch.Tensor:
        """The most responsible component at sigma -> 0: argmax_m log w_m + log N(x; mu_m, s_m^2 I) (LongTensor [batch])."""
        flat = self._flat(x)
        v = self.std.double()[None, :] ** 2
        return self._log_joint(flat, v.expand(flat.shape[0], -1)).argmax(1)

    def structured(self, x: torch.Tensor) -> torch.Tensor:
        """The structured coordinates x @ basis [batch, k] (float64): the plane of the ring, the span of the sphere."""
        return self._flat(x) @ self.basis.double()

    def blurred(self, tau: float) -> "GaussianMixture":
        """The same mixture with component std sqrt(s^2 + tau^2): a teacher that has not resolved structure finer
        than tau (tau = 0: an equal mixture, same means, stds, weights and structured basis)."""
        if isinstance(tau, bool) or not isinstance(tau, (int, float)) or not math.isfinite(tau) or tau < 0:
            raise ValueError(f"tau must be a finite number >= 0, got {tau!r}")
        std = self.std.double() if tau == 0 else torch.sqrt(self.std.double() ** 2 + float(tau) ** 2)
        return GaussianMixture(self.means.detach().cpu(), std.cpu(), self.weights.detach().cpu(),
                               basis=self.basis.detach().cpu()).to(self.means.device)
