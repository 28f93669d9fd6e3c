"""Run folders (issue #9): crashes while saving, stale temporary files, damaged checkpoints, and a
config.json that records everything that changes a run's result."""
import dataclasses
import json
import os
from pathlib import Path

import pytest
import torch

import dmdlib
from dmdlib import specs
from dmdlib import ConfigMismatchError, CorruptCheckpointError, DMDConfig, TeacherConfig, accel
from dmdlib import notebook
from dmdlib.concurrent import distill_concurrent
from dmdlib.runs import DeviceMismatchError, atomic_torch_save, prepare_run_dir

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
    keep = [t_dir / "notes.tmp", t_dir / ".hidden", t_dir / ".session.tmp", d_dir / "my.checkpoint.pt.tmp"]
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


# ----------------------------------------------------------------------------- what a run folder records

def config_json(run_dir):
    return json.loads((run_dir / "config.json").read_text())


def test_teacher_run_records_speed(tmp_path):
    teach(tmp_path / "t", stop_after=1)
    teach(tmp_path / "t", stop_after=1, speed=accel.Speed())     # None is the reference, Speed()
    with pytest.raises(ConfigMismatchError, match=r"differs in: speed\.channels_last\)"):
        teach(tmp_path / "t", speed=accel.Speed(channels_last=True))
    assert config_json(tmp_path / "t")["speed"] == dataclasses.asdict(accel.Speed())


def test_teacher_run_records_the_loss_sigma_data(tmp_path):
    teach(tmp_path / "t", stop_after=1)
    with pytest.raises(ConfigMismatchError, match=r"differs in: config\.sigma_data\)"):
        teach(tmp_path / "t", cfg=dataclasses.replace(TCFG, sigma_data=0.7))


def test_teacher_run_records_the_denoisers_sigma_data(tmp_path):
    teach(tmp_path / "t", stop_after=1)
    with pytest.raises(ConfigMismatchError, match=r"differs in: denoiser_sigma_data\)"):
        teach(tmp_path / "t", net=tiny_denoiser(sigma_data=0.7))


def test_teacher_run_records_the_data_id(tmp_path):
    teach(tmp_path / "t", stop_after=1, data_id="toy:chessboard:dim=4")
    with pytest.raises(ConfigMismatchError, match=r"differs in: data_id\)"):
        teach(tmp_path / "t", data_id="toy:moons:dim=4")
    with pytest.raises(ConfigMismatchError, match=r"differs in: data_id\)"):
        teach(tmp_path / "t")
    assert config_json(tmp_path / "t")["data_id"] == "toy:chessboard:dim=4"
    with pytest.raises(ValueError, match="data_id"):
        teach(tmp_path / "u", data_id=3)


def test_teacher_run_records_the_code_version(tmp_path, monkeypatch):
    teach(tmp_path / "t", stop_after=1)
    with monkeypatch.context() as m:
        m.setattr(dmdlib, "__version__", dmdlib.__version__ + "+changed")
        with pytest.raises(ConfigMismatchError, match=r"differs in: code_version\)"):
            teach(tmp_path / "t")
    assert config_json(tmp_path / "t")["code_version"] == dmdlib.__version__


def test_git_commit_is_recorded_but_not_compared(tmp_path):
    teach(tmp_path / "t", stop_after=1)
    cfg = config_json(tmp_path / "t")
    assert set(cfg["info"]["git"]) == {"commit", "dirty"}
    cfg["info"]["git"] = {"commit": "0" * 40, "dirty": True}   # another checkout of the same code version
    (tmp_path / "t" / "config.json").write_text(json.dumps(cfg))
    assert teach(tmp_path / "t").iterations == TCFG.iterations
    with pytest.raises(ValueError, match="info"):
        prepare_run_dir(tmp_path / "x", {"kind": "x", "info": 1})


def set_device(run_dir, device):
    """Edit a folder's config.json as if the run had been made on ``device`` (None: before it was recorded)."""
    cfg = config_json(run_dir)
    cfg.pop("device")
    (run_dir / "config.json").write_text(json.dumps(cfg if device is None else {**cfg, "device": device}))


@pytest.mark.parametrize("kind", ["teacher", "dmd"])
def test_run_folders_record_the_device_type_and_refuse_another(tmp_path, kind):
    """A run made on CUDA is refused on a CPU with a message saying where it continues (not a failure inside
    generator.set_state), and a CPU run is refused on CUDA (simulated: a config that names "cuda")."""
    run = (lambda: teach(tmp_path / "r", stop_after=1)) if kind == "teacher" else \
        (lambda: distil(tmp_path / "r", stop_after=1))
    run()
    assert config_json(tmp_path / "r")["device"] == "cpu"
    set_device(tmp_path / "r", "cuda")
    with pytest.raises(DeviceMismatchError, match=r"made on device type 'cuda', not 'cpu'.*device='cuda'"):
        run()
    set_device(tmp_path / "r", "cpu")
    cfg = config_json(tmp_path / "r")
    cfg.pop("info")
    with pytest.raises(DeviceMismatchError, match=r"made on device type 'cpu', not 'cuda'.*device='cpu'"):
        prepare_run_dir(tmp_path / "r", {**cfg, "device": "cuda"})
    assert issubclass(DeviceMismatchError, ConfigMismatchError)


def test_run_folders_without_a_device_reload_as_cpu_runs(tmp_path):
    """Folders written before the device was recorded (dmdlib ran on CPUs only) resume and reload on a CPU, and
    are refused on CUDA with a message that says why."""
    teach(tmp_path / "t", stop_after=5)                            # a checkpoint at iteration 5
    set_device(tmp_path / "t", None)
    res = teach(tmp_path / "t")                                     # resumes its checkpoint
    assert res.started_at == 5 and res.iterations == TCFG.iterations
    assert teach(tmp_path / "t").started_at == TCFG.iterations     # reloads the finished run
    assert "device" not in config_json(tmp_path / "t")              # the old record is left as it is
    cfg = config_json(tmp_path / "t")
    cfg.pop("info")
    with pytest.raises(DeviceMismatchError, match=r"records no device.*CPUs only"):
        prepare_run_dir(tmp_path / "t", {**cfg, "device": "cuda"})
    distil(tmp_path / "d")
    set_device(tmp_path / "d", None)
    assert distil(tmp_path / "d").started_at == DCFG.iterations


def test_dmd_run_records_speed(tmp_path):
    distil(tmp_path / "d", stop_after=1)
    with pytest.raises(ConfigMismatchError, match=r"differs in: speed\.amp\)"):
        distil(tmp_path / "d", speed=accel.Speed(amp="bf16"))


def test_dmd_run_records_the_fake_score_sigma_data(tmp_path):
    distil(tmp_path / "d", stop_after=1)                                       # the teacher's: 0.5
    distil(tmp_path / "d", stop_after=1, sigma_data=0.5)                       # the same, given explicitly
    with pytest.raises(ConfigMismatchError, match=r"differs in: sigma_data\)"):
        distil(tmp_path / "d", sigma_data=0.3)
    assert config_json(tmp_path / "d")["sigma_data"] == 0.5


def test_dmd_run_records_the_teachers_sigma_data(tmp_path):
    """Same weights, other preconditioning: the teacher's fingerprint (its state_dict) cannot tell them apart."""
    distil(tmp_path / "d", stop_after=1, sigma_data=0.5)
    with pytest.raises(ConfigMismatchError, match=r"differs in: teacher_sigma_data\)"):
        distil(tmp_path / "d", teacher=tiny_denoiser(sigma_data=0.8), sigma_data=0.5)


def test_dmd_run_records_the_gan_data_id(tmp_path):
    p = dmdlib.get_preset("mnist", "smoke")
    torch.manual_seed(0)
    teacher = specs.denoiser(p)
    cfg = dataclasses.replace(p.dmd, batch_size=2, gan_d_weight=1e-2, gan_g_weight=3e-3)
    data_fn = lambda n, g: torch.zeros(n, 1, 32, 32)  # noqa: E731

    def run(run_dir, cfg, data_id):
        return dmdlib.distill(teacher, (1, 32, 32), cfg, run_dir=run_dir, device="cpu", progress_bar=False,
                              data_fn=data_fn, data_id=data_id, stop_after=1)

    run(tmp_path / "gan", cfg, "mnist:a")
    with pytest.raises(ConfigMismatchError, match=r"differs in: data_id\)"):
        run(tmp_path / "gan", cfg, "mnist:b")
    assert config_json(tmp_path / "gan")["data_id"] == "mnist:a"
    # without the GAN term the data are unused, and not recorded
    plain = dataclasses.replace(cfg, gan_d_weight=0.0, gan_g_weight=0.0)
    run(tmp_path / "plain", plain, "mnist:a")
    assert config_json(tmp_path / "plain")["data_id"] is None


def test_dmd_run_records_the_regression_pairs(tmp_path):
    cfg = dataclasses.replace(DCFG, regression_weight=1.0)
    z = torch.randn(8, 4, generator=torch.Generator().manual_seed(0))
    x = torch.randn(8, 4, generator=torch.Generator().manual_seed(1))
    distil(tmp_path / "d", cfg=cfg, stop_after=1, regression_pairs=(z, x))
    distil(tmp_path / "d", cfg=cfg, stop_after=1, regression_pairs=(z.clone(), x.clone()))
    x2 = x.clone()
    x2[3, 1] += 1e-3
    with pytest.raises(ConfigMismatchError, match=r"differs in: regression_pairs\)"):
        distil(tmp_path / "d", cfg=cfg, regression_pairs=(z, x2))
    assert len(config_json(tmp_path / "d")["regression_pairs"]) == 64      # a SHA-256 hex digest


def test_dmd_run_records_the_code_version(tmp_path, monkeypatch):
    distil(tmp_path / "d", stop_after=1)
    monkeypatch.setattr(dmdlib, "__version__", dmdlib.__version__ + "+changed")
    with pytest.raises(ConfigMismatchError, match=r"differs in: code_version\)"):
        distil(tmp_path / "d")


def test_dmd_run_records_the_student_init(tmp_path):
    distil(tmp_path / "d", stop_after=1)
    with pytest.raises(ConfigMismatchError, match=r"differs in: student_init\)"):
        distil(tmp_path / "d", student_init=tiny_denoiser(seed=1))
    assert config_json(tmp_path / "d")["student_init"] is None


def test_concurrent_students_record_distills_run_config(tmp_path):
    """Each student folder of distill_concurrent holds exactly the config.json distill writes for it."""
    ts = [tiny_denoiser(seed=s) for s in (0, 1)]
    speed = accel.Speed(tf32=True)
    for i, t in enumerate(ts):
        distil(tmp_path / "seq" / f"s{i}", teacher=t, speed=speed, stop_after=1)
    distill_concurrent(ts, (4,), DCFG, run_dirs=[tmp_path / "con" / f"s{i}" for i in range(2)], device="cpu",
                       progress_bar=False, speed=speed, stop_after=1)
    for i in range(2):
        seq, con = config_json(tmp_path / "seq" / f"s{i}"), config_json(tmp_path / "con" / f"s{i}")
        seq.pop("info")
        con.pop("info")
        assert seq == con and seq["speed"]["tf32"] is True


# ----------------------------------------------------------------------------- an unwritable output_dir

def test_validate_params_unwritable_output_dir(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    for bad in (blocker, blocker / "out", str(blocker / "out" / "deeper")):
        with pytest.raises(ValueError, match="output_dir") as e:
            notebook.validate_params("smoke", "cpu", 0, bad)
        assert "writable" in str(e.value) and str(blocker) in str(e.value)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="permissions do not bind root")
def test_validate_params_read_only_output_dir(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(ValueError, match="output_dir"):
            notebook.validate_params("smoke", "cpu", 0, ro)
    finally:
        ro.chmod(0o700)
