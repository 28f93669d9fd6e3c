"""Tests that decide the verdicts (issue 22): two means, the two stages of a loss curve, a trend across ordered
groups, and a rank correlation controlled for a third variable.

* :func:`welch`: the difference of two means with its Welch t-interval and
  one-sided p-values (two sides of a comparison, e.g. one value per training
  seed on each side); :func:`slope`: a least-squares trend with its t-interval.
* :func:`two_stages`: does a logged loss curve rise, then fall (paper Sec. 4.2,
  Fig. 4)? The peak is located on every other logged point and tested on the
  others, so that picking the maximum of a noisy curve does not make a flat
  curve look as if it rose and fell.
* :func:`page_trend`: Page's L test for a monotone trend across K ordered
  levels (teacher snapshots) observed in S blocks (training seeds), with an
  exact or Monte Carlo permutation p-value in each direction.
* :func:`partial_spearman`: the rank correlation of x and y given z (ranks,
  then the partial Pearson correlation of the ranks), with a bootstrap and a
  Fisher-z interval.
"""
from __future__ import annotations

import itertools
import math

import numpy as np


def _vector(x, name: str, low: int = 1) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64).reshape(-1)
    if a.size < low or not np.isfinite(a).all():
        raise ValueError(f"{name} must hold at least {low} finite values, got {a.size} values"
                         + ("" if np.isfinite(a).all() else " with non-finite ones"))
    return a


def welch(a, b, level: float = 0.95) -> dict:
    """mean(a) - mean(b) with its Welch t-interval and one-sided p-values.

    Returns ``{"difference", "ci_low", "ci_high", "df", "p_greater" (H1: mean a > mean b), "p_less",
    "mean_a", "mean_b", "n_a", "n_b", "level"}``. Needs at least 2 values on each side. When both
    sides have zero variance the interval is the point and the p-values are 0 or 1 (0.5 for equal means).
    """
    from scipy import stats

    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level!r}")
    a, b = _vector(a, "a", 2), _vector(b, "b", 2)
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    d = float(a.mean() - b.mean())
    se = math.sqrt(va + vb)
    if se == 0:
        p_g = 0.0 if d > 0 else 1.0 if d < 0 else 0.5
        return {"difference": d, "ci_low": d, "ci_high": d, "df": float("inf"), "p_greater": p_g,
                "p_less": 1.0 - p_g if d != 0 else 0.5, "mean_a": float(a.mean()), "mean_b": float(b.mean()),
                "n_a": int(a.size), "n_b": int(b.size), "level": level}
    df = (va + vb) ** 2 / ((va ** 2 / (a.size - 1) if va else 0.0) + (vb ** 2 / (b.size - 1) if vb else 0.0))
    half = float(stats.t.ppf(0.5 + level / 2, df)) * se
    t = d / se
    return {"difference": d, "ci_low": d - half, "ci_high": d + half, "df": float(df),
            "p_greater": float(stats.t.sf(t, df)), "p_less": float(stats.t.cdf(t, df)),
            "mean_a": float(a.mean()), "mean_b": float(b.mean()), "n_a": int(a.size), "n_b": int(b.size),
            "level": level}


def slope(x, y, level: float = 0.95) -> dict:
    """The least-squares slope of y on x with its t-interval and one-sided p-values, and the change it implies
    over the span of x (``change``, ``change_low``, ``change_high``). Needs at least 3 points."""
    from scipy import stats

    x, y = _vector(x, "x", 3), _vector(y, "y", 3)
    if x.size != y.size:
        raise ValueError(f"x and y need the same length, got {x.size} and {y.size}")
    xc = x - x.mean()
    sxx = float((xc ** 2).sum())
    if sxx == 0:
        raise ValueError("x must not be constant")
    b = float((xc * (y - y.mean())).sum() / sxx)
    resid = y - y.mean() - b * xc
    df = x.size - 2
    se = math.sqrt(float((resid ** 2).sum()) / df / sxx)
    span = float(x.max() - x.min())
    if se == 0:
        p_g = 0.0 if b > 0 else 1.0 if b < 0 else 0.5
        p_l = 0.0 if b < 0 else 1.0 if b > 0 else 0.5
        lo = hi = b
    else:
        t = b / se
        p_g, p_l = float(stats.t.sf(t, df)), float(stats.t.cdf(t, df))
        half = float(stats.t.ppf(0.5 + level / 2, df)) * se
        lo, hi = b - half, b + half
    return {"slope": b, "ci_low": lo, "ci_high": hi, "change": b * span, "change_low": lo * span,
            "change_high": hi * span, "p_greater": p_g, "p_less": p_l, "n": int(x.size), "level": level}


SHAPES = ("rises, then falls", "rises only", "falls only", "flat", "too short")


def two_stages(iterations, values, window: int = 3, skip: int = 3, smooth: int = 3, alpha: float = 0.05) -> dict:
    """Whether a logged loss curve rises, then falls, with a noise-aware test (the paper's two stages, Fig. 4).

    The first ``skip`` logged points are left out (the DM loss starts near 0
    by construction: the fake score starts as the teacher, so a rise from
    there is automatic). The rest, as consecutive pairs (one more point is
    dropped at the start when their number is odd), is split in two
    interleaved halves: the first point of each pair *locates* the peak, the
    second *tests* it, so that picking the maximum of a noisy curve cannot
    make a flat one look as if it rose and fell. The peak is the maximum of
    the locating half smoothed by a moving average of ``smooth`` points,
    searched from the third pair to the last pair before the *late window*
    (the last ``window`` pairs); the *peak window* is the ``window`` testing
    points centred on it (moved back, if need be, to end before the late
    window). On the testing half:

    * ``rise``: :func:`slope` of the testing points from the first one to the
      peak's (it *rises* when the slope is positive at one-sided level
      ``alpha``);
    * ``fall``: :func:`welch` of the peak window against the late window (it
      *falls* when the peak window's mean lies above the late window's at
      one-sided level ``alpha``); ``late_above_peak`` when the late window
      lies significantly above the peak window (the loss climbs again, or
      never stopped rising).

    ``shape`` is one of ``SHAPES``: 'rises, then falls', 'rises only',
    'falls only', 'flat', or 'too short' (fewer than ``2 * window + 3`` pairs).
    Requiring both tests at ``alpha`` keeps 'rises, then falls' at level
    ``alpha``. Returns ``{"shape", "rises", "falls", "late_above_peak",
    "rise", "fall", "peak_iteration", "windows" ({"rise", "peak", "late"}:
    [first, last] iteration of their testing points), "window", "skip",
    "smooth", "alpha", "n_points"}``.
    """
    it, v = np.asarray(iterations, dtype=np.float64).reshape(-1), np.asarray(values, dtype=np.float64).reshape(-1)
    if it.shape != v.shape or not np.isfinite(v).all():
        raise ValueError(f"iterations and values need the same length and finite values, got {it.size} and {v.size}")
    for name, x, low in (("window", window, 2), ("skip", skip, 0), ("smooth", smooth, 1)):
        if isinstance(x, bool) or not isinstance(x, int) or x < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {x!r}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha!r}")
    out = {"shape": "too short", "rises": False, "falls": False, "late_above_peak": False, "rise": None,
           "fall": None, "peak_iteration": None, "windows": None, "window": window, "skip": skip, "smooth": smooth,
           "alpha": alpha, "n_points": int(v.size)}
    it, v = it[skip:], v[skip:]
    if v.size % 2:
        it, v = it[1:], v[1:]
    pairs = v.size // 2
    if pairs < 2 * window + 3:
        return out
    loc, test, t_it = v[0::2], v[1::2], it[1::2]
    w = min(smooth, pairs - window - 2)
    sm = np.convolve(loc, np.ones(w) / w, mode="valid")                 # sm[j] centred on pair j + w // 2
    centres = np.arange(sm.size) + w // 2
    inside = (centres >= 2) & (centres < pairs - window)               # a rise of >= 3 points, then the late window
    j = int(centres[inside][np.argmax(sm[inside])])
    start = min(max(j - window // 2, 0), pairs - 2 * window)           # the peak window ends before the late one
    up, peak, late = slice(0, j + 1), slice(start, start + window), slice(pairs - window, pairs)
    rise, fall = slope(t_it[up], test[up]), welch(test[peak], test[late])
    rises, falls = rise["p_greater"] < alpha, fall["p_greater"] < alpha
    shape = ("rises, then falls" if rises and falls else "rises only" if rises else "falls only" if falls else "flat")
    out.update(shape=shape, rises=bool(rises), falls=bool(falls), late_above_peak=bool(fall["p_less"] < alpha),
               rise=rise, fall=fall, peak_iteration=float(it[0::2][j]),
               windows={k: [float(t_it[s][0]), float(t_it[s][-1])] for k, s in
                        (("rise", up), ("peak", peak), ("late", late))})
    return out


def _row_ranks(v: np.ndarray) -> np.ndarray:
    from scipy import stats

    return np.vstack([stats.rankdata(row) for row in v])


def page_trend(values, n_perm: int = 20000, seed: int = 0, exact_max: int = 200_000) -> dict:
    """Page's L test for a monotone trend across ordered levels, one row per block.

    ``values`` is [S, K]: S blocks (training seeds) observed at K ordered
    levels (teacher snapshots, in increasing order). Each row is ranked
    (ties share their average rank) and L = sum_j j * (sum over rows of the
    rank at level j). Under no trend every row's ranks are equally likely in
    any order; the p-values are exact over all (K!)^S orders when there are at
    most ``exact_max`` of them, else from ``n_perm`` random ones (seeded by
    ``seed``; p = (count + 1) / (n_perm + 1)). ``p_increasing``: P(L >= observed);
    ``p_decreasing``: P(L <= observed). A constant row carries no information
    (all its orders have the same L), so constant data give p = 1 both ways.
    Returns ``{"L", "rho", "p_increasing", "p_decreasing", "blocks", "levels", "exact"}``, ``rho``
    the mean over rows of Spearman's correlation of the value with the level (0 for a constant row).
    """
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 2 or v.shape[0] < 1 or v.shape[1] < 2 or not np.isfinite(v).all():
        raise ValueError(f"values must be a finite [blocks, levels] array with >= 1 block and >= 2 levels, "
                         f"got shape {v.shape}")
    s, k = v.shape
    ranks = _row_ranks(v)
    j = np.arange(1, k + 1, dtype=np.float64)
    observed = float((ranks * j).sum())
    rho = [float(np.corrcoef(j, r)[0, 1]) if r.std() > 0 else 0.0 for r in ranks]
    exact = math.factorial(k) ** s <= exact_max
    if exact:
        per_row = [np.array([float(np.dot(j, perm)) for perm in itertools.permutations(r)]) for r in ranks]
        dist = per_row[0]
        for row in per_row[1:]:
            dist = (dist[:, None] + row[None, :]).reshape(-1)
        tol = 1e-9 * max(1.0, abs(observed))
        p_inc, p_dec = float(np.mean(dist >= observed - tol)), float(np.mean(dist <= observed + tol))
    else:
        rng = np.random.default_rng(seed)
        sims = np.zeros(n_perm)
        for r in ranks:
            sims += np.array([np.dot(j, rng.permutation(r)) for _ in range(n_perm)])
        tol = 1e-9 * max(1.0, abs(observed))
        p_inc = float((np.sum(sims >= observed - tol) + 1) / (n_perm + 1))
        p_dec = float((np.sum(sims <= observed + tol) + 1) / (n_perm + 1))
    return {"L": observed, "rho": float(np.mean(rho)), "p_increasing": p_inc, "p_decreasing": p_dec,
            "blocks": int(s), "levels": int(k), "exact": bool(exact)}


def _partial(rx: np.ndarray, ry: np.ndarray, rz: np.ndarray) -> float:
    c = np.corrcoef(np.vstack([rx, ry, rz]))
    xy, xz, yz = c[0, 1], c[0, 2], c[1, 2]
    den = math.sqrt(max((1 - xz ** 2) * (1 - yz ** 2), 0.0))
    return float((xy - xz * yz) / den) if den > 0 else float("nan")


def partial_spearman(x, y, z, n_boot: int = 1000, level: float = 0.95, seed: int = 0) -> dict:
    """Spearman's correlation of ``x`` and ``y`` given ``z``: the three are rank-transformed, then the partial
    Pearson correlation of the ranks, (r_xy - r_xz r_yz) / sqrt((1 - r_xz^2)(1 - r_yz^2)).

    ``ci_low``/``ci_high``: the percentile bootstrap interval over triples
    (``n_boot`` replicates seeded by ``seed``, ranks recomputed in each);
    ``fisher_low``/``fisher_high``: the Fisher-z interval with standard error
    1.06 / sqrt(n - 4) (one variable controlled; 1.06 for ranks). ``raw``:
    the Spearman correlation of x and y without control, for the reader to set beside it.
    """
    from scipy import stats

    x, y, z = _vector(x, "x", 5), _vector(y, "y", 5), _vector(z, "z", 5)
    if not x.size == y.size == z.size:
        raise ValueError(f"x, y and z need the same length, got {x.size}, {y.size} and {z.size}")
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level!r}")
    rk = stats.rankdata
    r = _partial(rk(x), rk(y), rk(z))
    rng = np.random.default_rng(seed)
    reps = []
    for _ in range(n_boot):
        i = rng.integers(0, x.size, x.size)
        reps.append(_partial(rk(x[i]), rk(y[i]), rk(z[i])))
    a = (1 - level) / 2
    q = float(stats.norm.ppf(1 - a)) * 1.06 / math.sqrt(x.size - 4)
    zr = math.atanh(max(min(r, 1 - 1e-12), -1 + 1e-12))
    return {"method": "spearman partial", "r": r, "ci_low": float(np.nanquantile(reps, a)),
            "ci_high": float(np.nanquantile(reps, 1 - a)), "fisher_low": math.tanh(zr - q),
            "fisher_high": math.tanh(zr + q), "raw": float(stats.spearmanr(x, y)[0]), "level": level,
            "n": int(x.size), "n_boot": int(n_boot)}


__all__ = ["SHAPES", "page_trend", "partial_spearman", "slope", "two_stages", "welch"]
