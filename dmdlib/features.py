"""A Frechet distance for MNIST in the feature space of a small MNIST classifier (not Inception FID).

DMD's target is the teacher's distribution, so the book checks that a
student's samples are distributed like the teacher's. For 1024-pixel digits
a distance between distributions needs features: like FID (Heusel et al.
2017), we fit a Gaussian to the features of each sample set and report

    FD(a, b) = ||mu_a - mu_b||^2 + tr(C_a + C_b - 2 (C_a C_b)^(1/2)),

but the features are the 128-dimensional penultimate layer of a small MNIST
classifier that dmdlib trains itself, not Inception-v3's (whose weights are
not available offline and which was made for natural images). Values are
therefore comparable only with each other, never with published FIDs.

The classifier (:class:`MnistClassifier`: two 3x3 conv layers with max
pooling, 32 and 64 channels, then 128 and 10 units) is trained once on the
60,000 training digits (32x32, in [-1, 1], as the teacher sees them) for
``CLASSIFIER_EPOCHS`` epochs of Adam (lr decayed by ``CLASSIFIER_LR_DECAY``
per epoch), seeded, and must reach
``MIN_TEST_ACCURACY`` on the 10,000 test digits. It is cached beside MNIST
(``mnist_data_dir()/mnist/classifier.safetensors``) with a JSON record of
its SHA-256, recipe and test accuracy; every load verifies the hash, and a
missing or damaged cache is retrained. The SHA-256 of the weights is what
identifies the feature space: metrics record it next to every FD.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch import nn

from .provenance import file_sha256, sha256_bytes
from .runs import atomic_write_bytes, make_generator, resolve_device

CLASSIFIER_EPOCHS = 3
CLASSIFIER_LR_DECAY = 0.3            # lr multiplied by this after every epoch
CLASSIFIER_BATCH = 128
CLASSIFIER_LR = 1e-3
CLASSIFIER_SEED = 0
MIN_TEST_ACCURACY = 0.98
FEATURE_DIM = 128
_RECIPE = {"arch": "conv32-pool-conv64-pool-fc128-fc10", "epochs": CLASSIFIER_EPOCHS, "batch": CLASSIFIER_BATCH,
           "lr": CLASSIFIER_LR, "lr_decay_per_epoch": CLASSIFIER_LR_DECAY, "seed": CLASSIFIER_SEED, "train": "MNIST train 60,000, 32x32 in [-1, 1]"}


class MnistClassifier(nn.Module):
    """A small CNN on 1x32x32 digits in [-1, 1]; ``features`` is the 128-unit penultimate layer."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),      # 32 x 16 x 16
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),     # 64 x 8 x 8
            nn.Flatten(), nn.Linear(64 * 8 * 8, FEATURE_DIM), nn.ReLU())
        self.head = nn.Linear(FEATURE_DIM, 10)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def _paths(data_dir=None) -> tuple:
    from .data.mnist import mnist_data_dir

    root = mnist_data_dir(data_dir) / "mnist"
    return root / "classifier.safetensors", root / "classifier.json"


@torch.no_grad()
def classifier_accuracy(net: MnistClassifier, x: torch.Tensor, labels: torch.Tensor, batch: int = 1000) -> float:
    net.eval()
    hits = sum(int((net(x[i:i + batch]).argmax(1) == labels[i:i + batch]).sum()) for i in range(0, x.shape[0], batch))
    return hits / x.shape[0]


def train_mnist_classifier(data_dir=None, device="cpu", progress_bar: bool = False) -> tuple:
    """Train :class:`MnistClassifier` by the fixed recipe; returns ``(net, test_accuracy)`` (not cached)."""
    from tqdm.auto import tqdm

    from .data.mnist import mnist_tensor

    dev = resolve_device(device) if isinstance(device, str) else torch.device(device)
    x, y = mnist_tensor("cpu", data_dir)
    x_train, y_train, x_test, y_test = x[:60_000], y[:60_000], x[60_000:], y[60_000:]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(CLASSIFIER_SEED)
        net = MnistClassifier().to(dev)
    opt = torch.optim.Adam(net.parameters(), lr=CLASSIFIER_LR)
    g = make_generator(CLASSIFIER_SEED, "cpu")
    net.train()
    for epoch in tqdm(range(CLASSIFIER_EPOCHS), desc="MNIST classifier", disable=not progress_bar, leave=False):
        for group in opt.param_groups:
            group["lr"] = CLASSIFIER_LR * CLASSIFIER_LR_DECAY ** epoch
        perm = torch.randperm(60_000, generator=g)
        for i in range(60_000 // CLASSIFIER_BATCH):
            j = perm[i * CLASSIFIER_BATCH:(i + 1) * CLASSIFIER_BATCH]
            loss = nn.functional.cross_entropy(net(x_train[j].to(dev)), y_train[j].to(dev))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    acc = classifier_accuracy(net, x_test.to(dev), y_test.to(dev))
    return net.cpu().eval(), acc


def mnist_classifier(data_dir=None, device="cpu") -> tuple:
    """The cached feature network: ``(net, info)`` with ``info = {"sha256", "test_accuracy", "recipe"}``.

    Loads ``classifier.safetensors`` if its SHA-256 matches the JSON record;
    otherwise (absent, damaged, other recipe) trains it (about a minute on two
    CPU cores), checks the test accuracy against ``MIN_TEST_ACCURACY`` and
    caches it atomically.
    """
    from safetensors.torch import load_file, save

    weights, record = _paths(data_dir)
    if weights.exists() and record.exists():
        try:
            info = json.loads(record.read_text())
            if info.get("recipe") == _RECIPE and file_sha256(weights) == info.get("sha256"):
                net = MnistClassifier()
                net.load_state_dict(load_file(str(weights)))
                return net.to(device).eval(), info
            warnings.warn(f"{weights}: checksum or recipe does not match {record}; retraining the classifier")
        except (ValueError, OSError, RuntimeError) as e:
            warnings.warn(f"{weights}: unreadable cached classifier ({e}); retraining it")
    net, acc = train_mnist_classifier(data_dir)
    if acc < MIN_TEST_ACCURACY:
        raise RuntimeError(f"the MNIST feature classifier reached test accuracy {acc:.4f} < {MIN_TEST_ACCURACY}; "
                           f"its features are not trustworthy (recipe {_RECIPE})")
    blob = save({k: v.contiguous() for k, v in net.state_dict().items()})
    atomic_write_bytes(weights, blob)
    info = {"sha256": sha256_bytes(blob), "test_accuracy": acc, "recipe": _RECIPE}
    atomic_write_bytes(record, (json.dumps(info, indent=2) + "\n").encode())
    return net.to(device).eval(), info


@torch.no_grad()
def classifier_features(net: MnistClassifier, x: torch.Tensor, batch: int = 1000) -> np.ndarray:
    """Penultimate-layer features [N, 128] (float64) of images [N, 1, r, r] in [-1, 1].

    Images at another resolution than 32 (a CPU preset's 16x16 digits) are
    upsampled to 32x32 by repeating pixels, the inverse layout of the
    average pooling that made them, so that all sets of one comparison share
    one feature space.
    """
    dev = next(net.parameters()).device
    net.eval()

    def prep(b):
        b = b.to(dev, torch.float32)
        return b if b.shape[-1] == 32 else torch.nn.functional.interpolate(b, size=(32, 32), mode="nearest")
    out = [net.features(prep(x[i:i + batch])).double().cpu() for i in range(0, x.shape[0], batch)]
    return torch.cat(out).numpy()


@torch.no_grad()
def classify(net: MnistClassifier, x: torch.Tensor, batch: int = 1000) -> torch.Tensor:
    """The digit of each image (LongTensor [N], CPU): argmax of the classifier's logits on images [N, 1, r, r] in
    [-1, 1], upsampled to 32x32 by repeating pixels when r != 32 as in :func:`classifier_features`."""
    if not torch.is_tensor(x) or x.ndim != 4 or x.shape[1] != 1:
        raise ValueError(f"x must be a tensor of images [N, 1, r, r], got "
                         f"{tuple(x.shape) if torch.is_tensor(x) else type(x).__name__}")
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch must be an integer >= 1, got {batch!r}")
    dev = next(net.parameters()).device
    net.eval()

    def prep(b):
        b = b.to(dev, torch.float32)
        return b if b.shape[-1] == 32 else torch.nn.functional.interpolate(b, size=(32, 32), mode="nearest")
    out = [net(prep(x[i:i + batch])).argmax(1).cpu() for i in range(0, x.shape[0], batch)]
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.long)


def gaussian_stats(features: np.ndarray) -> tuple:
    """(mean, covariance) of features [N, d] (float64, covariance with N - 1)."""
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"features must have shape [N >= 2, d], got {f.shape}")
    return f.mean(0), np.cov(f, rowvar=False)


def _psd_sqrt(c: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh(c)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance(a, b) -> float:
    """FD between Gaussians fitted to two feature sets [N, d] (or two ``(mean, cov)`` tuples).

    ||mu_a - mu_b||^2 + tr(C_a) + tr(C_b) - 2 tr((C_a C_b)^(1/2)). The last
    trace is computed as the sum of the square roots of the eigenvalues of
    the symmetric matrix C_a^(1/2) C_b C_a^(1/2), which has the same
    eigenvalues as C_a C_b: real and stable also when the covariances are
    singular (features that never fire). The estimate is biased upwards at
    finite N: compare values at equal N.
    """
    mu_a, c_a = a if isinstance(a, tuple) else gaussian_stats(a)
    mu_b, c_b = b if isinstance(b, tuple) else gaussian_stats(b)
    if mu_a.shape != mu_b.shape:
        raise ValueError(f"feature dimensions differ: {mu_a.shape[0]} and {mu_b.shape[0]}")
    s_a = _psd_sqrt(c_a)
    m = s_a @ c_b @ s_a
    tr_sqrt = float(np.sqrt(np.clip(np.linalg.eigvalsh(0.5 * (m + m.T)), 0.0, None)).sum())
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(c_a) + np.trace(c_b) - 2 * tr_sqrt)
