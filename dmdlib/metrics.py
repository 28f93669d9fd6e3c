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


def delta_e_interval(pairs, level: float = 0.95) -> dict:
    """Delta_E with a Student-t interval over R independent seed sets (the book's estimator of record).

    ``pairs`` is a sequence of ``(teacher_outputs, student_outputs)``, each
    pair computed on its own, independent set of N noise seeds (all sets of
    the same N). Delta_E-hat_N of every set is one i.i.d. draw of the
    statistic, so their mean estimates E[Delta_E-hat_N] and the interval
    mean +- t_{R-1, (1+level)/2} sd / sqrt(R) covers it at ``level`` (for
    R >= 10 the mean of R draws is close to normal). The target is
    E[Delta_E-hat_N] at this N, not the N -> infinity limit: the estimator
    grows with N, so values compare only at equal N (the paper: N = 1000).

    Never resample seed pairs with replacement instead: duplicated points make
    the optimal assignment cheaper, so bootstrap replicates are biased low
    and a reflected interval can lie entirely above the estimate.

    Returns ``{"delta_e", "ci_low", "ci_high", "sd", "n", "r", "level",
    "values", "e_dt", "e_ot"}``; ``values`` are the R per-set estimates and
    ``e_dt``/``e_ot`` the means of the per-set energies. ``ci_low`` is not
    clipped at 0 (a mean of non-negative values has a symmetric interval).
    An infinite per-set value (E_OT = 0 with E_DT > 0) gives an infinite
    estimate and interval. Raises ``ValueError`` for fewer than 2 sets,
    unequal N, mismatched shapes or a level outside (0, 1).
    """
    _check_level(level)
    try:
        pairs = list(pairs)
    except TypeError:
        raise ValueError("pairs must be a sequence of (teacher_outputs, student_outputs) tuples") from None
    if len(pairs) < 2:
        raise ValueError(f"pairs: need at least 2 independent seed sets for an interval, got {len(pairs)}")
    recs, n = [], None
    for i, pair in enumerate(pairs):
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise ValueError(f"pairs[{i}] must be a (teacher_outputs, student_outputs) pair")
        t, s = pair
        try:
            rec = delta_e_record(t, s)
        except ValueError as e:
            raise ValueError(f"pairs[{i}]: {e}") from None
        size = int(_as_2d_float64(t, "teacher").shape[0])
        if n is None:
            n = size
        elif size != n:
            raise ValueError(f"pairs: every seed set must have the same N; pairs[0] has N = {n}, "
                             f"pairs[{i}] has N = {size}")
        recs.append(rec)
    t = t_interval([x["delta_e"] for x in recs], level)
    return {"delta_e": t["value"], "ci_low": t["ci_low"], "ci_high": t["ci_high"], "sd": t["sd"], "n": n, "r": t["r"],
            "level": t["level"], "values": t["values"],
            "e_dt": float(np.mean([x["e_dt"] for x in recs])), "e_ot": float(np.mean([x["e_ot"] for x in recs]))}


def _check_level(level):
    if isinstance(level, bool) or not isinstance(level, (int, float)) or not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level!r}")


def t_interval(values, level: float = 0.95) -> dict:
    """The Student-t interval of the mean of R i.i.d. per-set values (one per independent seed set).

    mean +- t_{R-1, (1+level)/2} sd / sqrt(R), sd the sample standard
    deviation (ddof 1). A non-finite value gives an infinite sd and interval.
    Returns ``{"value", "ci_low", "ci_high", "sd", "r", "level", "values"}``;
    :func:`delta_e_interval` and the ``*_sets`` measures are built on it.
    Raises ``ValueError`` for fewer than 2 values or a level outside (0, 1).
    """
    from scipy import stats

    _check_level(level)
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    r = len(values)
    if r < 2:
        raise ValueError(f"values: need at least 2 independent seed sets for an interval, got {r}")
    mean = float(values.mean())
    if np.isfinite(values).all():
        sd = float(values.std(ddof=1))
        half = float(stats.t.ppf(0.5 + level / 2, r - 1)) * sd / math.sqrt(r)
    else:
        sd, half = math.inf, math.inf
    return {"value": mean, "ci_low": mean - half, "ci_high": mean + half, "sd": sd, "r": r, "level": float(level),
            "values": values.tolist()}


def split_sets(a, r: int) -> list:
    """Split [R*N, ...] outputs on consecutive seed sets into R arrays of N (the layout of ``eval_seed_sets``)."""
    if isinstance(r, bool) or not isinstance(r, int) or r < 1:
        raise ValueError(f"r must be an integer >= 1, got {r!r}")
    if a.shape[0] % r:
        raise ValueError(f"{a.shape[0]} outputs do not split into {r} sets of equal size")
    n = a.shape[0] // r
    return [a[i * n:(i + 1) * n] for i in range(r)]


def delta_e_sets(teacher, student, r: int, level: float = 0.95) -> dict:
    """:func:`delta_e_interval` for outputs stacked over R consecutive, independent seed sets [R*N, ...]."""
    return delta_e_interval(list(zip(split_sets(teacher, r), split_sets(student, r))), level=level)


def delta_e_vs_n(teacher, student, ns, max_sets: int = 10, level: float = 0.95) -> list:
    """Delta_E-hat_N against N from one pool of independent seeds [M, ...] (the estimator's N dependence).

    For each N in ``ns`` the pool is cut into ``min(max_sets, M // N)``
    disjoint consecutive sets of N seeds; with two or more sets the entry
    carries :func:`delta_e_interval`'s interval, with one only the value.
    Returns a list of dicts ``{"n", "r", "delta_e", "ci_low", "ci_high", "sd"}``.
    """
    x, y = _validate(teacher, student)
    out = []
    for n in ns:
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 2 <= n <= x.shape[0]:
            raise ValueError(f"ns: every N must be an integer in [2, {x.shape[0]}] (the pool size), got {n!r}")
        n = int(n)
        r = min(max_sets, x.shape[0] // n)
        sets = [(x[i * n:(i + 1) * n], y[i * n:(i + 1) * n]) for i in range(r)]
        if r >= 2:
            d = delta_e_interval(sets, level=level)
            out.append({k: d[k] for k in ("n", "r", "delta_e", "ci_low", "ci_high", "sd")})
        else:
            v = pairing_inefficiency(*sets[0])
            out.append({"n": n, "r": 1, "delta_e": v, "ci_low": None, "ci_high": None, "sd": None})
    return out


def random_pairing(student, seed: int = 0):
    """The student's outputs under a random permutation of the seeds: the no-information reference level.

    Delta_E(teacher, random_pairing(student)) is what a student with no
    memory of the teacher's pairing (but the same output distribution) scores.
    """
    n = student.shape[0]
    perm = np.random.default_rng(seed).permutation(n)
    return student[torch.as_tensor(perm)] if torch.is_tensor(student) else np.asarray(student)[perm]


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


# ----------------------------------------------------------------------------- measures that dimension does not dilute
# Delta_E reads the pairing through squared distances in the ambient space. When coordinates the student copies
# dominate those distances, the identity becomes the optimal assignment whatever the student does with the
# low-dimensional structure (notebook 00). Mode agreement counts seeds sent to the teacher's mode, whatever the
# dimension; intrinsic Delta_E is Delta_E on the structure's own coordinates (the chessboard's plane, a mixture's
# structured coordinates, the MLP manifold's latent); the relative pairing error sets E_DT against the spread of the
# teacher's outputs.

def _modes(a, name: str) -> np.ndarray:
    if torch.is_tensor(a):
        a = a.detach().cpu().numpy()
    a = np.asarray(a)
    if a.ndim != 1 or a.shape[0] < 1:
        raise ValueError(f"{name} must be a 1-D array of mode labels [N] with N >= 1, got shape {a.shape}")
    if not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.bool_)):
        raise ValueError(f"{name} must hold integer mode labels, got dtype {a.dtype}")
    return a.astype(np.int64)


def _mode_pair(teacher_modes, student_modes):
    t, s = _modes(teacher_modes, "teacher_modes"), _modes(student_modes, "student_modes")
    if t.shape != s.shape:
        raise ValueError(f"teacher_modes and student_modes must have the same length, got {t.shape[0]} and {s.shape[0]}")
    return t, s


def mode_agreement(teacher_modes, student_modes) -> float:
    """(1/N) sum_i [m(Phi_K(z_i)) = m(G(z_i))]: the fraction of seeds whose student output falls in the teacher's mode.

    1 for a copy; the chance level :func:`chance_agreement` for a student
    that pairs seeds with modes independently of the teacher; 0 for a
    student that sends every seed to another mode (the mode swap).
    """
    t, s = _mode_pair(teacher_modes, student_modes)
    return float((t == s).mean())


def chance_agreement(teacher_modes, student_modes) -> float:
    """sum_m p_T(m) p_G(m), the empirical mode frequencies of teacher and student: the agreement expected when the
    student's mode is independent of the teacher's (same marginals)."""
    t, s = _mode_pair(teacher_modes, student_modes)
    labels, inv = np.unique(np.concatenate([t, s]), return_inverse=True)
    n = t.shape[0]
    p_t = np.bincount(inv[:n], minlength=len(labels)) / n
    p_s = np.bincount(inv[n:], minlength=len(labels)) / n
    return float((p_t * p_s).sum())


def teacher_spread(teacher) -> float:
    """(1/(N(N-1))) sum_{i != j} ||x_i - x_j||^2 = 2N/(N-1) (1/N) sum_i ||x_i - xbar||^2 (exact, float64, no N x N matrix)."""
    x = _as_2d_float64(teacher, "teacher")
    n = x.shape[0]
    if n < 2:
        raise ValueError(f"need N >= 2 teacher outputs, got N = {n}")
    if not np.isfinite(x).all():
        raise ValueError("teacher contains non-finite values (NaN or inf)")
    dev = x - x.mean(0)
    return float(2.0 * n / (n - 1) * (dev * dev).sum(1).mean())


def relative_pairing_error(teacher, student) -> float:
    """E_DT / ((1/(N(N-1))) sum_{i != j} ||x_i - x_j||^2): the mean squared distance of the pairs over that of two
    teacher outputs of different seeds.

    0 for a copy, ~1 for a student with the teacher's distribution that
    pairs seeds independently of it (a random permutation), invariant under
    a common scaling of both. Raises ``ValueError`` when every teacher
    output is the same point (the ratio is undefined), for mismatched shapes,
    N < 2 and non-finite values.
    """
    x, y = _validate(teacher, student)
    spread = teacher_spread(x)
    if spread == 0.0:
        raise ValueError("teacher outputs are all identical: the relative pairing error is undefined")
    return float(((x - y) ** 2).sum(1).mean()) / spread


def _per_set(fn, a, b, r: int, level: float) -> dict:
    sets_a, sets_b = split_sets(a, r), split_sets(b, r)
    values = []
    for i, (u, v) in enumerate(zip(sets_a, sets_b)):
        try:
            values.append(fn(u, v))
        except ValueError as e:
            raise ValueError(f"seed set {i}: {e}") from None
    return {**t_interval(values, level), "n": int(sets_a[0].shape[0])}


def _check_same_rows(a, b, names):
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"{names[0]} and {names[1]} must have the same number of rows [R*N], got "
                         f"{a.shape[0]} and {b.shape[0]}")


def mode_agreement_sets(teacher_modes, student_modes, r: int, level: float = 0.95) -> dict:
    """:func:`mode_agreement` on each of R consecutive, independent seed sets ([R*N] labels) with its t-interval:
    ``{"value", "ci_low", "ci_high", "sd", "n", "r", "level", "values"}``."""
    t, s = _mode_pair(teacher_modes, student_modes)
    return _per_set(mode_agreement, t, s, r, level)


def chance_agreement_sets(teacher_modes, student_modes, r: int, level: float = 0.95) -> dict:
    """:func:`chance_agreement` per seed set (each set's own frequencies), with its t-interval (as :func:`mode_agreement_sets`)."""
    t, s = _mode_pair(teacher_modes, student_modes)
    return _per_set(chance_agreement, t, s, r, level)


def relative_pairing_error_sets(teacher, student, r: int, level: float = 0.95) -> dict:
    """:func:`relative_pairing_error` per seed set ([R*N, ...] outputs), with its t-interval (as :func:`mode_agreement_sets`)."""
    _check_same_rows(teacher, student, ("teacher", "student"))
    return _per_set(relative_pairing_error, teacher, student, r, level)


def pairing_measures(teacher, student, r: int, teacher_modes=None, student_modes=None, teacher_coords=None,
                     student_coords=None, level: float = 0.95) -> dict:
    """Every pairing measure of one student on R independent seed sets (outputs stacked [R*N, ...]).

    ``{"delta_e"}`` (:func:`delta_e_sets`), ``"relative_error"``
    (:func:`relative_pairing_error_sets`); with modes ``"agreement"`` and
    ``"chance"`` (:func:`mode_agreement_sets`, :func:`chance_agreement_sets`);
    with intrinsic coordinates ([R*N, k], e.g. ``toy_plane``,
    ``GaussianMixture.structured``, ``MLPManifold.project``'s u)
    ``"intrinsic_delta_e"``: :func:`delta_e_sets` on them.
    """
    if (teacher_modes is None) != (student_modes is None):
        raise ValueError("teacher_modes and student_modes must be given together")
    if (teacher_coords is None) != (student_coords is None):
        raise ValueError("teacher_coords and student_coords must be given together")
    out = {"delta_e": delta_e_sets(teacher, student, r, level),
           "relative_error": relative_pairing_error_sets(teacher, student, r, level)}
    if teacher_modes is not None:
        _check_same_rows(_modes(teacher_modes, "teacher_modes"), _as_2d_float64(teacher, "teacher"),
                         ("teacher_modes", "teacher"))
        out["agreement"] = mode_agreement_sets(teacher_modes, student_modes, r, level)
        out["chance"] = chance_agreement_sets(teacher_modes, student_modes, r, level)
    if teacher_coords is not None:
        _check_same_rows(teacher_coords, _as_2d_float64(teacher, "teacher"), ("teacher_coords", "teacher"))
        out["intrinsic_delta_e"] = delta_e_sets(teacher_coords, student_coords, r, level)
    return out
