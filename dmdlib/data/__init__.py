"""Data sets: the low-dimensional toys of the paper (section 3.3, appendix A)."""
from .toy import TOY_DATASETS, chessboard, gaussian_mixture, moons, sample_toy

__all__ = ["TOY_DATASETS", "chessboard", "gaussian_mixture", "moons", "sample_toy"]
