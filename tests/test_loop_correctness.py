"""The training loops checked against ground truth, not only against each other (issue #9).

DMD moves a student towards a closed-form Gaussian teacher and draws its
noise levels from the right ranges; the fake-score loss adds the noise; the
regression pairs are Phi_K; every resume (concurrent at an iteration off the
checkpoint grid, with an evaluation log, with the GAN term) equals the
uninterrupted run.
"""
import dataclasses

import pytest
import torch

import dmdlib
from dmdlib import pairing, specs
from dmdlib import DMDConfig, GaussianDenoiser, band_indices, fake_score_loss, karras_table
from dmdlib.concurrent import distill_concurrent

# ----------------------------------------------------------------------------- helpers


def mlp_denoiser(dim=2, seed=0, width=32, depth=2):
    torch.manual_seed(seed)
    return dmdlib.EDMPrecond(dmdlib.MLPNet(dim, width, depth, 8))


def assert_same(a, b, where="state"):
    """Nested dicts / lists of tensors and plain values are identical (tensors bitwise, same dtype)."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), f"{where}: keys {sorted(a)} != {sorted(b)}"
        for k in a:
            assert_same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), f"{where}: lengths differ"
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    elif torch.is_tensor(a):
        assert torch.is_tensor(b) and a.dtype == b.dtype and torch.equal(a, b), f"{where}: tensors differ"
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


# ----------------------------------------------------------------------------- DMD learns a Gaussian teacher

MU, STD = torch.tensor([1.5, -1.0]), torch.tensor([0.8, 0.4])
LEARN = DMDConfig(iterations=500, batch_size=128, lr=1e-2, lr_fake=1e-2, warmup_steps=0, checkpoint_every=500,
                  log_every=500)


def _sqrtm(c):
    w, v = torch.linalg.eigh(c)
    return v @ torch.diag(w.clamp(min=0).sqrt()) @ v.T


def gaussian_gaps(gen) -> tuple:
    """(|mean - MU|^2, Bures^2(cov, diag(STD^2))) of G's outputs on 4000 fixed seeds: the two terms of W2^2."""
    z = torch.randn(4000, 2, generator=torch.Generator().manual_seed(123))
    with torch.no_grad():
        x = gen(z).double()
    m, c = x.mean(0), torch.cov(x.T)
    t = torch.diag(STD.double() ** 2)
    rc = _sqrtm(c)
    bures = torch.trace(c + t - 2 * _sqrtm(rc @ t @ rc)).item()
    return ((m - MU.double()) ** 2).sum().item(), bures


def record_sigmas(monkeypatch, module) -> dict:
    """Wrap ``module.dm_gradient`` and ``module.fake_score_loss`` to record the noise levels the loop draws."""
    seen = {"dm": [], "fake": []}
    dm_gradient, fake_loss = module.dm_gradient, module.fake_score_loss

    def dm_spy(x, fake, real, sigma, eps, labels=None):
        seen["dm"].append(sigma.detach().clone())
        return dm_gradient(x, fake, real, sigma, eps, labels)

    def fake_spy(fake, x, sigma, eps, sigma_data=0.5, labels=None):
        seen["fake"].append(sigma.detach().clone())
        return fake_loss(fake, x, sigma, eps, sigma_data, labels)

    monkeypatch.setattr(module, "dm_gradient", dm_spy)
    monkeypatch.setattr(module, "fake_score_loss", fake_spy)
    return seen


def table_indices(sigmas: list) -> torch.Tensor:
    """Indices in the 1000-entry Karras table of recorded noise levels (each must be an entry, exactly)."""
    table = karras_table(1000).to(torch.float32)
    s = torch.cat(sigmas)
    idx = torch.searchsorted(table, s)
    assert torch.equal(table[idx], s), "a drawn sigma is not an entry of the Karras table"
    return idx


@pytest.mark.parametrize("concurrent", [False, True])
def test_dmd_moves_a_student_towards_a_gaussian_teacher(monkeypatch, concurrent):
    """DM-only training against the exact denoiser of N(MU, diag(STD^2)), from MLP students far from it.

    Measured (students of seeds 0-3): mean gap about 3 -> 0.001, covariance gap (Bures^2) 0.8 -> 0.002-0.027.
    The loop draws DM noise levels from the table's 2%-98% index band and fake-score levels from the whole table.
    """
    import dmdlib.concurrent as conc
    import dmdlib.dmd as dmd

    teacher = GaussianDenoiser(MU, STD)
    inits = [mlp_denoiser(seed=s) for s in (0, 1)] if concurrent else [mlp_denoiser(seed=0)]
    before = [gaussian_gaps(dmdlib.OneStepGenerator(m)) for m in inits]
    seen = record_sigmas(monkeypatch, conc if concurrent else dmd)
    if concurrent:
        students = distill_concurrent([teacher] * 2, (2,), LEARN, device="cpu", progress_bar=False,
                                      student_inits=inits)
    else:
        students = [dmdlib.distill(teacher, (2,), LEARN, device="cpu", progress_bar=False, student_init=inits[0])]
    for (mean0, cov0), st in zip(before, students):
        mean1, cov1 = gaussian_gaps(st.generator)
        assert mean0 > 1.0 and cov0 > 0.5, (mean0, cov0)             # the students start far from the teacher
        assert mean1 < 0.05 * mean0, (mean0, mean1)
        assert cov1 < 0.15 * cov0, (cov0, cov1)

    assert len(seen["dm"]) == LEARN.iterations // LEARN.gen_every and len(seen["fake"]) == LEARN.iterations
    lo, hi = band_indices(1000, 0.02, 0.98)
    assert (lo, hi) == (20, 980)
    dm_idx, fake_idx = table_indices(seen["dm"]), table_indices(seen["fake"])
    assert lo <= dm_idx.min() <= lo + 2 and hi - 2 <= dm_idx.max() <= hi, (dm_idx.min(), dm_idx.max())
    assert fake_idx.min() <= 2 and fake_idx.max() >= 997, (fake_idx.min(), fake_idx.max())


# ----------------------------------------------------------------------------- the fake-score loss adds noise

@pytest.mark.parametrize("sigma_data", [0.5, 0.8])
def test_fake_score_loss_of_the_identity_is_the_weighted_noise(sigma_data):
    """With D(x_t, sigma) = x_t the loss is mean((1/sigma^2 + 1/sigma_data^2) sigma^2 eps^2): it sees x + sigma eps."""
    g = torch.Generator().manual_seed(0)
    sigma = torch.exp(torch.randn(16, generator=g, dtype=torch.float64) * 1.5)
    eps = torch.randn(16, 3, generator=g, dtype=torch.float64)
    identity = lambda x_t, sigma, labels=None: x_t  # noqa: E731
    weight = 1 / sigma ** 2 + 1 / sigma_data ** 2
    ref = (weight[:, None] * (sigma[:, None] * eps) ** 2).mean()
    # x = 0: the arithmetic is the reference's, term by term
    zero = torch.zeros_like(eps)
    assert torch.equal(fake_score_loss(identity, zero, sigma, eps, sigma_data), ref)
    # any x: (x + sigma eps) - x = sigma eps up to float64 rounding
    x = torch.randn(16, 3, generator=g, dtype=torch.float64)
    torch.testing.assert_close(fake_score_loss(identity, x, sigma, eps, sigma_data), ref, rtol=1e-12, atol=0)
    assert ref > 0


# ----------------------------------------------------------------------------- the regression pairs are Phi_K

def test_regression_pairs_are_phi_k_not_phi_1():
    p = dataclasses.replace(dmdlib.get_preset("mnist", "smoke"), n_regression_pairs=8)
    torch.manual_seed(0)
    teacher = specs.denoiser(p).eval()
    with torch.no_grad():                  # a fresh ADM UNet outputs 0; perturb it into a non-trivial denoiser
        for q in teacher.parameters():
            q.add_(0.05 * torch.randn_like(q))
    r = p.unet.img_resolution
    spec = specs.DataSpec("synthetic", (1, r, r), None, "synthetic", 0.5, kind="mnist")
    z, x = pairing.regression_pairs(spec, p, teacher, seed=0, device="cpu")
    assert z.shape == x.shape == (8, 1, r, r)
    phi_k, phi_1 = dmdlib.phi_k(teacher, z, p.k), dmdlib.phi_k(teacher, z, 1)
    assert p.k == 8 and (phi_k - phi_1).abs().max() > 0.1, "Phi_1 and Phi_K must differ for this test to bite"
    assert torch.equal(x, phi_k)


# ----------------------------------------------------------------------------- resume, complete

RESUME = DMDConfig(iterations=10, batch_size=16, lr=1e-3, lr_fake=1e-3, warmup_steps=2, checkpoint_every=5,
                   log_every=5)


def test_concurrent_resume_off_the_checkpoint_grid_equals_uninterrupted(tmp_path):
    """Stopped at 7 (checkpoint at 5), resumed: generators, fake scores, logs and result files are bitwise equal."""
    ts = [mlp_denoiser(dim=4, seed=s) for s in (0, 1)]
    dirs_a = [tmp_path / "a" / f"s{i}" for i in range(2)]
    dirs_b = [tmp_path / "b" / f"s{i}" for i in range(2)]
    full = distill_concurrent(ts, (4,), RESUME, run_dirs=dirs_a, device="cpu", progress_bar=False)
    part = distill_concurrent(ts, (4,), RESUME, run_dirs=dirs_b, device="cpu", progress_bar=False, stop_after=7)
    assert part[0].iterations == 7
    resumed = distill_concurrent(ts, (4,), RESUME, run_dirs=dirs_b, device="cpu", progress_bar=False)
    assert [r.started_at for r in resumed] == [5, 5]
    for a, b, da, db in zip(full, resumed, dirs_a, dirs_b):
        assert_same(a.generator.state_dict(), b.generator.state_dict(), "generator")
        assert_same(a.fake.state_dict(), b.fake.state_dict(), "fake")
        assert_same(a.logs, b.logs, "logs")
        assert_same(dmdlib.load_checkpoint(da / "result.pt"), dmdlib.load_checkpoint(db / "result.pt"), "result.pt")
    assert not torch.equal(full[0].fake.state_dict()["model.net.0.weight"], ts[0].state_dict()["model.net.0.weight"])


class Probe:
    """An eval_fn recording the iterations it was called at; its value depends on the generator."""

    def __init__(self):
        self.calls = []

    def __call__(self, gen, it):
        self.calls.append(it)
        with torch.no_grad():
            return {"mean": float(gen(torch.ones(3, 4)).mean())}


@pytest.mark.parametrize("concurrent", [False, True])
def test_resume_with_eval_fn_keeps_one_evaluation_log(tmp_path, concurrent):
    cfg = dataclasses.replace(RESUME, iterations=15, eval_every=5)
    teacher = mlp_denoiser(dim=4)

    def run(run_dir, probe, **kw):
        if concurrent:
            return distill_concurrent([teacher], (4,), cfg, run_dirs=[run_dir], device="cpu", progress_bar=False,
                                      eval_fns=[probe], **kw)[0]
        return dmdlib.distill(teacher, (4,), cfg, run_dir=run_dir, device="cpu", progress_bar=False,
                              eval_fn=probe, **kw)

    full_probe, part_probe, rest_probe = Probe(), Probe(), Probe()
    full = run(tmp_path / "a", full_probe)
    run(tmp_path / "b", part_probe, stop_after=7)
    resumed = run(tmp_path / "b", rest_probe)
    assert full_probe.calls == [0, 5, 10, 15]
    assert part_probe.calls == [0, 5] and rest_probe.calls == [10, 15]     # nothing evaluated twice
    assert [e["iteration"] for e in resumed.logs["eval"]] == [0, 5, 10, 15]
    assert resumed.logs["eval"] == full.logs["eval"]
    assert len({e["mean"] for e in full.logs["eval"]}) == 3      # the probe sees the generator move (from 5 on)


def test_gan_resume_restores_generator_fake_head_and_optimizers(tmp_path):
    """The GAN variant's checkpoint at 8 is the same whether the run was interrupted at 5 or not.

    The checkpoint holds the whole state (generator, fake score, GAN head, both optimizers with
    the head's parameter group, the random generator, the logs), so everything after it is equal too.
    """
    p = dmdlib.get_preset("mnist", "smoke")
    torch.manual_seed(0)
    teacher = specs.denoiser(p)
    cfg = dataclasses.replace(p.dmd, iterations=10, batch_size=4, checkpoint_every=4, log_every=2, eval_every=0,
                              fine_log_every=0, gan_d_weight=1e-2, gan_g_weight=3e-3)
    data = torch.rand(16, 1, 32, 32) * 2 - 1
    data_fn = lambda n, g: data[torch.randint(0, 16, (n,), generator=g)]  # noqa: E731

    def run(run_dir, stop_after):
        return dmdlib.distill(teacher, (1, 32, 32), cfg, run_dir=run_dir, device="cpu", progress_bar=False,
                              data_fn=data_fn, stop_after=stop_after)

    run(tmp_path / "a", 9)                         # uninterrupted up to 9: its checkpoint is the state at 8
    run(tmp_path / "b", 5)                         # interrupted at 5 (checkpoint at 4) ...
    assert run(tmp_path / "b", 4).started_at == 4  # ... resumed (generator update at 5) and stopped at 8
    a = dmdlib.load_checkpoint(tmp_path / "a" / "checkpoint.pt")
    b = dmdlib.load_checkpoint(tmp_path / "b" / "checkpoint.pt")
    assert a["iteration"] == b["iteration"] == 8 and a["steps_g"] == 2
    assert {"generator", "fake", "gan_head", "opt_g", "opt_f", "rng"} <= set(a)
    assert len(a["opt_f"]["param_groups"]) == 2 and a["opt_f"]["state"]    # fake score + GAN head, trained
    assert_same(a, b, "checkpoint")
    assert len(a["logs"]["gan_d"]["value"]) == 4
