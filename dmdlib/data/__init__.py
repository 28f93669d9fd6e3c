"""Data sets: the low-dimensional toys of the paper (section 3.3, appendix A), MNIST (32x32) and the
synthetic MLP manifold (appendix A)."""
from .manifold import MLPManifold
from .mixture import GaussianMixture
from .mnist import load_mnist, mnist_data_dir, mnist_tensor
from .toy import (EMBEDDINGS, TOY_DATASETS, TOY_MODES, chessboard, chessboard_cell, gaussian_mixture, mixture_component,
                  moon, moons, orthogonal_embedding, orthogonal_matrix, sample_toy, support_fraction, toy_modes,
                  toy_plane, unembed)

__all__ = ["EMBEDDINGS", "GaussianMixture", "MLPManifold", "TOY_DATASETS", "TOY_MODES", "chessboard", "chessboard_cell",
           "gaussian_mixture", "load_mnist", "mixture_component", "mnist_data_dir", "mnist_tensor", "moon", "moons",
           "orthogonal_embedding", "orthogonal_matrix", "sample_toy", "support_fraction", "toy_modes", "toy_plane",
           "unembed"]
