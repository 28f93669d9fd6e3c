"""A vector network applied to samples of any shape (an MLP denoiser on small images)."""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn


class FlatNet(nn.Module):
    """F(x, noise_labels, class_labels) = net(x flattened, ...) reshaped back to ``x``'s shape.

    Lets :class:`~dmdlib.nets.mlp.MLPNet` (vectors in R^dim) serve as the raw
    network of images [B, C, H, W] with C*H*W = dim, so that image data sets
    (the MLP manifold) run through the same EDM preconditioning, sampler and
    DMD loop as the UNet.
    """

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor, noise_labels: torch.Tensor,
                class_labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        return self.net(x.flatten(1), noise_labels, class_labels).reshape(x.shape)
