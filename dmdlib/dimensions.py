"""Notebook 06's dimension sweeps: the record of a point, whether its teacher learned the data, the onset of copying.

A point of a sweep is one :class:`~dmdlib.pairing.PairingRun` (an intrinsic
dimension k of the MLP manifold, or an ambient dimension d of the embedded
chessboard). :func:`sweep_record` stores it; :func:`manifold_fit` and
:func:`embedded_chessboard_fit` say whether the teacher learned the data (a
point whose teacher did not is no result, whatever its verdict);
:func:`copying_onset` reads the sweep.
"""
from __future__ import annotations

import math
from typing import Optional

import torch

from . import evaluation
from .data import support_fraction


def sweep_record(key: str, value: int, run) -> dict:
    """One point of a dimension sweep as metrics.json stores it: ``key`` (``intrinsic_dim`` or ``ambient_dim``)
    beside the student's Delta_E interval and verdict, its reference levels, Delta_E's regime
    (:func:`dmdlib.evaluation.regime`), the undiluted measures and the reading
    (:func:`dmdlib.evaluation.reading`), and its fit."""
    m = run.metrics
    return {key: int(value), **m["delta_e"], "references": m["references"],
            "regime": evaluation.regime(m["delta_e"], m["references"]), "measures": m.get("measures"),
            "reading": m.get("reading"), "fit": m["fit"],
            "sigma_data": m["sigma_data"], "data_id": m["data_id"], "delta_e_along": m["delta_e_along"],
            "mean_dist_g_phi8": m["mean_dist_g_phi8"], "mean_dist_phi1_phi8": m["mean_dist_phi1_phi8"]}


OFF_PLANE_MAX = 0.1   # a teacher whose samples lie farther from the board's plane (cells have side 1) failed


def embedded_chessboard_fit(run, dim: int, embedding_seed: int = 0) -> dict:
    """How well the samples of an ambient-dimension point sit on the embedded chessboard (notebook 06).

    For the data, the teacher's distribution (``ref``), Phi_K and the student: the fraction of samples on
    a black cell of the board in the embedding plane (:func:`dmdlib.data.toy.support_fraction`), and the
    mean distance from the plane (the noise the network left in the d - 2 empty directions; 0 for data).
    ``teacher_ok``: the teacher's distribution lies within ``OFF_PLANE_MAX`` (a tenth of a board
    cell) of the plane on average. Where it does not, every pairing costs about the same (the residual
    noise dominates the distances), Delta_E and its random level both shrink, and the point says nothing
    about the pairing on the board; the fit gate cannot see this, since it compares the student with that
    same noisy teacher.
    """
    from .data.toy import orthogonal_embedding

    e = orthogonal_embedding(dim, embedding_seed).double()
    out = {}
    for name in ("data", "ref", "phi_8", "g"):
        x = run.samples[name].double()
        off = x - (x @ e) @ e.T
        out[name] = {"support": support_fraction("chessboard", x, embedding="orthogonal", embedding_seed=embedding_seed),
                     "off_plane": float(off.norm(dim=1).mean())}
    out["teacher_ok"] = out["ref"]["off_plane"] <= OFF_PLANE_MAX
    return out


OFF_MANIFOLD_MAX = 0.5   # a teacher whose samples sit as far from the manifold as noise of half the data's std failed


def manifold_fit(run, manifold, n: int = 250, seed: int = 0) -> dict:
    """How well the samples of an MLP-manifold point sit on the manifold (notebooks 06 and 07).

    For the data, the teacher's distribution (``ref``), Phi_K and the student: the mean distance of the
    first ``n`` samples from the manifold (:meth:`dmdlib.data.manifold.MLPManifold.distance`, an upper
    bound; with labels, from the manifold of each sample's class), and the same as an equivalent noise
    level relative to the data: ``noise = distance / sqrt(D) / std``, the per-pixel standard deviation of
    isotropic noise that would put data this far from a k-dimensional manifold in D >> k pixels, in units
    of the data's std (0 for the data, about 1 for samples as noisy as the data is varied).
    ``teacher_ok``: the teacher's distribution has ``noise`` <= ``OFF_MANIFOLD_MAX``. Where it has
    not, the teacher did not learn the manifold (its samples are mostly noise around it), and the
    point's Delta_E and fit say nothing about distilling a teacher of this data; the fit gate cannot see
    this, since it compares the student with that same teacher.
    """
    dim = math.prod(manifold.image_shape)
    labels = None
    if run.labels is not None:
        labels = run.labels[:n].argmax(1).to(manifold.device)
    out = {}
    for name in ("data", "ref", "phi_8", "g"):
        x = run.samples[name][:n]
        lab = None if labels is None else labels[:x.shape[0]]   # the first set's seeds, as many as samples
        if name in ("data", "ref"):   # drawn with their own labels: measure against the nearest class
            lab = None
        d = _manifold_distance(manifold, x, lab, seed)
        mean = float(d.mean())
        out[name] = {"distance": mean, "noise": mean / math.sqrt(dim) / manifold.std}
    out["teacher_ok"] = out["ref"]["noise"] <= OFF_MANIFOLD_MAX
    return out


def _manifold_distance(manifold, x, labels, seed):
    """Distance from the manifold of each sample's class, or (labels None, conditional manifold) of the nearest class."""
    if manifold.num_classes == 0 or labels is not None:
        return manifold.distance(x, labels, seed=seed)
    per_class = [manifold.distance(x, torch.full((x.shape[0],), c, dtype=torch.long), seed=seed)
                 for c in range(manifold.num_classes)]
    return torch.stack(per_class).min(0).values


def copying_onset(points: list, key: str) -> Optional[int]:
    """The smallest dimension from which every point of the sweep (sorted by ``key``) is converged and copies;
    None when the largest point does not (no onset within the sweep). "Copies" is the point's reading
    (Delta_E and the undiluted measure agree, :func:`dmdlib.evaluation.reading`) where it has one, else
    Delta_E's ``regime``. A point whose record says ``teacher_ok: False`` is no result and ends the run
    of copying points like an unconverged one."""
    pts = sorted(points, key=lambda p: p[key])
    onset = None
    for p in reversed(pts):
        word = (p.get("reading") or {}).get("reading", p.get("regime"))
        if p.get("converged") and p.get("teacher_ok", True) and word == "copies":
            onset = p[key]
        else:
            break
    return onset

