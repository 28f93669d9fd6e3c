"""EDM preconditioning (Karras et al. 2022, Table 1), the EDM loss and the MLP."""
import math

import pytest
import torch
from torch import nn

import dmdlib
from dmdlib import EDMPrecond, GaussianDenoiser, MLPNet, edm_coefficients, edm_loss

SD = 0.5
SIGMAS = [0.002, 0.1, 0.5, 1.0, 3.7, 80.0]


@pytest.mark.parametrize("s", SIGMAS)
def test_edm_coefficients_hand_formulas(s):
    c_skip, c_out, c_in, c_noise = edm_coefficients(torch.tensor(s, dtype=torch.float64), SD)
    assert c_skip.item() == pytest.approx(SD ** 2 / (s ** 2 + SD ** 2), rel=1e-14)
    assert c_out.item() == pytest.approx(s * SD / math.sqrt(s ** 2 + SD ** 2), rel=1e-14)
    assert c_in.item() == pytest.approx(1 / math.sqrt(s ** 2 + SD ** 2), rel=1e-14)
    assert c_noise.item() == pytest.approx(math.log(s) / 4, rel=1e-14)
    # EDM identities: c_skip + c_out^2 / sd^2 = 1 and c_in^2 (sigma^2 + sd^2) = 1
    assert (c_skip + c_out ** 2 / SD ** 2).item() == pytest.approx(1.0, rel=1e-14)
    assert (c_in ** 2 * (s ** 2 + SD ** 2)).item() == pytest.approx(1.0, rel=1e-14)


def test_edm_coefficients_limits_and_midpoint():
    c_skip, c_out, _, _ = edm_coefficients(torch.tensor([1e-8, 1e-5, SD, 1e5], dtype=torch.float64), SD)
    assert c_skip[0].item() == pytest.approx(1.0, abs=1e-12)
    assert c_out[0].item() == pytest.approx(0.0, abs=1e-7)
    assert c_skip[2].item() == 0.5
    assert c_skip[3].item() == pytest.approx(0.0, abs=1e-10)
    assert c_out[3].item() == pytest.approx(SD, rel=1e-9)
    # vectorised over a batch of sigmas
    assert c_skip.shape == (4,)
    assert bool((c_skip[1:] < c_skip[:-1]).all()) and bool((c_out[1:] > c_out[:-1]).all())


class ZeroNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(()))  # EDMPrecond reads the parameter dtype
        self.noise_labels = None

    def forward(self, x, noise_labels, class_labels=None):
        self.noise_labels = noise_labels.clone()
        self.class_labels = class_labels
        return torch.zeros_like(x)


class IdentityNet(ZeroNet):
    def forward(self, x, noise_labels, class_labels=None):
        super().forward(x, noise_labels, class_labels)
        return x.clone()


@pytest.fixture
def x_sigma():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 3, generator=g)
    sigma = torch.tensor([0.002, 0.05, 0.5, 1.0, 10.0, 80.0])
    return x, sigma


def test_precond_zero_net_is_c_skip(x_sigma):
    x, sigma = x_sigma
    net = ZeroNet()
    d = EDMPrecond(net)(x, sigma)
    c_skip, _, _, _ = edm_coefficients(sigma[:, None], SD)
    assert d.dtype == torch.float32
    assert torch.equal(d, c_skip * x)
    torch.testing.assert_close(net.noise_labels.double(), sigma.double().log() / 4, rtol=1e-6, atol=1e-7)
    assert net.noise_labels.shape == (6,)


def test_precond_identity_net(x_sigma):
    x, sigma = x_sigma
    d = EDMPrecond(IdentityNet())(x, sigma)
    c_skip, c_out, c_in, _ = edm_coefficients(sigma[:, None], SD)
    assert torch.equal(d, c_skip * x + c_out * (c_in * x))
    # hand formula in float64: (c_skip + c_out c_in) x = (sd^2 + sigma sd) / (sigma^2 + sd^2) x
    s = sigma.double()[:, None]
    ref = (SD ** 2 + s * SD) / (s ** 2 + SD ** 2) * x.double()
    torch.testing.assert_close(d.double(), ref, rtol=1e-6, atol=1e-7)


def test_precond_scalar_sigma_and_labels_forwarded(x_sigma):
    x, _ = x_sigma
    net = IdentityNet()
    pre = EDMPrecond(net)
    a = pre(x, 2.5)
    b = pre(x, torch.full((6,), 2.5))
    c = pre(x, torch.tensor(2.5))
    assert torch.equal(a, b) and torch.equal(a, c)
    assert net.noise_labels.shape == (6,)
    labels = torch.arange(6)
    pre(x, 1.0, labels)
    assert net.class_labels is labels


def test_precond_float64_input_gives_float32(x_sigma):
    x, sigma = x_sigma
    d = EDMPrecond(ZeroNet())(x.double(), sigma.double())
    assert d.dtype == torch.float32


def test_precond_multidim_input():
    x = torch.randn(4, 1, 2, 2, generator=torch.Generator().manual_seed(0))
    sigma = torch.tensor([0.1, 1.0, 2.0, 5.0])
    d = EDMPrecond(ZeroNet())(x, sigma)
    c_skip = SD ** 2 / (sigma ** 2 + SD ** 2)
    torch.testing.assert_close(d, c_skip[:, None, None, None] * x)


def test_precond_sigma_data_validation_and_custom_value(x_sigma):
    with pytest.raises(ValueError, match="sigma_data"):
        EDMPrecond(ZeroNet(), sigma_data=0.0)
    x, sigma = x_sigma
    d = EDMPrecond(ZeroNet(), sigma_data=1.0)(x, sigma)
    torch.testing.assert_close(d, (1.0 / (sigma ** 2 + 1.0))[:, None] * x)


# ----------------------------------------------------------------------------- EDM loss

def test_edm_loss_shape_sign_determinism():
    torch.manual_seed(0)
    den = EDMPrecond(MLPNet(4, 32, 2))
    y = torch.randn(64, 4, generator=torch.Generator().manual_seed(0)) * 0.5
    l1 = edm_loss(den, y, torch.Generator().manual_seed(7))
    l2 = edm_loss(den, y, torch.Generator().manual_seed(7))
    l3 = edm_loss(den, y, torch.Generator().manual_seed(8))
    assert l1.shape == y.shape
    assert bool((l1 >= 0).all())
    assert torch.equal(l1, l2)
    assert not torch.equal(l1, l3)


def test_edm_loss_exact_gaussian_denoiser():
    """For y ~ N(0, sd^2 I) the exact denoiser's EDM-weighted loss has expectation exactly 1
    per element (lambda(sigma) times the posterior variance sd^2 sigma^2/(sd^2+sigma^2) = 1);
    the zero denoiser's is 1 + sd^2/sigma^2 > 1."""
    g = torch.Generator().manual_seed(0)
    y = SD * torch.randn(50_000, 4, generator=g, dtype=torch.float64)
    exact = GaussianDenoiser(torch.zeros(4, dtype=torch.float64), torch.full((4,), SD, dtype=torch.float64))
    zero = lambda x, sigma, labels=None: torch.zeros_like(x)  # noqa: E731
    l_exact = edm_loss(exact, y, torch.Generator().manual_seed(1)).mean().item()
    l_zero = edm_loss(zero, y, torch.Generator().manual_seed(1)).mean().item()
    assert l_exact == pytest.approx(1.0, abs=0.03)
    assert l_zero > 2 * l_exact


def test_edm_loss_sigma_distribution():
    """ln(sigma) ~ N(p_mean, p_std^2): recover it from the zero denoiser's loss, lambda y^2 with y = 1."""
    y = torch.ones(20_000, 1, dtype=torch.float64)
    zero = lambda x, sigma, labels=None: torch.zeros_like(x)  # noqa: E731
    w = edm_loss(zero, y, torch.Generator().manual_seed(0), p_mean=-1.2, p_std=1.2).flatten()
    # w = (sigma^2 + sd^2) / (sigma sd)^2  =>  sigma^2 = sd^2 / (w sd^2 - 1)
    log_sigma = 0.5 * torch.log(SD ** 2 / (w * SD ** 2 - 1))
    assert log_sigma.mean().item() == pytest.approx(-1.2, abs=0.05)
    assert log_sigma.std().item() == pytest.approx(1.2, abs=0.05)


def test_denoising_weight_equals_edm_lambda():
    from dmdlib.precond import denoising_weight
    s = torch.tensor([0.01, 0.5, 3.0, 80.0], dtype=torch.float64)
    torch.testing.assert_close(denoising_weight(s), (s ** 2 + SD ** 2) / (s * SD) ** 2, rtol=1e-14, atol=0)


# ----------------------------------------------------------------------------- MLP

def test_mlp_shapes_and_class_labels():
    net = MLPNet(4, 16, 2, 8)
    out = net(torch.randn(5, 4), torch.randn(5))
    assert out.shape == (5, 4)
    with pytest.raises(ValueError, match="class_labels"):
        net(torch.randn(5, 4), torch.randn(5), torch.zeros(5, dtype=torch.long))
    d = EDMPrecond(net)(torch.randn(5, 4), torch.rand(5) + 0.1)
    assert d.shape == (5, 4) and d.dtype == torch.float32


def test_mlp_parameter_count_paper_architecture():
    net = MLPNet(4, 384, 5, 32)
    n = sum(p.numel() for p in net.parameters())
    assert n == ((4 + 32) * 384 + 384) + 4 * (384 * 384 + 384) + (384 * 4 + 4)
    linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
    assert len(linears) == 6
    assert sum(isinstance(m, nn.SiLU) for m in net.modules()) == 5
    # the Fourier frequencies are a buffer, not trained
    assert net.embed.freqs.shape == (16,) and not net.embed.freqs.requires_grad


def test_fourier_features():
    ff = dmdlib.nets.FourierFeatures(8, 0.25, 32.0)
    t = torch.tensor([0.0, 0.3])
    out = ff(t)
    assert out.shape == (2, 8)
    torch.testing.assert_close(out[0], torch.tensor([1.0] * 4 + [0.0] * 4))
    torch.testing.assert_close(out[:, :4] ** 2 + out[:, 4:] ** 2, torch.ones(2, 4))
    torch.testing.assert_close(ff.freqs[[0, -1]], torch.tensor([0.25, 32.0]))
    with pytest.raises(ValueError):
        dmdlib.nets.FourierFeatures(7)


def test_mlp_validation():
    with pytest.raises(ValueError):
        MLPNet(0)
    with pytest.raises(ValueError):
        MLPNet(4, depth=0)
