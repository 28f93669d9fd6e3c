"""The landing page's "claims and evidence" table: each claim of the paper beside our result and a verdict.

Book machinery, not part of dmdlib. Pure: chapters' metrics.json dicts (and the published seed sweeps' runs) in,
markdown out. Every number comes from a metrics.json (ours) or from :data:`dmdlib.paper.PAPER` (the paper's);
none is typed here. ``scripts/build_book.py`` writes :func:`claims_table` into the *staged* ``book/intro.md``
in place of the slot :data:`SLOT`; the repository's ``book/intro.md`` keeps the slot.

Each :class:`Claim` names the paper's claim (paper sections and figures in ``where``), the chapter that measures
it, the paper's number, its rule (one sentence, stated under the table) and a ``judge`` that reads the chapter's
metrics and, where a seed sweep of the chapter is published (``results/<preset>/seeds/<notebook>/``), its runs
(``seeds``: :class:`dmdlib.evidence.SeedRun`), and returns ``(ours, converged, verdict, evidence)``. A verdict is
one of :data:`VERDICTS`:

- *reproduced* / *contradicted*: the rule's test says the claim holds / the opposite holds;
- *inconclusive*: the test says neither, or the evidence is below what the rule needs: a rule that judges
  separately trained models needs ``Claim.min_seeds`` training seeds (teachers and students retrained), and with
  fewer it says at most *inconclusive* (except that one significant counterexample contradicts a claim that says
  "in all cases" or "none");
- *not run at this scale*: no result is committed, the result lacks what the rule needs (e.g. metrics written
  before the undiluted measures existed), or the students the rule reads did not pass the convergence gates
  (:func:`dmdlib.evaluation.verdict`): an unconverged student does not test a claim about trained students.

``evidence`` says which level of evidence the verdict used: "training seeds (S seeds)", or "evaluation seeds
only (...)" (the within-run intervals over R sets of N evaluation seeds of one trained model). A judge written
for one run only may return three values; its evidence is then "evaluation seeds only".

Copying and remapping are read with :func:`dmdlib.evaluation.reading` (Delta_E beside an undiluted measure,
mirror rules, so no student can both copy and remap); over training seeds with
:func:`dmdlib.evidence.seed_reading` (the same rules on across-seed intervals). The two stages, the trend and the
boundary use :mod:`dmdlib.stats`.
"""
from __future__ import annotations

import inspect
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))   # this checkout's dmdlib

from dmdlib import evidence, stats  # noqa: E402
from dmdlib.evaluation import COPY_FRACTION, READINGS, interval_text  # noqa: E402
from dmdlib.paper import PAPER  # noqa: E402

SLOT = "<!-- claims-table -->"

REPRODUCED = "reproduced"
CONTRADICTED = "contradicted"
INCONCLUSIVE = "inconclusive"
NOT_RUN = "not run at this scale"
VERDICTS = (REPRODUCED, CONTRADICTED, INCONCLUSIVE, NOT_RUN)
EVALUATION_ONLY = "evaluation seeds only"

MEMORISATION_THRESHOLD = 1 / 3   # r(y) < 1/3: memorised (paper Sec. 4.1.2, after Bonnaire et al.)
MIN_TREND_POINTS = 3             # snapshots whose students converged, needed to test a trend (claim 5)
ALPHA = 0.05                     # level of the one-sided tests (trend) and of the intervals (95%)
SEEDS_HEADLINE = 5               # training seeds for the chessboard's and MNIST's headline readings
SEEDS_SIDE = 3                   # training seeds for every other claim, per side of a comparison


class ResultError(Exception):
    """The metrics lack what a rule needs; the message goes into the table instead of a crash."""


def _get(m, *path):
    """``m[path[0]][path[1]]...``, or ResultError naming the first missing key as ``a.b.c``."""
    node = m
    for i, key in enumerate(path):
        ok = (isinstance(node, dict) and key in node) or (isinstance(node, list) and isinstance(key, int)
                                                          and -len(node) <= key < len(node))
        if not ok:
            raise ResultError(f"result lacks key `{'.'.join(str(k) for k in path[:i + 1])}`")
        node = node[key]
    return node


def _num(m, *path) -> float:
    v = _get(m, *path)
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ResultError(f"result key `{'.'.join(str(k) for k in path)}` is not a number: {v!r}")
    return float(v)


def _record(m, *path) -> dict:
    """A Delta_E record (delta_e, ci_low, ci_high, n, r) at ``path``, checked."""
    rec = _get(m, *path)
    for k in ("delta_e", "ci_low", "ci_high", "n", "r"):
        _num(m, *path, k)
    return rec


def _converged(m, *path) -> bool:
    v = _get(m, *path, "converged")
    if not isinstance(v, bool):
        raise ResultError(f"result key `{'.'.join(str(k) for k in path + ('converged',))}` is not true/false: {v!r}")
    return v


def _reading(m, *path) -> str:
    word = _get(m, *path, "reading", "reading")
    if word not in READINGS:
        raise ResultError(f"result key `{'.'.join(str(k) for k in path + ('reading', 'reading'))}` is not one of "
                          f"{', '.join(READINGS)}: {word!r}")
    return word


def _conv_text(rec: dict) -> str:
    if rec["converged"]:
        return "converged"
    failed = (rec.get("gates") or {}).get("failed") or []
    return "not converged" + (f" ({', '.join(failed)})" if failed else "")


def _ours(rec: dict, preset: str) -> str:
    """'5.98 [5.67, 6.3] (quick, N = 1000, R = 10)'."""
    return f"{interval_text(rec)} ({preset}, N = {rec['n']:g}, R = {rec['r']:g})"


def _capped(verdict: str, n_seeds: int, need: int, found: int = 0) -> tuple:
    """(verdict, evidence) of a rule judged on evaluation seeds only: at most inconclusive, with the reason
    (``found``: the seed runs there are, usable or not)."""
    level = evidence.level_text(n_seeds, need, found=found)
    if verdict in (REPRODUCED, CONTRADICTED):
        return INCONCLUSIVE, f"{level}; within the run: {verdict}"
    return verdict, level


def _mirror(word: str, want: str) -> str:
    """The verdict of a claim that a student ``want``s ('copies' or 'remaps') from a reading: the reading itself
    reproduces it, the opposite reading contradicts it, 'measures disagree' and 'unresolved' are inconclusive."""
    other = {"copies": "remaps", "remaps": "copies"}[want]
    return REPRODUCED if word == want else CONTRADICTED if word == other else INCONCLUSIVE


def _at(m, path):
    """``m`` at ``path`` or None (a seed run's student, read leniently: older runs lack keys)."""
    node = m
    for k in path:
        if isinstance(node, dict) and k in node:
            node = node[k]
        elif isinstance(node, list) and isinstance(k, int) and -len(node) <= k < len(node):
            node = node[k]
        else:
            return None
    return node


def _usable(student) -> bool:
    """A seed run's student that a seed-level reading can use: converged, with its random level and its reading."""
    if not isinstance(student, dict):
        return False
    rec = student.get("delta_e") if isinstance(student.get("delta_e"), dict) else student
    return (isinstance(rec, dict) and rec.get("converged") is True
            and isinstance(_at(student, ("references", "random", "delta_e")), (int, float))
            and isinstance(_at(student, ("reading", "reading")), str) and isinstance(student.get("measures"), dict))


def _as_student(student: dict) -> dict:
    """The layout :func:`dmdlib.evidence.seed_reading` reads: delta_e as a record (flat records of 06/07 hold it
    in place)."""
    return student if isinstance(student.get("delta_e"), dict) else {**student, "delta_e": student}


def _seed_students(seeds, path) -> tuple:
    """(the usable students at ``path`` of the seed runs, how many runs have a student there at all)."""
    found = [_at(r.metrics, path) for r in seeds or ()]
    found = [s for s in found if isinstance(s, dict)]
    return [_as_student(s) for s in found if _usable(s)], len(found)


def _seed_text(sr: dict) -> str:
    counts = {w: sr["per_seed"].count(w) for w in READINGS if sr["per_seed"].count(w)}
    each = ", ".join(f"{c} {w}" for w, c in counts.items())
    measure = (sr["measure"] or "no undiluted measure").replace("_", " ")
    und = f", {measure} {evidence.interval_text(sr['measure_record'])}" if sr["measure_record"] else ""
    return (f"over {sr['n_seeds']} training seeds: mean $\\Delta_E$ {evidence.interval_text(sr['record'])}{und}, "
            f"read **{sr['reading']}** (per seed: {each})")


# ----------------------------------------------------------------------------- the rules, one per claim

def _judge_pairing(m: dict, path: tuple, want: str, seeds, need: int, label: str = "") -> tuple:
    """A claim that a student ``want``s ('copies' or 'remaps'), read at ``path`` of the chapter's metrics and of
    each seed run: over at least ``need`` converged training seeds, the across-seed reading
    (:func:`dmdlib.evidence.seed_reading`); else the chapter's own reading, capped at inconclusive."""
    students, n_found = _seed_students(seeds, path)
    parts, within = [], None
    try:
        rec = _record(m, *path, "delta_e")
        conv, word = _converged(m, *path, "delta_e"), _reading(m, *path)
        random = _record(m, *path, "references", "random")
        rd = _get(m, *path, "reading")
        why = f" ($\\Delta_E$: {rd.get('delta_e')}; {str(rd.get('measure')).replace('_', ' ')}: {rd.get('undiluted')})"
        parts.append(f"{label}{_ours(rec, _get(m, 'preset'))}; random pairing {interval_text(random)}; "
                     f"read {word}{why if rd.get('measure') else ''}")
        within = (conv, word, rec)
    except ResultError:
        if len(students) < need:
            raise
    sr = evidence.seed_reading(students) if len(students) >= 2 else None
    if sr is not None:
        parts.append(_seed_text(sr))
    if n_found > len(students):
        parts.append(f"{n_found - len(students)} seed run(s) unconverged or without a reading")
    ours = "; ".join(parts)
    if len(students) >= need:
        return ours, f"{len(students)} of {n_found} seeds", _mirror(sr["reading"], want), \
            evidence.level_text(len(students), need)
    conv, word, rec = within
    if not conv:
        return ours, _conv_text(rec), NOT_RUN, evidence.level_text(len(students), need, found=n_found)
    return (ours, _conv_text(rec), *_capped(_mirror(word, want), len(students), need, n_found))


def judge_remapping(m: dict, seeds=()) -> tuple:
    """Claim 1 (chessboard remaps): the student reads 'remaps' (Delta_E and the cell agreement both remap)."""
    return _judge_pairing(m, ("datasets", "chessboard"), "remaps", seeds, SEEDS_HEADLINE)


def judge_mnist_copying(m: dict, seeds=()) -> tuple:
    """Claim 2 (MNIST copies): the student reads 'copies' (Delta_E and the digit agreement both copy)."""
    return _judge_pairing(m, (), "copies", seeds, SEEDS_HEADLINE)


def _welch_text(name: str, a: list, b: list) -> str:
    w = stats.welch(a, b)
    return (f"{name}: {w['difference']:.3g} [{w['ci_low']:.3g}, {w['ci_high']:.3g}] "
            f"({w['n_a']} and {w['n_b']} seeds)")


def judge_no_auxiliary(m: dict, seeds=()) -> tuple:
    """Claim 3 (no GAN or regression term needed): the plain DMD student (variant ``baseline``) copies by the rule
    of claim 2. The GAN and regression students are shown beside it, as differences of seed means of Delta_E with
    Welch intervals where each side has SEEDS_SIDE converged seeds, else as their within-run intervals."""
    ours, conv, verdict, level = _judge_pairing(m, ("variants", "baseline"), "copies", seeds, SEEDS_SIDE, "plain DMD ")
    base, _ = _seed_students(seeds, ("variants", "baseline"))
    others = []
    for v, name in (("gan", "GAN"), ("regression", "regression")):
        side, n_side = _seed_students(seeds, ("variants", v))
        if len(side) >= SEEDS_SIDE and len(base) >= SEEDS_SIDE:
            others.append(_welch_text(f"$\\Delta_E$ {name} − plain", [s["delta_e"]["delta_e"] for s in side],
                                      [s["delta_e"]["delta_e"] for s in base]))
        elif isinstance(_at(m, ("variants", v, "delta_e")), dict):
            seen = (f"; its student converged in {len(side)} of {n_side} seed runs ({SEEDS_SIDE} needed for a "
                    f"difference over seeds)" if n_side else "")
            others.append(f"with {name} {interval_text(_record(m, 'variants', v, 'delta_e'))} (one run{seen})")
    return "; ".join([ours] + others), conv, verdict, level


def _memorised(m: dict) -> tuple:
    """(memorised samples at r < 1/3, samples, smallest r or None) of a chapter-03 result."""
    fractions = _get(m, "memorisation", "fractions")
    if not isinstance(fractions, dict):
        raise ResultError("result key `memorisation.fractions` is not a mapping")
    key = next((k for k in fractions if _is_third(k)), None)
    if key is None:
        raise ResultError("result lacks key `memorisation.fractions` at r = 1/3")
    frac, n = _num(m, "memorisation", "fractions", key), _num(m, "memorisation", "n_samples")
    r_min = m["memorisation"].get("r_min")
    return round(frac * n), n, r_min if isinstance(r_min, (int, float)) else None


def judge_no_memorisation(m: dict, seeds=()) -> tuple:
    """Claim 4 (the teacher does not memorise): contradicted by one memorised teacher sample (r < 1/3) of any
    teacher; reproduced only when the positive control (a teacher trained long on a tiny subset, flagged by the same
    test) fired and no sample of SEEDS_SIDE teachers (one per training seed) is memorised; inconclusive when the
    control did not fire or fewer teachers were tested. No convergence gate: the samples are the teacher's."""
    ctrl = _get(m, "memorisation_control")
    fired = _get(m, "memorisation_control", "fired")
    if not isinstance(fired, bool):
        raise ResultError(f"result key `memorisation_control.fired` is not true/false: {fired!r}")
    frac = _num(m, "memorisation_control", "fraction")
    teachers = [(r.seed, *_memorised(r.metrics)) for r in seeds or ()
                if isinstance(_at(r.metrics, ("memorisation", "fractions")), dict)]
    controls = [_at(r.metrics, ("memorisation_control", "fired")) for r in seeds or ()]
    use_seeds = len(teachers) >= SEEDS_SIDE
    if not use_seeds:
        teachers = [(_get(m, "seed") if "seed" in m else 0, *_memorised(m))]
    fired = fired and all(c is not False for c in controls)
    count, n = sum(t[1] for t in teachers), sum(t[2] for t in teachers)
    mins = [t[3] for t in teachers if t[3] is not None]
    ours = (f"{count} of {n:g} samples of {len(teachers)} teacher{'s' if len(teachers) > 1 else ''} with r < 1/3"
            + (f"; smallest r {min(mins):.3g}" if mins else "")
            + f" ({_get(m, 'preset')}); control ({ctrl.get('subset')} images, {ctrl.get('iterations')} iterations): "
            f"{frac:.0%} of its samples memorised, {'fired' if fired else 'did not fire'} "
            f"(needs {ctrl.get('min_fraction', 0):.0%})")
    n_seed = len(teachers) if use_seeds else sum(isinstance(_at(r.metrics, ("memorisation", "fractions")), dict)
                                                  for r in seeds or ())
    level = evidence.level_text(n_seed, SEEDS_SIDE, "teachers")
    if count > 0:
        return ours, "no gate (teacher samples)", CONTRADICTED, level
    if not fired:
        return ours, "no gate (teacher samples)", INCONCLUSIVE, level
    return ours, "no gate (teacher samples)", REPRODUCED if use_seeds else INCONCLUSIVE, level


def _is_third(k) -> bool:
    try:
        return abs(float(k) - MEMORISATION_THRESHOLD) < 1e-3
    except (TypeError, ValueError):
        return False


def _students(m: dict) -> list:
    students = _get(m, "students")
    if not isinstance(students, list) or not students:
        raise ResultError("result key `students` holds no students")
    return students


def _snapshot_values(m: dict, strict: bool = True) -> dict:
    """{teacher snapshot: (Delta_E record, converged)} of a chapter-04 result (``strict``: ResultError on a missing
    key; else an incomplete result gives {})."""
    try:
        return {_num(m, "students", i, "teacher_kimg"): (_record(m, "students", i, "delta_e"),
                                                          _converged(m, "students", i, "delta_e"))
                for i, _ in enumerate(_students(m))}
    except ResultError:
        if strict:
            raise
        return {}


def judge_teacher_trend(m: dict, seeds=()) -> tuple:
    """Claim 5 (longer-trained teachers are copied more): Page's trend test (:func:`dmdlib.stats.page_trend`) of
    the students' Delta_E across snapshots, one block per training seed, over the snapshots whose students
    converged in every seed: reproduced when it falls (one-sided p < ALPHA), contradicted when it rises, else
    inconclusive; fewer than MIN_TREND_POINTS such snapshots: not run at this scale; fewer than SEEDS_SIDE seeds:
    the chapter's own run, capped at inconclusive."""
    rows = _snapshot_values(m)
    unit, preset = m.get("teacher_unit", "kimg"), _get(m, "preset")
    per_seed = [v for v in (_snapshot_values(r.metrics, strict=False) for r in seeds or ()) if v]
    use_seeds = len(per_seed) >= SEEDS_SIDE
    blocks = per_seed if use_seeds else [rows]
    levels = sorted(k for k in rows if all(k in b and b[k][1] for b in blocks))
    first = next(iter(rows.values()))[0]
    if use_seeds:
        means = {k: sum(b[k][0]["delta_e"] for b in blocks) / len(blocks) for k in levels}
        shown = "; ".join(f"{k:g}: {v:.3g}" for k, v in means.items())
        ours = f"mean $\\Delta_E$ over {len(blocks)} seeds, {unit} {shown or 'none'}"
    else:
        shown = "; ".join(f"{k:g}: {interval_text(rec)}" + ("" if c else " (not converged)")
                          for k, (rec, c) in sorted(rows.items()))
        ours = f"{unit} {shown}"
    ours += f" ({preset}, N = {first['n']:g}, R = {first['r']:g})"
    conv_text = f"{len(levels)} of {len(rows)} snapshots converged" + (f" in every seed" if use_seeds else "")
    if len(levels) < MIN_TREND_POINTS:
        return ours, conv_text, NOT_RUN, evidence.level_text(len(per_seed), SEEDS_SIDE)
    page = stats.page_trend([[b[k][0]["delta_e"] for k in levels] for b in blocks])
    ours += (f"; Page's test over {len(levels)} snapshots: mean Spearman {page['rho']:+.2f}, p(falls) = "
             f"{page['p_decreasing']:.3g}, p(rises) = {page['p_increasing']:.3g}")
    verdict = (REPRODUCED if page["p_decreasing"] < ALPHA else CONTRADICTED if page["p_increasing"] < ALPHA
               else INCONCLUSIVE)
    if use_seeds:
        return ours, conv_text, verdict, evidence.level_text(len(blocks), SEEDS_SIDE)
    return (ours, conv_text, *_capped(verdict, len(per_seed), SEEDS_SIDE))


def judge_boundary(m: dict, seeds=()) -> tuple:
    """Claim 6 (points far from the training data are copied more, Fig. 11): the partial Spearman correlation of
    delta(z) and D(z) given the start distance ||Phi_1(z) - Phi_8(z)|| (delta contains it by definition), shown
    beside the raw one; over SEEDS_SIDE converged training seeds its across-seed interval: below 0 reproduced,
    above 0 contradicted, else inconclusive; with fewer seeds the chapter's bootstrap interval, capped."""
    part = _get(m, "correlations", "partial_spearman_average")
    r, lo, hi = (_num(m, "correlations", "partial_spearman_average", k) for k in ("r", "ci_low", "ci_high"))
    raw = _num(m, "correlations", "spearman_average", "r")
    conv, rec = _converged(m, "delta_e"), _get(m, "delta_e")
    n = part.get("n")
    ours = (f"partial Spearman of δ(z) and D(z) given the start distance {r:.3g} [{lo:.3g}, {hi:.3g}] "
            f"(raw {raw:.3g}; {_get(m, 'preset')}" + (f", N = {n:g})" if isinstance(n, (int, float)) else ")"))
    vals = [_at(s.metrics, ("correlations", "partial_spearman_average", "r")) for s in seeds or ()
            if _at(s.metrics, ("delta_e", "converged")) is True]
    vals = [v for v in vals if isinstance(v, (int, float))]
    if len(vals) >= 2:
        a = evidence.across(vals)
        ours += f"; over {len(vals)} training seeds: mean {a['value']:.3g} [{a['ci_low']:.3g}, {a['ci_high']:.3g}]"
    side = lambda lo_, hi_: REPRODUCED if hi_ < 0 else CONTRADICTED if lo_ > 0 else INCONCLUSIVE  # noqa: E731
    if len(vals) >= SEEDS_SIDE:
        return ours, f"{len(vals)} seeds converged", side(a["ci_low"], a["ci_high"]), \
            evidence.level_text(len(vals), SEEDS_SIDE)
    if not conv:
        return ours, _conv_text(rec), NOT_RUN, evidence.level_text(len(vals), SEEDS_SIDE)
    return (ours, _conv_text(rec), *_capped(side(lo, hi), len(vals), SEEDS_SIDE))


def _two_stage_tests(m: dict, strict: bool = True, seed=None) -> list:
    """[(label, two_stages result)] of the students of a chapter-04 result that have a DM-loss curve; a label names
    the snapshot, the training seed (when given) and whether the student failed its convergence gates."""
    out = []
    try:
        for i, s in enumerate(_students(m)):
            if isinstance(s, dict) and "dm_loss" in s:
                ts = _get(m, "students", i, "two_stages")
                if not isinstance(ts, dict) or ts.get("shape") not in stats.SHAPES:
                    raise ResultError(f"result key `students.{i}.two_stages` holds no test")
                notes = ([f"seed {seed}"] if seed is not None else []) + (
                    ["not converged"] if _at(s, ("delta_e", "converged")) is False else [])
                out.append((f"{s.get('teacher_kimg', i):g} {m.get('teacher_unit', 'kimg')}"
                            + (f" ({', '.join(notes)})" if notes else ""), ts))
    except ResultError:
        if strict:
            raise
        return []
    return out


def judge_two_stages(m: dict, seeds=()) -> tuple:
    """Claim 7 (two stages, Fig. 4: the DM loss first rises, then falls, "in all cases"): per student the noise-aware
    test of :func:`dmdlib.stats.two_stages`. Reproduced when every student of SEEDS_SIDE training seeds rises, then
    falls; contradicted when some student's late window lies above its peak window (one-sided, at ALPHA divided by
    the number of students: its loss did not come down); else inconclusive. Judged on every student, converged or
    not: the claim is about the course of training."""
    tests = _two_stage_tests(m)
    per_seed = [t for t in (_two_stage_tests(r.metrics, strict=False, seed=r.seed) for r in seeds or ()) if t]
    use_seeds = len(per_seed) >= SEEDS_SIDE
    judged = [(lab, ts) for t in (per_seed if use_seeds else [tests]) for lab, ts in t]
    n_conv = sum(1 for i, s in enumerate(_students(m)) if isinstance(s, dict) and "delta_e" in s
                 and _converged(m, "students", i, "delta_e"))
    conv_text = f"not needed ({n_conv} of {len(_students(m))} converged)"
    level = evidence.level_text(len(per_seed), SEEDS_SIDE)
    if not judged:
        return "no DM-loss curves recorded", conv_text, NOT_RUN, level
    tested = [(lab, ts) for lab, ts in judged if ts["shape"] != "too short"]
    if not tested:
        return f"every DM-loss curve too short for the test ({_get(m, 'preset')})", conv_text, NOT_RUN, level
    both = [lab for lab, ts in tested if ts["shape"] == "rises, then falls"]
    others = {}
    for lab, ts in judged:
        if ts["shape"] != "rises, then falls":
            others.setdefault(ts["shape"], []).append(lab)
    alpha = min(ts["alpha"] for _, ts in tested) / len(tested)
    up = [lab for lab, ts in tested if ts["fall"]["p_less"] < alpha]
    where = f"{len(per_seed)} seeds" if use_seeds else _get(m, "preset")
    ours = (f"{len(both)} of {len(judged)} students rise, then fall ({where})"
            + "".join(f"; {shape}: {', '.join(labs)}" for shape, labs in others.items())
            + (f"; late window above the peak: {', '.join(up)}" if up else ""))
    if up:
        return ours, conv_text, CONTRADICTED, level
    if len(both) == len(judged):
        return (ours, conv_text, REPRODUCED, level) if use_seeds else \
            (ours, conv_text, *_capped(REPRODUCED, len(per_seed), SEEDS_SIDE))
    return ours, conv_text, INCONCLUSIVE, level


def _find_record(records: list, dataset: str, conditional: bool) -> Optional[dict]:
    for rec in records if isinstance(records, list) else ():
        if isinstance(rec, dict) and rec.get("dataset") == dataset and rec.get("conditional") is conditional:
            return rec
    return None


def judge_conditional(m: dict, seeds=()) -> tuple:
    """Claim 8 (conditioning strengthens copying, App. A; a conjecture of the paper): on MNIST, the difference of the
    seed means of Delta_E, conditional minus unconditional, with its Welch interval over SEEDS_SIDE converged seeds
    per side: below 0 reproduced, above 0 contradicted, else inconclusive; with fewer seeds the chapter's two
    within-run intervals (one wholly below the other, or not), capped at inconclusive."""
    records = _get(m, "records")
    if not isinstance(records, list):
        raise ResultError("result key `records` is not a list")
    preset = _get(m, "preset")
    for i, rec in enumerate(records):
        if isinstance(rec, dict):
            for k in ("delta_e", "ci_low", "ci_high", "n", "r"):
                _num(m, "records", i, k)
            _converged(m, "records", i)
    cond, uncond = _find_record(records, "mnist", True), _find_record(records, "mnist", False)
    if cond is None or uncond is None:
        which = "conditional" if cond is None else "unconditional"
        return f"result lacks the {which} MNIST record", "", NOT_RUN, EVALUATION_ONLY
    ours = f"MNIST: conditional {_ours(cond, preset)}, unconditional {interval_text(uncond)}"
    mc, mu = _find_record(records, "manifold", True), _find_record(records, "manifold", False)
    if mc is not None and mu is not None:
        ours += f"; manifold: conditional {interval_text(mc)}, unconditional {interval_text(mu)}"
    sides = {c: [r["delta_e"] for r in (_find_record(_at(s.metrics, ("records",)), "mnist", c) for s in seeds or ())
                 if isinstance(r, dict) and r.get("converged") is True and isinstance(r.get("delta_e"), (int, float))]
             for c in (True, False)}
    n_seeds = min(len(sides[True]), len(sides[False]))
    if len(sides[True]) >= 2 and len(sides[False]) >= 2:
        w = stats.welch(sides[True], sides[False])
        ours += (f"; over training seeds, conditional − unconditional {w['difference']:.3g} "
                 f"[{w['ci_low']:.3g}, {w['ci_high']:.3g}] ({w['n_a']} and {w['n_b']} seeds)")
    if n_seeds >= SEEDS_SIDE:
        verdict = REPRODUCED if w["ci_high"] < 0 else CONTRADICTED if w["ci_low"] > 0 else INCONCLUSIVE
        return ours, f"{len(sides[True])} and {len(sides[False])} seeds", verdict, \
            evidence.level_text(n_seeds, SEEDS_SIDE)
    conv_text = ("both" if cond["converged"] and uncond["converged"] else
                 "; ".join(f"{name} {_conv_text(r)}" for name, r in (("conditional", cond), ("unconditional", uncond))))
    if not (cond["converged"] and uncond["converged"]):
        return ours, conv_text, NOT_RUN, evidence.level_text(n_seeds, SEEDS_SIDE)
    verdict = (REPRODUCED if cond["ci_high"] < uncond["ci_low"] else CONTRADICTED if cond["ci_low"] > uncond["ci_high"]
               else INCONCLUSIVE)
    return (ours, conv_text, *_capped(verdict, n_seeds, SEEDS_SIDE))


def _intrinsic_points(m: dict, strict: bool = True) -> dict:
    """{k: student record} of a chapter-06 result's intrinsic-dimension points (a point counts only when its student
    converged and its teacher learned the manifold); ``strict``: ResultError when a point lacks its reading."""
    out = {}
    for i, rec in enumerate(_get(m, "intrinsic") if strict else (_at(m, ("intrinsic",)) or [])):
        if not isinstance(rec, dict):
            continue
        try:
            k = _num(m, "intrinsic", i, "intrinsic_dim")
            _record(m, "intrinsic", i)
            _reading(m, "intrinsic", i)
            ok = _converged(m, "intrinsic", i) and rec.get("teacher_ok", True) is not False
        except ResultError:
            if strict:
                raise
            continue
        out[k] = rec if ok else None
    return out


def judge_intrinsic(m: dict, seeds=()) -> tuple:
    """Claim 9 (our extension of the paper's low/high-dimension contrast along one data family): the reading at the
    smallest and at the largest intrinsic dimension k, over SEEDS_SIDE training seeds at each end (students
    converged, teachers on the manifold): reproduced when the smallest k remaps and the largest copies,
    contradicted when the smallest copies or the largest remaps, else inconclusive; with fewer seeds the chapter's
    own readings, capped at inconclusive."""
    points = _intrinsic_points(m)
    if not points:
        raise ResultError("result key `intrinsic` holds no records")
    ks = sorted(points)
    per_seed = [_intrinsic_points(s.metrics, strict=False) for s in seeds or ()]
    ends = {k: [_as_student(p[k]) for p in per_seed if p.get(k) is not None and _usable(p[k])] for k in (ks[0], ks[-1])}
    n_seeds = min(len(v) for v in ends.values())
    preset = _get(m, "preset")
    ours = "; ".join(f"k = {k:g}: " + (f"{interval_text(points[k])}, read {points[k]['reading']['reading']}"
                                        if points[k] is not None else "no result (not converged or teacher off)")
                     for k in ks) + f" ({preset})"
    if n_seeds >= 2:
        readings = {k: evidence.seed_reading(v) for k, v in ends.items()}
        ours += "; over training seeds: " + "; ".join(f"k = {k:g} {_seed_text(sr)}" for k, sr in readings.items())
    elif per_seed:
        ours += f"; over {len(per_seed)} seed runs: " + "; ".join(
            f"k = {k:g} is a result in {len(v)}" for k, v in ends.items())
    found = len(per_seed)
    judge = lambda lo, hi: (REPRODUCED if lo == "remaps" and hi == "copies" else  # noqa: E731
                            CONTRADICTED if lo == "copies" or hi == "remaps" else INCONCLUSIVE)
    if n_seeds >= SEEDS_SIDE:
        return ours, f"{n_seeds} seeds at both ends", judge(readings[ks[0]]["reading"], readings[ks[-1]]["reading"]), \
            evidence.level_text(n_seeds, SEEDS_SIDE)
    n_conv = sum(p is not None for p in points.values())
    if points[ks[0]] is None or points[ks[-1]] is None:
        return ours, f"{n_conv} of {len(ks)}", NOT_RUN, evidence.level_text(n_seeds, SEEDS_SIDE, found=found)
    verdict = judge(points[ks[0]]["reading"]["reading"], points[ks[-1]]["reading"]["reading"])
    return (ours, f"{n_conv} of {len(ks)}", *_capped(verdict, n_seeds, SEEDS_SIDE, found))


# ----------------------------------------------------------------------------- the claims

@dataclass(frozen=True)
class Claim:
    """One row of the table: the claim, the chapter measuring it, the paper's number, the rule and its judge.

    ``sweep``: the notebook stem whose published seed sweep the judge reads (default: ``chapter``);
    ``min_seeds``: the training seeds its rule needs (``scripts/seeds.py`` plans the sweeps from it)."""
    id: str
    claim: str                 # one sentence
    chapter: str               # notebook stem, e.g. "01_lowdim_remapping"
    paper: object              # from dmdlib.paper.PAPER: a number, {label: number}, or None (the paper gives none)
    where: str                 # where the paper makes the claim
    rule: str                  # the verdict rule, one sentence, as stated under the table
    judge: Callable[..., tuple]
    sweep: Optional[str] = None
    min_seeds: int = SEEDS_SIDE    # training seeds the rule needs (per side); `make seeds` runs at least these

    def paper_text(self) -> str:
        if self.paper is None:
            return f"no number ({self.where})"
        if isinstance(self.paper, dict):
            keys = [k for k, v in self.paper.items() if isinstance(v, (int, float))]
            return (f"{', '.join(f'{self.paper[k]:g}' for k in keys)} at {', '.join(keys)} kimg ({self.where})")
        return f"{self.paper:g} ({self.where})"


def _trend(entry: dict) -> dict:
    return {k: v for k, v in entry.items() if k != "where"}


CLAIMS = [
    Claim("remapping", "A low-dimensional student remaps the teacher's noise–data pairing (2-D chessboard in $\\mathbb{R}^4$).",
          "01_lowdim_remapping", PAPER["chessboard"]["delta_e"], "Fig. 2, 3",
          f"over {SEEDS_HEADLINE} converged training seeds the student's reading ($\\Delta_E$ beside the undiluted "
          "measure, mirror rules) *remaps* reproduces the claim, *copies* contradicts it, and *measures disagree* "
          "or *unresolved* leave it inconclusive",
          judge_remapping, min_seeds=SEEDS_HEADLINE),
    Claim("mnist-copying", "An MNIST student copies the teacher's pairing, $G(z) \\approx \\Phi_K(z)$.",
          "02_mnist_copying", PAPER["mnist_uncond"]["delta_e"], "Fig. 1, 3",
          f"the mirror of rule 1: over {SEEDS_HEADLINE} converged training seeds the reading *copies* reproduces "
          "the claim and *remaps* contradicts it",
          judge_mnist_copying, min_seeds=SEEDS_HEADLINE),
    Claim("no-auxiliary-loss", "Neither an adversarial (GAN) nor a regression term is needed for copying.",
          "03_ablations", PAPER["mnist_uncond"]["delta_e"], "Sec. 4.1.1",
          f"rule 2 for the plain DMD student (neither term) over {SEEDS_SIDE} seeds, with the GAN and regression "
          "students shown beside it as Welch intervals of their difference from it", judge_no_auxiliary),
    Claim("no-memorisation", "The teacher does not memorise its training images.",
          "03_ablations", None, "Sec. 4.1.2, Fig. 12: none memorised",
          "one teacher sample with memorisation ratio r < 1/3 contradicts the claim, and it is reproduced only when "
          f"the positive control (a teacher trained long on a tiny subset) is flagged by the same test and none of "
          f"{SEEDS_SIDE} teachers has such a sample", judge_no_memorisation),
    Claim("teacher-trend", "Students of longer-trained teachers copy more.",
          "04_teacher_convergence", _trend(PAPER["mnist_uncond_by_teacher"]), "Fig. 9, 10",
          f"Page's rank test of $\\Delta_E$ across the snapshots, one block per training seed ({SEEDS_SIDE} seeds, "
          f"snapshots whose students converged in every seed, at least {MIN_TREND_POINTS}), reproduces the claim "
          f"when $\\Delta_E$ falls (one-sided p < {ALPHA}) and contradicts it when it rises",
          judge_teacher_trend),
    Claim("boundary", "Teacher samples far from the training data are copied more.",
          "05_boundary", None, "Sec. 4.2.1, Fig. 11: a moderate negative correlation",
          f"the interval of the partial Spearman correlation of δ(z) and D(z) given the start distance "
          f"‖Φ₁(z) − Φ₈(z)‖ (across {SEEDS_SIDE} training seeds; the raw correlation shown beside it) reproduces "
          "the claim below 0 and contradicts it above 0", judge_boundary),
    Claim("two-stages", "The DM loss first rises, then falls.",
          "04_teacher_convergence", None, "Sec. 4.2, Fig. 4",
          f"every student of {SEEDS_SIDE} training seeds must rise significantly after its first logged points and "
          "fall significantly from its peak window to its late window (one-sided tests, peak located and tested on "
          "alternate logged points), and one student whose late window lies significantly above its peak window "
          "contradicts the claim", judge_two_stages),
    Claim("conditional", "Conditioning strengthens copying (a conjecture of the paper).",
          "07_conditioning", None, "App. A, Fig. 6–8",
          f"the Welch interval of the MNIST seed means of $\\Delta_E$, conditional minus unconditional "
          f"({SEEDS_SIDE} converged seeds per side), reproduces the claim below 0 and contradicts it above 0",
          judge_conditional),
    Claim("intrinsic-dimension", "Students remap at a low intrinsic dimension k of the data and copy at a high one "
          "(our extension of the paper's low/high-dimension contrast, Sec. 3.3–3.4, along one data family).",
          "06_where_copying_begins", None, "Sec. 3.3–3.4; this sweep is ours",
          f"over {SEEDS_SIDE} training seeds at each end of the sweep, the reading *remaps* at the smallest k and "
          "*copies* at the largest reproduces the claim, and *copies* at the smallest or *remaps* at the largest "
          "contradicts it", judge_intrinsic),
]



# ----------------------------------------------------------------------------- chapter 09: an exact teacher
# A self-contained block: the rules live in dmdlib.exact_sweeps (the chapter reads its sweeps with them too) and
# use the verdict words "reproduced", "contradicted", "inconclusive" and "not run at this scale".
from dmdlib import exact_sweeps  # noqa: E402

CONTRADICTED = "contradicted"
INCONCLUSIVE = "inconclusive"
VERDICTS = tuple(dict.fromkeys(VERDICTS + (REPRODUCED, CONTRADICTED, INCONCLUSIVE, NOT_RUN)))
EXACT_CHAPTER = "09_exact_teacher"
_EXACT_WORDS = {exact_sweeps.REPRODUCED: REPRODUCED, exact_sweeps.CONTRADICTED: CONTRADICTED,
                exact_sweeps.INCONCLUSIVE: INCONCLUSIVE, exact_sweeps.NOT_RUN: NOT_RUN}


def _exact_points(m: dict, sweep: str) -> list:
    """The checked point records of one sweep of chapter 09 (Delta_E record, converged, reading)."""
    pts = _get(m, sweep)
    if not isinstance(pts, list) or not pts:
        raise ResultError(f"result key `{sweep}` holds no points")
    for i, _ in enumerate(pts):
        _record(m, sweep, i)
        _converged(m, sweep, i)
        if not isinstance(_get(m, sweep, i, "reading", "reading"), str):
            raise ResultError(f"result key `{sweep}.{i}.reading.reading` is not a word")
    return pts


def _index_text(p: dict) -> str:
    ix = exact_sweeps.point_index(p)
    return "" if ix is None else f", index {ix['value']:.2f}"


def _exact_conv(pts: list, label) -> str:
    off = [label(p) for p in pts if not exact_sweeps.is_result(p)]
    return (f"{len(pts) - len(off)} of {len(pts)} are results"
            + (f" (no result: {', '.join(off)})" if off else ""))


def _judge_exact_dimension(sweep: str, key: str, sym: str) -> Callable[[dict], tuple]:
    def judge(m: dict) -> tuple:
        pts = _exact_points(m, sweep)
        for i, _ in enumerate(pts):
            _num(m, sweep, i, key)
        pts = sorted(pts, key=lambda p: p[key])
        v = exact_sweeps.dimension_verdict(pts, key)
        parts = [f"{sym} = {p[key]:g}: {p['reading']['reading']}{_index_text(p)}" for p in pts]
        ours = f"{'; '.join(parts)} ({_get(m, 'preset')}, N = {pts[0]['n']:g}, R = {pts[0]['r']:g})"
        return ours, _exact_conv(pts, lambda p: f"{sym} = {p[key]:g}"), _EXACT_WORDS[v["verdict"]]
    return judge


exact_structure_rule = _judge_exact_dimension("structure", "structure_dim", "k")
exact_structure_rule.__doc__ = ("Copying grows with the structure dimension k, within one run of chapter 09: the "
                                "rule of :func:`dmdlib.exact_sweeps.dimension_verdict` on the structure sweep.")
exact_ambient_rule = _judge_exact_dimension("ambient", "ambient_dim", "d")
exact_ambient_rule.__doc__ = ("Copying grows with the ambient dimension d, within one run of chapter 09: the rule "
                              "of :func:`dmdlib.exact_sweeps.dimension_verdict` on the ambient sweep.")


def exact_resolution_rule(m: dict) -> tuple:
    """Better-converged teachers are copied more (chapter 09): the rule of
    :func:`dmdlib.exact_sweeps.resolution_verdict` on the teacher-resolution points."""
    pts = _exact_points(m, "resolution")
    for i, _ in enumerate(pts):
        _num(m, "resolution", i, "ambient_dim")
        _num(m, "resolution", i, "tau")
    v = exact_sweeps.resolution_verdict(pts)
    iv = lambda d: "—" if d is None else f"{d['value']:.2f} [{d['ci_low']:.2f}, {d['ci_high']:.2f}]"  # noqa: E731
    parts = []
    for d, e in v["by_dim"].items():
        if not e["results"]:
            parts.append(f"d = {d:g}: no result at τ = 0 or τ = {e['tau_blurred']:g}")
            continue
        parts.append(f"d = {d:g}, τ = 0 against τ = {e['tau_blurred']:g}: index {iv(e['index_sharp'])} against "
                     f"{iv(e['index_blurred'])}, relative error {iv(e['error_sharp'])} against "
                     f"{iv(e['error_blurred'])} ({e['trend']})")
    first = pts[0]
    ours = f"{'; '.join(parts) or 'no dimension with τ = 0'} ({_get(m, 'preset')}, N = {first['n']:g}, R = {first['r']:g})"
    return ours, _exact_conv(pts, lambda p: f"d = {p['ambient_dim']:g}, τ = {p['tau']:g}"), _EXACT_WORDS[v["verdict"]]


def _exact_over_seeds(rule: Callable[[dict], tuple], m: dict, seeds) -> tuple:
    """A chapter-09 claim compares separately trained students (one per dimension or resolution), so it is judged
    over training seeds: ``rule`` (one run's verdict, within-run intervals) is applied to each seed run; with at
    least SEEDS_SIDE seed runs that are results, reproduced or contradicted when every one of them says so, else
    inconclusive; with fewer, the chapter's own verdict, capped at inconclusive."""
    ours, conv, word = rule(m)
    per_seed = []
    for r in seeds or ():
        try:
            per_seed.append(rule(r.metrics)[2])
        except ResultError:
            continue
    runs = [w for w in per_seed if w != NOT_RUN]
    if len(runs) >= SEEDS_SIDE:
        counts = ", ".join(f"{runs.count(w)} {w}" for w in dict.fromkeys(runs))
        ours += f"; over {len(runs)} training seeds: {counts}"
        verdict = runs[0] if len(set(runs)) == 1 and runs[0] in (REPRODUCED, CONTRADICTED) else INCONCLUSIVE
        return ours, conv, verdict, evidence.level_text(len(runs), SEEDS_SIDE)
    if word == NOT_RUN:
        return ours, conv, NOT_RUN, evidence.level_text(len(runs), SEEDS_SIDE)
    return (ours, conv, *_capped(word, len(runs), SEEDS_SIDE))


def judge_exact_structure(m: dict, seeds=()) -> tuple:
    """Copying grows with the structure dimension k (chapter 09): :func:`exact_structure_rule` over training
    seeds (:func:`_exact_over_seeds`)."""
    return _exact_over_seeds(exact_structure_rule, m, seeds)


def judge_exact_ambient(m: dict, seeds=()) -> tuple:
    """Copying grows with the ambient dimension d (chapter 09): :func:`exact_ambient_rule` over training seeds."""
    return _exact_over_seeds(exact_ambient_rule, m, seeds)


def judge_exact_resolution(m: dict, seeds=()) -> tuple:
    """Better-converged teachers are copied more (chapter 09): :func:`exact_resolution_rule` over training
    seeds."""
    return _exact_over_seeds(exact_resolution_rule, m, seeds)


_EXACT_SEEDS = (f"; judged in each of at least {SEEDS_SIDE} training-seed runs, reproduced or contradicted only "
                f"when every run says so")
_EXACT_DIMENSION_RULE = ("among the points that are results (converged, within-mode spread within a factor 2): the "
                         "largest dimension copies and the smallest does not: reproduced; the smallest copies, or the "
                         "copying index (mode agreement from chance, 0, to the second network's, 1) of the largest "
                         "lies wholly below the smallest's: contradicted; otherwise inconclusive; fewer than two "
                         "results: not run at this scale")
CLAIMS += [
    Claim("exact-structure", "Copying grows with the dimension of the data's structure (an exact teacher: M modes on a "
          "sphere in k dimensions).", EXACT_CHAPTER, None, "Sec. 3.3, 3.4, 4.2: copying follows dimension",
          "structure dimension k: " + _EXACT_DIMENSION_RULE + _EXACT_SEEDS, judge_exact_structure),
    Claim("exact-ambient", "Copying grows with dimension (an exact teacher: the paper's 4-D mixture in $\\mathbb{R}^d$).",
          EXACT_CHAPTER, None, "Sec. 3.3, 3.4, 4.2: copying follows dimension",
          "ambient dimension d: " + _EXACT_DIMENSION_RULE + _EXACT_SEEDS, judge_exact_ambient),
    Claim("exact-resolution", "Students of better-converged teachers copy more (an exact teacher blurred by τ).",
          EXACT_CHAPTER, None, "Sec. 4.2.2, Fig. 9, 10: longer-trained teachers are copied more",
          "at every dimension where the converged (τ = 0) and the most blurred teacher's students are both "
          "results, the converged one's copying index lies wholly above and its relative pairing error wholly "
          "below the blurred one's: reproduced; both the other way at one dimension at least and the claimed "
          "way at none: contradicted; otherwise (the two measures disagree, or one is flat) inconclusive; no "
          "dimension with both results: not run at this scale" + _EXACT_SEEDS, judge_exact_resolution),
]

# ----------------------------------------------------------------------------- the table

def _cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _link(stem: str, in_book) -> str:
    if in_book is not None and stem not in in_book:
        return f"`{stem}` (not in this book yet)"
    return f"{{doc}}`{stem.split('_')[0]} <../notebooks/{stem}>`"


def load_metrics(results_root: Path, preset: str, stems) -> tuple:
    """``({stem: metrics dict or None}, {stem: problem})`` from ``results_root/<preset>/<stem>/metrics.json``."""
    found, problems = {}, {}
    for stem in stems:
        path = Path(results_root) / preset / stem / "metrics.json"
        found[stem] = None
        if path.is_file():
            try:
                found[stem] = json.loads(path.read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                problems[stem] = f"`results/{preset}/{stem}/metrics.json` is not readable JSON ({e})"
    return found, problems


def claim_row(claim: Claim, metrics: Optional[dict], problem: Optional[str] = None, seeds=()) -> tuple:
    """``(ours, converged, verdict, evidence)`` of one claim; no result, a problem or missing keys give not run at
    this scale. ``seeds``: the published seed runs of ``claim.sweep`` (or its chapter), for judges that read them."""
    if problem:
        return problem, "", NOT_RUN, EVALUATION_ONLY
    if metrics is None:
        return "no result committed", "", NOT_RUN, EVALUATION_ONLY
    try:
        takes_seeds = "seeds" in inspect.signature(claim.judge).parameters
        out = claim.judge(metrics, seeds=list(seeds or ())) if takes_seeds else claim.judge(metrics)
    except ResultError as e:
        return str(e), "", NOT_RUN, EVALUATION_ONLY
    ours, conv, verdict, level = out if len(out) == 4 else (*out, EVALUATION_ONLY)
    assert verdict in VERDICTS, verdict
    return ours, conv, verdict, level


def _note(preset: str, source: str) -> str:
    rules = " ".join(f"({i}) {c.rule[0].upper() + c.rule[1:]}." for i, c in enumerate(CLAIMS, 1))
    return (
        f"How the verdicts are decided. Every rule can say *reproduced*, *contradicted* or *inconclusive*; a missing "
        f"result, a result lacking a key the rule needs, or unconverged students give *not run at this scale*. "
        f"A comparison or headline number is judged over independent training seeds (teacher and student retrained: "
        f"{SEEDS_HEADLINE} for the chessboard and MNIST copying, {SEEDS_SIDE} per side otherwise, mean with its "
        f"Student-t or Welch 95% interval); with fewer the within-run interval over evaluation seeds is shown and the "
        f"verdict is at most *inconclusive*, except that one significant counterexample contradicts a claim about "
        f"every student or every sample; the *evidence* column says which level each verdict used. "
        f"A student copies (or remaps) only when $\\Delta_E$ and an undiluted measure (mode agreement, else "
        f"$\\Delta_E$ in intrinsic coordinates) both say so: $\\Delta_E$ copies when its interval lies below "
        f"{COPY_FRACTION:.0%} of the random-pairing level and remaps when it lies above, the agreement copies when "
        f"its interval lies within {COPY_FRACTION:.0%} of the gap from chance to the ceiling (the second teacher's "
        f"agreement) and remaps when it lies beyond, so no student can do both; the old rule of claim 1 (an interval "
        f"above the start and the second-teacher levels) would have called the MNIST student remapping, since its "
        f"tiny $\\Delta_E$ also lies above both, but such a student reads *copies* here. The convergence gates' "
        f"plateau tolerance is a fraction of the level plus a fraction of the record's own random-pairing level "
        f"(`ConvergenceGates.plateau_random_frac`), never an absolute number. Positive controls: a student equal to "
        f"$\\Phi_8$ reads *copies* and a random permutation *remaps* under these rules (`tests/test_claims.py`), and "
        f"claim 4 needs its memorisation control to fire. Per row: {rules} "
        f"{source}; the paper's numbers from `dmdlib/paper.py`.")


def claims_markdown(metrics: dict, preset: str, *, in_book=None, executed=(), problems=None, seeds=None) -> str:
    """The table and the note under it, from ``{chapter stem: metrics dict or None}`` and ``seeds`` (``{notebook
    stem: [SeedRun]}``, :func:`dmdlib.evidence.seed_runs`).

    ``in_book``: the chapter stems in this book (others get no link, which would not resolve); None: link all.
    ``executed``: stems whose metrics come from this build, not from ``results/<preset>/``.
    """
    problems, seeds = problems or {}, seeds or {}
    lines = ["| claim | paper | ours (95% interval, preset, N, R) | converged | verdict | evidence | chapter |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for c in CLAIMS:
        ours, conv, verdict, level = claim_row(c, metrics.get(c.chapter), problems.get(c.chapter),
                                               seeds.get(c.sweep or c.chapter, ()))
        lines.append("| " + " | ".join(_cell(x) for x in (c.claim, c.paper_text(), ours, conv, f"**{verdict}**",
                                                            level, _link(c.chapter, in_book))) + " |")
    used = {c.chapter: metrics[c.chapter] for c in CLAIMS if isinstance(metrics.get(c.chapter), dict)}
    commits = sorted({m["commit"][:12] for s, m in used.items() if s not in executed and isinstance(m.get("commit"), str)})
    dirty = any(m.get("dirty") is True for m in used.values())
    source = (f"Our numbers are read from `results/{preset}/<chapter>/metrics.json`"
              + (f", recorded at commit{'s' if len(commits) > 1 else ''} "
                 + ", ".join(f"`{c}`" for c in commits) if commits else "")
              + (" (some with uncommitted changes)" if dirty else "")
              + (f", and the seed runs from `results/{preset}/seeds/<notebook>/` ("
                 + ", ".join(f"{k}: {len(v)} runs" for k, v in sorted(seeds.items())) + ")" if seeds else ""))
    if executed:
        source += (f"; chapter{'s' if len(executed) > 1 else ''} {', '.join(sorted(executed))} "
                   f"{'were' if len(executed) > 1 else 'was'} executed in this build instead (not committed)")
    return "\n".join(lines) + "\n\n" + _note(preset, source) + "\n"


def claims_table(results_root, preset: str, *, executed: Optional[dict] = None, in_book=None) -> str:
    """The claims table at ``preset`` from ``results_root/<preset>/<chapter>/metrics.json`` and the published seed
    sweeps under ``results_root/<preset>/seeds/``.

    ``executed``: ``{stem: metrics}`` of chapters executed in this build, used instead of the committed ones.
    """
    stems = list(dict.fromkeys(c.chapter for c in CLAIMS))
    metrics, problems = load_metrics(Path(results_root), preset, stems)
    executed = {s: m for s, m in (executed or {}).items() if s in metrics and m is not None}
    for s, m in executed.items():
        metrics[s] = m
        problems.pop(s, None)
    seeds = evidence.seed_runs(Path(results_root) / preset / "seeds")
    return claims_markdown(metrics, preset, in_book=in_book, executed=set(executed), problems=problems, seeds=seeds)


def fill_slot(text: str, table: str) -> str:
    """``text`` (the landing page) with the table in place of SLOT; ValueError when the slot is missing."""
    if SLOT not in text:
        raise ValueError(f"the page has no {SLOT} slot for the claims table")
    return text.replace(SLOT, table.rstrip("\n"), 1)


__all__ = ["CLAIMS", "CONTRADICTED", "Claim", "INCONCLUSIVE", "NOT_RUN", "REPRODUCED", "SLOT", "VERDICTS", "claim_row",
           "claims_markdown", "claims_table", "fill_slot", "load_metrics"]
