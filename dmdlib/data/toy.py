"""Low-dimensional data sets embedded in R^dim (paper Fig. 2, 5).

Each sampler draws a fresh i.i.d. batch from the distribution (the toys have
no finite training set). The 2-D structure lives in the first two
coordinates; the remaining ``dim - 2`` coordinates are exactly zero for the
chessboard and the moons (a singular measure, as "embedded in the first two
coordinates" says) and Gaussian with the component std for the mixture
("32 isotropic four-dimensional Gaussian components").

* ``chessboard``: uniform on the 8 black cells of a 4x4 board covering
  [-2, 2]^2 (cell side 1; the cell with lower-left corner (-2, -2) is black).
* ``moons``: the two interleaving half circles (radius 1; the second shifted
  by (1, -0.5)), centred at the origin, scaled by 1.5, with isotropic 2-D
  Gaussian jitter of std 0.05. The paper does not give its moons recipe.
* ``gaussian_mixture``: 32 equally weighted components with std 0.2 and
  means 2 (cos 2 pi k/32, sin 2 pi k/32, 0, ...).
"""
from __future__ import annotations

import math
from typing import Optional

import torch


def _check(n, dim):
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an integer >= 1, got {n!r}")
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 2:
        raise ValueError(f"dim must be an integer >= 2 (the toy structure uses two coordinates), got {dim!r}")


def _embed(xy: torch.Tensor, dim: int) -> torch.Tensor:
    return torch.cat([xy, xy.new_zeros(xy.shape[0], dim - 2)], dim=1)


def chessboard(n: int, dim: int = 4, generator: Optional[torch.Generator] = None,
               device="cpu") -> torch.Tensor:
    """n points uniform on the black cells of the 4x4 chessboard on [-2, 2]^2, in R^dim."""
    _check(n, dim)
    cell = torch.randint(0, 8, (n,), generator=generator, device=device)
    row = cell // 2
    col = 2 * (cell % 2) + (row % 2)  # black cells: (row + col) even
    u = torch.rand(n, 2, generator=generator, device=device)
    xy = torch.stack([col, row], dim=1).to(u.dtype) + u - 2.0
    return _embed(xy, dim)


def moons(n: int, dim: int = 4, generator: Optional[torch.Generator] = None, device="cpu",
          noise: float = 0.05, scale: float = 1.5) -> torch.Tensor:
    """n points on the two moons (centred, scaled by ``scale``, jitter ``noise``), in R^dim."""
    _check(n, dim)
    which = torch.randint(0, 2, (n,), generator=generator, device=device)
    t = torch.rand(n, generator=generator, device=device) * math.pi
    upper = torch.stack([t.cos(), t.sin()], dim=1)
    lower = torch.stack([1 - t.cos(), 0.5 - t.sin()], dim=1)
    xy = torch.where(which[:, None] == 0, upper, lower) - torch.tensor([0.5, 0.25], device=device)
    xy = scale * xy + noise * torch.randn(n, 2, generator=generator, device=device)
    return _embed(xy, dim)


def gaussian_mixture(n: int, dim: int = 4, generator: Optional[torch.Generator] = None, device="cpu",
                     components: int = 32, radius: float = 2.0, std: float = 0.2) -> torch.Tensor:
    """n points from the ring of ``components`` isotropic Gaussians (std ``std``) in R^dim."""
    _check(n, dim)
    k = torch.randint(0, components, (n,), generator=generator, device=device)
    angle = 2 * math.pi * k.to(torch.float32) / components
    mean = _embed(radius * torch.stack([angle.cos(), angle.sin()], dim=1), dim)
    return mean + std * torch.randn(n, dim, generator=generator, device=device)


TOY_DATASETS = {"chessboard": chessboard, "moons": moons, "gaussian_mixture": gaussian_mixture}


def sample_toy(name: str, n: int, dim: int = 4, generator: Optional[torch.Generator] = None,
               device="cpu") -> torch.Tensor:
    """Draw ``n`` samples of the toy data set ``name`` (one of ``TOY_DATASETS``)."""
    if name not in TOY_DATASETS:
        raise ValueError(f"unknown toy data set {name!r}; allowed: {sorted(TOY_DATASETS)}")
    return TOY_DATASETS[name](n, dim, generator=generator, device=device)


def data_std(name: str, dim: int = 4) -> float:
    """The data set's standard deviation over all coordinates (EDM's sigma_data), rounded to 3 decimals.

    Estimated once from 10^6 samples (fixed generator); the two embedded
    coordinates carry all of it for the chessboard and the moons, so the value
    is the std of the 2-D structure times sqrt(2 / dim).
    """
    g = torch.Generator().manual_seed(0)
    x = sample_toy(name, 1_000_000, dim, generator=g).double()
    return round(float(((x - x.mean(0)) ** 2).mean().sqrt()), 3)


def support_fraction(name: str, x: torch.Tensor) -> float:
    """Fraction of samples on the support of the toy set ``name`` (a distribution-fit check).

    chessboard: inside a black cell; moons: within 3 jitter stds of a moon arc;
    gaussian_mixture: within 3 stds of a component mean in the first two
    coordinates (98.9% of true samples). Only the first two coordinates count.
    """
    if name not in TOY_DATASETS:
        raise ValueError(f"unknown toy data set {name!r}; allowed: {sorted(TOY_DATASETS)}")
    xy = torch.as_tensor(x, dtype=torch.float64)[:, :2]
    if name == "chessboard":
        inside = (xy.abs() <= 2).all(1)
        black = (xy.floor().sum(1) % 2) == 0
        return float((inside & black).double().mean())
    if name == "moons":
        scale, noise = 1.5, 0.05
        u = xy / scale + torch.tensor([0.5, 0.25], dtype=torch.float64)

        def arc(v, upper):
            r = v.norm(dim=1)
            on = v[:, 1] >= 0 if upper else v[:, 1] <= 0
            ends = torch.stack([(v - torch.tensor([s, 0.0], dtype=torch.float64)).norm(dim=1) for s in (-1.0, 1.0)])
            return torch.where(on, (r - 1).abs(), ends.min(0).values)

        d = torch.minimum(arc(u, True), arc(u - torch.tensor([1.0, 0.5], dtype=torch.float64), False)) * scale
        return float((d <= 3 * noise).double().mean())
    k = torch.arange(32, dtype=torch.float64) * 2 * math.pi / 32
    means = 2.0 * torch.stack([k.cos(), k.sin()], dim=1)
    d = torch.cdist(xy, means).min(1).values
    return float((d <= 3 * 0.2).double().mean())
