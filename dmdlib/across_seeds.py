"""What a seed sweep leaves behind, read back: summary.csv, the spread across seeds, publishing.

A sweep (:func:`dmdlib.sweep.sweep`) runs a notebook once per seed (and grid
point) and writes ``summary.csv``: one row per run and reported Delta_E
(:func:`headline_records`, ``SUMMARY_COLUMNS``). This module reads the
summaries back (:func:`read_summary`, :func:`read_summaries`), computes the
spread of a headline number across seeds (:func:`seed_spread`) and says how to
produce a missing one (:func:`command_for`).
"""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

from .presets import PRESET_NAMES

RECORD_COLUMNS = ("record", "delta_e", "ci_low", "ci_high", "n", "r", "converged")
# what the record's reading says (dmdlib.evaluation.reading) and the undiluted measure's value with its interval;
# empty where the metrics.json has no reading (older runs). Summaries written before these existed stay readable.
READING_COLUMNS = ("reading", "measure", "undiluted", "undiluted_ci_low", "undiluted_ci_high")
SUMMARY_COLUMNS = ("run", "seed", "<grid parameters>") + RECORD_COLUMNS + READING_COLUMNS   # see summary_columns


# ----------------------------------------------------------------------------- the summary

def headline_records(metrics: dict) -> list:
    """The students' Delta_E records of a metrics.json, as ``[(label, record)]`` (see :func:`headline_students`)."""
    return [(label, rec) for label, rec, _ in headline_students(metrics)]


def headline_students(metrics: dict) -> list:
    """The students of a metrics.json, as ``[(label, Delta_E record, student)]``.

    ``student`` is the dict that holds the student's ``reading`` and
    ``measures``: the record's parent when the record sits under a
    ``delta_e`` key (notebooks 01-05), else the record itself (the flat
    records of notebooks 06 and 07).

    A student's record is a dict with ``delta_e``, ``ci_low``, ``ci_high``,
    ``n``, ``r`` and ``converged`` (reference levels have no verdict and are
    left out). The label is the record's path with ``datasets.``/``variants.``
    and the final ``.delta_e`` removed: ``chessboard`` for notebook 01's
    ``datasets.chessboard.delta_e``, ``student`` for notebook 02's ``delta_e``.
    """
    out = []

    def walk(obj, path):
        if isinstance(obj, dict):
            if {"delta_e", "ci_low", "ci_high", "n", "r", "converged"} <= set(obj):
                out.append((path, obj))
                return
            for k, v in obj.items():
                walk(v, path + [str(k)])
        elif isinstance(obj, list):
            for i, v in enumerate(obj):
                walk(v, path + [str(i)])

    walk(metrics, [])
    labelled = []
    for path, rec in out:
        parts = list(path)
        student = rec
        if parts and parts[-1] == "delta_e":
            parts = parts[:-1]
            student = metrics
            for k in parts:
                student = student[int(k)] if isinstance(student, list) else student[k]
        if parts and parts[0] in ("datasets", "variants"):
            parts = parts[1:]
        labelled.append((".".join(parts) or "student", rec, student))
    return labelled


def reading_cells(student: dict) -> dict:
    """The ``READING_COLUMNS`` of a student (empty where it has no reading): the reading, which undiluted
    measure it used (``agreement`` or ``intrinsic_delta_e``) and that measure's value and interval."""
    rd = student.get("reading") if isinstance(student, dict) else None
    if not isinstance(rd, dict):
        return {}
    cells = {"reading": rd.get("reading"), "measure": rd.get("measure")}
    m = ((student.get("measures") or {}).get(rd.get("measure") or "") or {}).get("student")
    if isinstance(m, dict):
        cells.update(undiluted=m.get("value", m.get("delta_e")), undiluted_ci_low=m.get("ci_low"),
                     undiluted_ci_high=m.get("ci_high"))
    return cells


def summary_columns(grid_names) -> list:
    return ["run", "seed", *grid_names, *RECORD_COLUMNS, *READING_COLUMNS]


def _cell(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return ""
    if isinstance(v, (list, dict)):
        return json.dumps(v)
    return v


def write_csv(path, rows: list, columns: list) -> None:
    """Write ``rows`` (dicts) as a CSV with ``columns`` (atomically)."""
    import io

    from .runs import atomic_write_bytes

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\n")
    w.writeheader()
    for row in rows:
        w.writerow({k: _cell(row.get(k)) for k in columns})
    atomic_write_bytes(path, buf.getvalue().encode())


def _number(text: str):
    if text == "":
        return None
    try:
        return int(text)
    except ValueError:
        return float(text)   # also "inf", "nan"


def read_summary(path) -> list:
    """The rows of a summary.csv with typed values (seed, n, r: int; Delta_E columns: float; converged: bool or
    None); the grid columns stay strings."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    out = []
    for row in rows:
        r = dict(row)
        r["seed"] = int(r["seed"])
        for k in ("delta_e", "ci_low", "ci_high"):
            r[k] = float(r[k])
        for k in ("n", "r"):
            r[k] = _number(r[k])
        r["converged"] = {"true": True, "false": False}.get(r.get("converged", ""), None)
        for k in ("reading", "measure"):          # absent from summaries written before they existed
            r[k] = r.get(k) or None
        for k in ("undiluted", "undiluted_ci_low", "undiluted_ci_high"):
            r[k] = _number(r.get(k) or "")
        out.append(r)
    return out


def grid_columns(rows: list) -> list:
    """The grid parameters' columns of summary rows (every column but run, seed and the record's)."""
    if not rows:
        return []
    return [k for k in rows[0] if k not in ("run", "seed") and k not in RECORD_COLUMNS + READING_COLUMNS]


def seed_spread(rows: list, level: float = 0.95) -> dict:
    """Delta_E across seeds, per record (and grid point): each seed's value and interval, mean and sd.

    Returns ``{label: {"seeds", "delta_e", "ci_low", "ci_high", "converged", "readings", "measure",
    "undiluted", "n_seeds", "mean", "sd", "within_half_width", "across_half_width"}}``: ``readings`` and
    ``undiluted`` are each seed's reading and undiluted measure (None where not recorded), ``measure`` the
    undiluted measure's name (None when the seeds' differ or none is recorded), ``sd`` is the sample
    standard deviation over seeds (None for one seed), ``within_half_width``
    the mean half-width of the runs' own intervals (over evaluation seed sets
    of one trained teacher and student), ``across_half_width`` the half-width
    of the Student-t interval of the across-seed mean (None for one seed).
    Labels are the record, followed by the grid values when there is a grid.
    """
    from scipy import stats

    grid = grid_columns(rows)
    groups = {}
    for row in sorted(rows, key=lambda r: r["seed"]):
        label = row["record"] + "".join(f", {k}={row[k]}" for k in grid)
        groups.setdefault(label, []).append(row)
    out = {}
    for label, rs in groups.items():
        vals = [r["delta_e"] for r in rs]
        s = len(vals)
        finite = all(math.isfinite(v) for v in vals)
        mean = sum(vals) / s
        sd = math.sqrt(sum((v - mean) ** 2 for v in vals) / (s - 1)) if s > 1 and finite else None
        across = float(stats.t.ppf(0.5 + level / 2, s - 1) * sd / math.sqrt(s)) if sd is not None else None
        measures = {r.get("measure") for r in rs}
        out[label] = {"seeds": [r["seed"] for r in rs], "delta_e": vals, "ci_low": [r["ci_low"] for r in rs],
                      "ci_high": [r["ci_high"] for r in rs], "converged": [r["converged"] for r in rs],
                      "readings": [r.get("reading") for r in rs], "undiluted": [r.get("undiluted") for r in rs],
                      "measure": measures.pop() if len(measures) == 1 else None,
                      "n_seeds": s, "mean": mean if finite else None, "sd": sd,
                      "within_half_width": sum((r["ci_high"] - r["ci_low"]) / 2 for r in rs) / s if finite else None,
                      "across_half_width": across}
    return out


def command_for(summary, preset: str = "quick", notebook: str = "01", seeds=(0, 1, 2)) -> str:
    """The command that writes the summary CSV ``summary`` (its folder is the sweep's ``--out``).

    The preset is the folder's path component naming one (e.g.
    ``results/quick/seeds/summary.csv``), else ``preset``.
    """
    path = Path(summary)
    named = [p for p in path.parent.parts if p in PRESET_NAMES]
    return (f"python -m dmdlib sweep --notebook {notebook} --preset {named[-1] if named else preset} "
            f"--seeds {' '.join(map(str, seeds))} --executor local --out {path.parent}")


def read_summaries(folder) -> tuple:
    """The published summaries under ``folder`` (``<folder>/<name>/summary.csv``) as one list of rows.

    Each row's ``record`` is prefixed with the notebook the sweep ran (its
    ``sweep.json``; else the sub-folder's name), e.g. ``01_lowdim_remapping:
    chessboard``, so records of different notebooks stay apart. Returns
    ``(rows, sweeps)`` with ``sweeps`` = ``{name: sweep.json contents}``.
    """
    folder = Path(folder)
    rows, sweeps = [], {}
    for summary in sorted(folder.glob("*/summary.csv")):
        meta = summary.parent / "sweep.json"
        info = json.loads(meta.read_text()) if meta.is_file() else {}
        sweeps[summary.parent.name] = info
        label = Path(info.get("notebook", summary.parent.name)).stem
        for row in read_summary(summary):
            row["record"] = f"{label}: {row['record']}"
            rows.append(row)
    return rows, sweeps
