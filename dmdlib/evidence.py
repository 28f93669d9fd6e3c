"""Evidence across training seeds: the published seed sweeps read back, and a student's numbers judged over seeds.

Every chapter's interval is over R sets of N *evaluation* seeds of one
trained teacher and student. A seed sweep (:mod:`dmdlib.sweep`, ``make
seeds``) runs a chapter again for several *training* seeds (teachers and
students retrained) and publishes each run's metrics.json under
``results/<preset>/seeds/<notebook>/<run>/``; :func:`seed_runs` reads them
back. Over the runs:

* :func:`across` is the Student-t interval of the mean of one value per
  seed, in the layout of a Delta_E record (``delta_e``, ``ci_low``,
  ``ci_high``), so that :func:`dmdlib.evaluation.regime` reads it;
* :func:`seed_reading` reads a student's pairing over seeds with the very
  rules of one run (:func:`dmdlib.evaluation.reading`: the mirror rules, so
  no student can both copy and remap), applied to the across-seed intervals
  of Delta_E, its random-pairing level and the undiluted measure (mode
  agreement with its chance and second-teacher levels, or intrinsic Delta_E
  with its random level);
* :func:`dmdlib.stats.welch` compares two sides' seed values.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from . import evaluation
from .metrics import t_interval


@dataclass
class SeedRun:
    """One published run of a seed sweep: its training seed, grid values and metrics.json."""
    seed: int
    metrics: dict
    run: str = ""
    grid: dict = field(default_factory=dict)


def seed_runs(folder) -> dict:
    """``{notebook stem: [SeedRun, ...]}`` (sorted by seed) from the published sweeps under ``folder``
    (``<folder>/<sub>/<run>/metrics.json`` beside ``<sub>/sweep.json``). The notebook is named by
    ``sweep.json`` (else the sub-folder's name); a run's seed and grid values come from its ``done.json``
    (else its metrics.json's ``seed``). Unreadable files are skipped. A missing folder gives ``{}``."""
    out = {}
    folder = Path(folder)
    if not folder.is_dir():
        return out
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        info = _json(sub / "sweep.json") or {}
        stem = Path(info.get("notebook", sub.name)).stem
        for run_dir in sorted(p for p in sub.iterdir() if p.is_dir()):
            m = _json(run_dir / "metrics.json")
            if not isinstance(m, dict):
                continue
            params = (_json(run_dir / "done.json") or {}).get("parameters") or {}
            seed = params.get("seed", m.get("seed"))
            if isinstance(seed, bool) or not isinstance(seed, int):
                continue
            grid = {k: v for k, v in params.items() if k not in ("preset", "device", "seed", "output_dir")}
            out.setdefault(stem, []).append(SeedRun(seed, m, run_dir.name, grid))
    for runs in out.values():
        runs.sort(key=lambda r: (r.seed, r.run))
    return out


def _at(m, path):
    """``m`` at ``path`` (keys and list indices), or None."""
    node = m
    for k in path:
        if isinstance(node, dict) and k in node:
            node = node[k]
        elif isinstance(node, list) and isinstance(k, int) and -len(node) <= k < len(node):
            node = node[k]
        else:
            return None
    return node


def _json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def across(values, level: float = 0.95) -> dict:
    """The across-seed mean of ``values`` (one per training seed) with its Student-t interval, as a Delta_E-like
    record: ``{"delta_e", "value", "ci_low", "ci_high", "sd", "n_seeds", "values", "level"}`` (``delta_e`` and
    ``value`` are both the mean). Needs at least 2 values."""
    t = t_interval(values, level)
    return {"delta_e": t["value"], "value": t["value"], "ci_low": t["ci_low"], "ci_high": t["ci_high"],
            "sd": t["sd"], "n_seeds": t["r"], "values": t["values"], "level": level}


def _value(d: dict) -> float:
    return float(d["delta_e"] if "delta_e" in d else d["value"])


def seed_reading(students: list, level: float = 0.95) -> dict:
    """What Delta_E and the undiluted measure say together about a student over training seeds.

    ``students``: one record per seed with ``delta_e`` (a Delta_E record),
    ``references`` (with ``random``) and ``measures`` (the layout of
    :func:`dmdlib.records.measures_record`), at least 2. Each number is
    replaced by the Student-t interval of its across-seed mean
    (:func:`across`) and read with :func:`dmdlib.evaluation.reading`;
    the second teacher's agreement is used only when every seed has it. Returns
    ``{"reading", "delta_e" (regime), "undiluted" (regime), "measure", "record" (the across-seed
    Delta_E interval), "random", "measure_record" (the student's undiluted interval), "per_seed"
    (each seed's own reading), "n_seeds"}``.
    """
    if len(students) < 2:
        raise ValueError(f"seed_reading needs at least 2 seeds, got {len(students)}")
    rec = across([s["delta_e"]["delta_e"] for s in students], level)
    random = across([s["references"]["random"]["delta_e"] for s in students], level)
    ms = [s.get("measures") or {} for s in students]
    measures, undiluted = None, None
    if all("agreement" in m for m in ms):
        keys = ["student", "chance"] + (["second"] if all("second" in m["agreement"] for m in ms) else [])
        measures = {"agreement": {k: across([_value(m["agreement"][k]) for m in ms], level) for k in keys}}
        undiluted = measures["agreement"]["student"]
    elif all("intrinsic_delta_e" in m for m in ms):
        measures = {"intrinsic_delta_e": {k: across([_value(m["intrinsic_delta_e"][k]) for m in ms], level)
                                          for k in ("student", "random")}}
        undiluted = measures["intrinsic_delta_e"]["student"]
    rd = evaluation.reading(rec, {"random": random}, measures)
    per_seed = [(s.get("reading") or {}).get("reading") for s in students]
    return {**rd, "record": rec, "random": random, "measure_record": undiluted, "per_seed": per_seed,
            "n_seeds": len(students)}


def level_text(n_seeds: int, needed: int, what: str = "seeds", found: int = 0) -> str:
    """Which evidence a verdict used: 'training seeds (5 seeds)', or 'evaluation seeds only (2 training seeds;
    5 needed)' ('no seed runs' for 0). ``found``: the seed runs there are, when some of them are not usable
    (unconverged, no reading): 'evaluation seeds only (4 usable of 5 seed runs; 5 needed)'."""
    if n_seeds >= needed:
        return f"training seeds ({n_seeds} {what})"
    if found > n_seeds:
        have = f"{n_seeds} usable of {found} seed runs"
    else:
        have = "no seed runs" if n_seeds == 0 else f"{n_seeds} training seed{'' if n_seeds == 1 else 's'}"
    return f"evaluation seeds only ({have}; {needed} needed)"


def interval_text(rec: dict) -> str:
    """'0.5 [0.4, 0.6]' for an across-seed or Delta_E record (three significant digits)."""
    return evaluation.interval_text({"delta_e": _value(rec), "ci_low": rec["ci_low"], "ci_high": rec["ci_high"]})


def finite(values) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values)


# ----------------------------------------------------------------------------- the seed tables of the claims

CLAIMS_OF = {"01_lowdim_remapping": "claim 1: the chessboard remaps", "02_mnist_copying": "claim 2: MNIST copies",
             "03_ablations": "claims 3 and 4: no auxiliary loss needed, no memorisation",
             "04_teacher_convergence": "claims 5 and 7: longer-trained teachers are copied more; two stages",
             "05_boundary": "claim 6: boundary points are copied more",
             "06_where_copying_begins": "claim 9: remapping at low, copying at high intrinsic dimension",
             "07_conditioning": "claim 8: conditioning strengthens copying",
             "09_exact_teacher": "claims 10-12: copying grows with structure and ambient dimension and with teacher "
                                 "resolution (exact teachers)"}
"""The claims (numbered as on the landing page) that each chapter's seed sweep serves."""


def _student_values(prefix: str, s) -> dict:
    if not isinstance(s, dict):
        return {}
    rec = s["delta_e"] if isinstance(s.get("delta_e"), dict) else s
    rd = s.get("reading") if isinstance(s.get("reading"), dict) else {}
    out = {f"{prefix}Delta_E": rec.get("delta_e")}
    which = rd.get("measure")
    m = ((s.get("measures") or {}).get(which or "") or {}).get("student")
    if isinstance(m, dict):
        out[f"{prefix}{which.replace('_', ' ')}"] = m.get("value", m.get("delta_e"))
    out[f"{prefix}reading"] = rd.get("reading")
    out[f"{prefix}converged"] = rec.get("converged")
    return out


def _third(fractions) -> Optional[float]:
    for k, v in (fractions or {}).items():
        try:
            if abs(float(k) - 1 / 3) < 1e-3:
                return v
        except (TypeError, ValueError):
            pass
    return None


def seed_values(stem: str, m: dict) -> dict:
    """The numbers (and words) of one seed run of chapter ``stem`` that its claims read, as ``{column: value}``
    (None where the run does not record it)."""
    g = lambda *path: _at(m, path)  # noqa: E731
    if stem == "01_lowdim_remapping":
        return _student_values("", g("datasets", "chessboard"))
    if stem == "02_mnist_copying":
        return _student_values("", m)
    if stem == "03_ablations":
        out = _student_values("plain ", g("variants", "baseline"))
        for v in ("gan", "regression"):
            out[f"{v} Delta_E"] = g("variants", v, "delta_e", "delta_e")
            out[f"{v} converged"] = g("variants", v, "delta_e", "converged")
        return {**out, "memorised (r < 1/3)": _third(g("memorisation", "fractions")),
                "control memorised": g("memorisation_control", "fraction")}
    if stem == "04_teacher_convergence":
        out = {}
        for s in g("students") or []:
            k = f"{s.get('teacher_kimg', '?'):g} kimg" if isinstance(s.get("teacher_kimg"), (int, float)) else "?"
            out.update({f"{k} Delta_E": _at(s, ("delta_e", "delta_e")), f"{k} converged": _at(s, ("delta_e", "converged")),
                        f"{k} two stages": _at(s, ("two_stages", "shape"))})
        return out
    if stem == "05_boundary":
        return {"partial Spearman": g("correlations", "partial_spearman_average", "r"),
                "raw Spearman": g("correlations", "spearman_average", "r"), "converged": g("delta_e", "converged")}
    if stem == "06_where_copying_begins":
        out = {}
        for p in g("intrinsic") or []:
            out.update({f"k = {p.get('intrinsic_dim')} {k}": v for k, v in _student_values("", p).items()})
        return out
    if stem == "09_exact_teacher":
        from . import exact_sweeps

        out = {}
        for sweep, key, sym in (("structure", "structure_dim", "k"), ("ambient", "ambient_dim", "d")):
            pts = sorted((p for p in g(sweep) or [] if isinstance(p, dict) and key in p), key=lambda p: p[key])
            for p in pts:
                ix = exact_sweeps.point_index(p) if exact_sweeps.is_result(p) else None
                out[f"{sym} = {p[key]:g} index"] = None if ix is None else ix["value"]
            out[f"{sweep} verdict"] = g("verdicts", key, "verdict")
        out["resolution verdict"] = g("verdicts", "resolution", "verdict")
        return out
    if stem == "07_conditioning":
        out = {}
        for r in g("records") or []:
            if isinstance(r, dict) and r.get("dataset") == "mnist":
                name = "conditional" if r.get("conditional") else "unconditional"
                out.update({f"{name} Delta_E": r.get("delta_e"), f"{name} converged": r.get("converged")})
        return out
    return {}


def seed_table(stem: str, runs: list, level: float = 0.95) -> dict:
    """The seed table of chapter ``stem``: one row per seed run (:func:`seed_values`) and a summary per column:
    for numbers, the across-seed mean with its Student-t interval (:func:`across`, at least 2 finite values);
    for words, how many seeds gave each; for true/false, how many were true.
    Returns ``{"columns", "seeds", "rows", "summary"}``."""
    rows = [seed_values(stem, r.metrics) for r in runs]
    columns = list(dict.fromkeys(k for row in rows for k in row))
    summary = {}
    for c in columns:
        vals = [row.get(c) for row in rows if row.get(c) is not None]
        if vals and all(isinstance(v, bool) for v in vals):
            summary[c] = f"{sum(vals)} of {len(vals)}"
        elif vals and all(isinstance(v, str) for v in vals):
            summary[c] = ", ".join(f"{vals.count(w)} {w}" for w in dict.fromkeys(vals))
        elif len(vals) >= 2 and finite(vals):
            summary[c] = across(vals, level)
        else:
            summary[c] = None
    return {"columns": columns, "seeds": [r.seed for r in runs], "rows": rows, "summary": summary}


def _fmt(v) -> str:
    if v is None:
        return "—"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, (int, float)):
        return evaluation._fmt(float(v))
    if isinstance(v, dict):
        return f"{interval_text(v)} ({v['n_seeds']} seeds)"
    return str(v)


def seed_table_markdown(stem: str, runs: list, level: float = 0.95) -> str:
    """:func:`seed_table` as a markdown table: seeds as rows, the summary (across-seed mean [95% t-interval]) last."""
    t = seed_table(stem, runs, level)
    if not t["columns"]:
        return f"no seed run of {stem} records what its claims read"
    head = "| seed | " + " | ".join(c.replace("Delta_E", "$\\Delta_E$") for c in t["columns"]) + " |"
    lines = [head, "| " + " | ".join(["---"] * (len(t["columns"]) + 1)) + " |"]
    for s, row in zip(t["seeds"], t["rows"]):
        lines.append(f"| {s} | " + " | ".join(_fmt(row.get(c)) for c in t["columns"]) + " |")
    lines.append("| across seeds | " + " | ".join(_fmt(t["summary"][c]) for c in t["columns"]) + " |")
    return "\n".join(lines)


__all__ = ["CLAIMS_OF", "SeedRun", "across", "finite", "interval_text", "level_text", "seed_reading", "seed_runs",
           "seed_table", "seed_table_markdown", "seed_values"]
