"""Analyses of paper section 4 and appendices B, E: memorisation, boundary points, the two DMD stages.

* Memorisation (Sec. 4.1.2, Fig. 12): r(y) = ||y - x1(y)|| / ||y - x2(y)|| with x1, x2
  the nearest and second-nearest training images; y counts as memorised when
  r(y) < threshold (1/3 is usual).
* Boundary points (Sec. 4.2.1, Fig. 11): D(z) = average distance of Phi_K(z) to
  the training set, delta(z) = ||G(z) - Phi_K(z)|| - ||Phi_1(z) - Phi_K(z)||,
  and their correlation.
* Two stages (Sec. 4.2, Fig. 4): the DM loss first rises, then falls; the
  turning point is the maximum of the smoothed curve.

Distances between N queries and M reference points are computed in batched
matrix form, ||a - b||^2 = ||a||^2 + ||b||^2 - 2 a.b, on the reference's
device. Both sets are centred by the reference mean in float64 first (which
leaves distances unchanged and removes most of the cancellation). Nearest
neighbours are searched in float32 and the best candidates re-ranked with
exact float64 distances from the difference vectors; D(z) is accumulated in
float64 on a CPU and in centred float32 on a GPU.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch


def _flat(a, name, device=None, dtype=torch.float32) -> torch.Tensor:
    t = torch.as_tensor(a) if not torch.is_tensor(a) else a
    if t.ndim < 1 or t.shape[0] < 1:
        raise ValueError(f"{name} must have shape [N, ...] with N >= 1, got {tuple(t.shape)}")
    t = t.reshape(t.shape[0], -1).to(device=device, dtype=dtype)
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} contains non-finite values")
    return t


def _sq_dists(q: torch.Tensor, ref: torch.Tensor, ref_sq: torch.Tensor) -> torch.Tensor:
    return (q.pow(2).sum(1, keepdim=True) + ref_sq[None, :] - 2.0 * q @ ref.T).clamp_min_(0.0)


@torch.no_grad()
def nearest_neighbours(queries, reference, k: int = 2, batch: int = 1024, device=None):
    """(distances [N, k] float64, indices [N, k]) of the k nearest reference points (L2, unsquared)."""
    ref = _flat(reference, "reference", device)
    dev = ref.device
    q_all = _flat(queries, "queries", dev)
    if q_all.shape[1] != ref.shape[1]:
        raise ValueError(f"queries have {q_all.shape[1]} features, reference has {ref.shape[1]}")
    if not 1 <= k <= ref.shape[0]:
        raise ValueError(f"k must be in [1, {ref.shape[0]}], got {k}")
    ref64 = _flat(reference, "reference", dev, torch.float64)
    q64_all = _flat(queries, "queries", dev, torch.float64)
    mu64 = ref64.mean(0, keepdim=True)
    ref64 -= mu64
    q64_all -= mu64
    ref_c = ref64.float()                 # centred first (in float64), then rounded: little cancellation
    ref_sq = ref_c.pow(2).sum(1)
    kk = min(ref.shape[0], k + 8)  # candidates re-ranked exactly, a margin against float32 ties
    out_d, out_i = [], []
    for q64 in q64_all.split(batch):
        cand = _sq_dists(q64.float(), ref_c, ref_sq).topk(kk, dim=1, largest=False).indices
        exact = (q64[:, None, :] - ref64[cand]).pow(2).sum(-1).sqrt()
        order = exact.argsort(dim=1)[:, :k]
        out_d.append(exact.gather(1, order).cpu())
        out_i.append(cand.gather(1, order).cpu())
    return torch.cat(out_d).numpy(), torch.cat(out_i).numpy()


def memorisation_ratio(samples, train, batch: int = 1024, device=None) -> np.ndarray:
    """r(y) = d(y, NN1) / d(y, NN2) for each sample y (paper Sec. 4.1.2); 0 <= r <= 1."""
    d, _ = nearest_neighbours(samples, train, k=2, batch=batch, device=device)
    return distance_ratio(d)


def distance_ratio(d: np.ndarray) -> np.ndarray:
    """r = d[:, 0] / d[:, 1] from the (NN1, NN2) distances of :func:`nearest_neighbours` (0 when both are 0)."""
    d = np.asarray(d, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(d[:, 1] > 0, d[:, 0] / d[:, 1], 0.0)


def memorised_fractions(r: np.ndarray, thresholds=(1 / 3, 0.25, 0.1, 0.05)) -> dict:
    """{threshold: fraction of samples with r < threshold}."""
    r = np.asarray(r, dtype=np.float64)
    return {float(t): float(np.mean(r < t)) for t in thresholds}


@torch.no_grad()
def mean_distance_to_set(queries, reference, batch: int = 256, device=None) -> np.ndarray:
    """D(z) = average over the reference set of ||q - x|| (unsquared L2) for each query (Fig. 11)."""
    ref = _flat(reference, "reference", device, torch.float64)
    q_all = _flat(queries, "queries", ref.device, torch.float64)
    if q_all.shape[1] != ref.shape[1]:
        raise ValueError(f"queries have {q_all.shape[1]} features, reference has {ref.shape[1]}")
    mu = ref.mean(0, keepdim=True)
    dtype = torch.float32 if ref.device.type == "cuda" else torch.float64  # centred float32 on GPUs
    ref_c = (ref - mu).to(dtype)
    ref_sq = ref_c.pow(2).sum(1)
    out = [_sq_dists(q.to(dtype), ref_c, ref_sq).sqrt().double().mean(1).cpu() for q in (q_all - mu).split(batch)]
    return torch.cat(out).numpy()


def displacement(g, phi_1, phi_k) -> np.ndarray:
    """delta(z) = ||G(z) - Phi_K(z)|| - ||Phi_1(z) - Phi_K(z)|| (negative: moved towards the teacher target)."""
    from .metrics import pair_distances

    return pair_distances(g, phi_k) - pair_distances(phi_1, phi_k)


def correlation(x, y, method: str = "pearson", n_boot: int = 1000, level: float = 0.95, seed: int = 0) -> dict:
    """Pearson or Spearman correlation with a percentile bootstrap interval over pairs."""
    from scipy import stats

    if method not in ("pearson", "spearman"):
        raise ValueError(f"method must be 'pearson' or 'spearman', got {method!r}")
    x, y = np.asarray(x, dtype=np.float64).ravel(), np.asarray(y, dtype=np.float64).ravel()
    if x.shape != y.shape or x.size < 3:
        raise ValueError(f"x and y need the same length >= 3, got {x.size} and {y.size}")
    fn = (lambda a, b: stats.pearsonr(a, b)[0]) if method == "pearson" else (lambda a, b: stats.spearmanr(a, b)[0])
    rng = np.random.default_rng(seed)
    reps = [fn(x[i], y[i]) for i in (rng.integers(0, x.size, x.size) for _ in range(n_boot))]
    a = (1 - level) / 2
    return {"method": method, "r": float(fn(x, y)), "ci_low": float(np.nanquantile(reps, a)),
            "ci_high": float(np.nanquantile(reps, 1 - a)), "level": level, "n": int(x.size)}


def turning_point(iterations, values, window: int = 5) -> Optional[dict]:
    """The maximum of the moving-average-smoothed loss curve: the switch from rising to falling (Fig. 4).

    Returns ``{"iteration", "value"}`` or None when the smoothed curve peaks at
    its last point (no falling stage observed yet).
    """
    it = np.asarray(iterations, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    if it.shape != v.shape or v.size < 1:
        raise ValueError("iterations and values need the same, non-zero length")
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    w = min(window, v.size)
    sm = np.convolve(v, np.ones(w) / w, mode="valid")
    centre = it[w // 2: w // 2 + sm.size]
    j = int(np.argmax(sm))
    if j == sm.size - 1:
        return None
    return {"iteration": float(centre[j]), "value": float(sm[j])}


def memorisation_report(p, samples, train, device="cpu") -> dict:
    """r(y) for each sample, the memorised fractions at the preset's thresholds, and the neighbours (Fig. 12)."""
    d, idx = nearest_neighbours(samples, train, k=2, batch=p.nn_batch, device=device)
    r = distance_ratio(d)
    return {"r": r, "nn_dist": d, "nn_index": idx,
            "fractions": memorised_fractions(r, p.memorisation_thresholds)}


def dm_curve(result) -> tuple:
    """(iterations, logged mean DM loss) of a student."""
    log = result.logs["dm"]
    return np.asarray(log["iteration"], dtype=np.float64), np.asarray(log["value"], dtype=np.float64)

