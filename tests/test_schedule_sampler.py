"""Karras schedule, training table and the Heun sampler Phi_K."""

import pytest
import torch
from torch import nn

import dmdlib
from dmdlib import GaussianDenoiser, gaussian_flow_map, heun_sample, karras_sigmas, phi_k

SMIN, SMAX, RHO = 0.002, 80.0, 7.0


def closed_form_sigmas(k, smin=SMIN, smax=SMAX, rho=RHO):
    a, b = smax ** (1 / rho), smin ** (1 / rho)
    return [(a + i / (k - 1) * (b - a)) ** rho for i in range(k)]


def exact_gaussian_flow(z, mean, std, smax=SMAX):
    """Exact Phi_inf for N(mean, diag std^2), started at x(sigma_max) = sigma_max z.

    The probability-flow ODE dx/dsigma = sigma (x - mean) / (std^2 + sigma^2) keeps
    (x - mean) / sqrt(std^2 + sigma^2) constant.
    """
    mean = torch.as_tensor(mean, dtype=torch.float64)
    std = torch.as_tensor(std, dtype=torch.float64)
    return mean + std * (smax * z.to(torch.float64) - mean) / torch.sqrt(std ** 2 + smax ** 2)


def rel_err(a, b):
    return ((a - b).norm() / b.norm()).item()


# Per-dimension stds spanning 0.3..2 and non-zero means, so that every coordinate's
# trajectory is curved differently and the mean term is visible.
MEAN = torch.tensor([0.5, -1.0, 2.0, 0.0], dtype=torch.float64)
STD = torch.tensor([0.3, 0.7, 1.3, 2.0], dtype=torch.float64)


@pytest.fixture
def z64():
    return torch.randn(64, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


# ----------------------------------------------------------------------------- karras_sigmas

@pytest.mark.parametrize("k", [2, 3, 8, 18, 40])
def test_karras_sigmas_structure(k):
    s = karras_sigmas(k)
    assert s.dtype == torch.float64
    assert s.shape == (k + 1,)
    assert s[0].item() == SMAX
    assert s[k - 1].item() == SMIN
    assert s[-1].item() == 0.0
    assert bool((s[1:] < s[:-1]).all()), "schedule must be strictly decreasing"


@pytest.mark.parametrize("k", [8, 18])
def test_karras_sigmas_closed_formula(k):
    s = karras_sigmas(k)
    ref = torch.tensor(closed_form_sigmas(k) + [0.0], dtype=torch.float64)
    torch.testing.assert_close(s, ref, rtol=1e-12, atol=0.0)


def test_karras_sigmas_custom_range():
    s = karras_sigmas(5, sigma_min=0.01, sigma_max=10.0, rho=3.0)
    ref = torch.tensor(closed_form_sigmas(5, 0.01, 10.0, 3.0) + [0.0], dtype=torch.float64)
    torch.testing.assert_close(s, ref, rtol=1e-12, atol=0.0)


def test_karras_sigmas_single_step():
    assert karras_sigmas(1).tolist() == [80.0, 0.0]


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "8", None])
def test_karras_sigmas_bad_num_steps(bad):
    with pytest.raises(ValueError, match="num_steps"):
        karras_sigmas(bad)


@pytest.mark.parametrize("smin,smax", [(80.0, 80.0), (90.0, 80.0), (0.0, 80.0), (-1.0, 80.0)])
def test_karras_sigmas_bad_range(smin, smax):
    with pytest.raises(ValueError, match="sigma_min"):
        karras_sigmas(8, sigma_min=smin, sigma_max=smax)


def test_karras_sigmas_bad_rho():
    with pytest.raises(ValueError, match="rho"):
        karras_sigmas(8, rho=0.0)


# ----------------------------------------------------------------------------- training table

def test_karras_table_and_band():
    t = dmdlib.karras_table(1000)
    assert t.shape == (1000,)
    assert bool((t[1:] > t[:-1]).all()), "table must be ascending"
    assert t[0].item() == SMIN and t[-1].item() == SMAX
    lo, hi = dmdlib.band_indices(1000)
    assert (lo, hi) == (20, 980)
    assert t[lo].item() == pytest.approx(0.0032, rel=0.02)
    assert t[hi].item() == pytest.approx(72.0, rel=0.02)
    # the table is the reversed sampling schedule without the final 0
    torch.testing.assert_close(t, karras_sigmas(1000)[:-1].flip(0), rtol=0, atol=0)


def test_karras_table_and_band_errors():
    with pytest.raises(ValueError, match="size"):
        dmdlib.karras_table(1)
    with pytest.raises(ValueError):
        dmdlib.band_indices(1000, 0.5, 0.5)
    assert dmdlib.band_indices(10, 0.0, 1.0) == (0, 9)


# ----------------------------------------------------------------------------- Heun sampler

class CountingDenoiser(nn.Module):
    """Wraps a denoiser; records every call's sigma and labels."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner
        self.calls = []

    def forward(self, x, sigma, *rest):
        self.calls.append({"sigma": sigma.clone(), "nargs": 2 + len(rest),
                           "labels": rest[0] if rest else None, "x_dtype": x.dtype})
        return self.inner(x, sigma)


@pytest.mark.parametrize("k,expected", [(1, 1), (2, 3), (8, 15), (18, 35)])
def test_heun_call_count(k, expected):
    den = CountingDenoiser(GaussianDenoiser(0.0, 0.5))
    z = torch.randn(5, 4, generator=torch.Generator().manual_seed(0))
    heun_sample(den, z, k)
    assert len(den.calls) == expected
    for c in den.calls:
        assert torch.is_tensor(c["sigma"]) and c["sigma"].shape == (5,)
        assert c["nargs"] == 2, "labels must not be passed when not given"
        assert c["x_dtype"] == z.dtype
    # the sigmas seen are exactly the schedule's levels (each interior one twice)
    # in order: t_0, then (t_i, t_i) for the Heun correction at t_i and the next Euler step
    sched = karras_sigmas(k).to(torch.float32).tolist()
    expected = [sched[0]] + [s for s in sched[1:k] for _ in range(2)]
    assert [c["sigma"][0].item() for c in den.calls] == expected
    assert all(bool((c["sigma"] == c["sigma"][0]).all()) for c in den.calls)


def test_heun_one_step_is_exact_denoiser_call():
    torch.manual_seed(0)
    den = dmdlib.EDMPrecond(dmdlib.MLPNet(4, 32, 2))
    z = torch.randn(16, 4, generator=torch.Generator().manual_seed(1))
    out = heun_sample(den, z, 1)
    with torch.no_grad():
        ref = den(80 * z, torch.full([16], 80.0))
    assert out.dtype == torch.float32
    assert torch.equal(out, ref)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_heun_output_dtype(dtype):
    den = GaussianDenoiser(MEAN, STD)
    z = torch.randn(3, 4, dtype=dtype, generator=torch.Generator().manual_seed(0))
    assert heun_sample(den, z, 4).dtype == dtype


def test_heun_rejects_non_float_input():
    with pytest.raises(ValueError, match="floating-point"):
        heun_sample(GaussianDenoiser(0.0, 1.0), torch.zeros(3, 4, dtype=torch.long), 2)


def test_heun_forwards_labels():
    den = CountingDenoiser(GaussianDenoiser(0.0, 0.5))
    z = torch.randn(6, 4, generator=torch.Generator().manual_seed(0))
    labels = torch.arange(6)
    heun_sample(den, z, 3, labels=labels)
    assert len(den.calls) == 5
    for c in den.calls:
        assert c["nargs"] == 3
        assert c["labels"] is labels


def test_heun_converges_to_exact_flow(z64):
    den = GaussianDenoiser(MEAN, STD)
    exact = exact_gaussian_flow(z64, MEAN, STD)
    errs = {k: rel_err(heun_sample(den, z64, k), exact) for k in (8, 16, 32, 64, 512)}
    # monotone decrease, and roughly second-order convergence (ratio 4 for exact 2nd order)
    ks = sorted(errs)
    assert all(errs[a] > errs[b] for a, b in zip(ks, ks[1:])), errs
    assert errs[16] / errs[32] > 2.5, errs
    assert errs[32] / errs[64] > 2.5, errs
    # measured ~2.9e-5 at K=512 (the rho=7 schedule is coarse at large sigma)
    assert errs[512] < 1e-4, errs


def test_heun_matches_gaussian_flow_map_zero_mean(z64):
    den = GaussianDenoiser(torch.zeros(4, dtype=torch.float64), STD)
    ref = gaussian_flow_map(z64, 0.0, STD)
    assert rel_err(heun_sample(den, z64, 512), ref) < 1e-4
    assert rel_err(heun_sample(den, z64, 16), ref) > 1e-3  # and the test can tell


def test_gaussian_flow_map_nonzero_mean(z64):
    den = GaussianDenoiser(MEAN, STD)
    ref = gaussian_flow_map(z64, MEAN, STD)
    assert rel_err(heun_sample(den, z64, 512), ref) < 1e-3


def test_gaussian_denoiser_closed_form():
    den = GaussianDenoiser(MEAN, STD)
    x = torch.randn(7, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    sigma = torch.linspace(0.1, 5.0, 7, dtype=torch.float64)
    ref = MEAN + STD ** 2 / (STD ** 2 + sigma[:, None] ** 2) * (x - MEAN)
    torch.testing.assert_close(den(x, sigma), ref, rtol=1e-14, atol=0)
    # scalar sigma broadcasts
    torch.testing.assert_close(den(x, 2.0), MEAN + STD ** 2 / (STD ** 2 + 4.0) * (x - MEAN), rtol=1e-14, atol=0)


# ----------------------------------------------------------------------------- phi_k

@pytest.mark.parametrize("b", [1, 7, 16, 64, 1000])
def test_phi_k_chunked_equals_heun_exactly(b, z64):
    den = GaussianDenoiser(MEAN, STD)  # row-wise exact arithmetic: chunking changes nothing
    assert torch.equal(phi_k(den, z64, 5, batch_size=b), heun_sample(den, z64, 5))


def test_phi_k_chunked_mlp_close_and_labels():
    torch.manual_seed(0)
    net = dmdlib.EDMPrecond(dmdlib.MLPNet(4, 32, 2))
    z = torch.randn(50, 4, generator=torch.Generator().manual_seed(2))
    # BLAS blocking may differ with batch size: equal up to float32 rounding
    torch.testing.assert_close(phi_k(net, z, 4, batch_size=7), heun_sample(net, z, 4), rtol=1e-5, atol=1e-5)
    den = CountingDenoiser(GaussianDenoiser(0.0, 0.5))
    labels = torch.arange(10)
    phi_k(den, z[:10], 2, labels=labels, batch_size=4)
    got = torch.cat([c["labels"] for c in den.calls if c["sigma"][0].item() == 80.0])
    assert torch.equal(got, labels), "labels must be chunked with z"


def test_phi_k_bad_batch_size(z64):
    with pytest.raises(ValueError, match="batch_size"):
        phi_k(GaussianDenoiser(0.0, 1.0), z64, 2, batch_size=0)
