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


def level_text(n_seeds: int, needed: int, what: str = "seeds") -> str:
    """Which evidence a verdict used: 'training seeds (5 seeds)', or 'evaluation seeds only (2 training seeds;
    5 needed)' ('no seed runs' for 0)."""
    if n_seeds >= needed:
        return f"training seeds ({n_seeds} {what})"
    have = "no seed runs" if n_seeds == 0 else f"{n_seeds} training seed{'' if n_seeds == 1 else 's'}"
    return f"evaluation seeds only ({have}; {needed} needed)"


def interval_text(rec: dict) -> str:
    """'0.5 [0.4, 0.6]' for an across-seed or Delta_E record (three significant digits)."""
    return evaluation.interval_text({"delta_e": _value(rec), "ci_low": rec["ci_low"], "ci_high": rec["ci_high"]})


def finite(values) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values)


__all__ = ["SeedRun", "across", "finite", "interval_text", "level_text", "seed_reading", "seed_runs"]
