"""The data specs: every training distribution as the one pairing path (:mod:`dmdlib.pairing`) sees it.

A :class:`DataSpec` says how to sample the data (with its labels for
conditional data), the teacher's ``sigma_data``, how the data is named in run
folders, which distance the fit gate uses, and what is known of the data's
structure (the fraction of samples on its support, for the toys). One
constructor per family:

* :func:`toy_spec`: the 2-D toys of notebook 01 in R^dim (chessboard, moons,
  Gaussian mixture), and :func:`embedded_chessboard_spec`, the chessboard
  under a random orthogonal embedding in R^dim (notebook 06);
* :func:`manifold_spec`: MLP-manifold images (notebooks 06, 07);
* :func:`mnist_spec`: MNIST at a preset's resolution (notebooks 02-05, 07);
* :func:`mixture_spec`: an isotropic Gaussian mixture with its exact
  denoiser as the teacher (the exact-teacher chapter).

The network of a spec's teacher is :func:`spec_denoiser`: the preset's ADM
UNet (a preset with ``unet``) or its MLP. Specs pickle (worker processes
train teachers side by side): their samplers carry the data's exact tensors.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import partial
from typing import Callable, Optional

import torch

from .data import TOY_DATASETS, sample_toy, support_fraction
from .labels import one_hot
from .nets import MLPNet
from .precond import EDMPrecond
from .runs import resolve_device

FIT_DISTANCES = ("w2sq", "fd")   # squared W2 by exact OT; Frechet distance in MNIST-classifier features


@dataclass(frozen=True)
class DataSpec:
    """A training distribution as the pairing path sees it.

    ``sample(n, generator, device)`` returns n samples ``[n, *shape]`` drawn
    only from ``generator``; with ``label_dim > 0`` it returns ``(x, labels)``
    with one-hot labels ``[n, label_dim]``. ``sigma_data`` is the teacher's
    EDM preconditioning constant. ``tag`` names the data in run-folder names,
    ``data_id`` identifies it inside run folders (a run trained on other
    data is refused there). ``kind`` prefixes the run-folder names.
    ``fit_distance`` names the distance between sample sets of the fit gate
    (``FIT_DISTANCES``: ``"w2sq"``, squared W2 by exact optimal transport;
    ``"fd"``, the Frechet distance in the features of dmdlib's MNIST
    classifier). ``support(x)`` (optional) is the fraction of samples on the
    data's support (the toys).

    What is known of the data's structure, for the pairing measures that
    dimension does not dilute (:mod:`dmdlib.records`): ``modes(x)`` (optional)
    gives each sample's mode as an integer (the chessboard cell, the moon, the
    mixture component, the MNIST digit, the manifold's class), named by
    ``modes_name``; ``intrinsic(x, labels)`` (optional) its intrinsic
    coordinates [n, k] (the plane of an embedded toy, the manifold's latent u;
    ``labels`` are the samples' integer classes or None), named by
    ``intrinsic_name``. ``exact`` (optional) is the data's exact denoiser
    (:class:`dmdlib.data.mixture.GaussianMixture`): the pairing path then
    uses it as the teacher (Phi_K and DMD's real score) and trains, in place
    of a teacher, a network regressed onto it, from which the student starts
    (:mod:`dmdlib.pairing`). A spec pickles when its callables do: the
    constructors of this module use picklable samplers that carry their
    data's exact tensors.
    """
    name: str
    shape: tuple
    sample: Callable
    data_id: str
    sigma_data: float
    label_dim: int = 0
    tag: tuple = ()
    kind: str = "toy"
    fit_distance: str = "w2sq"
    support: Optional[Callable] = None
    modes: Optional[Callable] = None
    modes_name: str = ""
    intrinsic: Optional[Callable] = None
    intrinsic_name: str = ""
    exact: Optional[torch.nn.Module] = None

    def __post_init__(self):
        if isinstance(self.label_dim, bool) or not isinstance(self.label_dim, int) or self.label_dim < 0:
            raise ValueError(f"DataSpec.label_dim must be an integer >= 0, got {self.label_dim!r}")
        if not self.sigma_data > 0:
            raise ValueError(f"DataSpec.sigma_data must be > 0, got {self.sigma_data!r}")
        if self.fit_distance not in FIT_DISTANCES:
            raise ValueError(f"DataSpec.fit_distance must be one of {list(FIT_DISTANCES)}, got {self.fit_distance!r}")

    def images(self, n: int, generator, device="cpu") -> torch.Tensor:
        """n samples without their labels."""
        out = self.sample(n, generator, device)
        return out[0] if isinstance(out, tuple) else out


def denoiser(p, shape: Optional[tuple] = None, label_dim: int = 0, sigma_data: Optional[float] = None) -> EDMPrecond:
    """A preset's network, EDM-preconditioned with ``sigma_data`` (default: the preset's teacher's): its ADM UNet
    (a preset with ``unet``, e.g. MNIST's) or its MLP on the flattened samples of ``shape``, with ``label_dim``
    class labels."""
    sigma_data = p.teacher.sigma_data if sigma_data is None else sigma_data
    if getattr(p, "unet", None) is not None:
        from .nets.adm import ADMUNet

        net = ADMUNet(**replace(p.unet, label_dim=label_dim).kwargs())
    else:
        from .nets import FlatNet

        extra = {"label_dim": label_dim} if label_dim else {}
        net = MLPNet(math.prod(shape), p.width, p.depth, p.fourier_dim, **extra)
        net = net if len(shape) == 1 else FlatNet(net)
    return EDMPrecond(net, sigma_data=sigma_data)


def spec_denoiser(spec: DataSpec, p) -> EDMPrecond:
    """The teacher network for ``spec`` (:func:`denoiser` with the spec's shape, labels and sigma_data)."""
    return denoiser(p, tuple(spec.shape), spec.label_dim, spec.sigma_data)


# ----------------------------------------------------------------------------- the toys (notebooks 01, 06)

def toy_sigma_data(p, dataset: str) -> float:
    """The toy teacher's sigma_data: the preset's number, or the data set's own std for ``"data"``."""
    from .data.toy import data_std

    return data_std(dataset, p.dim) if p.sigma_data == "data" else float(p.sigma_data)


def toy_spec(dataset: str, p) -> DataSpec:
    """A toy data set in R^{p.dim} (first two coordinates) as a :class:`DataSpec` (``p``: a ToyPreset)."""
    if dataset not in TOY_DATASETS:
        raise ValueError(f"unknown toy data set {dataset!r}; allowed: {sorted(TOY_DATASETS)}")
    return DataSpec(dataset, (p.dim,), partial(_toy_sample, dataset, p.dim), data_id=f"toy:{dataset}:dim={p.dim}",
                    sigma_data=toy_sigma_data(p, dataset), tag=(dataset, p.dim),
                    support=partial(support_fraction, dataset), modes=partial(_toy_modes, dataset),
                    modes_name=TOY_MODE_NAMES[dataset], intrinsic=_toy_plane,
                    intrinsic_name="the first two coordinates (the data's plane)")


def _toy_sample(dataset: str, dim: int, n: int, generator, device="cpu") -> torch.Tensor:
    return sample_toy(dataset, n, dim, generator=generator, device=device)


TOY_MODE_NAMES = {"chessboard": "the board cell", "moons": "the moon", "gaussian_mixture": "the mixture component"}


def _toy_modes(dataset: str, x, embedding: str = "pad", embedding_seed: int = 0):
    from .data.toy import toy_modes

    return toy_modes(dataset, x, embedding, embedding_seed)


def _toy_plane(x, labels=None, embedding: str = "pad", embedding_seed: int = 0):
    from .data.toy import toy_plane

    return toy_plane(x, embedding, embedding_seed)


def embedded_chessboard_spec(dim: int, sigma_data: float, embedding_seed: int = 0) -> DataSpec:
    """The chessboard embedded in R^dim by a fixed random orthogonal map (:func:`dmdlib.data.toy.orthogonal_embedding`)
    as a :class:`DataSpec`, with the given ``sigma_data`` (notebook 06 uses the R^4 chessboard's for every dim)."""
    sample = partial(_embedded_chessboard_sample, dim, embedding_seed)
    data_id = f"toy:chessboard:dim={dim}:orthogonal:seed={embedding_seed}"
    return DataSpec(f"chessboard-d{dim}", (dim,), sample, data_id, sigma_data=float(sigma_data),
                    tag=("chessboard-orthogonal", dim, embedding_seed, float(sigma_data)),
                    modes=partial(_toy_modes, "chessboard", embedding="orthogonal", embedding_seed=embedding_seed),
                    modes_name="the board cell",
                    intrinsic=partial(_toy_plane, embedding="orthogonal", embedding_seed=embedding_seed),
                    intrinsic_name="the board's plane in R^dim")


def _embedded_chessboard_sample(dim: int, embedding_seed: int, n: int, generator, device="cpu") -> torch.Tensor:
    return sample_toy("chessboard", n, dim, generator=generator, device=device, embedding="orthogonal",
                      embedding_seed=embedding_seed)


# ----------------------------------------------------------------------------- the MLP manifold (notebooks 06, 07)

def manifold_spec(latent_dim: int, resolution: int, num_classes: int = 0, manifold_seed: int = 0) -> DataSpec:
    """MLP-manifold images (:class:`dmdlib.data.manifold.MLPManifold`) as a :class:`DataSpec`; one-hot labels when
    ``num_classes`` > 0. sigma_data is the data set's std."""
    from .data.manifold import MLPManifold

    base = MLPManifold(latent_dim=latent_dim, resolution=resolution, num_classes=num_classes, seed=manifold_seed)
    name = f"manifold-k{latent_dim}" + (f"-c{num_classes}" if num_classes else "")
    return DataSpec(name, base.image_shape, _ManifoldSampler(base), base.data_id, sigma_data=base.std,
                    label_dim=num_classes, tag=("manifold", base.data_id), kind="manifold",
                    modes=_ManifoldClass(base) if num_classes else None,
                    modes_name="the class (nearest stripe)" if num_classes else "",
                    intrinsic=_ManifoldLatent(base), intrinsic_name=f"the latent u in R^{latent_dim} (projection)")


class _ManifoldClass:
    """``DataSpec.modes`` of a conditional :func:`manifold_spec`: the class of each image (its nearest stripe)."""

    def __init__(self, base):
        self.base = base

    def __call__(self, x):
        return self.base.classify(x.to(self.base.device, self.base.dtype))


class _ManifoldLatent:
    """``DataSpec.intrinsic`` of :func:`manifold_spec`: the latent u of each image's nearest manifold point (of its
    class, with labels), by :meth:`dmdlib.data.manifold.MLPManifold.project` from a bank of ``BANK`` decoded
    latents (the projection's 200 Adam steps then find the same latents as from its default 50,000: measured on
    10,000 noisy 8 x 8 images at k = 16, mean latent error 0.238 either way, in 3.5 s instead of 7.9 s)."""

    BANK = 10_000

    def __init__(self, base):
        self.base = base

    def __call__(self, x, labels=None):
        b = self.base
        lab = None if labels is None or b.num_classes == 0 else torch.as_tensor(labels, device=b.device)
        return b.project(x, lab, bank=self.BANK)[0]


class _ManifoldSampler:
    """``DataSpec.sample`` of :func:`manifold_spec`: draws from one fixed :class:`MLPManifold` (picklable with it)."""

    def __init__(self, base):
        self.base = base
        self.copies = {str(base.device): base}

    def __call__(self, n, generator, device="cpu"):
        from .data.manifold import MLPManifold

        b = self.base
        dev = str(generator.device) if generator is not None else str(torch.device(device))
        if dev not in self.copies:   # the same fixed map, on another device
            self.copies[dev] = MLPManifold(b.latent_dim, b.resolution, b.num_classes, b.seed).to(dev)
        x, lab = self.copies[dev].sample(n, generator=generator)
        x = x.to(device)
        return x if b.num_classes == 0 else (x, one_hot(lab, b.num_classes).to(device))


# ----------------------------------------------------------------------------- an exact teacher

def mixture_spec(mixture, name: str, tau: float = 0.0) -> DataSpec:
    """An isotropic Gaussian mixture (:class:`dmdlib.data.mixture.GaussianMixture`) whose exact denoiser is the
    teacher, as a :class:`DataSpec`.

    ``tau`` is the teacher's resolution: the teacher is the mixture blurred to
    component std sqrt(s^2 + tau^2) (``mixture.blurred(tau)``), a teacher that
    has not resolved structure finer than tau; tau = 0 is the converged
    teacher. Samples, modes (the component) and intrinsic coordinates (the
    span of the means) are the teacher's mixture's, so every sample the pairing
    path draws (the regressed network's training data, the fit's data sets)
    is from the distribution the teacher defines; sigma_data is its std.
    """
    from .data.mixture import GaussianMixture

    if not isinstance(mixture, GaussianMixture):
        raise ValueError(f"mixture must be a dmdlib.GaussianMixture, got {type(mixture).__name__}")
    if isinstance(tau, bool) or not isinstance(tau, (int, float)) or not tau >= 0:
        raise ValueError(f"tau must be a number >= 0 (the teacher's resolution), got {tau!r}")
    teacher = mixture.blurred(float(tau)) if tau > 0 else mixture
    from .dmd import state_fingerprint

    data_id = f"mixture:{state_fingerprint(teacher)[:16]}"
    return DataSpec(name, (teacher.dim,), partial(_mixture_sample, teacher), data_id,
                    sigma_data=float(teacher.sigma_data), tag=("mixture", data_id), kind="mixture",
                    modes=_MixtureComponent(teacher), modes_name="the mixture component",
                    intrinsic=_MixtureStructured(teacher), intrinsic_name="the span of the means", exact=teacher)


def _mixture_sample(mixture, n: int, generator, device="cpu") -> torch.Tensor:
    return mixture.sample(n, generator).to(device)


class _MixtureComponent:
    """``DataSpec.modes`` of :func:`mixture_spec`: each sample's component."""

    def __init__(self, mixture):
        self.mixture = mixture

    def __call__(self, x):
        return self.mixture.component(x)


class _MixtureStructured:
    """``DataSpec.intrinsic`` of :func:`mixture_spec`: each sample's coordinates in the span of the means."""

    def __init__(self, mixture):
        self.mixture = mixture

    def __call__(self, x, labels=None):
        return self.mixture.structured(x)


# ----------------------------------------------------------------------------- MNIST (notebooks 02-05, 07)

def at_resolution(x: torch.Tensor, resolution: int) -> torch.Tensor:
    """32x32 digits at the preset's resolution: unchanged at 32, else averaged over (32/r) x (32/r) blocks."""
    if x.shape[-1] == resolution:
        return x
    if x.shape[-1] % resolution:
        raise ValueError(f"img_resolution must divide {x.shape[-1]}, got {resolution}")
    return torch.nn.functional.avg_pool2d(x, x.shape[-1] // resolution)


def mnist_training_data(p, device="cpu", labels: bool = False):
    """The training images in [-1, 1] on ``device`` (all 70,000 unless the preset takes a subset), with their
    digits (integers) when ``labels``.

    At ``p.unet.img_resolution`` < 32 (a CPU preset) the 32x32 digits are
    average-pooled to that size.
    """
    from .data.mnist import mnist_tensor

    x, y = mnist_tensor("cpu")
    if p.data_subset:
        x, y = x[:p.data_subset], y[:p.data_subset]
    x = at_resolution(x, p.unet.img_resolution).to(device)
    return (x, torch.as_tensor(y)) if labels else x


def mnist_data_id(p) -> str:
    """The training images' identity recorded in the run folders: MNIST's pinned checksum, the preset's subset and
    resolution."""
    from .data.mnist import MNIST_SHA256

    res = p.unet.img_resolution
    return f"mnist:sha256={MNIST_SHA256}:subset={p.data_subset}" + ("" if res == 32 else f":avgpool={32 // res}")


def mnist_spec(p, conditional: bool = False, device="cpu") -> DataSpec:
    """MNIST at the preset's resolution (:func:`mnist_training_data`) as a :class:`DataSpec`; with
    ``conditional`` each image comes with its one-hot digit label (label_dim 10). Mini-batches are drawn
    uniformly with replacement with the run's generator (EDM draws shuffled epochs; for 70,000 images the two
    are statistically indistinguishable over a run). The fit gate compares sample sets in the features of
    dmdlib's MNIST classifier (``fit_distance="fd"``)."""
    dev = resolve_device(device) if isinstance(device, str) else device
    x, y = mnist_training_data(p, dev, labels=True)
    y = one_hot(y, 10).to(dev)
    shape = (p.unet.in_channels, p.unet.img_resolution, p.unet.img_resolution)
    return DataSpec("mnist" + ("-cond" if conditional else ""), shape, _MnistSampler(x, y, conditional),
                    mnist_data_id(p) + (":labels" if conditional else ""), sigma_data=p.teacher.sigma_data,
                    label_dim=10 if conditional else 0, tag=("mnist", p.data_subset, 10 if conditional else 0),
                    kind="mnist", fit_distance="fd", modes=mnist_digits,
                    modes_name="the digit (dmdlib's MNIST classifier)")


def mnist_digits(x: torch.Tensor) -> torch.Tensor:
    """``DataSpec.modes`` of :func:`mnist_spec`: the digit dmdlib's MNIST classifier sees in each image
    (:func:`dmdlib.features.classify`; the classifier is trained once and cached)."""
    from .features import classify, mnist_classifier

    net, _ = mnist_classifier()
    return classify(net, x)


class _MnistSampler:
    """``DataSpec.sample`` of :func:`mnist_spec`: uniform draws with replacement from the images (and one-hot labels)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, conditional: bool):
        self.x, self.y, self.conditional = x, y, conditional

    def __call__(self, n, generator, device="cpu"):
        idx = torch.randint(0, self.x.shape[0], (n,), generator=generator,
                            device=generator.device if generator is not None else "cpu").to(self.x.device)
        x = self.x[idx].to(device)
        return (x, self.y[idx].to(device)) if self.conditional else x
