"""The MNIST family on the pairing path, presets and the fast-path switches, on tiny synthetic images (no download)."""
import dataclasses

import pytest
import torch

import dmdlib
from dmdlib import specs
from dmdlib import accel
from dmdlib import pairing


def tiny_preset():
    p = dmdlib.get_preset("mnist", "smoke")
    return dataclasses.replace(p, n_eval=16, n_pca=16, sample_batch=8)


def test_mnist_presets_are_consistent():
    for name in dmdlib.PRESET_NAMES:
        p = dmdlib.get_preset("mnist", name)
        assert float(p.teacher_kimg) in [float(s) for s in p.teacher.snapshots], name
        assert p.teacher.progress_unit == "kimg"
        last = p.teacher.iterations * p.teacher.batch_size / 1000
        assert max(p.teacher.snapshots) <= last + 1e-9, f"{name}: a snapshot lies beyond the end of training"
    paper = dmdlib.get_preset("mnist", "paper")
    assert paper.teacher.iterations * paper.teacher.batch_size == 8192 * 1000
    assert tuple(paper.teacher.snapshots) == (1024, 2048, 3072, 4096, 6144, 8192)
    assert (paper.dmd.iterations, paper.dmd.batch_size, paper.dmd.lr, paper.dmd.gen_every) == (50_000, 32, 2e-6, 5)
    assert (paper.unet.model_channels, tuple(paper.unet.channel_mult), paper.unet.num_blocks,
            tuple(paper.unet.attn_resolutions)) == (64, (1, 2, 3, 4), 3, (32, 16, 8))


def test_paper_unet_parameter_count():
    p = dmdlib.get_preset("mnist", "paper")
    with torch.device("meta"):
        net = specs.denoiser(p)
    assert sum(q.numel() for q in net.parameters()) == 31_118_593


def test_mnist_pairing_end_to_end_on_synthetic_images(tmp_path):
    """The MNIST family on the one pairing path: a kimg-snapshot teacher, the student of a snapshot, its record."""
    p = tiny_preset()
    g = torch.Generator().manual_seed(0)
    x = torch.rand(64, 1, 32, 32, generator=g) * 2 - 1
    spec = specs.DataSpec("synthetic", (1, 32, 32), specs._MnistSampler(x, torch.zeros(64, 10), False), "synthetic",
                          p.teacher.sigma_data, kind="mnist", fit_distance="w2sq")
    teacher = pairing.train_spec_teacher(spec, p, tmp_path, seed=0, device="cpu", progress_bar=False)
    assert teacher.unit == "kimg"
    assert sorted(teacher.snapshots) == sorted(float(s) for s in p.teacher.snapshots)
    for path in teacher.snapshots.values():
        assert "kimg" in str(path)
    with pytest.raises(ValueError, match="available"):
        pairing.teacher_net(spec, p, teacher, 999.0)
    run = pairing.run_pairing(spec, p, tmp_path, seed=0, device="cpu", snapshot=p.teacher_kimg, reference=False,
                              progress_bar=False)
    evals = run.student.logs["eval"]
    assert [e["iteration"] for e in evals] == list(range(0, p.dmd.iterations + 1, p.dmd.eval_every))
    # at iteration 0 the student is Phi_1: its Delta_E against Phi_8 equals Phi_1's
    N = p.n_eval
    phi_8, phi_1 = run.maps["phi_8"], run.maps["phi_1"]
    assert evals[0]["delta_e"] == pytest.approx(dmdlib.pairing_inefficiency(phi_8[:N], phi_1[:N]), rel=1e-6)
    torch.testing.assert_close(phi_8, dmdlib.phi_k(run.net, run.z, p.k, batch_size=p.sample_batch))
    assert run.maps["g"].shape == (p.n_sets * N, 1, 32, 32) and "phi_8_2" not in run.maps
    assert run.metrics["teacher_snapshot"] == p.teacher_kimg and run.metrics["delta_e"]["n"] == N
    # a second call reloads every run instead of training, and gives the same record
    again = pairing.run_pairing(spec, p, tmp_path, seed=0, device="cpu", snapshot=p.teacher_kimg, reference=False,
                                progress_bar=False)
    assert again.teacher.started_at == again.teacher.iterations and again.student.started_at == p.dmd.iterations
    assert again.metrics["delta_e"] == run.metrics["delta_e"]


def test_speed_switches_validate_and_keep_results_close(tmp_path):
    with pytest.raises(ValueError, match="amp"):
        accel.Speed(amp="int8")
    assert isinstance(accel.autocast(torch.device("cpu"), None), type(accel.autocast(torch.device("cpu"), accel.REFERENCE)))
    p = tiny_preset()
    data = torch.rand(64, 1, 32, 32) * 2 - 1
    # the fast paths (no compile on CPU here) train to nearby weights and keep state_dict keys; "nearby" is
    # measured against how far the reference moved from its start in 4 steps (parameter-space L2 distance)
    cfg = dataclasses.replace(p.teacher, iterations=4, checkpoint_every=4, log_every=4, snapshots=())
    fn = lambda n, g: data[torch.randint(0, 64, (n,), generator=g)]  # noqa: E731
    torch.manual_seed(0)
    start = specs.denoiser(p).state_dict()
    res = {}
    for name, sp in (("ref", accel.REFERENCE), ("layout", accel.Speed(channels_last=True)),
                     ("fast", accel.Speed(amp="bf16", channels_last=True))):
        torch.manual_seed(0)
        net = specs.denoiser(p)
        res[name] = dmdlib.train_teacher(net, fn, cfg, device="cpu", progress_bar=False, speed=sp).ema.state_dict()

    def dist(a, b):
        return sum(((a[k].double() - b[k].double()) ** 2).sum() for k in a).sqrt().item()

    ref = res["ref"]
    moved = dist(ref, start)
    assert moved > 0.1
    for name in ("layout", "fast"):
        assert res[name].keys() == ref.keys()
    # channels_last changes only the summation order (measured 9e-6 of the motion)
    assert 0 <= dist(res["layout"], ref) < 1e-3 * moved
    # bf16 autocast rounds every forward pass (measured 7% of the motion after 4 steps)
    assert 0 < dist(res["fast"], ref) < 0.15 * moved


def test_snapshots_side_by_side_equal_one_after_another(tmp_path):
    """run_pairings over two teacher snapshots: concurrent students are the sequential ones (up to summation order),
    written to the same run folders, so either way reloads the other's students."""
    p = tiny_preset()
    g = torch.Generator().manual_seed(1)
    x = torch.rand(64, 1, 32, 32, generator=g) * 2 - 1
    spec = specs.DataSpec("synthetic", (1, 32, 32), specs._MnistSampler(x, torch.zeros(64, 10), False), "synthetic",
                          p.teacher.sigma_data, kind="mnist", fit_distance="w2sq")
    snaps = [float(s) for s in p.teacher.snapshots]
    seq = pairing.run_pairings(spec, p, tmp_path / "seq", snapshots=snaps, device="cpu", progress_bar=False)
    side = pairing.run_pairings(spec, p, tmp_path / "side", snapshots=snaps, concurrent=True, device="cpu",
                                progress_bar=False)
    assert [r.snapshot for r in side] == snaps
    for a, b in zip(seq, side):
        torch.testing.assert_close(a.maps["g"], b.maps["g"], atol=1e-4, rtol=1e-4)
        assert a.metrics["delta_e"]["delta_e"] == pytest.approx(b.metrics["delta_e"]["delta_e"], abs=1e-3)
    names = lambda root: sorted(d.name for d in root.iterdir() if d.name.startswith("student-"))  # noqa: E731
    assert names(tmp_path / "seq") == names(tmp_path / "side") and len(names(tmp_path / "seq")) == 2
