"""The MLP denoiser for low-dimensional data (paper appendix D).

5 hidden layers of width 384 with SiLU, the noise level entering as a
32-dimensional Fourier embedding of c_noise = ln(sigma)/4 concatenated to the
(preconditioned) input. The paper gives the widths but not the frequencies of
the time features: we use 16 fixed, geometrically spaced frequencies from
0.25 to 32 cycles per unit of c_noise (c_noise spans about [-1.55, 1.10] for
sigma in [0.002, 80]), each giving a cosine and a sine.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import nn


class FourierFeatures(nn.Module):
    """[cos(2 pi f_k t), sin(2 pi f_k t)] for fixed frequencies f_k (geometric from f_min to f_max)."""

    def __init__(self, num_features: int = 32, f_min: float = 0.25, f_max: float = 32.0):
        super().__init__()
        if num_features < 2 or num_features % 2:
            raise ValueError(f"num_features must be an even integer >= 2, got {num_features}")
        freqs = torch.logspace(math.log10(f_min), math.log10(f_max), num_features // 2)
        self.register_buffer("freqs", freqs)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        arg = 2 * math.pi * t.to(self.freqs.dtype)[:, None] * self.freqs[None, :]
        return torch.cat([arg.cos(), arg.sin()], dim=1)


class MLPNet(nn.Module):
    """Raw network F(x, c_noise) for vectors x in R^dim (no class labels)."""

    def __init__(self, dim: int,                # ambient dimension of the data
                 width: int = 384,               # hidden width
                 depth: int = 5,                 # number of hidden layers
                 fourier_dim: int = 32):         # size of the noise embedding
        super().__init__()
        if dim < 1 or width < 1 or depth < 1:
            raise ValueError(f"dim, width and depth must be >= 1, got {dim}, {width}, {depth}")
        self.dim = dim
        self.embed = FourierFeatures(fourier_dim)
        layers, fan_in = [], dim + fourier_dim
        for _ in range(depth):
            layers += [nn.Linear(fan_in, width), nn.SiLU()]
            fan_in = width
        layers.append(nn.Linear(fan_in, dim))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, noise_labels: torch.Tensor,
                class_labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        if class_labels is not None:
            raise ValueError("MLPNet is unconditional: class_labels must be None")
        return self.net(torch.cat([x, self.embed(noise_labels).to(x.dtype)], dim=1))
