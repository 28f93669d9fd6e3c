"""When a Delta_E is a result: its reference levels and the student's convergence verdict.

A Delta_E of a student is reported with (see :func:`dmdlib.metrics.delta_e_interval`
for the interval over R independent seed sets of N seeds):

* **reference levels**, on the same seed sets: where the student started,
  Delta_E(Phi_K, Phi_1); a random pairing, Delta_E(Phi_K, G o pi) with pi a
  random permutation of each set's seeds (a student with the right outputs
  but no memory of the teacher's pairing); and the reproducibility level,
  Delta_E(Phi_K, Phi_K') between the teacher and a second teacher trained
  from another seed (Zhang et al. 2024: independently trained diffusion
  models share their noise-to-data map). A student whose Delta_E lies below
  the reproducibility level is closer to its own teacher than an
  independently trained model is;
* a **convergence verdict** from three gates, each with its numbers:

  - *fit*: the student's distribution against the teacher's. DMD's target
    is the teacher's distribution, the law of its exact probability-flow
    ODE, sampled by T = Phi_k at large k on independent seeds. With d a
    distance between sample sets of equal size (squared W2 by exact OT for the
    toys, a Frechet distance in classifier features for MNIST), two scales
    say how close is close: the sampling floor d(T', T) of two independent
    teacher samples (what a perfect student scores at this sample size) and
    d(Phi_K, T), how far the teacher's own K-step map, the map Delta_E
    compares the student with, is from the teacher's distribution.
    ``fit_ratio = d(G, T) / max(floor, d(Phi_K, T))``; gate:
    ``fit_ratio <= fit_max``. At ``fit_max = 1`` the one-step student must
    sample the teacher's distribution at least as well as the teacher's own
    K-step sampler does (or, where that sampler is exact, as well as an
    independent sample).
  - *travel*: mean ||G - Phi_1|| / mean ||Phi_K - Phi_1||, how far the
    student moved from its start compared with the teacher's own distance
    from Phi_1 to Phi_K. A student that never moved copies trivially.
    Gate: ``travel >= travel_min``.
  - *plateau*: Delta_E along distillation (one fixed seed set, evaluated
    every ``eval_every`` iterations) has stopped changing. A remapping
    student's Delta_E fluctuates strongly from one evaluation to the next
    (the DM loss is flat along pairing changes that keep the distribution,
    so training noise moves the pairing), so the gate looks for a *trend*:
    a least-squares line through the last ``2 * plateau_window``
    evaluations gives the change it implies over that span, and the gate
    fails when even the lower end of that change's 95% interval exceeds
    ``plateau_rel_tol`` times the mean level plus ``plateau_random_frac``
    times the record's random-pairing level (so the tolerance near 0 scales
    with the data: 0.0005 is 1% of the copying line below). It fails a steady
    drift, and does not fail fluctuations around a level.

The thresholds live in :class:`dmdlib.configs.ConvergenceGates`, one set per
chapter. A student that fails any gate is reported and tabulated as "not
converged", with the failing gate named, never dropped.
"""
from __future__ import annotations

import math
from typing import Callable, Optional

import numpy as np

from .metrics import delta_e_interval, pair_distances, random_pairing, split_sets, transport_energies


def w2_squared(a, b) -> float:
    """Squared 2-Wasserstein distance between two empirical sets of equal size (exact OT, uniform weights)."""
    return transport_energies(a, b)[1]


def fit_numbers(distance: Callable, student, reference, floor: float, sampler=None, **others) -> dict:
    """The fit gate's numbers: d(G, T), the floor, d(Phi_K, T), ``fit_ratio``, and d(X, T) for each of ``others``.

    ``reference`` is the teacher's distribution T (Phi_k at large k);
    ``student``, ``sampler`` (Phi_K, the map Delta_E uses) and every array in
    ``others`` (e.g. ``start=phi_1``) must come from seeds independent of
    ``reference``'s and have its size. ``floor`` is d between two independent
    teacher samples of that size (:func:`w2_squared` of two sets, or a
    Frechet distance), computed by the caller. ``fit_ratio`` is
    ``d(G, T) / max(floor, d(Phi_K, T))``.
    """
    d_g = float(distance(student, reference))
    d_s = float(distance(sampler, reference)) if sampler is not None else 0.0
    scale = max(float(floor), d_s)
    out = {"d_student": d_g, "d_floor": float(floor), "d_sampler": d_s,
           "fit_ratio": d_g / scale if scale > 0 else math.inf}
    out.update({f"d_{k}": float(distance(v, reference)) for k, v in others.items()})
    return out


def travel(g, phi_1, phi_k) -> float:
    """mean ||G(z) - Phi_1(z)|| / mean ||Phi_K(z) - Phi_1(z)|| over the seeds (how far the student moved)."""
    moved, target = pair_distances(g, phi_1).mean(), pair_distances(phi_k, phi_1).mean()
    return float(moved / target) if target > 0 else math.inf


def plateau(evals: list, window: int, key: str = "delta_e") -> dict:
    """The trend of ``key`` over the last ``2 * window`` evaluations (see the module docstring).

    Returns ``{"level", "drift", "change", "recent", "previous", "n_evals"}``:
    ``drift`` is the least-squares slope times the span of those evaluations
    (the change the trend implies), ``change`` the lower end of its 95%
    interval in absolute value (0 when the slope is not distinguishable from
    0), ``level`` their mean, ``recent``/``previous`` the means of the last
    and the preceding ``window`` evaluations. With fewer than ``2 * window``
    evaluations (at least 3 are needed for a line) ``change`` is ``inf``
    and the gate fails.
    """
    from scipy import stats

    if isinstance(window, bool) or not isinstance(window, int) or window < 2:
        raise ValueError(f"window must be an integer >= 2, got {window!r}")
    pts = sorted(((float(e["iteration"]), float(e[key])) for e in evals if key in e))
    if len(pts) < 2 * window:
        last = pts[-1][1] if pts else None
        return {"level": last, "drift": None, "change": math.inf, "recent": last, "previous": None,
                "n_evals": len(pts)}
    t, v = (np.array(x) for x in zip(*pts[-2 * window:]))
    span = t[-1] - t[0]
    tc = t - t.mean()
    slope = float((tc * (v - v.mean())).sum() / (tc ** 2).sum())
    resid = v - v.mean() - slope * tc
    se = float(np.sqrt((resid ** 2).sum() / (len(v) - 2) / (tc ** 2).sum()))
    low = max(0.0, abs(slope) - float(stats.t.ppf(0.975, len(v) - 2)) * se) * span
    return {"level": float(v.mean()), "drift": slope * span, "change": low, "recent": float(v[-window:].mean()),
            "previous": float(v[:window].mean()), "n_evals": len(pts)}


def verdict(gates, fit: dict, travel_value: float, plateau_value: dict, random_level: float) -> dict:
    """The convergence verdict: ``{"converged", "failed", "fit_excess", "travel", "plateau_change", ...}``.

    ``gates`` is a :class:`dmdlib.configs.ConvergenceGates`; ``fit`` comes
    from :func:`fit_numbers`, ``travel_value`` from :func:`travel`,
    ``plateau_value`` from :func:`plateau`; ``random_level`` is the record's
    random-pairing Delta_E (:func:`reference_levels`), which scales the
    plateau tolerance near 0.
    """
    if not (isinstance(random_level, (int, float)) and math.isfinite(random_level) and random_level >= 0):
        raise ValueError(f"random_level must be a finite number >= 0 (the random-pairing Delta_E), got {random_level!r}")
    tol = (gates.plateau_rel_tol * abs(plateau_value["level"] or 0.0)
           + gates.plateau_random_frac * float(random_level))
    checks = {"fit": fit["fit_ratio"] <= gates.fit_max,
              "travel": travel_value >= gates.travel_min,
              "plateau": plateau_value["change"] <= tol}
    return {"converged": all(checks.values()), "failed": [k for k, ok in checks.items() if not ok],
            **fit, "travel": float(travel_value), "plateau_change": plateau_value["change"],
            "plateau_tolerance": tol, "plateau_drift": plateau_value["drift"],
            "plateau_level": plateau_value["level"], "plateau_recent": plateau_value["recent"],
            "plateau_previous": plateau_value["previous"], "plateau_n_evals": plateau_value["n_evals"],
            "thresholds": {"fit_max": gates.fit_max, "travel_min": gates.travel_min,
                           "plateau_window": gates.plateau_window, "plateau_rel_tol": gates.plateau_rel_tol,
                           "plateau_random_frac": gates.plateau_random_frac, "random_level": float(random_level)}}


def _interval_record(d: dict) -> dict:
    return {k: d[k] for k in ("delta_e", "ci_low", "ci_high", "sd", "n", "r", "level", "e_dt", "e_ot")}


def reference_levels(phi_k, phi_1, g, r: int, phi_k_other=None, seed: int = 0, level: float = 0.95) -> dict:
    """Delta_E intervals of the reference levels on R seed sets stacked as [R*N, ...].

    ``"start"``: Delta_E(Phi_K, Phi_1); ``"random"``: Delta_E(Phi_K, G with its
    seeds permuted at random within each set); ``"reproducibility"`` (when
    ``phi_k_other``, a second teacher's Phi_K on the same seeds, is given):
    Delta_E(Phi_K, Phi_K').
    """
    t_sets, g_sets = split_sets(phi_k, r), split_sets(g, r)
    out = {"start": delta_e_interval(list(zip(t_sets, split_sets(phi_1, r))), level),
           "random": delta_e_interval([(t, random_pairing(s, seed + i)) for i, (t, s) in
                                       enumerate(zip(t_sets, g_sets))], level)}
    if phi_k_other is not None:
        out["reproducibility"] = delta_e_interval(list(zip(t_sets, split_sets(phi_k_other, r))), level)
    return {k: _interval_record(v) for k, v in out.items()}


def student_record(interval: dict, verdict_: Optional[dict] = None) -> dict:
    """A student's Delta_E as the book stores it: the interval, and ``converged`` with the gate numbers."""
    rec = _interval_record(interval)
    if verdict_ is not None:
        rec["converged"] = bool(verdict_["converged"])
        rec["gates"] = {k: v for k, v in verdict_.items() if k != "converged"}
    return rec


COPY_FRACTION = 0.05   # a student copies when Delta_E is below 5% of the random-pairing level (see regime)


def regime(rec: dict, references: dict, copy_fraction: float = COPY_FRACTION) -> str:
    """'copies', 'remaps' or 'unresolved': the student's Delta_E interval against ``copy_fraction`` x the
    random-pairing level (the Delta_E of a student that kept nothing of the teacher's pairing).

    Delta_E / Delta_E(random) puts students of different data sets on one scale
    (the chessboard's random level is ~33, MNIST's ~3.3). 'copies': the upper end
    of the interval lies at or below ``copy_fraction`` x random; 'remaps': its
    lower end lies above; 'unresolved': the interval straddles it. 5%: at least 20 times nearer the teacher's pairing than a random
    pairing. The paper's MNIST student (0.0367) is about 1% of our quick MNIST
    random level (3.3), so it copies by this rule; its chessboard (8.55) is about
    26% of our chessboard's (33) and remaps. Whether the student converged is a separate verdict
    (:func:`verdict_text`).
    """
    if not 0 < copy_fraction < 1:
        raise ValueError(f"copy_fraction must lie in (0, 1), got {copy_fraction}")
    line = copy_fraction * references["random"]["delta_e"]
    if rec["ci_high"] <= line:
        return "copies"
    if rec["ci_low"] > line:
        return "remaps"
    return "unresolved"


def agreement_regime(agreement: dict, copy_fraction: float = COPY_FRACTION) -> str:
    """'copies', 'remaps' or 'unresolved': the student's mode agreement against the line between chance and the
    ceiling, the mirror of :func:`regime`.

    The scale runs from chance (sum_m p_teacher(m) p_student(m): a student
    that kept no pairing) to the ceiling: the second teacher's agreement with
    the teacher, what an independently trained model reaches and the most that
    the mode classifier's own errors allow near a copy (1, a perfect copy,
    when no second teacher was measured or its agreement is not above chance).
    The line lies ``copy_fraction`` of that scale below the ceiling.
    'copies': the lower end of the student's interval lies at or above the
    line; 'remaps': its upper end lies below it; 'unresolved': the interval
    straddles it. No student can be both.
    """
    chance, student = agreement["chance"], agreement["student"]
    second = agreement.get("second")
    ceiling = second["value"] if second is not None and second["ci_low"] > chance["ci_high"] else 1.0
    gap = ceiling - chance["value"]
    if gap <= 0:
        return "unresolved"
    line = ceiling - copy_fraction * gap
    if student["ci_low"] >= line:
        return "copies"
    if student["ci_high"] < line:
        return "remaps"
    return "unresolved"


READINGS = ("copies", "remaps", "measures disagree", "unresolved")


def reading(rec: dict, references: dict, measures: Optional[dict], copy_fraction: float = COPY_FRACTION) -> dict:
    """What Delta_E and a measure that dimension does not dilute say together about a student's pairing.

    Delta_E's regime (:func:`regime`) beside the *undiluted* measure's: mode
    agreement (:func:`agreement_regime`) where the data's modes are known,
    else Delta_E in the data's intrinsic coordinates (:func:`regime` against
    its own random-pairing level). The reading (one of ``READINGS``) is
    'copies' when both say copies, 'remaps' when both say remaps (mirror
    rules: no student can be both), 'measures disagree' when one says copies
    and the other remaps (in high dimension: the student keeps the copied
    coordinates but moves the modes, or the reverse), else 'unresolved' (an
    interval straddles its line, or no undiluted measure is known).
    """
    by_delta = regime(rec, references, copy_fraction)
    undiluted, which = None, None
    if measures and "agreement" in measures:
        undiluted, which = agreement_regime(measures["agreement"], copy_fraction), "agreement"
    elif measures and "intrinsic_delta_e" in measures:
        m = measures["intrinsic_delta_e"]
        undiluted, which = regime(m["student"], {"random": m["random"]}, copy_fraction), "intrinsic_delta_e"
    if undiluted is None:
        word = "unresolved"
    elif undiluted == by_delta:
        word = by_delta
    elif {undiluted, by_delta} == {"copies", "remaps"}:
        word = "measures disagree"
    else:
        word = "unresolved"
    return {"reading": word, "delta_e": by_delta, "undiluted": undiluted, "measure": which}


def _level(d: Optional[dict], key: str = "value") -> str:
    return "—" if d is None else f"{_fmt(d[key])} [{_fmt(d['ci_low'])}, {_fmt(d['ci_high'])}]"


def measures_table(results: dict) -> str:
    """A markdown table of the undiluted pairing measures: one row per student ({label: metrics with
    ``measures`` and ``reading``}). Each measure shows the student's value with its 95% interval, then its
    levels (point values; their intervals are in metrics.json): chance (agreement) or a random pairing, the
    start Phi_1 and the second teacher; '—' where a measure is not defined for the data or a level was not
    computed. The last column is the reading (:func:`reading`)."""
    head = ("| | agreement [95% CI] | chance | start | 2nd teacher | intrinsic $\\Delta_E$ [95% CI] | random | start "
            "| 2nd teacher | relative error [95% CI] | random | start | 2nd teacher | reading |\n"
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n")
    rows = []
    for label, m in results.items():
        ms = m.get("measures") or {}
        a, i, r = ms.get("agreement") or {}, ms.get("intrinsic_delta_e") or {}, ms.get("relative_error") or {}
        rd = m.get("reading") or {}
        word = rd.get("reading", "—")
        if rd.get("measure"):
            word += f" ($\\Delta_E$: {rd['delta_e']}; {rd['measure'].replace('_', ' ')}: {rd['undiluted']})"
        point = lambda d, key="value": "—" if d is None else _fmt(d[key])  # noqa: E731
        cells = [_level(a.get("student")), point(a.get("chance")), point(a.get("start")), point(a.get("second")),
                 _level(i.get("student"), "delta_e"), point(i.get("random"), "delta_e"),
                 point(i.get("start"), "delta_e"), point(i.get("second"), "delta_e"),
                 _level(r.get("student")), point(r.get("random")), point(r.get("start")), point(r.get("second")), word]
        rows.append(f"| {label} | " + " | ".join(cells) + " |")
    return head + "\n".join(rows)


def reading_text(metrics: dict) -> str:
    """One sentence for the prose: what Delta_E and the undiluted measure of a record (``metrics`` with
    ``reading`` and ``measures``) say, with the measure's interval and levels, and the reading. Plain
    text (ΔE, no TeX or Markdown markup), so that it reads the same glued as text, printed or displayed."""
    rd, ms = metrics.get("reading") or {}, metrics.get("measures") or {}
    if not rd:
        return "no pairing measure was recorded"
    if rd.get("measure") == "agreement":
        a = ms["agreement"]
        second = f", a second teacher {_level(a['second'])}" if "second" in a else ""
        what = (f"mode agreement ({ms.get('modes') or 'the mode'}) {_level(a['student'])} against chance "
                f"{_level(a['chance'])}{second}")
    elif rd.get("measure") == "intrinsic_delta_e":
        i = ms["intrinsic_delta_e"]
        second = f", a second teacher {_level(i['second'], 'delta_e')}" if "second" in i else ""
        what = (f"\u0394E in {ms.get('intrinsic') or 'intrinsic coordinates'} {_level(i['student'], 'delta_e')} "
                f"against a random pairing {_level(i['random'], 'delta_e')}{second}")
    else:
        return f"\u0394E alone says {rd['delta_e']}: no measure that dimension does not dilute is known here"
    return (f"\u0394E says {rd['delta_e']}; {what} says {rd['undiluted']}; read together: "
            f"{rd['reading']}")


def verdict_text(rec: dict) -> str:
    """'converged' or 'not converged (fit, plateau)' for tables and prose."""
    if "converged" not in rec:
        return "no verdict"
    return "converged" if rec["converged"] else f"not converged ({', '.join(rec['gates']['failed'])})"


def _fmt(v: float) -> str:
    return f"{v:.3g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.2e}"


def interval_text(rec: dict) -> str:
    """'9.68 [9.21, 10.2]' for a Delta_E record."""
    return f"{_fmt(rec['delta_e'])} [{_fmt(rec['ci_low'])}, {_fmt(rec['ci_high'])}]"


def delta_e_table(results: dict, paper: Optional[dict] = None) -> str:
    """A markdown table: one row per student ({label: {"delta_e": record, "references": {...}}}).

    Columns: Delta_E with its 95% interval, N and R, the verdict, the three
    reference levels (blank where not computed) and the paper's value
    (``paper[label]``, blank where the paper gives none).
    """
    head = ("| | $\\Delta_E$ [95% CI] | N, R | verdict | start $\\Delta_E(\\Phi_K, \\Phi_1)$ | random pairing "
            "| second teacher | paper |\n| --- | --- | --- | --- | --- | --- | --- | --- |\n")
    rows = []
    for label, res in results.items():
        rec, refs = res["delta_e"], res.get("references") or {}
        ref = [interval_text(refs[k]) if k in refs else "not computed" for k in ("start", "random", "reproducibility")]
        pv = (paper or {}).get(label)
        rows.append(f"| {label} | {interval_text(rec)} | {rec['n']}, {rec['r']} | {verdict_text(rec)} | "
                    + " | ".join(ref) + f" | {'' if pv is None else pv} |")
    return head + "\n".join(rows)


__all__ = ["COPY_FRACTION", "READINGS", "agreement_regime", "delta_e_table", "fit_numbers", "interval_text",
           "measures_table", "plateau", "reading", "reading_text", "reference_levels", "regime", "student_record", "travel", "verdict",
           "verdict_text", "w2_squared"]
