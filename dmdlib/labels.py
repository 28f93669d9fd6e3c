"""Class labels in the training loops (conditional data of paper Figs. 6-8: conditional MNIST, ImageNet-64).

Labels travel as one-hot (or soft) float tensors of shape [batch, label_dim],
the form EDM's networks take (``class_labels``); ``None`` means "no label"
(an unconditional network, or the all-zero "null" label of a conditional one).

* :func:`check_label_dim` validates the ``label_dim`` keyword of the DMD loops;
* :func:`draw_labels` is the DMD loops' draw: class indices uniform over
  ``range(label_dim)`` from the run's generator, one-hot encoded;
* :func:`split_batch` reads what a ``data_fn(n, generator)`` returned: a
  tensor ``x`` or a pair ``(x, labels)``, with the labels checked.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn


def check_label_dim(label_dim) -> int:
    """``label_dim`` as an int >= 0 (0: unconditional), or a ValueError naming it."""
    if isinstance(label_dim, bool) or not isinstance(label_dim, int) or label_dim < 0:
        raise ValueError(f"label_dim must be an int >= 0 (the number of classes; 0 = unconditional), "
                         f"got {label_dim!r}")
    return label_dim


def one_hot(classes: torch.Tensor, label_dim: int) -> torch.Tensor:
    """Class indices [batch] -> one-hot float32 labels [batch, label_dim]."""
    return torch.nn.functional.one_hot(classes.long(), check_label_dim(label_dim)).to(torch.float32)


def draw_labels(label_dim: int, batch: int, generator: torch.Generator, device) -> Optional[torch.Tensor]:
    """One-hot labels of ``batch`` classes drawn uniformly from ``generator`` (one ``randint`` call);
    None, drawing nothing, when ``label_dim`` is 0."""
    if label_dim == 0:
        return None
    return one_hot(torch.randint(0, label_dim, (batch,), generator=generator, device=device), label_dim)


def model_label_dim(denoiser: nn.Module) -> Optional[int]:
    """The ``label_dim`` of a network (or of the raw network ``.model`` inside an EDMPrecond); None if unknown."""
    for m in (denoiser, getattr(denoiser, "model", None)):
        d = getattr(m, "label_dim", None)
        if isinstance(d, int) and not isinstance(d, bool):
            return d
    return None


def check_labels(labels: torch.Tensor, n: int, label_dim: Optional[int], where: str) -> torch.Tensor:
    """``labels`` must be a float tensor [n, label_dim] (``label_dim`` None: any width >= 1)."""
    want = f"[{n}, {'label_dim' if label_dim is None else label_dim}]"
    if not torch.is_tensor(labels) or labels.ndim != 2 or labels.shape[0] != n or labels.shape[1] < 1 \
            or (label_dim is not None and labels.shape[1] != label_dim):
        got = tuple(labels.shape) if torch.is_tensor(labels) else type(labels).__name__
        raise ValueError(f"{where}: labels must be one-hot float labels of shape {want}, got {got} "
                         "(class indices can be encoded with dmdlib.labels.one_hot)")
    if not labels.is_floating_point():
        raise ValueError(f"{where}: labels must be a floating-point (one-hot) tensor, got dtype {labels.dtype}")
    return labels


def split_batch(batch, n: int, label_dim: Optional[int] = None, need_labels: Optional[bool] = None,
                where: str = "data_fn") -> tuple:
    """``(x, labels)`` from what ``data_fn(n, generator)`` returned: a tensor x (labels None) or a pair.

    ``label_dim`` (None: not known) fixes the labels' width; 0 refuses
    labels (an unconditional network would ignore or reject them).
    ``need_labels`` True / False demands / refuses labels (None: either).
    """
    if isinstance(batch, (tuple, list)):
        if len(batch) != 2:
            raise ValueError(f"{where} must return a tensor x or a pair (x, labels), got a sequence of {len(batch)}")
        x, labels = batch
    else:
        x, labels = batch, None
    if not torch.is_tensor(x) or x.ndim < 1 or x.shape[0] != n:
        got = tuple(x.shape) if torch.is_tensor(x) else type(x).__name__
        raise ValueError(f"{where} must return {n} samples (a tensor with {n} rows), got {got}")
    if labels is None:
        if need_labels:
            raise ValueError(f"{where} must return (x, labels) with one-hot labels [{n}, {label_dim}] "
                             f"when label_dim = {label_dim} > 0")
        return x, None
    if need_labels is False or label_dim == 0:
        raise ValueError(f"{where} returned labels, but the run is unconditional (label_dim = 0); "
                         "return x alone or set label_dim")
    return x, check_labels(labels, n, label_dim, where)
