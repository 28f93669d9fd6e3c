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
* ``measures``: the pairing measures that dimension does not dilute
  (:func:`measures_record`), where the spec knows the data's modes or
  intrinsic coordinates, and ``reading``: what Delta_E and those measures say
  together (:func:`dmdlib.evaluation.reading`);
* Delta_E along distillation, its start, the mean distances and the sizes.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import torch

from . import evaluation
from .evaluation import fit_numbers, reference_levels, student_record, w2_squared
from .metrics import (chance_agreement_sets, delta_e_record, delta_e_sets, delta_e_vs_n, mode_agreement_sets,
                      pair_distances, relative_pairing_error_sets)
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
    refs = reference_levels(t.phi_k, t.phi_1, g, R, t.phi_k_2, seed=seed)
    verdict = evaluation.verdict(p.gates, fit, evaluation.travel(g, t.phi_1, t.phi_k),
                                 evaluation.plateau(logs["eval"], p.gates.plateau_window), refs["random"]["delta_e"])
    fits = {f"{dn}_data_data": t.cache["data_data"], f"{dn}_phi8_data": t.cache["phi8_data"],
            f"{dn}_ref_data": t.cache["ref_data"], f"{dn}_student_data": distance(g[:N], data_a),
            f"{dn}_student_ref": fit["d_student"], f"{dn}_start_ref": fit["d_start"], f"{dn}_ref_ref": fit["d_floor"],
            f"{dn}_phi8_ref": fit["d_sampler"], "k_ref": t.k_ref}
    if spec.support is not None:
        fits.update(support_data=spec.support(data_a), support_phi8=spec.support(t.phi_k[:N]),
                    support_ref=spec.support(ref_a), support_student=spec.support(g[:N]))
    rec = student_record(delta_e_sets(t.phi_k, g, R), verdict)
    measures = measures_record(spec, t, g, seed)
    return {
        "delta_e": rec,
        "references": refs,
        "measures": measures,
        "reading": evaluation.reading(rec, refs, measures),
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


def random_rows(n: int, r: int, seed: int) -> np.ndarray:
    """The rows of a random pairing on R stacked sets of N: within set i, the permutation of
    :func:`dmdlib.metrics.random_pairing` with seed ``seed + i`` (the reference levels' random pairing)."""
    return np.concatenate([i * n + np.random.default_rng(seed + i).permutation(n) for i in range(r)])


def _interval(d: dict) -> dict:
    return {k: d[k] for k in ("value", "ci_low", "ci_high", "sd", "n", "r", "level")}


def measures_record(spec, t: Targets, g: torch.Tensor, seed: int = 0) -> Optional[dict]:
    """The pairing measures that dimension does not dilute, for a student whose outputs on ``t.z`` are ``g``.

    Each measure is given for the student and at its reference levels, with
    a t-interval over the same R seed sets as Delta_E: ``"student"`` (G
    against Phi_K), ``"start"`` (Phi_1), ``"second"`` (the second teacher's
    Phi_K, when computed) and ``"random"`` (G with its seeds permuted within
    each set, the permutations of the random-pairing level).

    * ``"agreement"`` (where ``spec.modes`` is known): the fraction of seeds
      whose output falls in the same mode as Phi_K(z) (:func:`dmdlib.metrics.mode_agreement`),
      with ``"chance"``, sum_m p_teacher(m) p_student(m);
    * ``"intrinsic_delta_e"`` (where ``spec.intrinsic`` is known): Delta_E in
      the data's intrinsic coordinates;
    * ``"relative_error"``: E_DT divided by the mean squared distance between
      teacher outputs of different seeds (:func:`dmdlib.metrics.relative_pairing_error`):
      0 for a copy, about 1 for an independent pairing.

    None when the spec knows neither modes nor intrinsic coordinates.
    """
    if spec.modes is None and spec.intrinsic is None:
        return None
    R, N = t.r, t.n
    labels = None if t.labels is None else t.labels.argmax(1)
    rand = torch.as_tensor(random_rows(N, R, seed))
    others = {"start": t.phi_1, **({"second": t.phi_k_2} if t.phi_k_2 is not None else {})}
    out = {"modes": spec.modes_name or None, "intrinsic": spec.intrinsic_name or None}
    rel = {"student": relative_pairing_error_sets(t.phi_k, g, R), "random": relative_pairing_error_sets(t.phi_k, g[rand], R)}
    rel.update({k: relative_pairing_error_sets(t.phi_k, x, R) for k, x in others.items()})
    out["relative_error"] = {k: _interval(v) for k, v in rel.items()}
    if spec.modes is not None:
        if "modes" not in t.cache:   # the teachers' modes: the same for every student of these targets
            t.cache["modes"] = {k: np.asarray(spec.modes(x)) for k, x in (("phi_k", t.phi_k), *others.items())}
        m = t.cache["modes"]
        m_g = np.asarray(spec.modes(g))
        agree = {"student": mode_agreement_sets(m["phi_k"], m_g, R), "random": mode_agreement_sets(m["phi_k"], m_g[rand.numpy()], R),
                 "chance": chance_agreement_sets(m["phi_k"], m_g, R)}
        agree.update({k: mode_agreement_sets(m["phi_k"], m[k], R) for k in others})
        out["agreement"] = {k: _interval(v) for k, v in agree.items()}
    if spec.intrinsic is not None:
        if "coords" not in t.cache:
            t.cache["coords"] = {k: spec.intrinsic(x, labels) for k, x in (("phi_k", t.phi_k), *others.items())}
        c = t.cache["coords"]
        c_g = spec.intrinsic(g, labels)
        intr = {"student": delta_e_sets(c["phi_k"], c_g, R), "random": delta_e_sets(c["phi_k"], c_g[rand], R)}
        intr.update({k: delta_e_sets(c["phi_k"], c[k], R) for k in others})
        out["intrinsic_delta_e"] = {k: student_record(v) for k, v in intr.items()}
    return out


def start_gap(t: Targets, phi_1_init: torch.Tensor) -> dict:
    """How close a network regressed onto an exact teacher starts to the exact teacher's Phi_1 (its G at iteration 0).

    ``mean_distance``: mean ||Phi_1^regressed - Phi_1|| over the R*N seeds;
    ``relative``: that over mean ||Phi_1 - Phi_K|| (the distance a student
    must travel); ``delta_e``: Delta_E(Phi_K, Phi_1^regressed) beside the
    exact start level Delta_E(Phi_K, Phi_1) (``delta_e_exact``).
    """
    gap = float(pair_distances(phi_1_init, t.phi_1).mean())
    travel = float(pair_distances(t.phi_1, t.phi_k).mean())
    return {"mean_distance": gap, "relative": gap / travel if travel > 0 else float("inf"),
            "delta_e": student_record(delta_e_sets(t.phi_k, phi_1_init, t.r)),
            "delta_e_exact": student_record(delta_e_sets(t.phi_k, t.phi_1, t.r))}


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
