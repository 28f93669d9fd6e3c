"""Closed forms for Gaussian data, used as ground truth in the tests and the book.

For p_data = N(mu, diag(s^2)) the noised marginal is N(mu, diag(s^2 + sigma^2)), so

* the exact denoiser is D(x, sigma) = mu + s^2 / (s^2 + sigma^2) (x - mu);
* the probability-flow ODE dx/dsigma = (x - D)/sigma = sigma (x - mu)/(s^2 + sigma^2)
  has the solution (x(sigma) - mu) / sqrt(s^2 + sigma^2) = const, so the exact
  teacher map from x(sigma_max) = sigma_max z is
  Phi_inf(z) = mu + s (sigma_max z - mu) / sqrt(s^2 + sigma_max^2).
"""
from __future__ import annotations

import torch

from .schedule import SIGMA_MAX


class GaussianDenoiser(torch.nn.Module):
    """Exact D(x, sigma) for N(mean, diag(std^2)); mean/std broadcast against one sample."""

    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float64))
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float64))

    def forward(self, x, sigma, labels=None):
        sigma = torch.as_tensor(sigma, dtype=torch.float64, device=x.device)
        sigma = sigma.reshape(-1, *([1] * (x.ndim - 1))) if sigma.ndim else sigma
        s2 = self.std ** 2
        out = self.mean + s2 / (s2 + sigma ** 2) * (x.to(torch.float64) - self.mean)
        return out.to(x.dtype)


def gaussian_flow_map(z, mean, std, sigma_max: float = SIGMA_MAX):
    """Exact Phi_inf(z) for N(mean, diag(std^2)), in float64."""
    mean = torch.as_tensor(mean, dtype=torch.float64)
    std = torch.as_tensor(std, dtype=torch.float64)
    return mean + std * (sigma_max * z.to(torch.float64) - mean) / torch.sqrt(std ** 2 + sigma_max ** 2)
