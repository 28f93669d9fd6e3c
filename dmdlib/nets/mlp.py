"""The MLP denoiser for low-dimensional data (paper appendix D).

5 hidden layers of width 384 with SiLU, the noise level entering as a
32-dimensional Fourier embedding of c_noise = ln(sigma)/4 concatenated to the
(preconditioned) input. The paper gives the widths but not the frequencies of
the time features: we use 16 fixed, geometrically spaced frequencies from
0.25 to 32 cycles per unit of c_noise (c_noise spans about [-1.55, 1.10] for
sigma in [0.002, 80]), each giving a cosine and a sine.

Class-conditional variant (``label_dim > 0``; conditional toy data of paper
Figs. 6-8): one-hot (or soft) labels [batch, label_dim] are mapped by a
bias-free linear layer to a ``fourier_dim``-sized class embedding that is
concatenated to the input next to the noise embedding (so the first hidden
layer reads [x, noise features, class embedding]). Its weights start
N(0, 1), so a one-hot label gives a unit-scale embedding (as ADM's class
embedding); ``None`` labels mean all-zero labels (the "null" label, as in
:class:`~dmdlib.nets.adm.ADMUNet`). With ``label_dim = 0`` (the default) the
network, its parameters, its initial draws and its outputs are those of the
unconditional MLP, and passing labels raises a ValueError.
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
    """Raw network F(x, c_noise, class_labels) for vectors x in R^dim (class labels only if ``label_dim > 0``)."""

    def __init__(self, dim: int,                # ambient dimension of the data
                 width: int = 384,               # hidden width
                 depth: int = 5,                 # number of hidden layers
                 fourier_dim: int = 32,          # size of the noise embedding (and of the class embedding)
                 label_dim: int = 0):            # number of classes, 0 = unconditional
        super().__init__()
        if dim < 1 or width < 1 or depth < 1:
            raise ValueError(f"dim, width and depth must be >= 1, got {dim}, {width}, {depth}")
        if isinstance(label_dim, bool) or not isinstance(label_dim, int) or label_dim < 0:
            raise ValueError(f"label_dim must be an int >= 0 (0 = unconditional), got {label_dim!r}")
        self.dim, self.label_dim = dim, label_dim
        self.embed = FourierFeatures(fourier_dim)
        layers, fan_in = [], dim + fourier_dim + (fourier_dim if label_dim else 0)
        for _ in range(depth):
            layers += [nn.Linear(fan_in, width), nn.SiLU()]
            fan_in = width
        layers.append(nn.Linear(fan_in, dim))
        self.net = nn.Sequential(*layers)
        self.map_label = None
        if label_dim:   # drawn after the MLP, so the unconditional draws are unchanged
            self.map_label = nn.Linear(label_dim, fourier_dim, bias=False)
            nn.init.normal_(self.map_label.weight)

    def forward(self, x: torch.Tensor, noise_labels: torch.Tensor,
                class_labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        feats = [x, self.embed(noise_labels).to(x.dtype)]
        if self.map_label is None:
            if class_labels is not None:
                raise ValueError("MLPNet is unconditional (label_dim = 0): class_labels must be None")
        else:
            if class_labels is None:
                class_labels = x.new_zeros(x.shape[0], self.label_dim)
            elif class_labels.ndim != 2 or class_labels.shape != (x.shape[0], self.label_dim):
                raise ValueError(f"class_labels must have shape [{x.shape[0]}, {self.label_dim}] "
                                 f"(one-hot, label_dim = {self.label_dim}), got {tuple(class_labels.shape)}")
            w = self.map_label.weight
            feats.append((class_labels.to(w.dtype) @ w.t()).to(x.dtype))
        return self.net(torch.cat(feats, dim=1))
