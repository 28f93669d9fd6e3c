"""Students trained side by side (dmdlib.concurrent) are the sequential students, up to summation order."""
from dataclasses import replace

import pytest
import torch

import dmdlib
from dmdlib import specs
from dmdlib import get_preset
from dmdlib.presets import DMDConfig
from dmdlib.concurrent import clip_stacked_, distill_concurrent
from dmdlib.dmd import distill

P = get_preset("mnist", "smoke")
SHAPE = (1, 32, 32)
CFG = replace(P.dmd, iterations=10, batch_size=4, checkpoint_every=5, log_every=5, eval_every=5)


def _teachers(n=3):
    out = []
    for s in range(n):
        torch.manual_seed(s)
        out.append(specs.denoiser(P).eval())
    return out


def _probe(g, it):
    with torch.no_grad():
        return {"mean": float(g(torch.ones(2, *SHAPE)).mean())}


def _max_diff(a, b):
    return max((x - y).abs().max().item() for x, y in zip(a.parameters(), b.parameters()))


def test_concurrent_equals_sequential():
    ts = _teachers()
    seq = [distill(t, SHAPE, CFG, seed=0, device="cpu", progress_bar=False, eval_fn=_probe) for t in ts]
    con = distill_concurrent(ts, SHAPE, CFG, seed=0, device="cpu", progress_bar=False, eval_fns=[_probe] * 3)
    for a, b in zip(seq, con):
        assert b.iterations == CFG.iterations
        assert _max_diff(a.generator, b.generator) < 1e-6
        assert _max_diff(a.fake, b.fake) < 1e-6
        assert a.logs["dm"]["iteration"] == b.logs["dm"]["iteration"]
        assert a.logs["dm"]["value"] == pytest.approx(b.logs["dm"]["value"], rel=1e-4, abs=1e-9)
        assert a.logs["fake"]["value"] == pytest.approx(b.logs["fake"]["value"], rel=1e-5)
        assert [e["mean"] for e in a.logs["eval"]] == pytest.approx([e["mean"] for e in b.logs["eval"]], abs=1e-6)
    # the students really differ from each other (each distils its own teacher)
    assert _max_diff(con[0].generator, con[1].generator) > 1e-3


def test_concurrent_resume_is_exact_and_sequential_reloads(tmp_path):
    ts = _teachers(2)
    dirs_a = [tmp_path / "a" / f"s{i}" for i in range(2)]
    dirs_b = [tmp_path / "b" / f"s{i}" for i in range(2)]
    full = distill_concurrent(ts, SHAPE, CFG, run_dirs=dirs_a, seed=0, device="cpu", progress_bar=False)
    part = distill_concurrent(ts, SHAPE, CFG, run_dirs=dirs_b, seed=0, device="cpu", progress_bar=False,
                              stop_after=5)
    assert part[0].iterations == 5 and not (dirs_b[0] / "result.pt").exists()
    assert any((tmp_path / "b").glob("concurrent-*/checkpoint.pt"))
    resumed = distill_concurrent(ts, SHAPE, CFG, run_dirs=dirs_b, seed=0, device="cpu", progress_bar=False)
    assert resumed[0].started_at == 5
    for a, b in zip(full, resumed):
        assert _max_diff(a.generator, b.generator) == 0.0
        assert a.logs == b.logs
    assert not any((tmp_path / "b").glob("concurrent-*/checkpoint.pt"))
    # distill() finds the finished students in their own folders
    again = distill(ts[1], SHAPE, CFG, run_dir=dirs_a[1], seed=0, device="cpu", progress_bar=False)
    assert again.started_at == CFG.iterations
    assert _max_diff(again.generator, full[1].generator) == 0.0


def test_concurrent_uses_finished_sequential_students(tmp_path):
    ts = _teachers(2)
    dirs = [tmp_path / f"s{i}" for i in range(2)]
    seq0 = distill(ts[0], SHAPE, CFG, run_dir=dirs[0], seed=0, device="cpu", progress_bar=False)
    out = distill_concurrent(ts, SHAPE, CFG, run_dirs=dirs, seed=0, device="cpu", progress_bar=False)
    assert out[0].started_at == CFG.iterations and _max_diff(out[0].generator, seq0.generator) == 0.0
    assert out[1].started_at == 0 and (dirs[1] / "result.pt").exists()


def test_clip_stacked_matches_torch_per_slice():
    torch.manual_seed(0)
    stacked = [torch.zeros(3, 5, requires_grad=True), torch.zeros(3, 2, 2, requires_grad=True)]
    stacked[0].grad = torch.randn(3, 5) * torch.tensor([[0.1], [10.0], [100.0]])
    stacked[1].grad = torch.randn(3, 2, 2)
    refs = []
    for s in range(3):
        ps = [torch.zeros(5, requires_grad=True), torch.zeros(2, 2, requires_grad=True)]
        ps[0].grad, ps[1].grad = stacked[0].grad[s].clone(), stacked[1].grad[s].clone()
        norm = torch.nn.utils.clip_grad_norm_(ps, 10.0)
        refs.append((norm, [p.grad for p in ps]))
    norms = clip_stacked_(stacked, 10.0)
    for s, (norm, grads) in enumerate(refs):
        assert norms[s].item() == pytest.approx(norm.item(), rel=1e-6)
        assert torch.allclose(stacked[0].grad[s], grads[0], rtol=1e-6)
        assert torch.allclose(stacked[1].grad[s], grads[1], rtol=1e-6)


def test_concurrent_rejects_bad_input():
    ts = _teachers(2)
    with pytest.raises(ValueError, match="at least one"):
        distill_concurrent([], SHAPE, CFG, device="cpu")
    with pytest.raises(ValueError, match="DMD alone"):
        distill_concurrent(ts, SHAPE, replace(CFG, gan_d_weight=1e-2), device="cpu")
    with pytest.raises(ValueError, match="one entry per teacher"):
        distill_concurrent(ts, SHAPE, CFG, run_dirs=["x"], device="cpu")
    with pytest.raises(ValueError, match="stop_after"):
        distill_concurrent(ts, SHAPE, CFG, device="cpu", stop_after=0)


@pytest.mark.parametrize("concurrent", [False, True])
def test_both_loops_run_the_one_shared_step(monkeypatch, concurrent):
    """distill and distill_concurrent drive the same dmdlib.step.dmd_step, once per iteration."""
    from dmdlib import concurrent as conc
    from dmdlib import dmd, step

    calls = []
    real = step.dmd_step

    def spy(it, *a, **k):
        calls.append(it)
        return real(it, *a, **k)
    monkeypatch.setattr(conc if concurrent else dmd, "dmd_step", spy)
    cfg = DMDConfig(iterations=7, batch_size=4, lr=1e-3, lr_fake=1e-3, warmup_steps=2, checkpoint_every=7,
                    log_every=7)
    teacher = dmdlib.EDMPrecond(dmdlib.MLPNet(4, 16, 1)).eval()
    if concurrent:
        conc.distill_concurrent([teacher, teacher], (4,), cfg, device="cpu", progress_bar=False)
    else:
        dmd.distill(teacher, (4,), cfg, device="cpu", progress_bar=False)
    assert calls == list(range(7))
