"""Positive controls (dmdlib.controls, issue 22): the memorisation control's preset, its run at smoke (plumbing,
reloading), a control that memorises and is flagged by the same test, and the copying controls."""
from dataclasses import replace

import pytest

import dmdlib
from dmdlib import controls


def test_control_preset_keeps_the_teacher_but_the_data_and_the_length():
    for name in ("smoke", "quick", "paper"):
        p = dmdlib.get_preset("mnist", name)
        q = controls.memorisation_control_preset(p)
        assert q.data_subset == p.memorisation_control_subset and q.teacher.iterations == p.memorisation_control_iterations
        assert q.teacher.snapshots == () and q.teacher.lr_rampup_kimg == 0.0
        assert q.teacher.lr == p.teacher.lr and q.teacher.batch_size == p.teacher.batch_size and q.unet == p.unet
        assert q.teacher.checkpoint_every % q.teacher.log_every == 0
    with pytest.raises(ValueError, match="memorisation_control_subset must be >= 3"):
        replace(dmdlib.get_preset("mnist", "smoke"), memorisation_control_subset=2)


def test_control_at_smoke_runs_and_reloads(tmp_path):
    p = dmdlib.get_preset("mnist", "smoke")
    a = controls.memorisation_control(p, tmp_path, seed=0, device="cpu")
    assert a["subset"] == 16 and a["n_train"] == 16 and a["n_samples"] == p.n_eval == a["report"]["r"].size
    assert 0 <= a["fraction"] <= 1 and a["fired"] == (a["fraction"] >= p.memorisation_control_min_fraction)
    assert a["fractions"]["0.3333"] == a["fraction"] and a["iterations"] == p.memorisation_control_iterations
    b = controls.memorisation_control(p, tmp_path, seed=0, device="cpu")     # reloaded, not retrained
    assert b["fraction"] == a["fraction"] and b["seconds"] < a["seconds"]
    with pytest.raises(ValueError, match="n_samples must be >= 2"):
        controls.memorisation_control(p, tmp_path, n_samples=1)


@pytest.mark.slow
def test_a_teacher_trained_long_on_four_images_is_flagged(tmp_path):
    """The smoke UNet on 4 images for 600 iterations reproduces them: the same test flags most of its samples."""
    p = replace(dmdlib.get_preset("mnist", "smoke"), memorisation_control_subset=4, memorisation_control_iterations=600)
    r = controls.memorisation_control(p, tmp_path, seed=0, device="cpu")
    assert r["fired"] and r["fraction"] > 0.8 and r["r_median"] < 1 / 3


def test_copying_controls():
    got = controls.copying_controls(dim=8, n=100, r=4)
    assert got["copy"]["reading"] == {"reading": "copies", "delta_e": "copies", "undiluted": "copies",
                                      "measure": "agreement"}
    assert got["permutation"]["reading"]["reading"] == "remaps"
    assert got["copy"]["delta_e"]["delta_e"] == 0 and got["copy"]["measures"]["agreement"]["student"]["value"] == 1
