"""The evaluation record of one student: what every chapter stores in metrics.json for it.

Everything a student is measured against is computed once per teacher
network (:func:`eval_targets`): R independent sets of N evaluation seeds
(:func:`dmdlib.pairing.eval_seed_sets`, with uniform labels for conditional
data), the teacher's Phi_K and Phi_1 on them, a second teacher's Phi_K (the
reproducibility level), the teacher's distribution T (Phi_{k_ref} on 2N
seeds of their own stream) and two fresh data samples of N. Teacher outputs
are cached on disk (:func:`dmdlib.pairing.cached_phi_k`).

:func:`student_metrics` turns a student's outputs G(z) on the same seeds and
its logs into the record (see :mod:`dmdlib.evaluation` for the gates and
reference levels):

* ``delta_e``: Delta_E(Phi_K, G) over the R sets with its Student-t interval,
  ``converged`` and the numbers of the three gates;
* ``references``: the start Delta_E(Phi_K, Phi_1), a random pairing and the
  second teacher's Delta_E(Phi_K, Phi_K');
* ``fit``: distances between sets of N on independent seeds (the spec's
  ``fit_distance``): student, teacher sampler, start and data against T, the
  floor d(T', T), and against the data; for the toys the fraction of samples
  on the data's support;
* Delta_E along distillation, its start, the mean distances and the sizes.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import torch

from . import evaluation
from .evaluation import fit_numbers, reference_levels, student_record, w2_squared
from .metrics import delta_e_record, delta_e_sets, delta_e_vs_n, pair_distances
from .runs import derived_seed, make_generator


@dataclass
class Targets:
    """What every student of one teacher network is measured against (:func:`eval_targets`; CPU float32).

    ``z`` holds R independent sets of N evaluation seeds ``[R*N, *shape]`` and
    ``labels`` their one-hot labels (None when unconditional); ``phi_k`` and
    ``phi_1`` are the teacher's outputs on them, ``phi_k_2`` the second
    teacher's Phi_K (None when not computed); ``ref`` is T = Phi_{k_ref} on
    2N seeds of their own stream; ``data`` two fresh data samples of N.
    """
    z: torch.Tensor
    labels: Optional[torch.Tensor]
    phi_k: torch.Tensor
    phi_1: Optional[torch.Tensor]
    phi_k_2: Optional[torch.Tensor]
    ref: Optional[torch.Tensor]
    data: Optional[torch.Tensor]
    n: int
    r: int
    k: int
    k_ref: int
    cache: dict = field(default_factory=dict)   # fit-distance values of fixed sets, computed once


def eval_targets(spec, p, net, seed: int, cache_dir, device, net_2=None, full: bool = True) -> Targets:
    """The :class:`Targets` of teacher network ``net`` (and second teacher ``net_2``) for the run seed ``seed``;
    with ``full=False`` only the seeds, their labels and Phi_K (what distillation follows along the way)."""
    from .pairing import cached_phi_k, eval_seed_sets, stream_labels, stream_noise

    R, N = p.n_sets, p.n_eval
    batch = getattr(p, "sample_batch", None)
    z = eval_seed_sets(R, N, tuple(spec.shape), seed)
    labels = stream_labels(z.shape[0], spec.label_dim, seed, "eval-labels")
    phi = lambda m, zz, kk, lab: cached_phi_k(m, zz, kk, cache_dir, batch, device, lab)  # noqa: E731
    if not full:
        return Targets(z, labels, phi(net, z, p.k, labels), None, None, None, None, N, R, p.k, p.k_ref)
    ref_labels = stream_labels(2 * N, spec.label_dim, seed, "reference-labels")
    data_gen = make_generator(derived_seed(seed, "data"), "cpu")
    data = torch.cat([spec.images(N, data_gen) for _ in range(2)])
    return Targets(z, labels, phi(net, z, p.k, labels), phi(net, z, 1, labels),
                   phi(net_2, z, p.k, labels) if net_2 is not None else None,
                   phi(net, stream_noise(2 * N, tuple(spec.shape), seed, "reference"), p.k_ref, ref_labels),
                   data, N, R, p.k, p.k_ref)


def fit_distance(name: str):
    """The fit gate's distance between two sample sets of equal size: ``"w2sq"`` (squared W2 by exact OT) or
    ``"fd"`` (the Frechet distance in the features of dmdlib's MNIST classifier, :mod:`dmdlib.features`)."""
    if name == "w2sq":
        return w2_squared
    if name == "fd":
        from .features import classifier_features, frechet_distance, mnist_classifier

        clf, _ = mnist_classifier()
        return lambda a, b: frechet_distance(classifier_features(clf, a), classifier_features(clf, b))
    raise ValueError(f"unknown fit distance {name!r}; allowed: 'w2sq', 'fd'")


def fit_distance_info(name: str) -> dict:
    """What metrics.json says of the fit distance (for ``"fd"``: the feature network's checksum and accuracy)."""
    if name == "fd":
        from .features import mnist_classifier

        _, info = mnist_classifier()
        return {"name": "fd", "what": "Frechet distance in MNIST-classifier features (not Inception FID)",
                "feature_net_sha256": info["sha256"], "feature_net_test_accuracy": info["test_accuracy"]}
    return {"name": name, "what": "squared 2-Wasserstein distance by exact optimal transport"}


def student_metrics(spec, p, t: Targets, g: torch.Tensor, logs: dict, seed: int = 0, curve: bool = False) -> dict:
    """The evaluation record of a student whose outputs on ``t.z`` are ``g`` and whose logs are ``logs`` (see the
    module docstring); ``seed`` (the run's) seeds the random pairing of the reference levels."""
    dn, R, N = spec.fit_distance, t.r, t.n
    distance = fit_distance(dn)
    ref_a, ref_b = t.ref[:N], t.ref[N:]
    data_a, data_b = t.data[:N], t.data[N:]
    if "floor" not in t.cache:   # distances between fixed sets: the same for every student of these targets
        t.cache.update(floor=distance(ref_b, ref_a), data_data=distance(data_a, data_b),
                       phi8_data=distance(t.phi_k[:N], data_a), ref_data=distance(ref_a, data_a))
    fit = fit_numbers(distance, g[:N], ref_a, t.cache["floor"], sampler=t.phi_k[:N], start=t.phi_1[:N])
    verdict = evaluation.verdict(p.gates, fit, evaluation.travel(g, t.phi_1, t.phi_k),
                                 evaluation.plateau(logs["eval"], p.gates.plateau_window))
    fits = {f"{dn}_data_data": t.cache["data_data"], f"{dn}_phi8_data": t.cache["phi8_data"],
            f"{dn}_ref_data": t.cache["ref_data"], f"{dn}_student_data": distance(g[:N], data_a),
            f"{dn}_student_ref": fit["d_student"], f"{dn}_start_ref": fit["d_start"], f"{dn}_ref_ref": fit["d_floor"],
            f"{dn}_phi8_ref": fit["d_sampler"], "k_ref": t.k_ref}
    if spec.support is not None:
        fits.update(support_data=spec.support(data_a), support_phi8=spec.support(t.phi_k[:N]),
                    support_ref=spec.support(ref_a), support_student=spec.support(g[:N]))
    return {
        "delta_e": student_record(delta_e_sets(t.phi_k, g, R), verdict),
        "references": reference_levels(t.phi_k, t.phi_1, g, R, t.phi_k_2, seed=seed),
        "delta_e_vs_n": (curve_columns(delta_e_vs_n(t.phi_k, g, [n for n in p.n_curve if n <= R * N]))
                         if curve else None),
        "fit": fits, "fit_distance": fit_distance_info(dn),
        "sigma_data": spec.sigma_data, "label_dim": spec.label_dim, "data_id": spec.data_id,
        "n_eval": N, "n_sets": R, "k": t.k,
        "delta_e_along": {"iteration": [e["iteration"] for e in logs["eval"]],
                          "delta_e": [e["delta_e"] for e in logs["eval"]]},
        "delta_e_start_set0": delta_e_record(t.phi_k[:N], t.phi_1[:N])["delta_e"],   # = the first point along
        "mean_dist_g_phi8": float(pair_distances(g, t.phi_k).mean()),
        "mean_dist_phi1_phi8": float(pair_distances(t.phi_1, t.phi_k).mean()),
    }


def curve_columns(rows: list) -> dict:
    """A list of per-point dicts -> one array per key (how metrics.json stores curves)."""
    return {k: [r[k] for r in rows] for k in rows[0]} if rows else {}


def samples(t: Targets, g: torch.Tensor) -> dict:
    """The first set's N samples of each map, for the chapters' figures: Phi_1, Phi_K, G, data and T."""
    N = t.n
    return {"phi_8": t.phi_k[:N], "phi_1": t.phi_1[:N], "g": g[:N], "data": t.data[:N], "ref": t.ref[:N]}


def maps(t: Targets, g: torch.Tensor) -> dict:
    """Phi_1, Phi_K, G (and the second teacher's Phi_K) on all R*N seeds."""
    return {"phi_1": t.phi_1, "phi_8": t.phi_k, "g": g, **({"phi_8_2": t.phi_k_2} if t.phi_k_2 is not None else {})}
