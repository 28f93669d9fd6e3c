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

Two embeddings in R^dim (keyword ``embedding`` of every sampler):

* ``"pad"`` (the default, the paper's "embedded in the first two
  coordinates"): the padded vector x_pad = (x, y, 0, ..., 0) for the
  chessboard and the moons, (x, y, noise...) for the mixture. ``dim = 2``
  means no padding.
* ``"orthogonal"``: x = x_pad @ Q.T with Q = ``orthogonal_matrix(dim,
  embedding_seed)``, a fixed random rotation/reflection of R^dim. For the
  chessboard and the moons (zero padding) this is xy @ E.T with
  E = ``orthogonal_embedding(dim, seed)`` = Q[:, :2], a 2-plane in general
  position; for the mixture the whole padded vector (plane plus isotropic
  noise) is rotated, so the same distribution is seen in a frame where no
  coordinate is special. Distances, the overall std (``data_std``) and
  the support (``support_fraction`` after ``unembed``) are unchanged.
"""
from __future__ import annotations

import functools
import math
from typing import Optional

import torch


def _check(n, dim):
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an integer >= 1, got {n!r}")
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 2:
        raise ValueError(f"dim must be an integer >= 2 (the toy structure uses two coordinates), got {dim!r}")


EMBEDDINGS = ("pad", "orthogonal")


def _embed(xy: torch.Tensor, dim: int) -> torch.Tensor:
    return torch.cat([xy, xy.new_zeros(xy.shape[0], dim - 2)], dim=1)


def _check_embedding(embedding, embedding_seed):
    if embedding not in EMBEDDINGS:
        raise ValueError(f"embedding must be one of {list(EMBEDDINGS)}, got {embedding!r}")
    if isinstance(embedding_seed, bool) or not isinstance(embedding_seed, int) or embedding_seed < 0:
        raise ValueError(f"embedding_seed must be a non-negative integer, got {embedding_seed!r}")


@functools.lru_cache(maxsize=32)
def _orthogonal64(dim: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(dim, dim, generator=g, dtype=torch.float64)
    q, r = torch.linalg.qr(a)
    return q * torch.sign(torch.diagonal(r))[None, :]  # sign fix: diag(R) > 0 makes the QR factor unique


def orthogonal_matrix(dim: int, seed: int = 0) -> torch.Tensor:
    """A fixed random orthogonal ``dim x dim`` matrix (float64, CPU): Q of the QR of a Gaussian matrix.

    The Gaussian matrix is drawn in float64 from ``torch.Generator().manual_seed(seed)``;
    the columns are sign-fixed so that R has a positive diagonal, which makes
    Q unique (and Haar-distributed).
    """
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 2:
        raise ValueError(f"dim must be an integer >= 2, got {dim!r}")
    _check_embedding("orthogonal", seed)
    return _orthogonal64(dim, seed).clone()


def orthogonal_embedding(dim: int, seed: int = 0) -> torch.Tensor:
    """The ``[dim, 2]`` orthonormal frame E = ``orthogonal_matrix(dim, seed)[:, :2]`` (float32): xy -> xy @ E.T."""
    return orthogonal_matrix(dim, seed)[:, :2].float()


def _finish(x_pad: torch.Tensor, embedding: str, embedding_seed: int) -> torch.Tensor:
    """Apply the embedding to padded points (identity for "pad", bit-identical to the padded vector)."""
    _check_embedding(embedding, embedding_seed)
    if embedding == "pad":
        return x_pad
    q = _orthogonal64(x_pad.shape[1], embedding_seed).to(device=x_pad.device, dtype=x_pad.dtype)
    return x_pad @ q.T


def unembed(x: torch.Tensor, embedding: str = "pad", embedding_seed: int = 0) -> torch.Tensor:
    """Points in R^dim back in the padded frame (the toy structure in the first two coordinates).

    ``"pad"``: ``x`` itself; ``"orthogonal"``: x @ Q (Q orthogonal, so this inverts x_pad @ Q.T).
    """
    _check_embedding(embedding, embedding_seed)
    x = torch.as_tensor(x)
    if x.ndim != 2 or x.shape[1] < 2:
        raise ValueError(f"x must have shape [n, dim] with dim >= 2, got {tuple(x.shape)}")
    if embedding == "pad":
        return x
    q = _orthogonal64(x.shape[1], embedding_seed).to(device=x.device,
                                                       dtype=x.dtype if x.is_floating_point() else torch.float64)
    return x.to(q.dtype) @ q


def chessboard(n: int, dim: int = 4, generator: Optional[torch.Generator] = None,
               device="cpu", embedding: str = "pad", embedding_seed: int = 0) -> torch.Tensor:
    """n points uniform on the black cells of the 4x4 chessboard on [-2, 2]^2, in R^dim (``embedding``: module doc)."""
    _check(n, dim)
    _check_embedding(embedding, embedding_seed)
    cell = torch.randint(0, 8, (n,), generator=generator, device=device)
    row = cell // 2
    col = 2 * (cell % 2) + (row % 2)  # black cells: (row + col) even
    u = torch.rand(n, 2, generator=generator, device=device)
    xy = torch.stack([col, row], dim=1).to(u.dtype) + u - 2.0
    return _finish(_embed(xy, dim), embedding, embedding_seed)


def moons(n: int, dim: int = 4, generator: Optional[torch.Generator] = None, device="cpu",
          noise: float = 0.05, scale: float = 1.5, embedding: str = "pad", embedding_seed: int = 0) -> torch.Tensor:
    """n points on the two moons (centred, scaled by ``scale``, jitter ``noise``), in R^dim.

    ``embedding``: see the module docstring.
    """
    _check(n, dim)
    _check_embedding(embedding, embedding_seed)
    which = torch.randint(0, 2, (n,), generator=generator, device=device)
    t = torch.rand(n, generator=generator, device=device) * math.pi
    upper = torch.stack([t.cos(), t.sin()], dim=1)
    lower = torch.stack([1 - t.cos(), 0.5 - t.sin()], dim=1)
    xy = torch.where(which[:, None] == 0, upper, lower) - torch.tensor([0.5, 0.25], device=device)
    xy = scale * xy + noise * torch.randn(n, 2, generator=generator, device=device)
    return _finish(_embed(xy, dim), embedding, embedding_seed)


def gaussian_mixture(n: int, dim: int = 4, generator: Optional[torch.Generator] = None, device="cpu",
                     components: int = 32, radius: float = 2.0, std: float = 0.2, embedding: str = "pad",
                     embedding_seed: int = 0) -> torch.Tensor:
    """n points from the ring of ``components`` isotropic Gaussians (std ``std``) in R^dim.

    With ``embedding="orthogonal"`` the whole padded vector (ring plane plus the
    noise of the extra coordinates) is rotated by the full orthogonal matrix.
    """
    _check(n, dim)
    _check_embedding(embedding, embedding_seed)
    k = torch.randint(0, components, (n,), generator=generator, device=device)
    angle = 2 * math.pi * k.to(torch.float32) / components
    mean = _embed(radius * torch.stack([angle.cos(), angle.sin()], dim=1), dim)
    return _finish(mean + std * torch.randn(n, dim, generator=generator, device=device), embedding, embedding_seed)


TOY_DATASETS = {"chessboard": chessboard, "moons": moons, "gaussian_mixture": gaussian_mixture}


def sample_toy(name: str, n: int, dim: int = 4, generator: Optional[torch.Generator] = None,
               device="cpu", embedding: str = "pad", embedding_seed: int = 0) -> torch.Tensor:
    """Draw ``n`` samples of the toy data set ``name`` (one of ``TOY_DATASETS``), embedded by ``embedding``."""
    if name not in TOY_DATASETS:
        raise ValueError(f"unknown toy data set {name!r}; allowed: {sorted(TOY_DATASETS)}")
    return TOY_DATASETS[name](n, dim, generator=generator, device=device, embedding=embedding,
                              embedding_seed=embedding_seed)


def data_std(name: str, dim: int = 4) -> float:
    """The data set's standard deviation over all coordinates (EDM's sigma_data), rounded to 3 decimals.

    Estimated once from 10^6 samples (fixed generator); the two embedded
    coordinates carry all of it for the chessboard and the moons, so the value
    is the std of the 2-D structure times sqrt(2 / dim). The value is the
    same for both embeddings (the trace of the covariance is invariant under
    an orthogonal map), so it takes no ``embedding`` argument.
    """
    g = torch.Generator().manual_seed(0)
    x = sample_toy(name, 1_000_000, dim, generator=g).double()
    return round(float(((x - x.mean(0)) ** 2).mean().sqrt()), 3)


def support_fraction(name: str, x: torch.Tensor, embedding: str = "pad", embedding_seed: int = 0) -> float:
    """Fraction of samples on the support of the toy set ``name`` (a distribution-fit check).

    chessboard: inside a black cell; moons: within 3 jitter stds of a moon arc;
    gaussian_mixture: within 3 stds of a component mean in the first two
    coordinates (98.9% of true samples). Only the first two coordinates of the
    padded frame count: points made with ``embedding="orthogonal"`` are first
    mapped back with ``unembed`` (pass the same ``embedding`` and ``embedding_seed``).
    """
    if name not in TOY_DATASETS:
        raise ValueError(f"unknown toy data set {name!r}; allowed: {sorted(TOY_DATASETS)}")
    xy = unembed(torch.as_tensor(x, dtype=torch.float64), embedding, embedding_seed)[:, :2]
    if name == "chessboard":
        inside = (xy.abs() <= 2).all(1)
        black = (xy.floor().sum(1) % 2) == 0
        return float((inside & black).double().mean())
    if name == "moons":
        noise = 0.05
        upper, lower = _moon_distances(xy)
        d = torch.minimum(upper, lower)
        return float((d <= 3 * noise).double().mean())
    d = torch.cdist(xy, _ring_means()).min(1).values
    return float((d <= 3 * 0.2).double().mean())


def _moon_distances(xy: torch.Tensor, scale: float = 1.5) -> tuple:
    """Distances (float64 [n] each) of plane points ``xy`` from the upper and the lower moon's arc (as sampled)."""
    u = xy / scale + torch.tensor([0.5, 0.25], dtype=torch.float64)

    def arc(v, upper):
        r = v.norm(dim=1)
        on = v[:, 1] >= 0 if upper else v[:, 1] <= 0
        ends = torch.stack([(v - torch.tensor([s, 0.0], dtype=torch.float64)).norm(dim=1) for s in (-1.0, 1.0)])
        return torch.where(on, (r - 1).abs(), ends.min(0).values)

    return arc(u, True) * scale, arc(u - torch.tensor([1.0, 0.5], dtype=torch.float64), False) * scale


def _ring_means(components: int = 32, radius: float = 2.0) -> torch.Tensor:
    k = torch.arange(components, dtype=torch.float64) * 2 * math.pi / components
    return radius * torch.stack([k.cos(), k.sin()], dim=1)


# --- modes and intrinsic coordinates (pairing measures that dimension does not dilute) ---------------------------------

def toy_plane(x: torch.Tensor, embedding: str = "pad", embedding_seed: int = 0) -> torch.Tensor:
    """The toy's intrinsic coordinates: the plane of the structure, ``unembed(x)[:, :2]`` in float64 [n, 2]."""
    return unembed(torch.as_tensor(x, dtype=torch.float64), embedding, embedding_seed)[:, :2]


def chessboard_cell(x: torch.Tensor, embedding: str = "pad", embedding_seed: int = 0) -> torch.Tensor:
    """The board cell of each point (LongTensor [n]): 4 row + col of the 4x4 board on [-2, 2]^2, col = floor(x + 2)
    and row = floor(y + 2) in the plane (``toy_plane``), clamped to 0..3 (a point off the board counts in the
    nearest border cell). Black cells have row + col even; a clean sample's cell is the one it was drawn in."""
    xy = toy_plane(x, embedding, embedding_seed)
    cr = torch.floor(xy + 2.0).clamp(0, 3).long()
    return 4 * cr[:, 1] + cr[:, 0]


def moon(x: torch.Tensor, embedding: str = "pad", embedding_seed: int = 0) -> torch.Tensor:
    """Which moon each point belongs to (LongTensor [n]): 0 for the upper, 1 for the lower moon, by the nearer arc."""
    upper, lower = _moon_distances(toy_plane(x, embedding, embedding_seed))
    return (lower < upper).long()


def mixture_component(x: torch.Tensor, embedding: str = "pad", embedding_seed: int = 0) -> torch.Tensor:
    """The component of the toy ``gaussian_mixture`` (LongTensor [n], 0..31): the nearest mean in the plane, which is
    the most likely component (equal weights and stds; the other coordinates do not depend on the component)."""
    return torch.cdist(toy_plane(x, embedding, embedding_seed), _ring_means()).argmin(1)


TOY_MODES = {"chessboard": chessboard_cell, "moons": moon, "gaussian_mixture": mixture_component}


def toy_modes(name: str, x: torch.Tensor, embedding: str = "pad", embedding_seed: int = 0) -> torch.Tensor:
    """The mode of each point of the toy set ``name``: its chessboard cell, its moon or its mixture component."""
    if name not in TOY_MODES:
        raise ValueError(f"unknown toy data set {name!r}; allowed: {sorted(TOY_MODES)}")
    return TOY_MODES[name](x, embedding, embedding_seed)
