"""Pieces of notebooks 03-05 on the pairing path: parameter checks, ablation variants, regression pairs, memorisation."""
from dataclasses import replace

import numpy as np
import pytest
import torch

from dmdlib import get_preset
from dmdlib import analysis, notebook, pairing, specs
from dmdlib.presets import MnistPreset

P = get_preset("mnist", "smoke")
R = P.unet.img_resolution


def _spec(conditional=False):
    """MNIST-shaped synthetic images as a DataSpec of the MNIST family (no download)."""
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 1, R, R, generator=g), torch.randint(0, 10, (64,), generator=g)
    return specs.DataSpec("synthetic", (1, R, R), specs._MnistSampler(x, torch.eye(10)[y], conditional), "synthetic",
                          0.5, label_dim=10 if conditional else 0, kind="mnist", fit_distance="w2sq")


def test_check_teacher_kimg_and_snapshots():
    assert notebook.check_teacher_kimg(P, None) == P.teacher_kimg
    assert notebook.check_teacher_kimg(P, P.teacher.snapshots[0]) == float(P.teacher.snapshots[0])
    with pytest.raises(ValueError, match="allowed"):
        notebook.check_teacher_kimg(P, 3.0)
    with pytest.raises(ValueError, match="allowed"):
        notebook.check_teacher_kimg(P, True)
    assert notebook.check_snapshots(P, None) == [float(s) for s in P.teacher.snapshots]
    assert notebook.check_snapshots(P, list(reversed(P.teacher.snapshots))) == sorted(float(s) for s in P.teacher.snapshots)
    for bad in ([], [7.0], "0.128", [None]):
        with pytest.raises(ValueError, match="teacher_snapshots"):
            notebook.check_snapshots(P, bad)


def test_check_runs_dir(tmp_path):
    assert notebook.check_runs_dir(tmp_path, None) == tmp_path / "runs"
    assert notebook.check_runs_dir(tmp_path, tmp_path / "r") == tmp_path / "r"
    with pytest.raises(ValueError, match="runs_dir"):
        notebook.check_runs_dir(tmp_path, "")


def test_variant_configs_add_one_term_each():
    base = pairing.variant_config(P, "baseline")
    gan = pairing.variant_config(P, "gan")
    reg = pairing.variant_config(P, "regression")
    assert base == P.dmd and base.regression_weight == 0 and base.gan_d_weight == 0
    assert (gan.gan_d_weight, gan.gan_g_weight, gan.regression_weight) == (1e-2, 3e-3, 0.0)
    assert reg.regression_weight == P.regression_weight > 0 and reg.gan_d_weight == 0
    assert replace(gan, gan_d_weight=0.0, gan_g_weight=0.0) == base == replace(reg, regression_weight=0.0)
    with pytest.raises(ValueError, match="allowed"):
        pairing.variant_config(P, "lpips")


def test_variant_run_folders_are_distinct(tmp_path):
    spec = _spec()
    names = {pairing.spec_student_dir(spec, P, tmp_path, 0, "cpu", 0.256, v).name for v in pairing.VARIANTS}
    assert len(names) == 3
    assert pairing.spec_student_dir(spec, P, tmp_path, 0, "cpu", 0.256).name.startswith("student-0.256kimg-")
    assert pairing.spec_student_dir(spec, P, tmp_path, 0, "cpu", 0.256, "gan").name.startswith("student-0.256kimg-gan-")
    with pytest.raises(ValueError, match="allowed"):
        pairing.spec_student_dir(spec, P, tmp_path, 0, "cpu", 0.256, "lpips")


def test_regression_pairs_are_teacher_outputs_on_fresh_seeds():
    class Shrink(torch.nn.Module):   # D(x, sigma) = x / (1 + sigma^2): Phi_K is then a fixed linear map of z
        def forward(self, x, sigma, labels=None):
            s = torch.as_tensor(sigma, dtype=x.dtype).reshape(-1, 1, 1, 1)
            return x / (1 + s ** 2)

    p = replace(P, n_regression_pairs=16)
    z, x = pairing.regression_pairs(_spec(), p, Shrink(), seed=0)
    r = p.unet.img_resolution
    assert z.shape == x.shape == (16, 1, r, r)
    z2, x2 = pairing.regression_pairs(_spec(), p, Shrink(), seed=0)
    assert torch.equal(z, z2) and torch.equal(x, x2)
    ev = pairing.eval_noise(16, (1, r, r), 0)
    assert not torch.allclose(z, ev)                      # not the evaluation seeds
    ratio = (x / z).flatten()
    assert torch.allclose(ratio, ratio[0].expand_as(ratio), rtol=1e-4)   # a per-seed deterministic map of z


def test_conditional_regression_pairs_carry_their_labels():
    class Echo(torch.nn.Module):
        def forward(self, x, sigma, labels=None):
            assert labels is not None and labels.shape == (x.shape[0], 10)
            return 0 * x

    z, x, lab = pairing.regression_pairs(_spec(conditional=True), replace(P, n_regression_pairs=8), Echo(), seed=1)
    assert z.shape[0] == x.shape[0] == lab.shape[0] == 8 and torch.all(lab.sum(1) == 1)


def test_pairing_rejects_bad_variants_before_training(tmp_path):
    with pytest.raises(ValueError, match="allowed"):
        pairing.run_pairing(_spec(), P, tmp_path, variant="lpips", device="cpu")
    with pytest.raises(ValueError, match="baseline"):
        pairing.run_pairings(_spec(), P, tmp_path, snapshots=list(P.teacher.snapshots), concurrent=True,
                             variant="gan", device="cpu")
    assert not any(tmp_path.iterdir())      # refused before anything was trained


def test_memorisation_report_finds_copies():
    g = torch.Generator().manual_seed(0)
    train = torch.randn(300, 1, 8, 8, generator=g)
    samples = torch.cat([train[:5] + 1e-3 * torch.randn(5, 1, 8, 8, generator=g),   # near copies
                         torch.randn(20, 1, 8, 8, generator=g)])                      # fresh points
    rep = analysis.memorisation_report(P, samples, train)
    assert np.all(rep["nn_index"][:5, 0] == np.arange(5))
    assert np.all(rep["r"][:5] < 0.05) and np.all(rep["r"][5:] > 0.5)
    assert rep["fractions"][0.05] == pytest.approx(5 / 25)
    assert rep["fractions"][float(1 / 3)] == pytest.approx(5 / 25)
    d = rep["nn_dist"]
    assert np.all(d[:, 0] <= d[:, 1])


def test_preset_rejects_bad_ablation_settings():
    with pytest.raises(ValueError, match="memorisation_thresholds"):
        MnistPreset(name="x", memorisation_thresholds=(0.0,))
    with pytest.raises(ValueError, match="n_regression_pairs"):
        MnistPreset(name="x", n_regression_pairs=0)


def test_new_plots_run():
    import matplotlib
    matplotlib.use("Agg")
    from dmdlib import plots

    rng = np.random.default_rng(0)
    plots.plot_estimates(["a", "b"], [0.1, 0.0], [0.05, 0.0], [0.2, 0.01], log=True)
    plots.plot_ratio_histogram(rng.uniform(size=50))
    plots.plot_boundary_scatter(rng.normal(size=50), rng.normal(size=50))
    it = np.arange(1, 21) * 50.0
    v = np.concatenate([np.linspace(0, 1, 10), np.linspace(1, 0.2, 10)])
    from dmdlib.analysis import turning_point
    tp = turning_point(it, v, window=3)
    assert 400 <= tp["iteration"] <= 600
    plots.plot_dm_curves({"s": (it, v)}, {"s": tp}, max_iteration=900)
