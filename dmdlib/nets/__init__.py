"""Raw networks F(x, noise_labels, class_labels); wrap them in :class:`dmdlib.EDMPrecond`."""
from .adm import ADMUNet, load_edm_state_dict, load_imagenet64
from .flat import FlatNet
from .mlp import FourierFeatures, MLPNet

__all__ = ["ADMUNet", "FlatNet", "FourierFeatures", "MLPNet", "load_edm_state_dict", "load_imagenet64"]
