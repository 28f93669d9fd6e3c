"""Positive controls: cases whose answer is known, run through the same tests as the real students and teachers.

* **Memorisation** (chapter 03, paper Sec. 4.1.2): a teacher trained long on
  a tiny subset of MNIST (``MnistPreset.memorisation_control_subset``
  images, ``memorisation_control_iterations`` iterations; otherwise the
  preset's teacher settings, without a learning-rate ramp-up) must be flagged by the very test that clears
  the real teacher (:func:`dmdlib.analysis.memorisation_report`, r < 1/3
  against its own training images). "No memorisation" is evidence only
  when this control fires: when at least
  ``memorisation_control_min_fraction`` of its samples are memorised.
  It is trained on the pairing path (:func:`dmdlib.pairing.train_spec_teacher`
  on :func:`dmdlib.specs.mnist_spec` of the subset), into its own run
  folder, so a rerun reloads it.
* **Copying** (the claims rules): a student equal to Phi_K must read
  "copies" and a random permutation of the teacher's outputs "remaps" under
  :func:`dmdlib.evaluation.reading`, with the measures of
  :func:`dmdlib.records.measures_record`'s layout, computed on the
  constructed students of :mod:`dmdlib.calibration` (:func:`copying_controls`).
"""
from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Optional

import numpy as np

MEMORISATION_THRESHOLD = 1 / 3   # r(y) < 1/3: memorised (Bonnaire et al. 2025; the paper's Sec. 4.1.2)


def memorisation_control_preset(p):
    """The MNIST preset ``p`` with the control's training set (the first ``memorisation_control_subset``
    images) and length (``memorisation_control_iterations`` iterations, no snapshots), at the preset's full
    learning rate from the first iteration (no ramp-up: at ``paper`` EDM's 10,000-kimg ramp would keep the rate
    near 0 for the whole control). A control that memorises is what the test must see; how it got there does
    not matter."""
    n, iters = p.memorisation_control_subset, p.memorisation_control_iterations
    ck = min(p.teacher.checkpoint_every, iters)
    log = min(p.teacher.log_every, ck)
    while ck % log:          # checkpoint_every must be a multiple of log_every (TeacherConfig)
        log -= 1
    teacher = replace(p.teacher, iterations=iters, snapshots=(), checkpoint_every=ck, log_every=log, lr_rampup_kimg=0.0)
    return replace(p, data_subset=n, teacher=teacher)


def memorisation_control(p, runs_dir, seed: int = 0, device="cpu", n_samples: Optional[int] = None,
                         progress_bar: bool = False) -> dict:
    """Train (or reload) the memorisation control of MNIST preset ``p`` and test its samples.

    ``n_samples`` teacher samples Phi_K(z) (default ``p.n_eval``) on seeds of
    their own stream are tested against the control's training images with
    :func:`dmdlib.analysis.memorisation_report`. Returns ``{"subset",
    "iterations", "kimg", "fractions" (threshold -> memorised fraction),
    "fraction" (at r < 1/3), "fired" (fraction >= min_fraction),
    "min_fraction", "r_min", "r_median", "n_samples", "n_train", "seconds",
    "report"}``; ``report`` holds the arrays (r, neighbour distances and
    indices) for figures and is not meant for metrics.json. The control's runs
    are kept in ``runs_dir/controls``, apart from the chapters' own teachers.
    """
    from . import analysis, pairing, specs
    from .runs import resolve_device

    dev = resolve_device(device) if isinstance(device, str) else device
    q = memorisation_control_preset(p)
    n = int(p.n_eval if n_samples is None else n_samples)
    if n < 2:
        raise ValueError(f"n_samples must be >= 2, got {n_samples!r}")
    t0 = time.perf_counter()
    spec = specs.mnist_spec(q, conditional=False, device=dev)
    runs_dir = Path(runs_dir) / "controls"
    teacher = pairing.train_spec_teacher(spec, q, runs_dir, seed, dev, progress_bar=progress_bar)
    net = pairing.teacher_net(spec, q, teacher, device=dev)
    z = pairing.stream_noise(n, tuple(spec.shape), seed, "memorisation-control")
    x = pairing.cached_phi_k(net, z, q.k, runs_dir / "samples", q.sample_batch, dev)
    train = specs.mnist_training_data(q, dev)
    rep = analysis.memorisation_report(q, x, train, device=dev)
    r = rep["r"]
    fraction = float(np.mean(r < MEMORISATION_THRESHOLD))
    return {"subset": int(q.data_subset), "iterations": int(teacher.iterations), "kimg": float(teacher.kimg),
            "fractions": {f"{t:.4g}": f for t, f in rep["fractions"].items()}, "fraction": fraction,
            "fired": fraction >= p.memorisation_control_min_fraction,
            "min_fraction": float(p.memorisation_control_min_fraction), "r_min": float(r.min()),
            "r_median": float(np.median(r)), "n_samples": n, "n_train": int(train.shape[0]),
            "seconds": time.perf_counter() - t0, "report": rep, "samples": x}


def copying_controls(dim: int = 64, n: int = 1000, r: int = 10, seed: int = 0) -> dict:
    """The reading (:func:`dmdlib.evaluation.reading`) of two constructed students of the chessboard family of
    :mod:`dmdlib.calibration` in ``dim`` dimensions: ``"copy"`` (G = Phi_K) and ``"permutation"`` (the teacher's
    outputs on independent seeds, paired at random). Returns ``{name: {"delta_e", "references", "measures",
    "reading"}}`` in the layout of a student's record; a copy must read "copies", the permutation "remaps"."""
    from . import calibration, evaluation
    from .evaluation import reference_levels, student_record
    from .metrics import chance_agreement_sets, delta_e_sets, mode_agreement_sets

    out = {}
    cons = calibration.constructions("chessboard", dim=dim, n=n, r=r, seed=seed)
    for name in ("copy", "permutation"):
        c = cons[name]
        x, y = c.teacher.reshape(r * n, -1), c.output.reshape(r * n, -1)
        refs = reference_levels(x, x, y, r, seed=seed)     # start level: Phi_1 = Phi_K here (not used by the reading)
        rec = student_record(delta_e_sets(x, y, r))
        keep = ("value", "ci_low", "ci_high", "sd", "r", "level")
        agree = {"student": mode_agreement_sets(c.teacher_modes, c.student_modes, r),
                 "chance": chance_agreement_sets(c.teacher_modes, c.student_modes, r)}
        measures = {"agreement": {k: {kk: v[kk] for kk in keep} for k, v in agree.items()}}
        out[name] = {"delta_e": rec, "references": refs, "measures": measures,
                     "reading": evaluation.reading(rec, refs, measures)}
    return out

