"""The low-dimensional toy data sets (chessboard, moons, Gaussian mixture)."""
import math

import numpy as np
import pytest
import torch

import dmdlib
from dmdlib import TOY_DATASETS, sample_toy

NAMES = ["chessboard", "moons", "gaussian_mixture"]


def g(seed=0):
    return torch.Generator().manual_seed(seed)


def test_registry():
    assert sorted(TOY_DATASETS) == sorted(NAMES)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dim", [2, 4, 16])
def test_shapes_and_padding(name, dim):
    x = sample_toy(name, 500, dim, generator=g())
    assert x.shape == (500, dim)
    assert x.dtype == torch.float32
    assert bool(torch.isfinite(x).all())
    if name != "gaussian_mixture" and dim > 2:
        assert bool((x[:, 2:] == 0).all()), "coordinates beyond 2 must be exactly 0"
    if name == "gaussian_mixture" and dim > 2:
        assert bool((x[:, 2:] != 0).all())


@pytest.mark.parametrize("name", NAMES)
def test_determinism(name):
    a = sample_toy(name, 300, 4, generator=g(5))
    b = sample_toy(name, 300, 4, generator=g(5))
    c = sample_toy(name, 300, 4, generator=g(6))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    # the first two coordinates do not depend on the ambient dimension for the singular toys
    if name != "gaussian_mixture":
        assert torch.equal(sample_toy(name, 300, 16, generator=g(5))[:, :2], a[:, :2])


def test_chessboard_black_cells_uniform():
    n = 16_000
    x = sample_toy("chessboard", n, 2, generator=g(1)).double()
    assert bool(((x >= -2) & (x <= 2)).all())
    fx, fy = torch.floor(x[:, 0]), torch.floor(x[:, 1])
    assert bool((((fx + fy) % 2) == 0).all()), "every point must lie on a black cell"
    # the cell with lower-left corner (-2, -2) is black, (-1, -2) is white
    cells = {}
    for i, j in zip(fx.long().tolist(), fy.long().tolist()):
        cells[(i, j)] = cells.get((i, j), 0) + 1
    expected_cells = {(i, j) for i in range(-2, 2) for j in range(-2, 2) if (i + j) % 2 == 0}
    assert set(cells) == expected_cells and len(expected_cells) == 8
    assert (-2, -2) in cells and (-1, -2) not in cells
    counts = np.array(list(cells.values()), dtype=float)
    e = n / 8
    chi2 = ((counts - e) ** 2 / e).sum()
    assert chi2 < 30, counts  # 7 dof: P(chi2 > 30) ~ 1e-4
    # uniform within the cells: fractional parts ~ U(0, 1)
    frac = x - torch.floor(x)
    assert frac.mean().item() == pytest.approx(0.5, abs=0.01)
    assert frac.var().item() == pytest.approx(1 / 12, abs=0.003)


def test_moons_geometry():
    x = sample_toy("moons", 20_000, 2, generator=g(2)).double()
    # centred (mean (0.5, 0.25) of the two half circles removed), then scaled by 1.5
    assert x.mean(0).abs().max().item() < 0.05
    assert x[:, 0].min().item() > -2.5 and x[:, 0].max().item() < 2.5
    # undo centring and scale: each point is within ~jitter of one of the two unit half circles
    p = x / 1.5 + torch.tensor([0.5, 0.25], dtype=torch.float64)
    d_upper = ((p.norm(dim=1) - 1).abs())
    d_lower = (((p - torch.tensor([1.0, 0.5], dtype=torch.float64)).norm(dim=1) - 1).abs())
    d = torch.minimum(d_upper, d_lower)
    assert d.max().item() < 0.05 * 6 / 1.5  # 6-sigma jitter, in unscaled units
    assert d.mean().item() < 0.05


def test_gaussian_mixture_geometry():
    n = 20_000
    x = sample_toy("gaussian_mixture", n, 16, generator=g(3)).double()
    r = x[:, :2].norm(dim=1)
    assert r.mean().item() == pytest.approx(2.0, abs=0.05)
    # the extra coordinates are the component noise: N(0, 0.2^2)
    assert x[:, 2:].mean().item() == pytest.approx(0.0, abs=0.01)
    assert x[:, 2:].std().item() == pytest.approx(0.2, rel=0.02)
    # in the plane: distance to the nearest of the 32 means has the 2-D spread of std 0.2
    ang = 2 * math.pi * torch.arange(32, dtype=torch.float64) / 32
    means = 2 * torch.stack([ang.cos(), ang.sin()], dim=1)
    k = torch.cdist(x[:, :2], means).argmin(1)
    resid = x[:, :2] - means[k]
    # nearest-mean assignment slightly shrinks the spread (components 0.39 apart)
    assert 0.15 < resid.std().item() < 0.21
    # all 32 components are used, roughly equally
    counts = torch.bincount(k, minlength=32).double()
    assert counts.min().item() > 0.7 * n / 32 and counts.max().item() < 1.3 * n / 32


def test_direct_samplers_match_sample_toy():
    from dmdlib.data import chessboard, gaussian_mixture, moons
    for fn, name in [(chessboard, "chessboard"), (moons, "moons"), (gaussian_mixture, "gaussian_mixture")]:
        assert torch.equal(fn(50, 3, generator=g(0)), sample_toy(name, 50, 3, generator=g(0)))


def test_errors():
    with pytest.raises(ValueError, match="allowed") as e:
        sample_toy("swissroll", 10)
    for name in NAMES:
        assert name in str(e.value)
    with pytest.raises(ValueError, match="dim"):
        sample_toy("chessboard", 10, 1)
    with pytest.raises(ValueError, match="n must be"):
        sample_toy("moons", 0)
    with pytest.raises(ValueError, match="n must be"):
        sample_toy("moons", 2.0)
    with pytest.raises(ValueError, match="n must be"):
        sample_toy("moons", True)


@pytest.mark.parametrize("name,floor", [("chessboard", 0.999), ("moons", 0.99), ("gaussian_mixture", 0.98)])
def test_support_fraction_separates_data_from_noise(name, floor):
    from dmdlib.data import support_fraction

    g = torch.Generator().manual_seed(0)
    assert support_fraction(name, dmdlib.sample_toy(name, 4000, 4, generator=g)) >= floor
    assert support_fraction(name, 1.5 * torch.randn(4000, 4, generator=g)) < 0.5
    # a sample shifted by half a cell lands on white cells / off the arcs / between the mixture means
    shift = {"chessboard": torch.tensor([1.0, 0.0, 0, 0]), "moons": torch.tensor([0.0, 0.6, 0, 0]),
             "gaussian_mixture": None}[name]
    if shift is not None:
        assert support_fraction(name, dmdlib.sample_toy(name, 4000, 4, generator=g) + shift) < 0.5
    with pytest.raises(ValueError, match="allowed"):
        support_fraction("spiral", torch.zeros(3, 4))


def test_toy_sigma_data_is_the_data_std():
    """EDM's sigma_data for the toys is the data's std over all coordinates: closed forms for two of the sets."""
    import math

    from dmdlib.data.toy import data_std
    from dmdlib import pipeline as pl

    assert data_std("chessboard", 4) == pytest.approx(math.sqrt(2 / 4 * 16 / 12), abs=1e-3)    # uniform on [-2, 2]^2
    ring = (2 * 2.0 ** 2 / 2 + 4 * 0.2 ** 2) / 4            # radius-2 ring (each coordinate var 2) plus std 0.2
    assert data_std("gaussian_mixture", 4) == pytest.approx(math.sqrt(ring), abs=2e-3)
    assert data_std("chessboard", 16) == pytest.approx(math.sqrt(2 / 16 * 16 / 12), abs=1e-3)
    p = dmdlib.get_preset("toy", "quick")
    assert pl.toy_sigma_data(p, "moons") == data_std("moons", p.dim)
    from dataclasses import replace
    assert pl.toy_sigma_data(replace(p, sigma_data=0.5), "moons") == 0.5
    with pytest.raises(ValueError, match="sigma_data"):
        replace(p, sigma_data="auto")
