"""Noise schedules (Karras et al. 2022, "EDM", Eq. 5 and Table 1).

Two objects are used throughout the paper:

* the *sampling* schedule ``karras_sigmas(K)``: K noise levels from sigma_max
  down to sigma_min, then a final 0 (the time steps of the Heun sampler);
* the *training table* ``karras_table(1000)``: 1000 Karras levels in ascending
  order, from which DMD draws sigma (all entries for the fake score, the
  2%-98% index band for the distribution-matching gradient).
"""
from __future__ import annotations

import numbers

import torch

SIGMA_MIN = 0.002
SIGMA_MAX = 80.0
RHO = 7.0
SIGMA_DATA = 0.5


def _check_schedule_args(num_steps, sigma_min, sigma_max, rho, name="num_steps"):
    if isinstance(num_steps, bool) or not isinstance(num_steps, numbers.Integral) or num_steps < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {num_steps!r}")
    if not (0 < sigma_min < sigma_max):
        raise ValueError(f"need 0 < sigma_min < sigma_max, got sigma_min={sigma_min}, sigma_max={sigma_max}")
    if not rho > 0:
        raise ValueError(f"rho must be > 0, got {rho}")


def karras_sigmas(num_steps: int, sigma_min: float = SIGMA_MIN, sigma_max: float = SIGMA_MAX,
                  rho: float = RHO) -> torch.Tensor:
    """EDM time steps, Eq. 5 of Karras et al. (2022), with sigma_K = 0 appended.

    sigma_i = (sigma_max^(1/rho) + i/(K-1) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho,
    i = 0..K-1. For K = 1 the single level is sigma_max. Returns a float64
    tensor of length ``num_steps + 1``, descending, ending in 0.
    """
    _check_schedule_args(num_steps, sigma_min, sigma_max, rho)
    num_steps = int(num_steps)
    i = torch.arange(num_steps, dtype=torch.float64)
    if num_steps == 1:
        sig = torch.tensor([float(sigma_max)], dtype=torch.float64)
    else:
        a, b = sigma_max ** (1 / rho), sigma_min ** (1 / rho)
        sig = (a + i / (num_steps - 1) * (b - a)) ** rho
        sig[0], sig[-1] = sigma_max, sigma_min  # exact end points
    return torch.cat([sig, torch.zeros(1, dtype=torch.float64)])


def karras_table(size: int = 1000, sigma_min: float = SIGMA_MIN, sigma_max: float = SIGMA_MAX,
                 rho: float = RHO) -> torch.Tensor:
    """The DMD training table: ``size`` Karras levels in *ascending* order (float64)."""
    _check_schedule_args(size, sigma_min, sigma_max, rho, name="size")
    if size < 2:
        raise ValueError(f"size must be >= 2, got {size}")
    return karras_sigmas(size, sigma_min, sigma_max, rho)[:-1].flip(0)


def band_indices(size: int, lo: float = 0.02, hi: float = 0.98) -> tuple[int, int]:
    """Inclusive index range [int(lo*size), int(hi*size)] of the table used for the DM gradient."""
    if not (0.0 <= lo < hi <= 1.0):
        raise ValueError(f"need 0 <= lo < hi <= 1 for the sigma band, got lo={lo}, hi={hi}")
    return int(lo * size), min(int(hi * size), size - 1)
