"""Data sets: the low-dimensional toys of the paper (section 3.3, appendix A) and MNIST (32x32)."""
from .mnist import load_mnist, mnist_data_dir, mnist_tensor
from .toy import TOY_DATASETS, chessboard, gaussian_mixture, moons, sample_toy, support_fraction

__all__ = ["TOY_DATASETS", "chessboard", "gaussian_mixture", "load_mnist", "mnist_data_dir", "mnist_tensor", "moons",
           "sample_toy"]
