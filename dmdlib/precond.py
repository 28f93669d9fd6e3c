"""EDM preconditioning and the EDM training loss (Karras et al. 2022, Table 1 and Eq. 2, 7, 8).

D(x; sigma) = c_skip(sigma) x + c_out(sigma) F(c_in(sigma) x; c_noise(sigma))

with c_skip = sigma_data^2 / (sigma^2 + sigma_data^2),
     c_out  = sigma sigma_data / sqrt(sigma^2 + sigma_data^2),
     c_in   = 1 / sqrt(sigma^2 + sigma_data^2),
     c_noise = ln(sigma) / 4.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import nn

from .schedule import SIGMA_DATA


def edm_coefficients(sigma: torch.Tensor, sigma_data: float = SIGMA_DATA):
    """(c_skip, c_out, c_in, c_noise) of EDM Table 1 for a tensor of noise levels."""
    s2, d2 = sigma ** 2, sigma_data ** 2
    c_skip = d2 / (s2 + d2)
    c_out = sigma * sigma_data / (s2 + d2).sqrt()
    c_in = 1 / (s2 + d2).sqrt()
    c_noise = sigma.log() / 4
    return c_skip, c_out, c_in, c_noise


class EDMPrecond(nn.Module):
    """Wraps a raw network ``model(x, noise_labels, class_labels)`` into the denoiser D(x, sigma).

    ``forward(x, sigma, labels=None)`` takes ``sigma`` as a scalar or a tensor
    of shape [batch]; coefficients are computed in float32 (as EDM does), the
    raw network runs in its own dtype, and the output is float32.
    """

    def __init__(self, model: nn.Module, sigma_data: float = SIGMA_DATA):
        super().__init__()
        if not sigma_data > 0:
            raise ValueError(f"sigma_data must be > 0, got {sigma_data}")
        self.model = model
        self.sigma_data = float(sigma_data)

    def forward(self, x: torch.Tensor, sigma, labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        x = x.to(torch.float32)
        sigma = torch.as_tensor(sigma, dtype=torch.float32, device=x.device)
        if sigma.ndim == 0:
            sigma = sigma.expand(x.shape[0])
        sigma = sigma.reshape(-1, *([1] * (x.ndim - 1)))
        c_skip, c_out, c_in, c_noise = edm_coefficients(sigma, self.sigma_data)
        p = next(self.model.parameters(), None)
        dtype = p.dtype if p is not None else torch.float32
        f_x = self.model((c_in * x).to(dtype), c_noise.flatten(), labels)
        return c_skip * x + c_out * f_x.to(torch.float32)


def edm_noise(y: torch.Tensor, generator: Optional[torch.Generator] = None, p_mean: float = -1.2,
              p_std: float = 1.2) -> tuple:
    """The random draws of the EDM loss for a batch ``y``: ``(sigma, n)`` with ln(sigma) ~ N(p_mean, p_std^2)
    per sample (shape [batch, 1, ...]) and n ~ N(0, sigma^2 I) (the shape of ``y``), in this order."""
    shape = (y.shape[0],) + (1,) * (y.ndim - 1)
    rnd = torch.randn(shape, generator=generator, device=y.device, dtype=y.dtype)
    sigma = (rnd * p_std + p_mean).exp()
    n = torch.randn(y.shape, generator=generator, device=y.device, dtype=y.dtype) * sigma
    return sigma, n


def edm_loss(denoiser: nn.Module, y: torch.Tensor, generator: Optional[torch.Generator] = None,
             labels: Optional[torch.Tensor] = None, p_mean: float = -1.2, p_std: float = 1.2,
             sigma_data: float = SIGMA_DATA, noise: Optional[tuple] = None,
             target: Optional[nn.Module] = None) -> torch.Tensor:
    """EDM loss (Karras et al. 2022, Eq. 2 and 8), per element.

    ln(sigma) ~ N(p_mean, p_std^2), n ~ N(0, sigma^2 I),
    loss = lambda(sigma) ||D(y + n, sigma) - y||^2 with
    lambda(sigma) = (sigma^2 + sigma_data^2) / (sigma sigma_data)^2.
    ``noise=(sigma, n)`` gives the draws (from :func:`edm_noise`, e.g. one
    process's rows of a global batch's draws); otherwise they are drawn from
    ``generator``. With a ``target`` denoiser (e.g. an exact one,
    :class:`dmdlib.data.mixture.GaussianMixture`) the network regresses onto
    it instead of onto y: lambda(sigma) ||D(y + n, sigma) - D_target(y + n, sigma)||^2,
    whose minimiser is the same posterior mean E[y | y + n] (EDM's loss reaches it
    through the noisy target y), reached with far less variance.
    Returns the unreduced tensor (the caller averages it).
    """
    sigma, n = edm_noise(y, generator, p_mean, p_std) if noise is None else noise
    weight = (sigma ** 2 + sigma_data ** 2) / (sigma * sigma_data) ** 2
    d = denoiser(y + n, sigma.flatten(), labels)
    if target is not None:
        with torch.no_grad():
            y = target(y + n, sigma.flatten(), labels).to(d.dtype)
    return weight * (d - y) ** 2


def denoising_weight(sigma: torch.Tensor, sigma_data: float = SIGMA_DATA) -> torch.Tensor:
    """The fake-score loss weight of DMD2: 1/sigma^2 + 1/sigma_data^2 (equal to EDM's lambda)."""
    return 1 / sigma ** 2 + 1 / sigma_data ** 2


def c_noise(sigma: float) -> float:
    """ln(sigma)/4 for a Python float (EDM's noise conditioning)."""
    return math.log(sigma) / 4
