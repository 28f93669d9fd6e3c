"""DMD (DM gradient, fake-score loss, the distillation loop) and EDM teacher training:
update schedule, bit-exact resume, caching of finished runs, the non-finite guard."""
import copy
import json
import math

import pytest
import torch

import dmdlib
from dmdlib import specs
from dmdlib import (ConfigMismatchError, DMDConfig, GaussianDenoiser, NonFiniteLossError, OneStepGenerator,
                    TeacherConfig, dm_gradient, dm_loss, fake_score_loss, heun_sample)


# ----------------------------------------------------------------------------- helpers

def tiny_denoiser(dim=4, seed=0, width=32, depth=2):
    torch.manual_seed(seed)  # every fresh network starts from the same weights
    return dmdlib.EDMPrecond(dmdlib.MLPNet(dim, width, depth, 8))


def clone_state(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def states_equal(a, b):
    a = a if isinstance(a, dict) else a.state_dict()
    b = b if isinstance(b, dict) else b.state_dict()
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


DCFG = dict(iterations=20, batch_size=16, lr=1e-3, lr_fake=1e-3, warmup_steps=2, checkpoint_every=5, log_every=5)
TCFG = dict(iterations=20, batch_size=32, lr=1e-3, lr_rampup_kimg=0.0, checkpoint_every=5, log_every=5,
            ema_halflife_kimg=1.0)


def run_distill(teacher, cfg, **kw):
    return dmdlib.distill(teacher, (4,), cfg, seed=kw.pop("seed", 0), device="cpu", progress_bar=False, **kw)


def chess_fn(n, g):
    return dmdlib.sample_toy("chessboard", n, 4, generator=g)


def run_teacher(net, cfg, **kw):
    return dmdlib.train_teacher(net, kw.pop("data_fn", chess_fn), cfg, seed=kw.pop("seed", 0), device="cpu",
                                progress_bar=False, **kw)


# ----------------------------------------------------------------------------- DM gradient and losses

@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(32, 4, generator=g)
    sigma = torch.exp(torch.randn(32, generator=g) * 1.5)
    eps = torch.randn(32, 4, generator=g)
    return x, sigma, eps


def test_dm_gradient_vanishes_when_fake_equals_real(batch):
    x, sigma, eps = batch
    real = tiny_denoiser()
    for fake in (real, copy.deepcopy(real)):
        grad = dm_gradient(x, fake, real, sigma, eps)
        assert grad.shape == x.shape
        assert torch.equal(grad, torch.zeros_like(x))


def test_dm_gradient_nonzero_for_different_fake(batch):
    x, sigma, eps = batch
    grad = dm_gradient(x, tiny_denoiser(seed=1), tiny_denoiser(seed=0), sigma, eps)
    assert grad.abs().sum().item() > 0
    assert not grad.requires_grad


def test_dm_loss_gradient_is_grad_over_numel():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(8, 3, dtype=torch.float64, generator=g, requires_grad=True)
    grad = torch.randn(8, 3, dtype=torch.float64, generator=g)
    loss = dm_loss(x, grad)
    assert loss.item() == pytest.approx(0.5 * (grad ** 2).mean().item(), rel=1e-12)
    loss.backward()
    torch.testing.assert_close(x.grad, grad / x.numel(), rtol=1e-12, atol=1e-15)
    # float32, multi-dimensional
    x32 = torch.randn(4, 1, 2, 2, generator=g, requires_grad=True)
    g32 = torch.randn(4, 1, 2, 2, generator=g)
    dm_loss(x32, g32).backward()
    torch.testing.assert_close(x32.grad, g32 / 16, rtol=1e-5, atol=1e-7)


def test_dm_gradient_points_towards_real_distribution(batch):
    x, sigma, eps = (t.double() for t in batch)
    mu_real, mu_fake = torch.zeros(4, dtype=torch.float64), torch.ones(4, dtype=torch.float64)
    s = torch.full((4,), 0.5, dtype=torch.float64)
    real, fake = GaussianDenoiser(mu_real, s), GaussianDenoiser(mu_fake, s)
    grad = dm_gradient(x, fake, real, sigma, eps)
    step = -grad
    # a descent step moves every sample towards the real mean relative to the fake mean
    assert bool(((step * (mu_real - mu_fake)).sum(1) > 0).all())
    # hand formula: D_fake - D_real = sigma^2/(s^2 + sigma^2) (mu_fake - mu_real), normalised by mean|x - D_real|
    x_t = x + sigma[:, None] * eps
    d_real = real(x_t, sigma)
    norm = (x - d_real).abs().mean(1, keepdim=True)
    ref = (sigma ** 2 / (0.25 + sigma ** 2))[:, None] * (mu_fake - mu_real) / norm
    torch.testing.assert_close(grad, ref, rtol=1e-12, atol=1e-14)


class Oracle(torch.nn.Module):
    """A 'fake score' that returns the clean target whatever it is given."""

    def __init__(self, target):
        super().__init__()
        self.target = target

    def forward(self, x, sigma, labels=None):
        return self.target.clone()


def test_fake_score_loss_zero_and_nonnegative(batch):
    x, sigma, eps = batch
    assert fake_score_loss(Oracle(x), x, sigma, eps).item() == 0.0
    identity = lambda x_t, sigma, labels=None: x_t  # noqa: E731
    assert fake_score_loss(identity, x, sigma, torch.zeros_like(eps)).item() == 0.0
    assert fake_score_loss(tiny_denoiser(), x, sigma, eps).item() > 0
    # value: mean of (1/sigma^2 + 1/sd^2) |D - x|^2, here with D = 0
    zero = lambda x_t, sigma, labels=None: torch.zeros_like(x_t)  # noqa: E731
    ref = ((1 / sigma ** 2 + 4.0)[:, None] * x ** 2).mean()
    torch.testing.assert_close(fake_score_loss(zero, x, sigma, eps), ref)


def test_fake_score_loss_does_not_backprop_into_x(batch):
    x, sigma, eps = batch
    x = x.clone().requires_grad_(True)
    net = tiny_denoiser()
    fake_score_loss(net, x, sigma, eps).backward()
    assert x.grad is None
    assert all(p.grad is not None for p in net.parameters())


def test_one_step_generator_is_phi_1():
    den = tiny_denoiser()
    z = torch.randn(16, 4, generator=torch.Generator().manual_seed(3))
    gen = OneStepGenerator(den)
    out = gen(z)
    assert torch.equal(out.detach(), heun_sample(den, z, 1))
    assert gen.sigma_max == 80.0


# ----------------------------------------------------------------------------- the DMD loop

def test_distill_update_schedule():
    """The generator changes only on iterations it % gen_every == 0, the fake score every iteration.

    The linear warm-up gives lr = base * iteration / warmup_steps, counted from iteration 0, so
    each optimizer's *first* step has lr 0 and changes nothing (as in HF/DMD2's
    constant-with-warmup schedule)."""
    teacher = tiny_denoiser()
    t0 = clone_state(teacher)
    cfg = DMDConfig(**DCFG)
    gens, fakes = {}, {}
    for k in (1, 2, 5, 6, 10, 11):    # runs are deterministic: stop_after=k gives the state after k iterations
        r = run_distill(teacher, cfg, stop_after=k)
        assert r.iterations == k
        gens[k], fakes[k] = clone_state(r.generator.denoiser), clone_state(r.fake)
    assert states_equal(gens[1], t0)                 # generator step at it=0 had lr 0
    assert states_equal(gens[5], t0)                 # it=1..4: no generator step
    assert not states_equal(gens[6], gens[5])        # it=5: update
    assert states_equal(gens[10], gens[6])           # it=6..9: none
    assert not states_equal(gens[11], gens[10])      # it=10: update
    assert states_equal(fakes[1], t0)                # first fake step: lr 0
    assert not states_equal(fakes[2], fakes[1])      # the fake score moves every iteration
    assert not states_equal(fakes[6], fakes[5])
    assert not states_equal(fakes[11], fakes[10])
    assert states_equal(teacher, t0), "distillation must not touch the teacher's weights"

    cfg0 = DMDConfig(**{**DCFG, "warmup_steps": 0})
    g = {k: clone_state(run_distill(teacher, cfg0, stop_after=k).generator.denoiser) for k in (1, 5, 6)}
    assert not states_equal(g[1], t0)
    assert states_equal(g[5], g[1])
    assert not states_equal(g[6], g[5])


def test_distill_logs_and_teacher_untouched():
    teacher = tiny_denoiser()
    t0 = clone_state(teacher)
    evals = []

    def eval_fn(gen, it):
        evals.append(it)
        return {"it": it}

    cfg = DMDConfig(**{**DCFG, "eval_every": 10})
    r = run_distill(teacher, cfg, eval_fn=eval_fn)
    assert states_equal(teacher, t0)
    assert r.iterations == 20
    for key in ("dm", "fake"):
        assert r.logs[key]["iteration"] == [5, 10, 15, 20]
        assert len(r.logs[key]["value"]) == 4
        assert all(math.isfinite(v) for v in r.logs[key]["value"])
    assert all(v >= 0 for v in r.logs["dm"]["value"] + r.logs["fake"]["value"])
    assert evals == [0, 10, 20]
    assert [e["iteration"] for e in r.logs["eval"]] == [0, 10, 20]
    # the generator has moved away from Phi_1 = the teacher's one-step output
    assert not states_equal(r.generator.denoiser, t0)


def test_distill_resume_is_bit_exact(tmp_path, monkeypatch):
    cfg = DMDConfig(**DCFG)
    a = run_distill(tiny_denoiser(), cfg, run_dir=tmp_path / "A")
    assert (tmp_path / "A" / "result.pt").exists() and not (tmp_path / "A" / "checkpoint.pt").exists()

    b_dir = tmp_path / "B"
    b1 = run_distill(tiny_denoiser(), cfg, run_dir=b_dir, stop_after=13)
    assert b1.iterations == 13
    assert (b_dir / "checkpoint.pt").exists() and not (b_dir / "result.pt").exists()
    ck = torch.load(b_dir / "checkpoint.pt", weights_only=True)
    assert ck["iteration"] == 10 and ck["steps_g"] == 2 and ck["steps_f"] == 10
    assert ck["logs"]["dm"]["iteration"] == [5, 10]
    b2 = run_distill(tiny_denoiser(), cfg, run_dir=b_dir)
    assert b2.iterations == 20
    assert states_equal(b2.generator, a.generator)
    assert states_equal(b2.fake, a.fake)
    assert b2.logs == a.logs
    assert not (b_dir / "checkpoint.pt").exists()
    res = torch.load(b_dir / "result.pt", weights_only=True)
    assert res["iteration"] == 20 and "opt_g" not in res

    # a finished run is loaded, not retrained
    def boom(*a, **k):
        raise AssertionError("a finished run must not train")

    monkeypatch.setattr(dmdlib.dmd, "fake_score_loss", boom)
    monkeypatch.setattr(dmdlib.dmd, "dm_gradient", boom)
    c = run_distill(tiny_denoiser(), cfg, run_dir=tmp_path / "A")
    assert c.iterations == 20
    assert states_equal(c.generator, a.generator) and states_equal(c.fake, a.fake)
    assert c.logs == a.logs


def test_distill_config_mismatch(tmp_path):
    cfg = DMDConfig(**{**DCFG, "iterations": 5})
    run_distill(tiny_denoiser(), cfg, run_dir=tmp_path / "r")
    # the message names the differing top-level key ("config", not the field inside it)
    with pytest.raises(ConfigMismatchError, match="differs in: config"):
        run_distill(tiny_denoiser(), DMDConfig(**{**DCFG, "iterations": 10}), run_dir=tmp_path / "r")
    with pytest.raises(ConfigMismatchError, match="teacher"):
        run_distill(tiny_denoiser(seed=1), cfg, run_dir=tmp_path / "r")
    with pytest.raises(ConfigMismatchError, match="seed"):
        run_distill(tiny_denoiser(), cfg, run_dir=tmp_path / "r", seed=1)
    cfg_json = json.loads((tmp_path / "r" / "config.json").read_text())
    assert cfg_json["kind"] == "dmd" and cfg_json["z_shape"] == [4]


class NaNTeacher(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(()))

    def forward(self, x, sigma, labels=None):
        return x * self.w * float("nan")


def test_distill_non_finite_raises(tmp_path):
    with pytest.raises(NonFiniteLossError, match="non-finite"):
        run_distill(NaNTeacher(), DMDConfig(**DCFG), run_dir=tmp_path / "nan")
    assert not (tmp_path / "nan" / "result.pt").exists()
    assert not (tmp_path / "nan" / "checkpoint.pt").exists()


def test_dmd_config_validation():
    for bad in ({"iterations": 0}, {"batch_size": -1}, {"gen_every": 0}, {"checkpoint_every": 7, "log_every": 5},
                {"lr": 0.0}, {"lr_fake": -1.0}, {"warmup_steps": -1}, {"band": (0.5, 0.2)}, {"iterations": 2.0},
                {"iterations": True}):
        with pytest.raises(ValueError):
            DMDConfig(**{**DCFG, **bad})
    with pytest.raises(ValueError, match="multiple"):
        DMDConfig(**{**DCFG, "checkpoint_every": 7})


# ----------------------------------------------------------------------------- teacher training

def test_teacher_resume_is_bit_exact_with_snapshots(tmp_path, monkeypatch):
    cfg = TeacherConfig(**TCFG, snapshots=(7, 15))
    a = run_teacher(tiny_denoiser(), cfg, run_dir=tmp_path / "A")
    assert a.iterations == 20 and a.kimg == pytest.approx(0.64)
    assert a.loss_iterations == [5, 10, 15, 20] and len(a.losses) == 4
    assert all(math.isfinite(v) for v in a.losses)
    assert sorted(a.snapshots) == [7.0, 15.0]
    assert (tmp_path / "A" / "result.pt").exists() and not (tmp_path / "A" / "checkpoint.pt").exists()

    b_dir = tmp_path / "B"
    b1 = run_teacher(tiny_denoiser(), cfg, run_dir=b_dir, stop_after=13)
    assert b1.iterations == 13
    ck = torch.load(b_dir / "checkpoint.pt", weights_only=True)
    assert ck["iteration"] == 10 and ck["snapshots"] == [7.0]
    b2 = run_teacher(tiny_denoiser(), cfg, run_dir=b_dir)
    assert b2.iterations == 20
    assert states_equal(b2.denoiser, a.denoiser)
    assert states_equal(b2.ema, a.ema)
    assert b2.losses == a.losses and b2.loss_iterations == a.loss_iterations
    for s in (7.0, 15.0):
        sa = torch.load(a.snapshots[s], weights_only=True)
        sb = torch.load(b2.snapshots[s], weights_only=True)
        assert states_equal(sa["ema"], sb["ema"]) and sa["iteration"] == int(s)
    assert not (b_dir / "checkpoint.pt").exists()

    # the snapshot at 7 iterations is the EMA after 7 iterations (in-memory run, no run_dir)
    c = run_teacher(tiny_denoiser(), cfg, stop_after=7)
    assert c.iterations == 7
    assert states_equal(c.snapshots[7.0], c.ema)
    assert states_equal(dmdlib.load_snapshot(tiny_denoiser(), a.snapshots[7.0]), c.ema)
    # the raw run without run_dir gives the same result as the checkpointed one
    d = run_teacher(tiny_denoiser(), cfg)
    assert states_equal(d.ema, a.ema) and d.losses == a.losses

    # a finished run is loaded, not retrained
    monkeypatch.setattr(dmdlib.teacher, "edm_loss", lambda *a, **k: (_ for _ in ()).throw(AssertionError("trained")))
    e = run_teacher(tiny_denoiser(seed=5), cfg, run_dir=tmp_path / "A")
    assert e.iterations == 20 and states_equal(e.ema, a.ema) and states_equal(e.denoiser, a.denoiser)
    assert e.losses == a.losses and sorted(e.snapshots) == [7.0, 15.0]


def test_teacher_checkpoints_are_weights_only(tmp_path):
    cfg = TeacherConfig(**TCFG)
    run_teacher(tiny_denoiser(), cfg, run_dir=tmp_path / "t", stop_after=6)
    ck = torch.load(tmp_path / "t" / "checkpoint.pt", weights_only=True)
    assert set(ck) >= {"denoiser", "ema", "iteration", "losses", "loss_iterations", "snapshots", "optimizer", "rng"}
    assert ck["iteration"] == 5
    ck2 = dmdlib.load_checkpoint(tmp_path / "t" / "checkpoint.pt")
    assert states_equal(ck["ema"], ck2["ema"])


def test_teacher_kimg_snapshots(tmp_path):
    cfg = TeacherConfig(**{**TCFG, "iterations": 10}, progress_unit="kimg", snapshots=(0.16,))
    r = run_teacher(tiny_denoiser(), cfg, run_dir=tmp_path / "k")
    assert r.unit == "kimg"
    assert (tmp_path / "k" / "snapshots" / "teacher-0.16kimg.pt").exists()
    snap = torch.load(r.snapshots[0.16], weights_only=True)
    assert snap["iteration"] == 5 and snap["unit"] == "kimg"


def test_teacher_non_finite_keeps_last_good_checkpoint(tmp_path):
    cfg = TeacherConfig(**{**TCFG, "iterations": 30})
    calls = {"n": 0}

    def flaky(n, g):
        calls["n"] += 1
        x = chess_fn(n, g)
        return x if calls["n"] <= 10 else torch.full_like(x, float("nan"))

    run = tmp_path / "nan"
    with pytest.raises(NonFiniteLossError, match="non-finite"):
        run_teacher(tiny_denoiser(), cfg, run_dir=run, data_fn=flaky)
    assert calls["n"] == 15  # the window 11..15 is checked at its log point
    assert not (run / "result.pt").exists()
    ck = torch.load(run / "checkpoint.pt", weights_only=True)
    assert ck["iteration"] == 10
    assert all(bool(torch.isfinite(v).all()) for v in ck["denoiser"].values())
    assert all(bool(torch.isfinite(v).all()) for v in ck["ema"].values())
    assert all(math.isfinite(v) for v in ck["losses"])
    # fixing the data and calling again resumes from iteration 10 and ends where a clean run ends
    fixed = run_teacher(tiny_denoiser(), cfg, run_dir=run)
    clean = run_teacher(tiny_denoiser(), cfg)
    assert fixed.iterations == 30
    assert states_equal(fixed.ema, clean.ema) and fixed.losses == clean.losses


def test_teacher_huge_lr_non_finite(tmp_path):
    """An absurd learning rate blows the weights up; the guard fires instead of saving garbage."""
    cfg = TeacherConfig(**{**TCFG, "lr": 1e12, "iterations": 40})
    with pytest.raises(NonFiniteLossError):
        run_teacher(tiny_denoiser(), cfg, run_dir=tmp_path / "big")
    assert not (tmp_path / "big" / "result.pt").exists()


def test_teacher_config_mismatch(tmp_path):
    cfg = TeacherConfig(**{**TCFG, "iterations": 5})
    run_teacher(tiny_denoiser(), cfg, run_dir=tmp_path / "t")
    with pytest.raises(ConfigMismatchError, match="config"):
        run_teacher(tiny_denoiser(), TeacherConfig(**{**TCFG, "iterations": 6}), run_dir=tmp_path / "t")
    with pytest.raises(ConfigMismatchError, match="seed"):
        run_teacher(tiny_denoiser(), cfg, run_dir=tmp_path / "t", seed=3)
    # the same configuration is accepted (and the finished run reloaded)
    assert run_teacher(tiny_denoiser(), cfg, run_dir=tmp_path / "t").iterations == 5


def test_teacher_learns():
    mu = torch.tensor([1.0, -0.5])

    def data_fn(n, g):
        return mu + 0.2 * torch.randn(n, 2, generator=g)

    net = tiny_denoiser(dim=2, width=48)
    init = copy.deepcopy(net)
    cfg = TeacherConfig(iterations=150, batch_size=64, lr=2e-3, lr_rampup_kimg=0.0, ema_halflife_kimg=1.0,
                        checkpoint_every=30, log_every=30)
    res = run_teacher(net, cfg, data_fn=data_fn)
    assert len(res.losses) == 5 and res.loss_iterations == [30, 60, 90, 120, 150]
    assert res.losses[-1] < 0.7 * res.losses[0], res.losses  # measured 2.16 -> 1.05

    def held_out_loss(den):
        g = torch.Generator().manual_seed(123)
        y = data_fn(20_000, g)
        with torch.no_grad():
            return dmdlib.edm_loss(den, y, g).sum(1).mean().item()

    exact = GaussianDenoiser(mu, torch.full((2,), 0.2))
    l_init, l_ema, l_exact = held_out_loss(init), held_out_loss(res.ema), held_out_loss(exact)
    # measured: init 2.96, EMA 1.06, exact denoiser 0.99 (about 1 per coordinate)
    assert l_ema < 0.5 * l_init, (l_init, l_ema)
    assert l_ema < 1.25 * l_exact, (l_ema, l_exact)


def test_teacher_config_validation():
    for bad in ({"iterations": 0}, {"batch_size": 0}, {"checkpoint_every": 7}, {"progress_unit": "epochs"},
                {"lr": 0.0}, {"log_every": 0}):
        with pytest.raises(ValueError):
            TeacherConfig(**{**TCFG, **bad})
    with pytest.raises(ValueError, match="progress_unit"):
        TeacherConfig(progress_unit="epochs")
    with pytest.raises(ValueError, match="multiple"):
        TeacherConfig(checkpoint_every=150, log_every=100)


def test_ema_update_beta():
    from dmdlib.teacher import ema_update

    def pair():
        net, ema = torch.nn.Linear(1, 1, bias=False), torch.nn.Linear(1, 1, bias=False)
        with torch.no_grad():
            net.weight.fill_(1.0)
            ema.weight.fill_(0.0)
        return net, ema

    # no ramp-up: beta = 0.5^(batch / half-life in images)
    net, ema = pair()
    ema_update(ema, net, TeacherConfig(batch_size=32, ema_halflife_kimg=1.0, ema_rampup_ratio=None), 0)
    assert ema.weight.item() == pytest.approx(1 - 0.5 ** (32 / 1000), rel=1e-6)
    # ramp-up: half-life = min(half-life, ratio x images seen) = min(1000, 0.05 x 6400) = 320
    net, ema = pair()
    ema_update(ema, net, TeacherConfig(batch_size=32, ema_halflife_kimg=1.0, ema_rampup_ratio=0.05), 6400)
    assert ema.weight.item() == pytest.approx(1 - 0.5 ** (32 / 320), rel=1e-6)
    # at the first step (no images seen) the EMA copies the network
    net, ema = pair()
    ema_update(ema, net, TeacherConfig(batch_size=32, ema_halflife_kimg=1.0), 0)
    assert ema.weight.item() == 1.0


# ----------------------------------------------------------------------------- regression term (DMD v1)

def _reg_setup():
    torch.manual_seed(0)
    teacher = dmdlib.EDMPrecond(dmdlib.MLPNet(4, 32, 2))
    cfg = dmdlib.DMDConfig(iterations=20, batch_size=16, lr=1e-3, lr_fake=1e-3, warmup_steps=2,
                           checkpoint_every=5, log_every=5)
    return teacher, cfg


def test_regression_weight_zero_is_the_plain_loop():
    teacher, cfg = _reg_setup()
    a = dmdlib.distill(teacher, (4,), cfg, seed=0, device="cpu", progress_bar=False)
    pairs = (torch.randn(8, 4), torch.randn(8, 4))
    b = dmdlib.distill(teacher, (4,), cfg, seed=0, device="cpu", progress_bar=False, regression_pairs=pairs)
    for k, v in a.generator.state_dict().items():
        assert torch.equal(v, b.generator.state_dict()[k])
    assert "regression" not in b.logs


def test_regression_term_pulls_the_generator_towards_its_targets():
    import dataclasses

    teacher, cfg = _reg_setup()
    cfg = dataclasses.replace(cfg, iterations=200, lr=3e-3, regression_weight=100.0, log_every=5,
                              checkpoint_every=50)
    g = torch.Generator().manual_seed(1)
    z = torch.randn(64, 4, generator=g)
    with torch.no_grad():
        target = dmdlib.OneStepGenerator(teacher)(z) + 0.5  # a shift the generator can learn
    before = ((dmdlib.OneStepGenerator(teacher)(z) - target) ** 2).mean().item()
    res = dmdlib.distill(teacher, (4,), cfg, seed=0, device="cpu", progress_bar=False, regression_pairs=(z, target))
    with torch.no_grad():
        after = ((res.generator(z) - target) ** 2).mean().item()
    assert after < 0.5 * before
    vals = res.logs["regression"]["value"]
    assert len(vals) > 0 and all(v == v and abs(v) < float("inf") for v in vals)


def test_regression_needs_pairs():
    import dataclasses

    teacher, cfg = _reg_setup()
    with pytest.raises(ValueError, match="regression_pairs"):
        dmdlib.distill(teacher, (4,), dataclasses.replace(cfg, regression_weight=1.0), device="cpu",
                       progress_bar=False)
    with pytest.raises(ValueError, match="regression_weight"):
        dmdlib.DMDConfig(regression_weight=-1.0)


# ----------------------------------------------------------------------------- GAN term (DMD2)

def _gan_setup():
    import dataclasses

    
    p = dmdlib.get_preset("mnist", "smoke")
    torch.manual_seed(0)
    teacher = specs.denoiser(p)
    cfg = dataclasses.replace(p.dmd, iterations=10, batch_size=4, checkpoint_every=5, log_every=5, eval_every=0)
    data = torch.rand(16, 1, 32, 32) * 2 - 1
    data_fn = lambda n, g: data[torch.randint(0, 16, (n,), generator=g)]  # noqa: E731
    return teacher, cfg, data_fn


def test_gan_weights_zero_is_the_plain_loop():
    teacher, cfg, data_fn = _gan_setup()
    a = dmdlib.distill(teacher, (1, 32, 32), cfg, device="cpu", progress_bar=False)
    b = dmdlib.distill(teacher, (1, 32, 32), cfg, device="cpu", progress_bar=False, data_fn=data_fn)
    for k, v in a.generator.state_dict().items():
        assert torch.equal(v, b.generator.state_dict()[k])


def test_gan_term_trains_and_resumes(tmp_path):
    import dataclasses

    teacher, cfg, data_fn = _gan_setup()
    cfg = dataclasses.replace(cfg, gan_d_weight=1e-2, gan_g_weight=3e-3)
    full = dmdlib.distill(teacher, (1, 32, 32), cfg, run_dir=tmp_path / "a", device="cpu", progress_bar=False,
                          data_fn=data_fn)
    for k in ("gan_g", "gan_d"):
        vals = full.logs[k]["value"]
        assert len(vals) == 2 and all(0 < v < 10 for v in vals)
    dmdlib.distill(teacher, (1, 32, 32), cfg, run_dir=tmp_path / "b", device="cpu", progress_bar=False,
                   data_fn=data_fn, stop_after=7)
    resumed = dmdlib.distill(teacher, (1, 32, 32), cfg, run_dir=tmp_path / "b", device="cpu", progress_bar=False,
                             data_fn=data_fn)
    for k, v in full.generator.state_dict().items():
        assert torch.equal(v, resumed.generator.state_dict()[k])
    assert full.logs == resumed.logs


def test_gan_needs_real_data_and_a_unet():
    import dataclasses

    teacher, cfg, _ = _gan_setup()
    with pytest.raises(ValueError, match="data_fn"):
        dmdlib.distill(teacher, (1, 32, 32), dataclasses.replace(cfg, gan_d_weight=1e-2), device="cpu",
                       progress_bar=False)
    mlp = dmdlib.EDMPrecond(dmdlib.MLPNet(4, 16, 1))
    with pytest.raises(ValueError, match="ADMUNet"):
        dmdlib.distill(mlp, (4,), dataclasses.replace(cfg, gan_g_weight=1e-3), device="cpu", progress_bar=False,
                       data_fn=lambda n, g: torch.zeros(n, 4))


# ----------------------------------------------------------------------------- warm-up, TF32, fine logging

def _record_lrs(monkeypatch):
    """Spy on the learning-rate setter of the one DMD step both loops share (dmdlib.step.set_lr)."""
    from dmdlib import step

    calls = []
    real = step.set_lr

    def spy(opt, base, iteration, warmup):
        real(opt, base, iteration, warmup)
        calls.append((id(opt), iteration, opt.param_groups[0]["lr"]))
    monkeypatch.setattr(step, "set_lr", spy)
    return calls


@pytest.mark.parametrize("concurrent", [False, True])
def test_warmup_counts_iterations_not_generator_updates(monkeypatch, concurrent):
    """DMD2 steps the generator's scheduler every iteration: with warm-up 10 and the 1:5 schedule the
    generator's updates at iterations 0, 5, 10 use 0, 1/2 and all of the base lr (not 0, 1/10, 2/10)."""
    from dmdlib import concurrent as conc
    from dmdlib import dmd

    cfg = DMDConfig(**{**DCFG, "iterations": 12, "warmup_steps": 10, "checkpoint_every": 12, "log_every": 6,
                       "lr": 1e-3, "lr_fake": 2e-3})
    calls = _record_lrs(monkeypatch)
    if concurrent:
        conc.distill_concurrent([tiny_denoiser()], (4,), cfg, device="cpu", progress_bar=False)
    else:
        run_distill(tiny_denoiser(), cfg)
    opts = list(dict.fromkeys(c[0] for c in calls))          # generator's optimizer first (it=0 starts with G)
    gen = [(it, lr) for o, it, lr in calls if o == opts[0]]
    fake = [(it, lr) for o, it, lr in calls if o == opts[1]]
    assert gen == [(0, 0.0), (5, pytest.approx(5e-4)), (10, pytest.approx(1e-3))]
    assert [it for it, _ in fake] == list(range(12))
    assert fake[3][1] == pytest.approx(2e-3 * 3 / 10) and fake[11][1] == pytest.approx(2e-3)
    from dmdlib.step import warmup_lr
    assert warmup_lr(1.0, 250, 500) == 0.5 and warmup_lr(1.0, 900, 500) == 1.0
    assert warmup_lr(1.0, 0, 0) == 1.0


def test_reference_mode_turns_tf32_off_and_restores_it():
    """speed=None is the authors' configuration: fp32 with TF32 off for matmuls *and* cuDNN convolutions,
    whatever the process had set; the previous flags come back afterwards."""
    from dmdlib import accel

    seen = []

    def eval_fn(gen, it):
        seen.append(accel.tf32_flags())
        return {}

    def data_fn(n, g):
        seen.append(accel.tf32_flags())
        return chess_fn(n, g)

    prev = accel.set_tf32(True)
    try:
        run_distill(tiny_denoiser(), DMDConfig(**{**DCFG, "iterations": 5, "eval_every": 5}), eval_fn=eval_fn)
        run_teacher(tiny_denoiser(), TeacherConfig(**{**TCFG, "iterations": 2}), data_fn=data_fn)
        assert seen and all(f == (False, False, "highest") for f in seen)
        assert accel.tf32_flags() == (True, True, "high")
        seen.clear()
        run_distill(tiny_denoiser(), DMDConfig(**{**DCFG, "iterations": 5, "eval_every": 5}), eval_fn=eval_fn,
                    speed=accel.Speed(tf32=True))
        assert seen and all(f == (True, True, "high") for f in seen)
    finally:
        accel.set_tf32(prev[0])


def test_fine_logging_in_the_early_window():
    cfg = DMDConfig(**{**DCFG, "iterations": 40, "log_every": 20, "checkpoint_every": 20, "fine_log_every": 5,
                       "fine_log_until": 15})
    r = run_distill(tiny_denoiser(), cfg)
    assert r.logs["dm"]["iteration"] == [5, 10, 15, 20, 40]
    assert r.logs["fake"]["iteration"] == [5, 10, 15, 20, 40]
    with pytest.raises(ValueError, match="fine_log_every"):
        DMDConfig(**{**DCFG, "fine_log_every": 3, "fine_log_until": 10})


def test_fake_score_weight_uses_the_teachers_sigma_data():
    from dmdlib.dmd import teacher_sigma_data

    t = dmdlib.EDMPrecond(dmdlib.MLPNet(4, 8, 1, 8), sigma_data=0.8)
    assert teacher_sigma_data(t) == 0.8 and teacher_sigma_data(t, 0.3) == 0.3
    assert teacher_sigma_data(torch.nn.Identity()) == 0.5
    with pytest.raises(ValueError, match="sigma_data"):
        teacher_sigma_data(t, 0.0)
