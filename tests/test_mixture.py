"""The exact Gaussian-mixture teacher: closed forms, a Monte Carlo posterior mean, float32 at d = 256, Phi_K."""
import copy
import math

import pytest
import torch

import dmdlib
from dmdlib import GaussianMixture
from dmdlib.analytic import GaussianDenoiser, gaussian_flow_map
from dmdlib.dmd import OneStepGenerator, dm_gradient, run_config, state_fingerprint
from dmdlib.presets import DMDConfig


def small_mixture():
    """Three components in R^2 with unequal stds and weights (a case where every term of D matters)."""
    means = torch.tensor([[-1.0, 0.0], [1.5, 0.5], [0.0, 2.0]], dtype=torch.float64)
    return GaussianMixture(means, [0.3, 0.6, 0.2], [0.5, 0.3, 0.2])


def reference_denoiser(mix, x, sigma):
    """An independent float64 D(x; sigma): direct squared distances and torch.logsumexp, no expansion."""
    x = x.double().reshape(x.shape[0], -1)
    mu, s2, w = mix.means.double(), mix.std.double() ** 2, mix.weights.double()
    v = s2[None, :] + torch.as_tensor(sigma, dtype=torch.float64).reshape(-1, 1) ** 2
    d2 = ((x[:, None, :] - mu[None, :, :]) ** 2).sum(-1)
    logp = w.log() - 0.5 * x.shape[1] * torch.log(2 * math.pi * v) - 0.5 * d2 / v
    r = torch.exp(logp - torch.logsumexp(logp, 1, keepdim=True))
    post = mu[None] + (s2[None, :] / v)[..., None] * (x[:, None, :] - mu[None])
    return (r[..., None] * post).sum(1)


# ----------------------------------------------------------------------------- closed forms

def test_one_component_is_the_gaussian_denoiser():
    g = torch.Generator().manual_seed(0)
    mean = torch.randn(5, generator=g, dtype=torch.float64)
    mix = GaussianMixture(mean[None], 0.7)
    exact = GaussianDenoiser(mean, torch.full((5,), 0.7, dtype=torch.float64))
    x = 3 * torch.randn(64, 5, generator=g, dtype=torch.float64)
    sigma = torch.exp(torch.randn(64, generator=g, dtype=torch.float64))
    torch.testing.assert_close(mix(x, sigma), exact(x, sigma), rtol=1e-12, atol=1e-12)
    assert mix.sigma_data == pytest.approx(0.7)


def test_one_component_flow_is_the_exact_flow_map():
    """Phi_K of a single Gaussian: the closed-form denoiser's Phi_K, and the exact flow map up to Heun's error."""
    g = torch.Generator().manual_seed(1)
    mean = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)
    mix = GaussianMixture(mean[None], 0.4)
    z = torch.randn(200, 3, generator=g, dtype=torch.float64)
    exact = GaussianDenoiser(mean, torch.full((3,), 0.4, dtype=torch.float64))
    torch.testing.assert_close(dmdlib.phi_k(mix, z, 64), dmdlib.phi_k(exact, z, 64), rtol=1e-10, atol=1e-10)
    # Heun's error at K = 64 is ~1e-2 of the rho = 7 schedule's first steps; at K = 512 it is below 1e-3
    torch.testing.assert_close(dmdlib.phi_k(mix, z, 512), gaussian_flow_map(z, mean, 0.4), rtol=0, atol=1e-3)


def test_matches_independent_reference_and_limits():
    mix = small_mixture()
    g = torch.Generator().manual_seed(2)
    x = 2 * torch.randn(50, 2, generator=g, dtype=torch.float64)
    for sigma in (0.0, 0.01, 0.5, 3.0, 80.0):
        torch.testing.assert_close(mix.denoise(x, sigma), reference_denoiser(mix, x, torch.full((50,), sigma, dtype=torch.float64)),
                                   rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(mix.denoise(x, 0.0), x)                      # sigma = 0: D(x) = x
    mean = mix.weights @ mix.means
    torch.testing.assert_close(mix.denoise(x, 1e6), mean.expand(50, 2), rtol=0, atol=1e-5)   # sigma -> inf: the mean
    per_row = torch.linspace(0.01, 5, 50, dtype=torch.float64)             # one sigma per row
    torch.testing.assert_close(mix.denoise(x, per_row), reference_denoiser(mix, x, per_row), rtol=1e-10, atol=1e-12)
    img = x.reshape(50, 1, 2, 1)                                             # any sample shape with d entries
    assert mix.denoise(img, 0.5).shape == img.shape


def test_monte_carlo_posterior_mean():
    """E[x0 | x0 + sigma n = x] by self-normalised importance sampling from the prior.

    Weights w_i = exp(-||x - x0_i||^2 / (2 sigma^2)) on 400,000 prior draws; the estimate's standard error per
    coordinate is sqrt(sum_i w_i^2 (x0_i - est)^2) / sum_i w_i (the delta-method error of a ratio estimator),
    and the exact D must lie within 5 of them (a false failure has probability below 1e-5 per coordinate).
    """
    mix = small_mixture()
    g = torch.Generator().manual_seed(3)
    x0 = mix.sample(400_000, g, dtype=torch.float64)
    for x, sigma in (([0.2, 0.3], 0.3), ([-0.5, 1.0], 1.0), ([1.0, 1.0], 0.6), ([3.0, -2.0], 3.0)):
        x = torch.tensor(x, dtype=torch.float64)
        logw = -((x0 - x) ** 2).sum(1) / (2 * sigma ** 2)
        w = torch.exp(logw - logw.max())
        est = (w[:, None] * x0).sum(0) / w.sum()
        se = torch.sqrt((w[:, None] ** 2 * (x0 - est) ** 2).sum(0)) / w.sum()
        exact = mix.denoise(x[None], sigma)[0]
        assert ((exact - est).abs() <= 5 * se + 1e-9).all(), (x, sigma, exact, est, se)
        assert (se < 0.02).all()   # the check has teeth: the error bar is small against the scale of the data


def test_float32_at_d256_is_finite_and_accurate():
    """d = 256, sigma 0.002 ... 80: no NaN/inf in float32, and only the final rounding differs from float64."""
    mix = GaussianMixture.ring(256)
    g = torch.Generator().manual_seed(4)
    clean = mix.sample(200, g)
    far = 5 * torch.randn(20, 256, generator=g)     # points far from every component (densities underflow)
    for sigma in (0.002, 0.01, 0.1, 0.5, 1.0, 5.0, 20.0, 80.0):
        x = torch.cat([clean + sigma * torch.randn(clean.shape, generator=g), far])
        out = mix(x, torch.full((x.shape[0],), sigma))
        assert out.dtype == torch.float32 and torch.isfinite(out).all()
        ref = reference_denoiser(mix, x.double(), torch.full((x.shape[0],), sigma).double())   # the same sigma
        assert torch.isfinite(ref).all()
        err = (out.double() - ref).abs().max() / ref.abs().max()
        assert err < 2e-7, (sigma, float(err))


# ----------------------------------------------------------------------------- samples, components, blurring

def test_sample_is_deterministic_and_components_recovered():
    mix = GaussianMixture.sphere(8, 4, dim=12, radius=4.0, std=0.2, seed=1)
    a, ca = mix.sample(500, torch.Generator().manual_seed(5), return_components=True)
    b, cb = mix.sample(500, torch.Generator().manual_seed(5), return_components=True)
    assert torch.equal(a, b) and torch.equal(ca, cb) and a.dtype == torch.float32
    assert torch.equal(mix.component(a), ca)          # well separated: the most responsible component is exact
    offsets = (a.double() - mix.means[ca]) / mix.std[ca, None]
    assert abs(float(offsets.std()) - 1) < 0.05


def test_sample_frequencies_follow_weights():
    mix = small_mixture()
    n = 20_000
    _, c = mix.sample(n, torch.Generator().manual_seed(6), return_components=True)
    freq = torch.bincount(c, minlength=3).double() / n
    w = mix.weights
    assert ((freq - w).abs() <= 4 * torch.sqrt(w * (1 - w) / n)).all()


def test_component_uses_weights_and_stds():
    means = torch.tensor([[0.0], [1.0]], dtype=torch.float64)
    # with equal weights and stds the nearer mean wins; a wider component or a heavier weight moves the boundary
    assert GaussianMixture(means, [0.1, 1.0]).component(torch.tensor([[0.6]])).item() == 1
    assert GaussianMixture(means, [0.1, 0.1]).component(torch.tensor([[0.48]])).item() == 0
    assert GaussianMixture(means, [0.1, 0.1], [0.01, 0.99]).component(torch.tensor([[0.48]])).item() == 1


def test_blurred():
    mix = small_mixture()
    same = mix.blurred(0)
    assert state_fingerprint(same) == state_fingerprint(mix)
    x = torch.randn(30, 2, dtype=torch.float64)
    assert torch.equal(same(x, 0.3), mix(x, 0.3))
    b = mix.blurred(0.5)
    torch.testing.assert_close(b.std, torch.sqrt(mix.std ** 2 + 0.25))
    # blurring by tau and then denoising at sigma equals the original's noise level sqrt(sigma^2 + tau^2) in the
    # responsibilities (v = s^2 + tau^2 + sigma^2): check the posterior responsibilities
    torch.testing.assert_close(b.log_responsibilities(x, 0.4), mix.log_responsibilities(x, math.sqrt(0.16 + 0.25)))
    assert state_fingerprint(b) != state_fingerprint(mix)


def test_families():
    ring = GaussianMixture.ring(16)
    assert ring.means.shape == (32, 16) and torch.allclose(ring.std, torch.full((32,), 0.2, dtype=torch.float64))
    assert torch.allclose(ring.means.norm(dim=1), torch.full((32,), 2.0, dtype=torch.float64))
    assert (ring.means[:, 2:] == 0).all()
    x = torch.randn(10, 16, dtype=torch.float64)
    torch.testing.assert_close(ring.structured(x), x[:, :2])
    # the same distribution as the toy sampler
    toy = dmdlib.data.gaussian_mixture(20_000, 16, generator=torch.Generator().manual_seed(0)).double()
    assert abs(float(((toy - toy.mean(0)) ** 2).sum(1).mean() / 16) ** 0.5 - ring.sigma_data) < 0.01
    rot = GaussianMixture.ring(16, embedding="orthogonal", embedding_seed=3)
    q = dmdlib.data.orthogonal_matrix(16, 3)
    torch.testing.assert_close(rot.means, ring.means @ q.T)
    torch.testing.assert_close(rot.structured(x @ q.T), x[:, :2])
    sph = GaussianMixture.sphere(10, 5, dim=40, radius=3.0, seed=2)
    assert sph.means.shape == (10, 40) and sph.basis.shape == (40, 5)
    torch.testing.assert_close(sph.means.norm(dim=1), torch.full((10,), 3.0, dtype=torch.float64))
    torch.testing.assert_close(sph.structured(sph.means) @ sph.basis.T, sph.means)   # the means lie in the span
    assert torch.equal(GaussianMixture.sphere(10, 5, seed=2).means, GaussianMixture.sphere(10, 5, seed=2).means)
    assert not torch.equal(GaussianMixture.sphere(10, 5, seed=2).means, GaussianMixture.sphere(10, 5, seed=3).means)
    # the default basis of a general mixture spans its means
    gm = GaussianMixture(torch.tensor([[1.0, 0, 0], [0, 2.0, 0]]), 0.1)
    assert gm.basis.shape == (3, 2)


# ----------------------------------------------------------------------------- as a teacher

def test_phi_k_lands_on_the_mixture():
    """Phi_64 (Heun, the exact probability-flow ODE) of z ~ N(0, I) samples the mixture.

    Four well-separated, unequally weighted components in R^16 (means centred at 0 so that p_80 is the centred
    N(0, (80^2 + ...) I) the sampler starts from up to 1e-3 in variance). Every Phi_64(z) is assigned its
    component with posterior probability > 0.999 and lies at s sqrt(d) from its mean on average (at most 2 s sqrt(d));
    the component frequencies match the weights within 4 binomial standard deviations (n = 4000).
    """
    g = torch.Generator().manual_seed(7)
    u = torch.randn(4, 16, generator=g, dtype=torch.float64)
    w = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)
    means = 4 * u / u.norm(dim=1, keepdim=True)
    means = means - w @ means
    mix = GaussianMixture(means, 0.2, w)
    n = 4000
    z = torch.randn(n, 16, generator=g)
    x = dmdlib.phi_k(mix, z, 64)
    c = mix.component(x)
    post = mix.log_responsibilities(x, 0.0).exp().max(1).values
    assert (post > 0.999).all()
    dist = (x.double() - mix.means[c]).norm(dim=1) / (0.2 * 4)
    assert 0.9 < float(dist.mean()) < 1.05 and float(dist.max()) < 2
    freq = torch.bincount(c, minlength=4).double() / n
    assert ((freq - w).abs() <= 4 * torch.sqrt(w * (1 - w) / n)).all(), freq


def test_phi_k_on_the_ring_recipe():
    """The paper's ring in R^8: Phi_64 puts every seed near a component (within 2.5 s sqrt(d) of its mean) and
    the 32 components are hit uniformly (chi-square test at the 0.1% level)."""
    from scipy import stats

    mix = GaussianMixture.ring(8)
    z = torch.randn(3200, 8, generator=torch.Generator().manual_seed(8))
    x = dmdlib.phi_k(mix, z, 64)
    c = mix.component(x)
    dist = (x.double() - mix.means[c]).norm(dim=1) / (0.2 * math.sqrt(8))
    assert float(dist.max()) < 2.5
    counts = torch.bincount(c, minlength=32).double()
    assert stats.chisquare(counts.numpy()).pvalue > 1e-3


def test_usable_as_a_dmd_teacher():
    mix = GaussianMixture.ring(4)
    z = torch.randn(16, 4, generator=torch.Generator().manual_seed(9))
    assert torch.equal(OneStepGenerator(mix)(z), dmdlib.phi_k(mix, z, 1))      # G = Phi_1 = D(80 z, 80)
    sigma = torch.full((16,), 0.5)
    eps = torch.randn(16, 4, generator=torch.Generator().manual_seed(10))
    assert torch.equal(dm_gradient(z, mix, mix, sigma, eps), torch.zeros(16, 4))   # fake = real: no gradient
    cfg = run_config(mix, (4,), DMDConfig(), seed=0)
    assert cfg["teacher_sigma_data"] == pytest.approx(mix.sigma_data)
    assert cfg["teacher"] == state_fingerprint(copy.deepcopy(mix))
    assert state_fingerprint(GaussianMixture.ring(4, std=0.3)) != cfg["teacher"]
    assert list(mix.parameters()) == []
    with pytest.raises(ValueError, match="labels"):
        mix(z, sigma, torch.zeros(16, 3))


# ----------------------------------------------------------------------------- bad inputs

@pytest.mark.parametrize("kwargs, match", [
    ({"means": torch.zeros(3), "std": 0.1}, "means"),
    ({"means": torch.zeros(0, 2), "std": 0.1}, "means"),
    ({"means": [[0.0, float("nan")]], "std": 0.1}, "means"),
    ({"means": torch.zeros(3, 2), "std": 0.0}, "std"),
    ({"means": torch.zeros(3, 2), "std": [0.1, 0.2]}, "std"),
    ({"means": torch.zeros(3, 2), "std": "a"}, "std"),
    ({"means": torch.zeros(3, 2), "std": 0.1, "weights": [0.5, 0.5]}, "weights"),
    ({"means": torch.zeros(3, 2), "std": 0.1, "weights": [0.5, 0.6, -0.1]}, "weights"),
    ({"means": torch.zeros(3, 2), "std": 0.1, "weights": [0.2, 0.2, 0.2]}, "weights"),
    ({"means": torch.zeros(3, 2), "std": 0.1, "basis": torch.ones(2, 1)}, "basis"),
])
def test_bad_construction(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GaussianMixture(**kwargs)


def test_bad_calls():
    mix = GaussianMixture.ring(4)
    x = torch.randn(5, 4)
    with pytest.raises(ValueError, match="x must have 4 entries"):
        mix(torch.randn(5, 3), 1.0)
    with pytest.raises(ValueError, match="sigma"):
        mix(x, torch.ones(3))
    with pytest.raises(ValueError, match="sigma"):
        mix(x, -1.0)
    with pytest.raises(ValueError, match="x must be a floating"):
        mix(torch.ones(5, 4, dtype=torch.long), 1.0)
    with pytest.raises(ValueError, match="tau"):
        mix.blurred(-0.1)
    with pytest.raises(ValueError, match="n must"):
        mix.sample(0)
    with pytest.raises(ValueError, match="dim"):
        GaussianMixture.ring(1)
    with pytest.raises(ValueError, match="embedding"):
        GaussianMixture.ring(4, embedding="twisted")
    with pytest.raises(ValueError, match="dim"):
        GaussianMixture.sphere(4, 5, dim=3)
