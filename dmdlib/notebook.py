"""What every chapter does around the experiment: its parameters, its metrics.json, its log lines.

Each notebook validates its ``parameters`` cell (:func:`validate_params`,
:func:`check_runs_dir`, :func:`check_teacher_kimg`, :func:`check_snapshots`),
prints where each run came from (:func:`run_origin`) and ends by writing
``output_dir/metrics.json`` with the provenance every chapter records
(:func:`write_metrics`).
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from .presets import PRESET_NAMES
from .runs import resolve_device


def validate_params(preset: str, device: str, seed: int, output_dir) -> torch.device:
    """Check a notebook's parameters cell; returns the resolved device.

    Errors name the parameter and its allowed values.
    """
    if preset not in PRESET_NAMES:
        raise ValueError(f"unknown preset {preset!r}; allowed: {list(PRESET_NAMES)}")
    dev = resolve_device(device)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if not isinstance(output_dir, (str, Path)) or not str(output_dir):
        raise ValueError(f"output_dir must be a non-empty path, got {output_dir!r}")
    try:
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=output_dir).close()   # can we write there?
    except OSError as e:
        raise ValueError(f"output_dir {str(output_dir)!r} cannot be created or written to "
                         f"({type(e).__name__}: {e.strerror or e}); choose a writable folder") from None
    return dev


def write_metrics(output_dir, metrics: dict, *, preset: str, seed: int, device, hardware: dict,
                  wall_time_s: float, notebook=None) -> dict:
    """Write ``output_dir/metrics.json`` with the provenance every chapter records, and return it.

    Adds ``preset``, ``seed``, ``device``, ``hardware``, ``wall_time_s``, the
    code version (``commit``, ``dirty``: see :func:`dmdlib.runs.git_state`) and
    ``sources`` (hashes of the notebook, of the dmdlib modules loaded now and
    of requirements.txt: see :func:`dmdlib.provenance.sources`; ``notebook``
    defaults to ``$DMDLIB_NOTEBOOK``, which ``scripts/build_book.py`` sets) to
    the chapter's own ``metrics``.
    """
    from .provenance import sources
    from .runs import git_state, write_json

    out = {"preset": preset, "seed": seed, "device": str(device), "hardware": hardware, **git_state(),
           **metrics, "wall_time_s": float(wall_time_s), "sources": sources(notebook)}
    write_json(Path(output_dir) / "metrics.json", out)
    return out


def run_origin(result) -> str:
    """'trained now' / 'loaded from the run folder' / 'resumed at iteration n', for the notebooks' logs."""
    if result.started_at == 0:
        return f"trained now ({result.iterations} iterations)"
    if result.started_at >= result.iterations:
        return f"loaded from the run folder ({result.iterations} iterations, trained earlier)"
    return f"resumed at iteration {result.started_at} of {result.iterations}"



def check_teacher_kimg(p, teacher_kimg) -> float:
    """The snapshot to distil: the preset's default for None, else one of the preset's snapshots (kimg)."""
    if teacher_kimg is None:
        return float(p.teacher_kimg)
    allowed = [float(s) for s in p.teacher.snapshots]
    if isinstance(teacher_kimg, bool) or not isinstance(teacher_kimg, (int, float)) or float(teacher_kimg) not in allowed:
        raise ValueError(f"teacher_kimg={teacher_kimg!r} is not a snapshot of preset {p.name!r}; "
                         f"allowed: {list(p.teacher.snapshots)} (kimg) or None")
    return float(teacher_kimg)


def check_runs_dir(output_dir, runs_dir) -> Path:
    """Where teacher and student runs live: ``runs_dir``, or ``output_dir/runs`` when None."""
    if runs_dir is None:
        return Path(output_dir) / "runs"
    if not isinstance(runs_dir, (str, Path)) or not str(runs_dir):
        raise ValueError(f"runs_dir must be None or a non-empty path, got {runs_dir!r}")
    return Path(runs_dir)



def check_snapshots(p, teacher_snapshots) -> list:
    """The snapshots to distil (kimg): all of the preset's for None, else a validated subset in increasing order."""
    allowed = [float(s) for s in p.teacher.snapshots]
    if teacher_snapshots is None:
        return allowed
    if (not isinstance(teacher_snapshots, (list, tuple)) or not teacher_snapshots
            or any(isinstance(s, bool) or not isinstance(s, (int, float)) or float(s) not in allowed
                   for s in teacher_snapshots)):
        raise ValueError(f"teacher_snapshots must be None or a non-empty list from {list(p.teacher.snapshots)} "
                         f"(kimg) for preset {p.name!r}, got {teacher_snapshots!r}")
    return sorted({float(s) for s in teacher_snapshots})

