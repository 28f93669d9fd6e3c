"""Data parallelism (issue #11): two processes under torchrun (Gloo, CPU) give one process's weights on the same
global batch, every rank ends with the same weights, and a stopped torchrun run resumes exactly; class labels
(conditional teacher and DMD runs) are sharded with their rows."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import dmdlib
from dmdlib import distributed

ROOT = Path(__file__).resolve().parents[1]
WORKER = Path(__file__).with_name("ddp_worker.py")
NAMES = ("teacher", "dmd", "unet", "cteacher", "cunet")   # c...: class-conditional runs (labels sharded with rows)


def torchrun(*args, nproc=2, timeout=300):
    """Run ``python -m torch.distributed.run --standalone --nproc_per_node=nproc *args`` (one thread per process)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
                           *map(str, args)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return proc


def load_weights(folder: Path, kind: str) -> dict:
    ck = torch.load(folder / "result.pt", weights_only=True)
    return {f"{m}.{k}": v for m in (("denoiser", "ema") if kind.endswith("teacher") else ("generator", "fake"))
            for k, v in ck[m].items()}


def test_one_process_helpers_are_the_identity():
    x, y = torch.arange(6.0), torch.ones(6, 2)
    assert not distributed.active() and distributed.world_size() == 1 and distributed.is_main()
    assert distributed.shard(x) is x
    a, b = distributed.shard(x, y)
    assert a is x and b is y
    assert distributed.mean(x) is x
    m = torch.nn.Linear(2, 2)
    assert distributed.wrap(m) is m
    assert distributed.on_main(lambda v: v + 1, 1) == 2
    with distributed.main_first():
        pass
    distributed.check_batch(7, "X.batch_size")


def test_batch_must_split_evenly(monkeypatch):
    monkeypatch.setattr(distributed, "world_size", lambda: 3)
    with pytest.raises(ValueError, match=r"DMDConfig.batch_size \(16\) is not divisible by the number of processes \(3\)"):
        distributed.check_batch(16, "DMDConfig.batch_size")


def test_nccl_groups_wait_long_and_control_messages_go_through_gloo(monkeypatch):
    """Under NCCL (simulated: rank 1 of 2 on 'cuda', torch.distributed recorded), init gives the process group a
    timeout of distributed.TIMEOUT (NCCL's default watchdog fires after 10 minutes, while rank 0 may fetch MNIST or
    compute Phi_8 alone), and the control messages (on_main, main_first, barrier) use a Gloo group with the same."""
    import datetime

    import torch.distributed as dist

    calls, state = [], {"up": False}
    control = object()
    sent = [("ok", 42), None]                                     # what rank 0 sends: on_main's result, main_first's

    def init_process_group(**kw):
        calls.append(("init", kw))
        state["up"] = True

    def new_group(**kw):
        calls.append(("new_group", kw))
        return control

    def broadcast_object_list(box, src=0, group=None):
        calls.append(("broadcast", group))
        box[0] = sent.pop(0)

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setattr(distributed, "resolve_device", lambda device: torch.device("cuda"))
    monkeypatch.setattr(torch.cuda, "set_device", lambda dev: None)
    monkeypatch.setattr(distributed, "_control", None)
    for name, fn in (("init_process_group", init_process_group), ("new_group", new_group),
                     ("broadcast_object_list", broadcast_object_list), ("is_initialized", lambda: state["up"]),
                     ("get_backend", lambda group=None: "nccl"), ("get_rank", lambda group=None: 1),
                     ("get_world_size", lambda group=None: 2),
                     ("barrier", lambda group=None: calls.append(("barrier", group)))):
        monkeypatch.setattr(dist, name, fn)
    assert distributed.init("cuda") == torch.device("cuda", 0)
    assert distributed.TIMEOUT >= datetime.timedelta(hours=1)
    assert calls[0] == ("init", {"backend": "nccl", "timeout": distributed.TIMEOUT})
    assert calls[1] == ("new_group", {"backend": "gloo", "timeout": distributed.TIMEOUT})
    assert distributed.on_main(lambda: 0) == 42                  # rank 1 receives rank 0's result
    with distributed.main_first():
        pass
    distributed.barrier()
    assert calls[2:] == [("broadcast", control), ("broadcast", control), ("barrier", control)]


def test_two_processes_match_one_and_resume_under_torchrun(tmp_path):
    import ddp_worker as W

    torchrun(WORKER, "first", tmp_path)
    for name in NAMES:                           # the stopped runs left a checkpoint and no result
        assert (tmp_path / f"{name}-part" / "checkpoint.pt").exists()
        assert not (tmp_path / f"{name}-part" / "result.pt").exists()
    shutil.copytree(tmp_path / "dmd-part", tmp_path / "dmd-one")     # to be resumed by one process below
    torchrun(WORKER, "resume", tmp_path)
    first = json.loads((tmp_path / "report-first.json").read_text())
    resumed = json.loads((tmp_path / "report-resume.json").read_text())
    assert first["world_size"] == 2
    assert first["rank_spread"] == 0.0 and resumed["rank_spread"] == 0.0     # the ranks hold identical weights
    assert resumed["started_at"] == {"teacher": 4, "dmd": 5, "unet": 3, "cteacher": 4, "cunet": 3}  # checkpoints

    one = W.runs(None, part=False)                   # the same runs in this process (no process group)
    ref = W.weights(one)
    for name in NAMES:
        full = load_weights(tmp_path / f"{name}-full", name)
        part = load_weights(tmp_path / f"{name}-part", name)
        assert all(torch.equal(full[k], part[k]) for k in full), f"{name}: resumed != uninterrupted"
        diff = max((full[k] - ref[f"{name}.{k}"]).abs().max().item() for k in full)
        assert diff < 1e-4, f"{name}: two processes differ from one by {diff}"
    # a run stopped under torchrun resumes in one process (the run folder does not depend on the process count)
    d1 = dmdlib.distill(W.mlp(1), (4,), W.DCFG, run_dir=tmp_path / "dmd-one", seed=4, device="cpu",
                                             progress_bar=False, eval_fn=W.mean_output)
    assert d1.started_at == 5
    full = load_weights(tmp_path / "dmd-full", "dmd")
    one_res = load_weights(tmp_path / "dmd-one", "dmd")
    assert max((full[k] - one_res[k]).abs().max().item() for k in full) < 1e-4
    # the logged losses are the global batch's means; evaluations and log points are the same
    assert first["teacher_losses"] == pytest.approx(one["teacher"].losses, rel=1e-5)
    assert first["cteacher_losses"] == pytest.approx(one["cteacher"].losses, rel=1e-5)
    for key, r in (("dmd_logs", one["dmd"]), ("unet_logs", one["unet"]), ("cunet_logs", one["cunet"])):
        for k, log in first[key].items():
            if k == "eval":
                assert [e["iteration"] for e in log] == [e["iteration"] for e in r.logs[k]]
                assert [e["mean"] for e in log] == pytest.approx([e["mean"] for e in r.logs[k]], rel=1e-5)
            else:
                assert log["iteration"] == r.logs[k]["iteration"]
                assert log["value"] == pytest.approx(r.logs[k]["value"], rel=1e-4, abs=1e-6)
