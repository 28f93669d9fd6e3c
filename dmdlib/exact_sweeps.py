"""Chapter 09's sweeps read: the record of a point, its extra levels, and what a sweep says about the paper's claims.

A point is one :class:`~dmdlib.pairing.PairingRun` with an exact teacher
(:mod:`dmdlib.exact`). :func:`point_record` stores it as ``metrics.json``
does, with the swept quantities as keys, and adds two things the pairing
path does not measure:

* the **flow level** (:func:`flow_level`): the measures of Phi_{k_ref}, the
  teacher's probability-flow map solved with k_ref steps, against Phi_K on
  the same seeds: what a student that reproduced the teacher's exact map
  would score. The second network's level shares Phi_K's discretisation
  error (Heun with K = 8 overshoots a Gaussian's std by about 30%,
  tests/test_exact.py) but not its denoiser; Phi_{k_ref} shares the denoiser
  but not the discretisation; a one-step student shares neither;
* the **within-mode spread** (:func:`spread_record`): sqrt(mean ||x -
  mu_c(x)||^2 / d), c(x) the nearest component, for the data, the
  teacher's distribution T = Phi_{k_ref}, Phi_K and the student. The fit
  gate compares sets of N = 1000 samples by squared W2, whose sampling
  floor in R^d grows with d: at d = 64 a student that collapses the
  component noise in every direction off the structure passes it. ``ok``:
  the student's spread lies within a factor ``SPREAD_FACTOR`` of T's.

A point is a **result** (:func:`is_result`) when it passed the convergence
gates and its spread is ok. The copying index (:func:`copying_index`)
puts mode agreement on one scale across points: 0 at chance, 1 at the
second network's agreement. :func:`dimension_verdict` and
:func:`resolution_verdict` are the rules of the claims table
(``scripts/claims.py``), also used by the chapter.
"""
from __future__ import annotations

import math
from typing import Optional

import torch

from . import evaluation
from .metrics import delta_e_sets, mode_agreement_sets, relative_pairing_error_sets

SPREAD_FACTOR = 2.0   # the student's within-mode spread within this factor of the teacher's distribution's

REPRODUCED = "reproduced"
CONTRADICTED = "contradicted"
INCONCLUSIVE = "inconclusive"
NOT_RUN = "not run at this scale"


# ----------------------------------------------------------------------------- one point

def spread(x: torch.Tensor, mixture) -> float:
    """sqrt(mean_i ||x_i - mu_{c(x_i)}||^2 / d): the rms offset of samples from their nearest component's mean
    per coordinate (about the component std for the mixture's own samples)."""
    flat = x.reshape(x.shape[0], -1).double()
    mu = mixture.means.double()[mixture.component(flat)]
    return float(((flat - mu) ** 2).sum(1).mean().div(flat.shape[1]).sqrt())


def spread_record(samples: dict, mixture, factor: float = SPREAD_FACTOR) -> dict:
    """:func:`spread` of the data, T (``ref``), Phi_K (``phi_8``) and the student (``g``) of a run's samples,
    ``ratio`` = student / T and ``ok`` = ratio within [1 / factor, factor]."""
    out = {k: spread(samples[k], mixture) for k in ("data", "ref", "phi_8", "g")}
    out["ratio"] = out["g"] / out["ref"] if out["ref"] > 0 else math.inf
    out["ok"] = bool(1 / factor <= out["ratio"] <= factor)
    return out


def flow_level(spec, target: torch.Tensor, flow: torch.Tensor, r: int) -> dict:
    """Delta_E, mode agreement (when ``spec.modes`` is known) and relative pairing error of ``flow``
    (Phi_{k_ref} on the R*N evaluation seeds) against ``target`` (Phi_K on them), with their intervals."""
    out = {"delta_e": evaluation.student_record(delta_e_sets(target, flow, r)),
           "relative_error": _interval(relative_pairing_error_sets(target, flow, r))}
    if spec.modes is not None:
        out["agreement"] = _interval(mode_agreement_sets(spec.modes(target), spec.modes(flow), r))
    return out


def _interval(d: dict) -> dict:
    return {k: d[k] for k in ("value", "ci_low", "ci_high", "sd", "n", "r", "level")}


def point_record(run, spec, flow: Optional[torch.Tensor] = None, **key) -> dict:
    """One point of a chapter 09 sweep as metrics.json stores it: ``key`` (the swept quantities, e.g.
    ``ambient_dim=64, tau=0.2``) beside the student's Delta_E interval and verdict, its reference levels,
    measures and reading (:mod:`dmdlib.records`), its regime, the regressed start's gap to the exact Phi_1,
    the fit numbers, Delta_E along distillation, the flow level (when ``flow``, Phi_{k_ref} on ``run.z``, is
    given) and the within-mode spread (mixtures), with ``result`` (:func:`is_result`)."""
    m = run.metrics
    rec = {**key, **m["delta_e"], "references": m["references"], "measures": m["measures"], "reading": m["reading"],
           "regime": evaluation.regime(m["delta_e"], m["references"]), "regressed_start": m["regressed_start"],
           "fit": m["fit"], "sigma_data": m["sigma_data"], "data_id": m["data_id"],
           "delta_e_along": m["delta_e_along"], "mean_dist_g_phi8": m["mean_dist_g_phi8"],
           "mean_dist_phi1_phi8": m["mean_dist_phi1_phi8"], "teacher_iterations": m["teacher_iterations"],
           "dmd_iterations": m["dmd_iterations"]}
    if flow is not None:
        rec["flow_level"] = flow_level(spec, run.maps["phi_8"], flow, m["n_sets"])
    if hasattr(spec.exact, "means"):
        rec["spread"] = spread_record(run.samples, spec.exact)
    rec["result"] = is_result(rec)
    return rec


def run_point(spec, p, root, seed: int = 0, device="cpu", reference: bool = True, progress_bar: bool = True, **key):
    """:func:`dmdlib.pairing.run_pairing` of one point and its :func:`point_record` with the flow level
    (Phi_{k_ref} of the exact teacher on the evaluation seeds, cached under ``root/samples``): ``(run, record)``."""
    from pathlib import Path

    from .pairing import cached_phi_k, run_pairing

    run = run_pairing(spec, p, root, seed, device, reference=reference, progress_bar=progress_bar)
    flow = cached_phi_k(run.net, run.z, p.k_ref, Path(root) / "samples", getattr(p, "sample_batch", None), device)
    return run, point_record(run, spec, flow, **key)


def is_result(p: dict) -> bool:
    """A point is a result when it passed the convergence gates and its within-mode spread is ok (when measured)."""
    return bool(p.get("converged")) and (p.get("spread") or {}).get("ok", True) is not False


def copying_index(agreement: dict) -> Optional[dict]:
    """Mode agreement on a 0-1 scale: (a - chance) / (ceiling - chance), 0 at chance, 1 at the ceiling (the
    second network's agreement when it lies above chance, else 1; as :func:`dmdlib.evaluation.agreement_regime`),
    for the student's value and the ends of its interval (chance and ceiling taken as fixed). None when
    the ceiling does not lie above chance."""
    chance, student = agreement["chance"], agreement["student"]
    second = agreement.get("second")
    ceiling = second["value"] if second is not None and second["ci_low"] > chance["ci_high"] else 1.0
    gap = ceiling - chance["value"]
    if gap <= 0:
        return None
    scale = lambda v: (v - chance["value"]) / gap  # noqa: E731
    return {"value": scale(student["value"]), "ci_low": scale(student["ci_low"]),
            "ci_high": scale(student["ci_high"]), "ceiling": ceiling}


def point_index(p: dict) -> Optional[dict]:
    """:func:`copying_index` of a point record (None without mode agreement)."""
    agreement = (p.get("measures") or {}).get("agreement")
    return None if agreement is None else copying_index(agreement)


# ----------------------------------------------------------------------------- what a sweep says

def _trend(high: Optional[dict], low: Optional[dict], more_is_copying: bool = True) -> Optional[str]:
    """'rises' (more copying at ``high``), 'falls' or 'flat' from two intervals ({value, ci_low, ci_high}) of a
    measure that grows with copying (``more_is_copying``) or shrinks with it; None if either is missing."""
    if high is None or low is None:
        return None
    up, down = high["ci_low"] > low["ci_high"], high["ci_high"] < low["ci_low"]
    if not more_is_copying:
        up, down = down, up
    return "rises" if up else "falls" if down else "flat"


def dimension_verdict(points: list, key: str) -> dict:
    """The paper's claim "copying grows with dimension" (low-dimensional students remap, high-dimensional
    ones copy) read on one sweep of ``key``: among the points that are results (:func:`is_result`), the
    smallest and the largest value of ``key``, their readings (:func:`dmdlib.evaluation.reading`) and the
    trend of the copying index (:func:`point_index`) from the smallest to the largest.

    * reproduced: the largest copies and the smallest does not;
    * contradicted: the smallest copies (copying without dimension), or the copying index falls (the
      largest's interval wholly below the smallest's: less copying with more dimension);
    * inconclusive: otherwise (e.g. no result copies while the index rises or stays flat: copying, if it
      comes, lies beyond the dimensions with results);
    * not run at this scale: fewer than two results.

    Returns ``{"verdict", "low", "high", "low_reading", "high_reading", "index_trend", "results", "points"}``.
    """
    res = sorted((p for p in points if is_result(p)), key=lambda p: p[key])
    out = {"results": len(res), "points": len(points), "low": None, "high": None}
    if len(res) < 2:
        return {**out, "verdict": NOT_RUN}
    lo, hi = res[0], res[-1]
    words = lo["reading"]["reading"], hi["reading"]["reading"]
    trend = _trend(point_index(hi), point_index(lo))
    if words[1] == "copies" and words[0] != "copies":
        verdict = REPRODUCED
    elif words[0] == "copies" or trend == "falls":
        verdict = CONTRADICTED
    else:
        verdict = INCONCLUSIVE
    return {**out, "verdict": verdict, "low": lo[key], "high": hi[key], "low_reading": words[0],
            "high_reading": words[1], "index_trend": trend}


def _relative_error(p: dict) -> Optional[dict]:
    return ((p.get("measures") or {}).get("relative_error") or {}).get("student")


def resolution_verdict(points: list, dim_key: str = "ambient_dim") -> dict:
    """The paper's claim "better-converged teachers are copied more" read on the teacher-resolution points:
    at each dimension, the student of the converged teacher (tau = 0) against that of the most blurred one
    (the largest tau), both results, by two measures that compare across tau: the copying index
    (:func:`point_index`, mode agreement between chance and the second network) and the relative pairing
    error (scale-free, 0 for a copy).

    Per dimension and measure: 'rises' when the tau = 0 student's interval lies wholly on the copying side
    of the blurred one's (a higher index, a lower error), 'falls' when wholly on the other side, else 'flat'.
    The dimension 'rises' (or 'falls') when both measures do. Verdict: reproduced when every dimension with
    both results rises; contradicted when one at least falls and none rises; inconclusive otherwise (the
    measures disagree, or a trend is flat); not run at this scale when no dimension has both results.
    Returns ``{"verdict", "by_dim": {dim: {...}}}``; every dimension's entry carries its trends, read on
    results or not (``results`` says which; only results enter the verdict).
    """
    by_dim = {}
    for dim in sorted({p[dim_key] for p in points}):
        row = [p for p in points if p[dim_key] == dim]
        taus = sorted(p["tau"] for p in row)
        if len(taus) < 2 or taus[0] != 0:
            continue
        sharp = next(p for p in row if p["tau"] == taus[0])
        blur = next(p for p in row if p["tau"] == taus[-1])
        a, b = point_index(sharp), point_index(blur)
        entry = {"tau_blurred": taus[-1], "index_sharp": a, "index_blurred": b,
                 "error_sharp": _relative_error(sharp), "error_blurred": _relative_error(blur),
                 "results": is_result(sharp) and is_result(blur)}
        entry["index_trend"] = _trend(a, b)
        entry["error_trend"] = _trend(entry["error_sharp"], entry["error_blurred"], more_is_copying=False)
        trends = {t for t in (entry["index_trend"], entry["error_trend"]) if t is not None}
        entry["trend"] = trends.pop() if len(trends) == 1 else "disagree" if {"rises", "falls"} <= trends else "flat"
        by_dim[dim] = entry
    trends = [e["trend"] for e in by_dim.values() if e["results"]]
    if not trends:
        verdict = NOT_RUN
    elif all(t == "rises" for t in trends):
        verdict = REPRODUCED
    elif "falls" in trends and "rises" not in trends:
        verdict = CONTRADICTED
    else:
        verdict = INCONCLUSIVE
    return {"verdict": verdict, "by_dim": by_dim}


# ----------------------------------------------------------------------------- the tables

def _iv(d: Optional[dict], key: str = "value") -> str:
    return "—" if d is None else f"{evaluation._fmt(d[key])} [{evaluation._fmt(d['ci_low'])}, {evaluation._fmt(d['ci_high'])}]"


def _v(d: Optional[dict], key: str = "value") -> str:
    return "—" if d is None else evaluation._fmt(d[key])


def points_table(points: list, label) -> str:
    """A markdown table of sweep points (records of :func:`point_record`), one row per point (``label(p)`` its
    first cell): Delta_E with its interval and the random, second-network and flow levels; mode agreement with
    its interval, chance and the second network's; Delta_E in the structured coordinates and the relative
    pairing error with their random levels; the verdict, the spread ratio (marked "off" outside the factor
    ``SPREAD_FACTOR``) and the reading."""
    head = ("| point | $\\Delta_E$ [95% CI] | random | second network | flow | agreement [95% CI] | chance "
            "| second network | intrinsic $\\Delta_E$ [95% CI] | random | relative error [95% CI] | random "
            "| verdict | spread G / T | reading |\n" + "| --- " * 15 + "|\n")
    rows = []
    for p in points:
        ms, refs, flow = p.get("measures") or {}, p["references"], p.get("flow_level") or {}
        a, i, r = ms.get("agreement") or {}, ms.get("intrinsic_delta_e") or {}, ms.get("relative_error") or {}
        sp = p.get("spread")
        cells = [evaluation.interval_text(p), _v(refs.get("random"), "delta_e"),
                 _v(refs.get("reproducibility"), "delta_e"), _v(flow.get("delta_e"), "delta_e"),
                 _iv(a.get("student")), _v(a.get("chance")), _v(a.get("second")),
                 _iv(i.get("student"), "delta_e"), _v(i.get("random"), "delta_e"), _iv(r.get("student")),
                 _v(r.get("random")), evaluation.verdict_text(p),
                 "—" if sp is None else f"{sp['ratio']:.2f}" + ("" if sp["ok"] else " (off)"),
                 p["reading"]["reading"]]
        rows.append(f"| {label(p)} | " + " | ".join(cells) + " |")
    return head + "\n".join(rows)


__all__ = ["CONTRADICTED", "INCONCLUSIVE", "NOT_RUN", "REPRODUCED", "SPREAD_FACTOR", "copying_index",
           "dimension_verdict", "flow_level", "is_result", "point_index", "point_record", "points_table",
           "resolution_verdict", "run_point", "spread", "spread_record"]
