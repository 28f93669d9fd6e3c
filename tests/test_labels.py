"""Class labels through every training path (conditional data of paper Figs. 6-8; dmdlib.labels).

A spy denoiser records the labels it receives: they reach the teacher's EDM
loss, the generator G(z, labels), the fake and real scores of the DM
gradient, the fake-score loss, the GAN logits (generated and real samples)
and the regression term. A conditional teacher learns to use its labels;
conditional students trained side by side equal sequential ones; bad
``label_dim`` values and badly shaped labels raise errors that name them;
unconditional runs draw and record nothing new.
"""
import dataclasses

import pytest
import torch

import dmdlib
from dmdlib import DMDConfig, EDMPrecond, MLPNet, TeacherConfig
from dmdlib.concurrent import distill_concurrent
from dmdlib.dmd import run_config
from dmdlib.labels import draw_labels, one_hot, split_batch
from dmdlib.nets.adm import ADMUNet
from dmdlib.runs import ConfigMismatchError, make_generator
from dmdlib.schedule import SIGMA_MAX

K = 3   # classes


class Spy(EDMPrecond):
    """An EDMPrecond that appends (id, grad enabled, sigma, labels) of every call to a shared log.

    The log's bound ``append`` survives ``copy.deepcopy`` (builtin methods are atomic), so the
    copies distill makes (real, G, fake) all write to the same list; ``id`` tells them apart.
    """

    def __init__(self, model, log):
        super().__init__(model)
        self.record = log.append

    def forward(self, x, sigma, labels=None):
        sig = torch.as_tensor(sigma).detach().clone()
        self.record((id(self), torch.is_grad_enabled(), sig, None if labels is None else labels.detach().clone()))
        return super().forward(x, sigma, labels)


def mlp(label_dim=K, seed=0, dim=2, log=None):
    torch.manual_seed(seed)
    net = MLPNet(dim, 32, 2, 8, label_dim=label_dim)
    return EDMPrecond(net) if log is None else Spy(net, log)


def tiny_unet(log, label_dim=K, seed=0):
    torch.manual_seed(seed)
    return Spy(ADMUNet(8, 1, 1, label_dim=label_dim, model_channels=8, channel_mult=(1, 2), num_blocks=1,
                       attn_resolutions=(), dropout=0.0), log)


CFG = DMDConfig(iterations=6, batch_size=8, lr=1e-3, lr_fake=1e-3, warmup_steps=2, checkpoint_every=3, log_every=3,
                gen_every=3)


def run(teacher, shape=(2,), cfg=CFG, **kw):
    return dmdlib.distill(teacher, shape, cfg, seed=0, device="cpu", progress_bar=False, **kw)


def roles(log, res):
    """The log split by network: {"G": [...], "fake": [...], "real": [...]}, each entry (grad, sigma, labels)."""
    ids = {id(res.generator.denoiser): "G", id(res.fake): "fake"}
    out = {"G": [], "fake": [], "real": []}
    for who, grad, sigma, labels in log:
        out[ids.get(who, "real")].append((grad, sigma, labels))
    assert len({who for who, *_ in log} - set(ids)) == 1   # exactly one other network: the teacher's copy
    return out


def is_one_hot(labels, n):
    return labels.shape == (n, K) and labels.dtype == torch.float32 and torch.equal(labels.sum(1), torch.ones(n)) \
        and bool(((labels == 0) | (labels == 1)).all())


# ----------------------------------------------------------------------------- the networks and helpers

def test_mlpnet_labels():
    torch.manual_seed(0)
    plain = MLPNet(2, 16, 2, 8)
    assert not any("label" in k for k in plain.state_dict())   # unconditional: the parameters of before
    with pytest.raises(ValueError, match="unconditional"):
        plain(torch.zeros(2, 2), torch.zeros(2), torch.zeros(2, K))
    net = MLPNet(2, 16, 2, 8, label_dim=K)
    assert net.map_label.weight.shape == (8, K) and net.map_label.bias is None
    x, t = torch.randn(4, 2), torch.zeros(4)
    labels = one_hot(torch.tensor([0, 1, 2, 0]), K)
    y = net(x, t, labels)
    assert not torch.equal(y, net(x, t, one_hot(torch.tensor([1, 2, 0, 1]), K)))   # the labels matter
    assert torch.equal(net(x, t), net(x, t, torch.zeros(4, K)))                   # None = all-zero labels
    with pytest.raises(ValueError, match=r"class_labels must have shape \[4, 3\]"):
        net(x, t, torch.tensor([0, 1, 2, 0]))
    for bad in (-1, 1.5, True, "3"):
        with pytest.raises(ValueError, match="label_dim"):
            MLPNet(2, label_dim=bad)


def test_split_batch_and_draws():
    x = torch.zeros(4, 2)
    assert split_batch(x, 4)[1] is None
    lab = one_hot(torch.tensor([0, 1, 2, 1]), K)
    assert split_batch((x, lab), 4, K)[1] is lab
    with pytest.raises(ValueError, match=r"labels must be one-hot float labels of shape \[4, 3\], got \(4,\)"):
        split_batch((x, torch.tensor([0, 1, 2, 1])), 4, K)
    with pytest.raises(ValueError, match=r"shape \[4, 3\], got \(4, 2\)"):
        split_batch((x, torch.zeros(4, 2)), 4, K)
    with pytest.raises(ValueError, match="floating-point"):
        split_batch((x, lab.long()), 4, K)
    with pytest.raises(ValueError, match="unconditional"):
        split_batch((x, lab), 4, 0)
    with pytest.raises(ValueError, match=r"must return \(x, labels\)"):
        split_batch(x, 4, K, need_labels=True)
    assert draw_labels(0, 4, torch.Generator().manual_seed(0), "cpu") is None
    g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    assert torch.equal(draw_labels(K, 64, g1, "cpu"), one_hot(torch.randint(0, K, (64,), generator=g2), K))


# ----------------------------------------------------------------------------- teacher training

def test_teacher_loss_gets_the_data_labels():
    log, given = [], []

    def data_fn(n, g):
        cls = torch.randint(0, K, (n,), generator=g)
        x = torch.randn(n, 2, generator=g) + cls[:, None].float()
        given.append(one_hot(cls, K))
        return x, given[-1]

    cfg = TeacherConfig(iterations=3, batch_size=8, lr=1e-3, lr_rampup_kimg=0.0, checkpoint_every=3, log_every=3)
    dmdlib.train_teacher(mlp(log=log), data_fn, cfg, device="cpu", progress_bar=False)
    assert len(log) == len(given) == 3
    for (_, grad, _, labels), want in zip(log, given):
        assert grad and torch.equal(labels, want)


def test_teacher_refuses_bad_labels():
    cfg = TeacherConfig(iterations=2, batch_size=8, lr=1e-3, lr_rampup_kimg=0.0, checkpoint_every=2, log_every=2)
    idx = lambda n, g: (torch.randn(n, 2, generator=g), torch.randint(0, K, (n,), generator=g))  # noqa: E731
    with pytest.raises(ValueError, match=r"labels must be one-hot float labels of shape \[8, 3\]"):
        dmdlib.train_teacher(mlp(), idx, cfg, device="cpu", progress_bar=False)
    wide = lambda n, g: (torch.randn(n, 2, generator=g), torch.zeros(n, K + 1))  # noqa: E731
    with pytest.raises(ValueError, match=r"shape \[8, 3\], got \(8, 4\)"):
        dmdlib.train_teacher(mlp(), wide, cfg, device="cpu", progress_bar=False)
    ok = lambda n, g: (torch.randn(n, 2, generator=g), torch.zeros(n, K))  # noqa: E731
    with pytest.raises(ValueError, match="unconditional"):
        dmdlib.train_teacher(mlp(label_dim=0), ok, cfg, device="cpu", progress_bar=False)


def test_conditional_teacher_learns_to_use_its_labels():
    """Two clusters at -2 and +2 (std 0.3) chosen by the label: at a large noise level the posterior mean
    given the label is almost the label's centre, while the label-free optimum at x_t = 0 is 0."""
    def data_fn(n, g):
        cls = torch.randint(0, 2, (n,), generator=g)
        return (4.0 * cls - 2.0)[:, None] + 0.3 * torch.randn(n, 2, generator=g), one_hot(cls, 2)

    torch.manual_seed(0)
    net = EDMPrecond(MLPNet(2, 64, 2, 16, label_dim=2))
    cfg = TeacherConfig(iterations=400, batch_size=128, lr=3e-3, lr_rampup_kimg=0.0, p_mean=0.5, p_std=1.0,
                        checkpoint_every=400, log_every=400)
    res = dmdlib.train_teacher(net, data_fn, cfg, seed=0, device="cpu", progress_bar=False)
    d = res.denoiser.eval()
    sigma = 3.0
    x_t = torch.zeros(2, 2)
    with torch.no_grad():
        out = d(x_t, sigma, one_hot(torch.tensor([0, 1]), 2))
    exact = torch.tensor([-2.0, 2.0])[:, None] * (1 - 0.09 / (0.09 + sigma ** 2))   # E[x | x_t = 0, label]
    assert (out - exact).abs().max() < 0.3, out


# ----------------------------------------------------------------------------- DMD

def test_distill_passes_its_labels_to_g_fake_real_and_the_fake_score_loss():
    log = []
    res = run(mlp(log=log), label_dim=K)
    r = roles(log, res)
    # generator turns at iterations 0 and 3: G with grad, then fake and real (no grad) with the same labels
    g_turns = [c for c in r["G"] if c[0]]
    assert len(g_turns) == 2 and all(torch.all(c[1] == SIGMA_MAX) for c in g_turns)
    fake_nograd = [c for c in r["fake"] if not c[0]]
    assert len(fake_nograd) == 2 and len(r["real"]) == 2
    for g, f, rl in zip(g_turns, fake_nograd, r["real"]):
        assert is_one_hot(g[2], CFG.batch_size)
        assert torch.equal(g[2], f[2]) and torch.equal(g[2], rl[2])
    # every iteration: G's sample (no grad on the other turns) and the fake-score loss share that iteration's labels
    fake_loss = [c for c in r["fake"] if c[0]]
    assert len(r["G"]) == len(fake_loss) == CFG.iterations
    for g, f in zip(r["G"], fake_loss):
        assert torch.equal(g[2], f[2])
    drawn = torch.stack([c[2].argmax(1) for c in r["G"]])
    assert len(drawn.unique()) == K and not torch.equal(drawn[0], drawn[1])   # fresh classes every iteration
    # the draw order: z, then the classes, from the run's generator
    rng = make_generator(0, "cpu")
    torch.randn((CFG.batch_size, 2), generator=rng)
    assert torch.equal(r["G"][0][2], one_hot(torch.randint(0, K, (CFG.batch_size,), generator=rng), K))


def test_unconditional_distill_passes_no_labels():
    log = []
    run(mlp(label_dim=0, log=log))
    assert log and all(labels is None for *_, labels in log)


def test_distill_labels_reach_the_gan_and_regression_terms():
    log, real_labels = [], []

    def data_fn(n, g):
        cls = torch.randint(0, K, (n,), generator=g)
        real_labels.append(one_hot(cls, K))
        return torch.rand(n, 1, 8, 8, generator=g) * 2 - 1, real_labels[-1]

    soft = torch.tensor([0.5, 0.5, 0.0])
    z = torch.randn(5, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    pairs = (z, torch.zeros(5, 1, 8, 8), soft.expand(5, K).clone())
    cfg = dataclasses.replace(CFG, gan_d_weight=0.1, gan_g_weight=0.1, regression_weight=0.5)
    res = run(tiny_unet(log), (1, 8, 8), cfg, label_dim=K, data_fn=data_fn, regression_pairs=pairs)
    r = roles(log, res)
    assert len(real_labels) == cfg.iterations
    # regression: G on the pairs' z with the pairs' labels
    assert sum(c[0] and torch.equal(c[2], soft.expand(cfg.batch_size, K)) for c in r["G"]) == 2
    g_labels = [c[2] for c in r["G"] if not torch.equal(c[2], soft.expand(cfg.batch_size, K))]
    fake_grad = [c[2] for c in r["fake"] if c[0]]
    # gen turn: GAN logit of G(z) with G's labels; every iteration: fake-score loss and GAN fake with G's
    # labels, GAN real with the data's labels
    assert len(fake_grad) == 2 + 3 * cfg.iterations
    for data_l in real_labels:
        assert any(torch.equal(f, data_l) for f in fake_grad)
    for gl in g_labels:
        assert sum(torch.equal(f, gl) for f in fake_grad) >= 2
    assert all(f is not None for f in fake_grad)


def test_distill_refuses_bad_label_setups():
    for bad in (-1, 2.0, True, "3", None):
        with pytest.raises(ValueError, match="label_dim"):
            run(mlp(), label_dim=bad)
        with pytest.raises(ValueError, match="label_dim"):
            distill_concurrent([mlp()], (2,), CFG, device="cpu", progress_bar=False, label_dim=bad)
    with pytest.raises(ValueError, match="label_dim = 2, but the teacher's network has label_dim = 3"):
        run(mlp(), label_dim=2)
    cfg = dataclasses.replace(CFG, regression_weight=0.5)
    z = torch.randn(4, 2)
    with pytest.raises(ValueError, match=r"regression_pairs=\(z, phi_k_of_z, labels\)"):
        run(mlp(), cfg=cfg, label_dim=K, regression_pairs=(z, z))
    with pytest.raises(ValueError, match=r"regression_pairs: labels must be one-hot float labels of shape \[4, 3\]"):
        run(mlp(), cfg=cfg, label_dim=K, regression_pairs=(z, z, torch.zeros(4)))
    gan = dataclasses.replace(CFG, gan_d_weight=0.1)
    unlabelled = lambda n, g: torch.rand(n, 1, 8, 8, generator=g)  # noqa: E731
    with pytest.raises(ValueError, match=r"data_fn \(the GAN's real samples\) must return \(x, labels\)"):
        run(tiny_unet([]), (1, 8, 8), gan, label_dim=K, data_fn=unlabelled)
    wrong = lambda n, g: (torch.rand(n, 1, 8, 8, generator=g), torch.zeros(n, K - 1))  # noqa: E731
    with pytest.raises(ValueError, match=r"shape \[8, 3\], got \(8, 2\)"):
        run(tiny_unet([]), (1, 8, 8), gan, label_dim=K, data_fn=wrong)


def test_run_config_records_label_dim_only_when_conditional(tmp_path):
    t = mlp()
    assert "label_dim" not in run_config(t, (2,), CFG, 0)
    assert run_config(t, (2,), CFG, 0, label_dim=K)["label_dim"] == K
    full = run(t, label_dim=K)
    part = run(t, run_dir=tmp_path / "r", label_dim=K, stop_after=4)
    assert part.iterations == 4
    resumed = run(t, run_dir=tmp_path / "r", label_dim=K)
    assert resumed.started_at == 3   # the last checkpoint
    for a, b in zip(full.generator.parameters(), resumed.generator.parameters()):
        assert torch.equal(a, b)
    with pytest.raises(ConfigMismatchError, match="label_dim"):
        run(t, run_dir=tmp_path / "r", label_dim=0)


def test_concurrent_equals_sequential_with_labels():
    ts = [mlp(seed=s) for s in range(2)]

    def probe(g, it):
        with torch.no_grad():
            return {"m": float(g(torch.ones(3, 2), one_hot(torch.arange(3), K)).mean())}

    seq = [run(t, label_dim=K, eval_fn=probe) for t in ts]
    con = distill_concurrent(ts, (2,), CFG, seed=0, device="cpu", progress_bar=False, eval_fns=[probe] * 2,
                             label_dim=K)
    for a, b in zip(seq, con):
        for p, q in zip(a.generator.parameters(), b.generator.parameters()):
            assert (p - q).abs().max() < 1e-6
        for p, q in zip(a.fake.parameters(), b.fake.parameters()):
            assert (p - q).abs().max() < 1e-6
        assert a.logs["fake"]["value"] == pytest.approx(b.logs["fake"]["value"], rel=1e-5)
        assert [e["m"] for e in a.logs["eval"]] == pytest.approx([e["m"] for e in b.logs["eval"]], abs=1e-6)
    # without labels the students differ: the labels are really drawn and used
    plain = distill_concurrent(ts, (2,), CFG, seed=0, device="cpu", progress_bar=False)
    assert max((p - q).abs().max() for p, q in zip(plain[0].generator.parameters(),
                                                     con[0].generator.parameters())) > 1e-4
