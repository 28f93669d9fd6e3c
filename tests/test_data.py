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
    from dmdlib import specs

    assert data_std("chessboard", 4) == pytest.approx(math.sqrt(2 / 4 * 16 / 12), abs=1e-3)    # uniform on [-2, 2]^2
    ring = (2 * 2.0 ** 2 / 2 + 4 * 0.2 ** 2) / 4            # radius-2 ring (each coordinate var 2) plus std 0.2
    assert data_std("gaussian_mixture", 4) == pytest.approx(math.sqrt(ring), abs=2e-3)
    assert data_std("chessboard", 16) == pytest.approx(math.sqrt(2 / 16 * 16 / 12), abs=1e-3)
    p = dmdlib.get_preset("toy", "quick")
    assert specs.toy_sigma_data(p, "moons") == data_std("moons", p.dim)
    from dataclasses import replace
    assert specs.toy_sigma_data(replace(p, sigma_data=0.5), "moons") == 0.5
    with pytest.raises(ValueError, match="sigma_data"):
        replace(p, sigma_data="auto")


# --- embeddings: zero padding (the paper's) and a fixed orthogonal map --------------------------------------------

def test_pad_embedding_is_bit_identical_to_the_original_samplers():
    """SHA-256 of the float32 bytes the samplers gave before ``embedding`` existed.

    CPU generator seeded 3, n = 257, dim = 4; the digests pin the torch CPU random stream of the project's torch.
    """
    import hashlib

    before = {"chessboard": "0cbcb290794c5ecb4c372080b637e199044ab462baed61dbcdda0ba292928b7a",
              "moons": "3bac0a2a7fb1c0478d03926d0d2959858a2cf29e62ef0326dd39250b1bb8ee16",
              "gaussian_mixture": "093331114004a708e1e63cf07be98c599587ef9ed2eb220339c85bb5d54e2bd0"}
    for name, digest in before.items():
        for kw in ({}, {"embedding": "pad"}, {"embedding": "pad", "embedding_seed": 7}):
            x = sample_toy(name, 257, 4, generator=g(3), **kw)
            assert hashlib.sha256(x.numpy().tobytes()).hexdigest() == digest, (name, kw)


@pytest.mark.parametrize("dim", [2, 3, 4, 16])
def test_orthogonal_embedding_is_orthonormal_and_fixed_by_seed(dim):
    from dmdlib.data import orthogonal_embedding, orthogonal_matrix

    e = orthogonal_embedding(dim, seed=0)
    assert e.shape == (dim, 2) and e.dtype == torch.float32
    assert torch.allclose(e.T @ e, torch.eye(2), atol=1e-6)
    q = orthogonal_matrix(dim, seed=0)
    assert q.dtype == torch.float64 and torch.allclose(q.T @ q, torch.eye(dim, dtype=torch.float64), atol=1e-12)
    assert torch.equal(q[:, :2].float(), e)
    assert torch.equal(orthogonal_embedding(dim, seed=0), e)
    assert not torch.allclose(orthogonal_embedding(dim, seed=1), e)
    # the QR is sign-fixed: Q equals the (unique) Q with a positive-diagonal R of the same Gaussian matrix
    a = torch.randn(dim, dim, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert bool((torch.diagonal(q.T @ a) > 0).all())
    q[0, 0] = 99.0  # the returned matrix is a copy: the cached one is untouched
    assert torch.equal(orthogonal_matrix(dim, seed=0)[:, :2].float(), e)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dim", [2, 4, 16])
def test_orthogonal_embedding_rotates_the_padded_points(name, dim):
    from dmdlib.data import orthogonal_embedding, orthogonal_matrix, unembed

    pad = sample_toy(name, 400, dim, generator=g(4))
    orth = sample_toy(name, 400, dim, generator=g(4), embedding="orthogonal")
    assert orth.shape == (400, dim) and orth.dtype == torch.float32
    q = orthogonal_matrix(dim, 0).float()
    assert torch.allclose(orth, pad @ q.T, atol=1e-5)
    if name != "gaussian_mixture":  # zero padding: only the 2-plane E = Q[:, :2] is used
        assert torch.allclose(orth, pad[:, :2] @ orthogonal_embedding(dim, 0).T, atol=1e-5)
    if dim > 2:  # no coordinate is special any more
        assert bool((orth[:, 2:] != 0).any())
    assert torch.allclose(torch.cdist(orth.double(), orth.double()), torch.cdist(pad.double(), pad.double()), atol=1e-5)
    assert torch.allclose(unembed(orth, "orthogonal").float(), pad, atol=1e-5)
    assert torch.equal(unembed(pad, "pad"), pad)
    other = sample_toy(name, 400, dim, generator=g(4), embedding="orthogonal", embedding_seed=1)
    assert not torch.allclose(other, orth)


def test_support_fraction_of_orthogonally_embedded_chessboard():
    from dmdlib.data import support_fraction

    for dim in (2, 4, 16):
        x = sample_toy("chessboard", 4000, dim, generator=g(5), embedding="orthogonal", embedding_seed=2)
        assert support_fraction("chessboard", x, embedding="orthogonal", embedding_seed=2) == 1.0
        if dim > 2:  # read in the wrong frame, the points are mostly off the board
            assert support_fraction("chessboard", x) < 0.9
    y = sample_toy("moons", 4000, 4, generator=g(5), embedding="orthogonal")
    assert support_fraction("moons", y, embedding="orthogonal") >= 0.99


def test_embedding_errors():
    from dmdlib.data import orthogonal_embedding, support_fraction, unembed

    for bad in ("rotate", None, "Pad"):
        with pytest.raises(ValueError, match="embedding must be one of .*pad.*orthogonal"):
            sample_toy("chessboard", 10, 4, embedding=bad)
    for fn in (lambda: sample_toy("moons", 10, 4, embedding="orthogonal", embedding_seed=-1),
               lambda: unembed(torch.zeros(3, 4), "orthogonal", embedding_seed=1.5)):
        with pytest.raises(ValueError, match="embedding_seed"):
            fn()
    with pytest.raises(ValueError, match="dim must be"):
        orthogonal_embedding(1)
    with pytest.raises(ValueError, match="shape"):
        unembed(torch.zeros(4), "orthogonal")
    with pytest.raises(ValueError, match="embedding must be"):
        support_fraction("chessboard", torch.zeros(3, 4), embedding="rot")
