"""The generic teacher -> student -> evaluation path (pairing.run_pairing) and the sweep/conditioning helpers."""
from dataclasses import replace

import pytest
import torch

import dmdlib
from dmdlib import evaluation, get_preset
from dmdlib import dimensions, imagenet64, labels, pairing, specs
from dmdlib.data.toy import orthogonal_embedding
from dmdlib.metrics import delta_e_sets


def _tiny(p):
    """The toy smoke preset, smaller still: a few seconds per run."""
    return replace(p, width=32, depth=2, n_eval=40, n_sets=2, k_ref=4,
                   teacher=replace(p.teacher, iterations=20, checkpoint_every=10, log_every=10),
                   dmd=replace(p.dmd, iterations=10, checkpoint_every=5, log_every=5, eval_every=5, warmup_steps=2))


def _interval_keys(rec):
    return {"delta_e", "ci_low", "ci_high", "n", "r"} <= set(rec)


def test_dataspec_validates():
    with pytest.raises(ValueError, match="label_dim"):
        specs.DataSpec("x", (2,), lambda n, g, d="cpu": torch.zeros(n, 2), "id", 1.0, label_dim=-1)
    with pytest.raises(ValueError, match="sigma_data"):
        specs.DataSpec("x", (2,), lambda n, g, d="cpu": torch.zeros(n, 2), "id", 0.0)


def test_regime_and_onset():
    refs = {"random": {"delta_e": 10.0}}
    assert evaluation.regime({"ci_low": 0.0, "ci_high": 0.4}, refs) == "copies"      # <= 5% of 10
    assert evaluation.regime({"ci_low": 0.6, "ci_high": 0.9}, refs) == "remaps"
    assert evaluation.regime({"ci_low": 0.3, "ci_high": 0.9}, refs) == "unresolved"
    with pytest.raises(ValueError, match="copy_fraction"):
        evaluation.regime({"ci_low": 0, "ci_high": 0}, refs, copy_fraction=1.5)
    pts = [{"k": k, "converged": c, "regime": r} for k, c, r in
           [(1, True, "remaps"), (4, True, "copies"), (2, True, "remaps"), (8, True, "copies")]]
    assert dimensions.copying_onset(pts, "k") == 4
    pts[-1]["converged"] = False                 # the largest point is no result: no onset
    assert dimensions.copying_onset(pts, "k") is None
    assert dimensions.copying_onset([{"k": 1, "converged": True, "regime": "copies"}], "k") == 1


def test_embedded_chessboard_spec_is_the_rotated_chessboard():
    spec = specs.embedded_chessboard_spec(16, 0.8, embedding_seed=3)
    x = spec.images(500, torch.Generator().manual_seed(0))
    assert x.shape == (500, 16) and spec.label_dim == 0 and spec.sigma_data == 0.8
    e = orthogonal_embedding(16, 3)
    xy = x @ e                                   # back in the plane
    assert torch.allclose(xy @ e.T, x, atol=1e-5)     # nothing outside the 2-plane
    assert xy.abs().max() <= 2.0 + 1e-5


def test_manifold_spec_labels_are_one_hot():
    spec = specs.manifold_spec(3, 8, num_classes=4)
    x, lab = spec.sample(64, torch.Generator().manual_seed(1))
    assert x.shape == (64, 1, 8, 8) and lab.shape == (64, 4)
    assert torch.equal(lab.sum(1), torch.ones(64)) and spec.label_dim == 4
    u = specs.manifold_spec(3, 8)
    assert u.label_dim == 0 and isinstance(u.sample(5, None), torch.Tensor)
    assert u.data_id != spec.data_id


@pytest.mark.parametrize("conditional", [False, True])
def test_run_pairing_on_the_manifold(tmp_path, conditional):
    torch.set_num_threads(1)
    p = _tiny(get_preset("toy", "smoke"))
    spec = specs.manifold_spec(2, 4, num_classes=3 if conditional else 0)
    run = pairing.run_pairing(spec, p, tmp_path, seed=0, device="cpu", reference=True, progress_bar=False)
    m = run.metrics
    assert _interval_keys(m["delta_e"]) and "converged" in m["delta_e"]
    assert set(m["references"]) == {"start", "random", "reproducibility"}
    assert m["delta_e"]["n"] == p.n_eval and m["delta_e"]["r"] == p.n_sets
    assert run.maps["g"].shape == (p.n_sets * p.n_eval, 1, 4, 4)
    assert m["label_dim"] == spec.label_dim
    if conditional:
        assert run.labels.shape == (p.n_sets * p.n_eval, 3)
        per = pairing.per_class_delta_e(run, spec, p, n_per_class=6, n_sets=2, seed=0, device="cpu")
        assert [c["label"] for c in per] == [0, 1, 2] and all(_interval_keys(c) for c in per)
        # the student is conditional: other labels give other outputs for the same seeds
        z = run.z[:8]
        a = pairing.generate(run.student.generator, z, labels.one_hot(torch.zeros(8), 3))
        b = pairing.generate(run.student.generator, z, labels.one_hot(torch.ones(8), 3))
        assert not torch.allclose(a, b)
    else:
        assert run.labels is None
        with pytest.raises(ValueError, match="conditional"):
            pairing.per_class_delta_e(run, spec, p, 6, 2)
    # a second call reloads every run from its folder: the same numbers
    again = pairing.run_pairing(spec, p, tmp_path, seed=0, device="cpu", reference=True, progress_bar=False)
    assert again.metrics["delta_e"]["delta_e"] == m["delta_e"]["delta_e"]
    assert again.student.started_at == again.student.iterations


def test_imagenet64_section_without_weights_says_what_to_supply():
    out = imagenet64.imagenet64_section("", "")
    assert out["status"] == "not supplied"
    assert "imagenet_teacher" in out["instructions"] and "295,899,267" in out["instructions"]
    with pytest.raises(ValueError, match="imagenet_teacher"):
        imagenet64.imagenet64_section("", "student.safetensors")
    with pytest.raises(FileNotFoundError, match="imagenet_teacher"):
        imagenet64.imagenet64_section("/nonexistent/teacher.safetensors")


def test_imagenet64_section_with_weights(tmp_path):
    """The section's whole path on a tiny network of the same family (the full one is tested in test_imagenet64)."""
    from safetensors.torch import save_file

    from dmdlib import EDMPrecond
    from dmdlib.nets import ADMUNet
    from dmdlib.presets import UNetConfig

    torch.set_num_threads(1)
    cfg = UNetConfig(img_resolution=8, in_channels=3, out_channels=3, label_dim=5, model_channels=8,
                     channel_mult=(1, 2), num_blocks=1, attn_resolutions=(4,))
    paths = []
    for s in (0, 1):
        torch.manual_seed(s)
        net = EDMPrecond(ADMUNet(**cfg.kwargs()))
        paths.append(tmp_path / f"net{s}.safetensors")
        save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(paths[-1]))
    out = imagenet64.imagenet64_section(str(paths[0]), str(paths[1]), n_eval=6, n_sets=2, k=2, n_show=3, config=cfg,
                                device="cpu")
    assert out["status"] == "teacher and student"
    assert _interval_keys(out["delta_e"]) and _interval_keys(out["start"])
    assert set(out["references"]) == {"start", "random"}
    assert out["samples"]["$G$"].shape == (3, 3, 8, 8)


def test_embedded_chessboard_fit_sees_noise_left_off_the_plane():
    spec = specs.embedded_chessboard_spec(8, 0.8, embedding_seed=1)
    x = spec.images(400, torch.Generator().manual_seed(0))
    run = pairing.PairingRun("c", None, None, None, samples={n: x for n in ("data", "ref", "phi_8", "g")})
    fit = dimensions.embedded_chessboard_fit(run, 8, embedding_seed=1)
    assert fit["teacher_ok"] and fit["ref"]["support"] == 1.0 and fit["ref"]["off_plane"] < 1e-5
    noisy = x + 0.5 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    run.samples["ref"] = noisy
    fit = dimensions.embedded_chessboard_fit(run, 8, embedding_seed=1)
    assert not fit["teacher_ok"] and fit["ref"]["off_plane"] > dimensions.OFF_PLANE_MAX
    # a point whose teacher failed is no result: it ends a run of copying points
    pts = [{"d": 2, "converged": True, "regime": "copies"},
           {"d": 4, "converged": True, "regime": "copies", "teacher_ok": False}]
    assert dimensions.copying_onset(pts, "d") is None


def test_manifold_fit_uses_the_labels_of_the_first_set_only():
    """Run labels cover all R*N evaluation seeds, samples the first N: the fit pairs them seed by seed."""
    from dmdlib.data import MLPManifold
    from dmdlib.labels import one_hot

    man = MLPManifold(latent_dim=2, resolution=8, num_classes=3, seed=0)
    x, lab = man.sample(12, torch.Generator().manual_seed(0))
    labels = torch.cat([lab, torch.randint(0, 3, (24,), generator=torch.Generator().manual_seed(1))])
    run = pairing.PairingRun("m", None, None, None, samples={n: x for n in ("data", "ref", "phi_8", "g")},
                        labels=one_hot(labels, 3))
    fit = dimensions.manifold_fit(run, man, n=250)     # n above N: as many labels as samples
    assert fit["teacher_ok"] and fit["g"]["noise"] < 1e-3 and fit["ref"]["noise"] < 1e-3
    run.labels = one_hot((labels + 1) % 3, 3)   # the wrong class for every seed: off that class's manifold
    assert dimensions.manifold_fit(run, man, n=250)["g"]["noise"] > 10 * fit["g"]["noise"]


def _state(t):
    return {k: v.clone() for k, v in t.ema.state_dict().items()}


def test_data_specs_pickle_with_their_exact_data():
    import pickle

    p = get_preset("toy", "smoke")
    for spec in (specs.manifold_spec(2, 8, num_classes=3), specs.embedded_chessboard_spec(16, 0.8, 2),
                 specs.toy_spec("moons", p)):
        back = pickle.loads(pickle.dumps(spec))
        assert (back.name, back.shape, back.data_id, back.sigma_data, back.label_dim, back.tag) == \
               (spec.name, spec.shape, spec.data_id, spec.sigma_data, spec.label_dim, spec.tag)
        a = spec.sample(50, torch.Generator().manual_seed(4))
        b = back.sample(50, torch.Generator().manual_seed(4))
        for u, v in zip(a if isinstance(a, tuple) else (a,), b if isinstance(b, tuple) else (b,)):
            assert torch.equal(u, v)


def test_teachers_side_by_side_equal_teachers_trained_one_after_another(tmp_path):
    """Two teachers trained in two worker processes (one thread each) equal the same two trained here, one thread."""
    old = torch.get_num_threads()
    p = _tiny(get_preset("toy", "smoke"))
    spec = specs.manifold_spec(2, 4)
    try:
        torch.set_num_threads(2)
        side = pairing.train_spec_teachers(spec, p, tmp_path / "side", [0, 1], "cpu", progress_bar=False, parallel=True)
        torch.set_num_threads(1)
        seq = pairing.train_spec_teachers(spec, p, tmp_path / "seq", [0, 1], "cpu", progress_bar=False, parallel=False)
    finally:
        torch.set_num_threads(old)
    for a, b in zip(side, seq):
        sa, sb = _state(a), _state(b)
        assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
        assert a.losses == b.losses
    assert not all(torch.equal(x, y) for x, y in zip(_state(side[0]).values(), _state(side[1]).values()))
    # finished teachers are reloaded, whatever `parallel` says; a spec that does not pickle cannot go to a worker
    again = pairing.train_spec_teachers(spec, p, tmp_path / "side", [0, 1], "cpu", progress_bar=False, parallel=True)
    assert all(torch.equal(_state(again[0])[k], v) for k, v in _state(side[0]).items())
    bare = replace(spec, sample=lambda n, g, device="cpu": spec.sample(n, g, device))
    with pytest.raises(ValueError, match="picklable"):
        pairing.train_spec_teachers(bare, p, tmp_path / "bare", [0, 1], "cpu", progress_bar=False, parallel=True)
    with pytest.raises(ValueError, match="distinct"):
        pairing.train_spec_teachers(spec, p, tmp_path / "x", [0, 0], "cpu", parallel=False)


def test_measures_record_on_students_with_known_pairings():
    """records.measures_record: a copy, a random pairing and a mode swap of the teacher's outputs on the toy
    chessboard (its cells are the modes, its plane the intrinsic coordinates)."""
    from dmdlib import evaluation, records
    from dmdlib.data.toy import chessboard_cell

    p = get_preset("toy", "smoke")
    spec = specs.toy_spec("chessboard", p)
    g = torch.Generator().manual_seed(0)
    R, N = 4, 400
    x = spec.sample(R * N, g)
    noisy = x + 0.01 * torch.randn(x.shape, generator=g)
    t = records.Targets(torch.zeros(R * N, 4), None, x, 0.5 * x, noisy, None, None, N, R, 8, 64)
    copy = records.measures_record(spec, t, x.clone(), seed=0)
    assert copy["agreement"]["student"]["value"] == 1.0 and copy["relative_error"]["student"]["value"] == 0.0
    assert copy["intrinsic_delta_e"]["student"]["delta_e"] == 0.0
    assert copy["modes"] == "the board cell" and copy["intrinsic"].startswith("the first two coordinates")
    # the second teacher (a near copy) agrees almost always; the start (0.5 x) sits near the centre cells
    assert copy["agreement"]["second"]["value"] > 0.95 > copy["agreement"]["start"]["value"]
    rand = x[torch.as_tensor(records.random_rows(N, R, 7))]            # an independent pairing of the same outputs
    m = records.measures_record(spec, t, rand, seed=0)
    a, c = m["agreement"]["student"], m["agreement"]["chance"]
    assert a["ci_low"] <= c["value"] + 0.02 and a["ci_high"] >= c["value"] - 0.02   # chance agreement
    e = m["relative_error"]["student"]
    assert e["ci_low"] - 0.05 <= 1.0 <= e["ci_high"] + 0.05
    # the random level of every measure is the student's own outputs permuted: here a copy's random level
    assert copy["agreement"]["random"]["value"] == pytest.approx(c["value"], abs=0.05)
    swap = x.clone()
    swap[:, :2] = -swap[:, :2]    # the board's point reflection: a symmetry of the data that moves every cell
    m = records.measures_record(spec, t, swap, seed=0)
    assert (chessboard_cell(swap) != chessboard_cell(x)).all() and m["agreement"]["student"]["value"] == 0.0
    rec = evaluation.student_record(delta_e_sets(x, swap, R))
    refs = evaluation.reference_levels(x, 0.5 * x, swap, R, seed=0)
    assert evaluation.reading(rec, refs, m)["undiluted"] == "remaps"


def test_run_pairing_with_an_exact_teacher(tmp_path):
    """mixture_spec: the exact denoiser is the teacher (Phi_K and DMD's real score); the trained network is
    regressed onto it and is the student's start; its second copy (seed + 1) gives the reproducibility level."""
    import json

    from dmdlib import GaussianMixture
    from dmdlib.dmd import state_fingerprint
    from dmdlib.metrics import pairing_inefficiency

    p = get_preset("toy", "smoke")
    mix = GaussianMixture.ring(dim=4, components=8, radius=2.0, std=0.2)
    spec = specs.mixture_spec(mix, "ring8", tau=0.1)
    assert spec.exact.std[0] == pytest.approx((0.2 ** 2 + 0.1 ** 2) ** 0.5) and spec.kind == "mixture"
    with pytest.raises(ValueError, match="tau"):
        specs.mixture_spec(mix, "x", tau=-1.0)
    run = pairing.run_pairing(spec, p, tmp_path, seed=0, device="cpu", reference=True, progress_bar=False)
    assert isinstance(run.net, GaussianMixture) and run.init is not None
    cfg = json.loads((pairing.spec_teacher_dir(spec, p, tmp_path, 0) / "config.json").read_text())
    assert cfg["target"] == state_fingerprint(spec.exact)       # the network was regressed onto the exact teacher
    torch.testing.assert_close(run.maps["phi_8"], dmdlib.phi_k(spec.exact, run.z, p.k))
    N = p.n_eval
    phi_1_init = dmdlib.phi_k(run.init, run.z[:N], 1)
    assert run.student.logs["eval"][0]["delta_e"] == pytest.approx(pairing_inefficiency(run.maps["phi_8"][:N],
                                                                                         phi_1_init), rel=1e-6)
    gap = run.metrics["regressed_start"]
    assert gap["mean_distance"] >= 0 and gap["relative"] == pytest.approx(
        gap["mean_distance"] / float(dmdlib.pair_distances(run.maps["phi_1"], run.maps["phi_8"]).mean()))
    m = run.metrics["measures"]
    assert m["modes"] == "the mixture component" and {"agreement", "intrinsic_delta_e", "relative_error"} <= set(m)
    assert "second" in m["agreement"] and run.metrics["reading"]["measure"] == "agreement"
