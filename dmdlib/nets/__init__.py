"""Raw networks F(x, noise_labels, class_labels); wrap them in :class:`dmdlib.EDMPrecond`."""
from .mlp import FourierFeatures, MLPNet

__all__ = ["FourierFeatures", "MLPNet"]
