"""Pairing inefficiency Delta_E (paper Definition 3.1, Eq. 4-6) and helpers.

With N shared noise seeds z_i, teacher samples x_i = Phi_K(z_i) and student
samples y_i = G(z_i):

* E_DT = (1/N) sum_i ||x_i - y_i||^2          (the pairing DMD produced),
* E_OT = min_perm (1/N) sum_i ||x_i - y_perm(i)||^2  (the best one-to-one pairing),
* Delta_E = E_DT / E_OT - 1 >= 0.

With uniform weights and equal N the optimal coupling of two empirical
measures is a permutation (Birkhoff), so E_OT is computed exactly by the
Hungarian/Jonker-Volgenant solver of SciPy on the float64 cost matrix.
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment


def _as_2d_float64(a, name: str) -> np.ndarray:
    if torch.is_tensor(a):
        a = a.detach().to("cpu", torch.float64).numpy()
    a = np.asarray(a, dtype=np.float64)
    if a.ndim < 1:
        raise ValueError(f"{name} must have shape [N, ...], got a scalar")
    return a.reshape(a.shape[0], -1)


def _validate(teacher, student):
    x, y = _as_2d_float64(teacher, "teacher"), _as_2d_float64(student, "student")
    ts = tuple(teacher.shape) if hasattr(teacher, "shape") else x.shape
    ss = tuple(student.shape) if hasattr(student, "shape") else y.shape
    if tuple(ts) != tuple(ss):
        raise ValueError(f"teacher and student must have the same shape [N, ...], got {tuple(ts)} and {tuple(ss)}")
    if x.shape[0] < 2:
        raise ValueError(f"need N >= 2 paired samples, got N = {x.shape[0]}")
    if x.shape[1] < 1:
        raise ValueError("samples must have at least one coordinate")
    for name, a in (("teacher", x), ("student", y)):
        if not np.isfinite(a).all():
            raise ValueError(f"{name} contains non-finite values (NaN or inf): {int((~np.isfinite(a)).sum())} entries")
    return x, y


def squared_distances(teacher, student) -> np.ndarray:
    """M_ij = ||teacher_i - student_j||^2 in float64, [N, N], clamped at 0.

    Uses ||a||^2 + ||b||^2 - 2 a.b on mean-centred data (centering by the
    joint mean leaves every distance unchanged and removes most of the
    cancellation); the diagonal and the assigned entries are recomputed
    directly where exactness matters (see :func:`transport_energies`).
    """
    x, y = _validate(teacher, student)
    c = 0.5 * (x.mean(0) + y.mean(0))
    x, y = x - c, y - c
    m = (x * x).sum(1)[:, None] + (y * y).sum(1)[None, :] - 2.0 * x @ y.T
    return np.maximum(m, 0.0)


def optimal_assignment(teacher, student) -> np.ndarray:
    """perm with perm[i] = index of the student sample matched to teacher sample i by exact OT."""
    rows, cols = linear_sum_assignment(squared_distances(teacher, student))
    perm = np.empty_like(cols)
    perm[rows] = cols
    return perm


def transport_energies(teacher, student) -> tuple[float, float]:
    """(E_DT, E_OT) as floats: mean squared L2 distance of the given pairs, and under exact OT.

    Inputs are torch tensors or numpy arrays of shape [N, ...], flattened per
    sample and computed in float64.
    """
    x, y = _validate(teacher, student)
    perm = optimal_assignment(x, y)
    e_dt = float(((x - y) ** 2).sum(1).mean())
    e_ot = float(((x - y[perm]) ** 2).sum(1).mean())
    return e_dt, min(e_ot, e_dt)  # the identity is a feasible permutation: E_OT <= E_DT exactly


def pairing_inefficiency(teacher, student) -> float:
    """Delta_E = E_DT / E_OT - 1 (paper Eq. 6).

    Edge case E_OT = 0 (the two samples are the same multiset of points):
    Delta_E = 0 if also E_DT = 0 (every pair coincides: perfect copying) and
    ``math.inf`` otherwise (the student hits exactly the teacher's points but
    pairs them differently: unbounded inefficiency). Raises ``ValueError`` for
    mismatched shapes, N < 2 and non-finite values.
    """
    return delta_e_record(teacher, student)["delta_e"]


def delta_e_record(teacher, student) -> dict:
    """{"delta_e", "e_dt", "e_ot"} from one assignment (what the notebooks log along distillation)."""
    e_dt, e_ot = transport_energies(teacher, student)
    d = (0.0 if e_dt == 0.0 else math.inf) if e_ot == 0.0 else e_dt / e_ot - 1.0
    return {"delta_e": d, "e_dt": e_dt, "e_ot": e_ot}


def delta_e(teacher, student) -> float:
    """Alias of :func:`pairing_inefficiency` under the paper's symbol."""
    return pairing_inefficiency(teacher, student)


def delta_e_bootstrap(teacher, student, n_boot: int = 200, level: float = 0.95,
                      seed: int = 0) -> dict:
    """Delta_E with a basic (reverse-percentile) bootstrap confidence interval over seed pairs.

    Each replicate resamples the N pairs (z_i -> (x_i, y_i)) with replacement
    and recomputes Delta_E. A resample holds fewer distinct points, and the
    optimal assignment of fewer points is costlier, so replicates are biased
    *low* (strongly so when Delta_E is near 0, where the plain percentile
    interval can exclude the estimate itself). The basic interval
    [2 d - q_hi, 2 d - q_lo] (clipped at 0) corrects for that shift; when the
    shift exceeds the replicates' spread (Delta_E very near 0) the corrected
    interval lies entirely above the raw estimate. ``boot_mean`` reports the
    replicates' mean, so the bias ``boot_mean - delta_e`` can be read off.
    Returns ``{"delta_e", "ci_low", "ci_high", "level", "n_boot", "std", "boot_mean"}``.
    """
    if isinstance(n_boot, bool) or not isinstance(n_boot, int) or n_boot < 2:
        raise ValueError(f"n_boot must be an integer >= 2, got {n_boot!r}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    x, y = _validate(teacher, student)
    rng = np.random.default_rng(seed)
    reps = []
    for _ in range(n_boot):
        idx = rng.integers(0, x.shape[0], x.shape[0])
        reps.append(pairing_inefficiency(x[idx], y[idx]))
    reps = np.asarray(reps)
    d = pairing_inefficiency(x, y)
    a = (1 - level) / 2
    q_lo, q_hi = np.quantile(reps, a), np.quantile(reps, 1 - a)
    return {"delta_e": d, "ci_low": float(max(0.0, 2 * d - q_hi)), "ci_high": float(max(0.0, 2 * d - q_lo)),
            "level": level, "n_boot": n_boot, "std": float(reps.std(ddof=1)), "boot_mean": float(reps.mean()),
            "method": "basic bootstrap over seed pairs"}


def pca_projection(reference, *others, k: int = 2, center: Optional[np.ndarray] = None):
    """Project ``reference`` and ``others`` on the k leading principal components of ``reference``.

    Used for Fig. 1 (bottom) and Fig. 7: the axes are those of Phi_8. Returns
    a list of [N, k] arrays, reference first.
    """
    ref = _as_2d_float64(reference, "reference")
    if not 1 <= k <= ref.shape[1]:
        raise ValueError(f"k must be in [1, {ref.shape[1]}], got {k}")
    mu = ref.mean(0) if center is None else center
    _, _, vt = np.linalg.svd(ref - mu, full_matrices=False)
    basis = vt[:k].T
    outs = [(ref - mu) @ basis]
    for i, o in enumerate(others):
        o = _as_2d_float64(o, f"others[{i}]")
        if o.shape[1] != ref.shape[1]:
            raise ValueError(f"others[{i}] has {o.shape[1]} features, reference has {ref.shape[1]}")
        outs.append((o - mu) @ basis)
    return outs


def pair_distances(a, b) -> np.ndarray:
    """Row-wise L2 distances ||a_i - b_i|| (float64), e.g. ||G(z) - Phi_8(z)||."""
    x, y = _validate(a, b)
    return np.sqrt(((x - y) ** 2).sum(1))
