"""Run folders (issue #9): crashes while saving, stale temporary files, damaged checkpoints."""
import dataclasses
import os
from pathlib import Path

import pytest
import torch

import dmdlib
from dmdlib import CorruptCheckpointError, DMDConfig, TeacherConfig
from dmdlib.runs import atomic_torch_save

TCFG = TeacherConfig(iterations=10, batch_size=32, lr=1e-3, lr_rampup_kimg=0.0, checkpoint_every=5, log_every=5,
                     ema_halflife_kimg=1.0, snapshots=(3,))
DCFG = DMDConfig(iterations=10, batch_size=16, lr=1e-3, lr_fake=1e-3, warmup_steps=2, checkpoint_every=5,
                 log_every=5)


def tiny_denoiser(seed=0, sigma_data=0.5):
    torch.manual_seed(seed)
    return dmdlib.EDMPrecond(dmdlib.MLPNet(4, 16, 1, 8), sigma_data=sigma_data)


def chess_fn(n, g):
    return dmdlib.sample_toy("chessboard", n, 4, generator=g)


def teach(run_dir, net=None, cfg=TCFG, **kw):
    return dmdlib.train_teacher(tiny_denoiser() if net is None else net, chess_fn, cfg, run_dir=run_dir,
                                device="cpu", progress_bar=False, **kw)


def distil(run_dir, teacher=None, cfg=DCFG, **kw):
    return dmdlib.distill(tiny_denoiser() if teacher is None else teacher, (4,), cfg, run_dir=run_dir, device="cpu",
                          progress_bar=False, **kw)


def states_equal(a, b):
    a, b = a.state_dict(), b.state_dict()
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def temp_files(folder):
    return sorted(p.name for p in folder.rglob("*.tmp"))


# ----------------------------------------------------------------------------- a crash while saving

def crashing_save(monkeypatch, after_calls=0):
    """Make torch.save write half a file and raise, from its ``after_calls + 1``-th call on."""
    real, calls = torch.save, {"n": 0}

    def save(obj, f, *a, **k):
        calls["n"] += 1
        if calls["n"] <= after_calls:
            return real(obj, f, *a, **k)
        with open(f, "wb") as fh:
            fh.write(b"PK\x03\x04 half a checkpoint")
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(torch, "save", save)


def test_crash_while_saving_keeps_the_previous_file_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    atomic_torch_save({"w": torch.ones(3), "iteration": 5}, path)
    crashing_save(monkeypatch)
    with pytest.raises(OSError, match="No space"):
        atomic_torch_save({"w": torch.zeros(3), "iteration": 10}, path)
    ck = dmdlib.load_checkpoint(path)
    assert ck["iteration"] == 5 and torch.equal(ck["w"], torch.ones(3))
    assert os.listdir(tmp_path) == ["checkpoint.pt"]


def test_crash_while_checkpointing_a_run_then_resume(tmp_path, monkeypatch):
    """The save at iteration 10 of a DMD run fails half-way: the checkpoint at 5 survives and the run resumes."""
    cfg = dataclasses.replace(DCFG, iterations=15)
    crashing_save(monkeypatch, after_calls=1)
    with pytest.raises(OSError, match="No space"):
        distil(tmp_path / "r", cfg=cfg)
    assert dmdlib.load_checkpoint(tmp_path / "r" / "checkpoint.pt")["iteration"] == 5
    assert temp_files(tmp_path) == []
    monkeypatch.undo()
    resumed = distil(tmp_path / "r", cfg=cfg)
    clean = dmdlib.distill(tiny_denoiser(), (4,), cfg, device="cpu", progress_bar=False)
    assert resumed.started_at == 5
    assert states_equal(resumed.generator, clean.generator) and states_equal(resumed.fake, clean.fake)


def test_stale_temporary_files_are_removed_at_the_next_start(tmp_path):
    """A process killed inside atomic_torch_save/atomic_write_bytes leaves ``.<name>.<random>.tmp`` behind."""
    t_dir, d_dir = tmp_path / "teacher", tmp_path / "student"
    teach(t_dir, stop_after=7)
    distil(d_dir, stop_after=7)
    stale = [t_dir / ".checkpoint.pt.k3j2_x9a.tmp", t_dir / "snapshots" / ".teacher-3iter.pt.abcd1234.tmp",
             t_dir / ".config.json.zz9_q1we.tmp", d_dir / ".result.pt.0a1b2c3d.tmp"]
    keep = [t_dir / "notes.tmp", t_dir / ".hidden", d_dir / "my.checkpoint.pt.tmp"]
    for f in stale + keep:
        f.write_bytes(b"partial")
    assert teach(t_dir).started_at == 5
    assert distil(d_dir).started_at == 5
    assert not any(f.exists() for f in stale)
    assert all(f.exists() for f in keep)                  # only the atomic writers' pattern is touched


# ----------------------------------------------------------------------------- damaged checkpoints

def damage(path, how):
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "garbage":
        path.write_bytes(bytes(range(256)) * 8)
    else:
        path.write_bytes(b"")


@pytest.mark.parametrize("how", ["truncated", "garbage", "empty"])
@pytest.mark.parametrize("name", ["checkpoint.pt", "result.pt"])
@pytest.mark.parametrize("kind", ["teacher", "dmd"])
def test_damaged_checkpoint_names_the_file_and_the_remedy(tmp_path, kind, name, how):
    run = teach if kind == "teacher" else distil
    run(tmp_path / "r", stop_after=7 if name == "checkpoint.pt" else None)
    path = tmp_path / "r" / name
    assert path.exists()
    damage(path, how)
    with pytest.raises(CorruptCheckpointError) as e:
        run(tmp_path / "r")
    msg = str(e.value)
    assert str(path) in msg and "truncated or corrupted" in msg and "Delete it and run again" in msg
    assert ("restart this run" if name == "checkpoint.pt" else "train this run again") in msg
    assert e.value.path == path and e.value.__cause__ is None and e.value.__suppress_context__
    # the advice works: without the damaged file the run starts over and finishes
    path.unlink()
    assert run(tmp_path / "r").iterations == 10


def test_damaged_snapshot_and_missing_file(tmp_path):
    res = teach(tmp_path / "t")
    snap = Path(res.snapshots[3.0])
    damage(snap, "truncated")
    with pytest.raises(CorruptCheckpointError, match="recreate it"):
        dmdlib.load_snapshot(tiny_denoiser(), snap)
    with pytest.raises(FileNotFoundError):                 # a missing file is the OS's own, clear error
        dmdlib.load_checkpoint(tmp_path / "nope.pt")
