"""The Lemma C.1 construction (paper appendix C): equal distributions, opposite pairings.

Teacher: T(x, y) = (x, y) / sqrt((1 + delta) x^2 + y^2), pushing N(0, I) onto the
slightly deformed circle (1 + delta) x^2 + y^2 = 1.
Students: G_theta(x, y) = R_theta (x, y) / ||(x, y)||, the noise rotated by theta
and projected on the unit circle. Every G_theta has the same output law (the
Gaussian is rotation invariant), so the DM loss cannot tell them apart, yet
Delta_E is ~0 at theta = 0 (copying) and large at theta = pi (remapping).
"""
from __future__ import annotations

import math

import torch


def deformed_circle_teacher(z: torch.Tensor, delta: float = 0.05) -> torch.Tensor:
    """T(z) for z of shape [N, 2]."""
    if z.ndim != 2 or z.shape[1] != 2:
        raise ValueError(f"z must have shape [N, 2], got {tuple(z.shape)}")
    if not delta > -1:
        raise ValueError(f"delta must be > -1, got {delta}")
    x, y = z[:, 0], z[:, 1]
    return z / torch.sqrt((1 + delta) * x ** 2 + y ** 2)[:, None]


def rotation_student(z: torch.Tensor, theta: float) -> torch.Tensor:
    """G_theta(z) = R_theta z / ||z|| for z of shape [N, 2]."""
    if z.ndim != 2 or z.shape[1] != 2:
        raise ValueError(f"z must have shape [N, 2], got {tuple(z.shape)}")
    c, s = math.cos(theta), math.sin(theta)
    rot = torch.tensor([[c, -s], [s, c]], dtype=z.dtype, device=z.device)
    return (z @ rot.T) / z.norm(dim=1, keepdim=True)
