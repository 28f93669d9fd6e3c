"""dmdlib.exact: the exact-teacher laboratory of chapter 09 (separated spheres, the ring in R^d, one Gaussian as a
teacher of the pairing path) and the linear-Gaussian limit in closed form; the chapter's preset."""
import math
import pickle
from dataclasses import replace

import pytest
import torch

import dmdlib
from dmdlib import exact
from dmdlib.analytic import GaussianDenoiser, gaussian_flow_map
from dmdlib.presets import ExactPreset, get_preset

STD = torch.tensor([1.0, 0.6, 0.35, 0.2], dtype=torch.float64)   # diagonal, non-isotropic
S = torch.diag(STD ** 2)


# ----------------------------------------------------------------------------- the sphere of modes, the ring

def test_separated_seed_gives_separated_means_on_the_sphere():
    s = exact.separated_seed(8, 2, 2.0, 1.2)
    mix = exact.sphere_mixture(8, 2, 32, 2.0, 0.2, 1.2)
    assert exact.min_separation(mix.means) >= 1.2
    assert torch.allclose(mix.structured(mix.means).norm(dim=1), torch.full((8,), 2.0, dtype=torch.float64))
    assert mix.basis.shape == (32, 2) and mix.dim == 32
    # the kept draw is GaussianMixture.sphere's at that seed; earlier seeds were too close
    assert torch.equal(mix.means, dmdlib.GaussianMixture.sphere(8, 2, 32, radius=2.0, std=0.2, seed=s).means)
    assert all(exact.min_separation(dmdlib.GaussianMixture.sphere(8, 2, 2, radius=2.0, seed=q).means) < 1.2
               for q in range(s))
    assert exact.separated_seed(8, 32, 2.0, 1.2) == 0          # in 32 dimensions random means are far apart
    assert exact.min_separation(torch.zeros(1, 3)) == math.inf


def test_separated_seed_refuses_bad_input_and_unreachable_separations():
    with pytest.raises(ValueError, match="no seed"):
        exact.separated_seed(8, 2, 2.0, 2 * 2.0 * math.sin(math.pi / 8) + 0.01, max_tries=50)
    for kw in ({"components": 0}, {"k": 1.5}, {"seed": -1}, {"radius": 0.0}, {"separation": -1.0}):
        args = {"components": 4, "k": 2, "radius": 1.0, "separation": 0.1} | kw
        with pytest.raises(ValueError, match=next(iter(kw))):
            exact.separated_seed(**args)


def test_specs_carry_their_blurred_exact_teacher():
    ring = exact.ring_spec(16, tau=0.3)
    assert ring.exact.dim == 16 and ring.exact.num_components == 32 and ring.shape == (16,)
    assert float(ring.exact.std[0]) == pytest.approx(math.hypot(0.2, 0.3))
    sph = exact.sphere_spec(4, 3, 8, 2.0, 0.2, 0.5, tau=0.0)
    assert sph.exact.num_components == 4 and sph.intrinsic(sph.exact.means).shape == (4, 3)
    assert exact.ring_spec(16).data_id != ring.data_id


# ----------------------------------------------------------------------------- one Gaussian

def test_exact_gaussian_is_the_closed_form_teacher():
    g = exact.ExactGaussian(None, STD)
    x = torch.randn(64, 4, generator=torch.Generator().manual_seed(0))
    sigma = torch.rand(64, generator=torch.Generator().manual_seed(1)) * 10
    torch.testing.assert_close(g(x, sigma), GaussianDenoiser(torch.zeros(4, dtype=torch.float64), STD)(x, sigma))
    assert g.sigma_data == pytest.approx(float(STD.pow(2).mean().sqrt())) and g.dim == 4
    y = g.sample(200_000, torch.Generator().manual_seed(2), dtype=torch.float64)
    torch.testing.assert_close(y.std(0), STD, rtol=0.01, atol=0)
    z = torch.randn(500, 4, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    torch.testing.assert_close(dmdlib.phi_k(g, z, 256), gaussian_flow_map(z, 0.0, STD), rtol=0, atol=2e-3)
    for bad in ([1.0, -1.0], [[1.0]], []):
        with pytest.raises(ValueError, match="std"):
            exact.ExactGaussian(None, bad)
    with pytest.raises(ValueError, match="mean"):
        exact.ExactGaussian([0.0], STD)


def test_gaussian_spec_is_a_picklable_exact_spec():
    spec = exact.gaussian_spec(STD.tolist())
    assert spec.kind == "gaussian" and spec.modes is None and spec.sigma_data == pytest.approx(spec.exact.sigma_data)
    back = pickle.loads(pickle.dumps(spec))
    a = spec.sample(10, torch.Generator().manual_seed(4))
    assert torch.equal(a, back.sample(10, torch.Generator().manual_seed(4))) and a.dtype == torch.float32
    torch.testing.assert_close(spec.intrinsic(a), a.double())


# ----------------------------------------------------------------------------- the linear-Gaussian limit

def test_linear_gradient_is_the_expected_dm_gradient():
    """The closed form equals the Monte Carlo mean of (D_fake - D_real)(x_t) z^T (no normaliser)."""
    A = torch.tensor([[0.5, 0.1, 0.0, 0.0], [0.0, 0.4, 0.0, 0.05], [0.0, 0.0, 0.3, 0.0], [0.02, 0.0, 0.0, 0.1]],
                     dtype=torch.float64)
    sig = torch.tensor([0.05, 0.3, 1.0], dtype=torch.float64)
    cf = exact.linear_dm_gradient(A, S, sig)
    mc = exact.sampled_linear_gradient(A, S, sig, 400_000, seed=1, normalised=False)
    assert float((mc - cf).abs().max()) < 0.05 * float(cf.abs().max())
    # at A A^T = S the gradient vanishes, for any rotation of the noise (the DM loss is indifferent to the pairing)
    q = dmdlib.data.toy.orthogonal_matrix(4, 7).double()
    root = torch.diag(STD)
    assert float(exact.linear_dm_gradient(root @ q, S, exact.dmd_sigmas()).abs().max()) < 1e-12


def test_gradient_from_phi_1_is_symmetric_and_commutes_with_the_covariance():
    A = exact.phi_1_matrix(STD)
    grad = exact.linear_dm_gradient(A, S, exact.dmd_sigmas())
    assert exact.rotation_part(grad) == 0.0 and exact.commutator(grad, S) == 0.0
    assert float(grad.abs().max()) > 0 and not torch.allclose(S, S[0, 0] * torch.eye(4, dtype=torch.float64))


def test_linear_flow_from_phi_1_never_rotates_and_ends_at_the_flow_map():
    tr = exact.linear_dmd_flow(exact.phi_1_matrix(STD), S, exact.dmd_sigmas(), lr=1.0, steps=200)
    assert tr.shape == (201, 4, 4)
    assert max(exact.rotation_part(a) for a in tr) == 0.0 and max(exact.commutator(a, S) for a in tr) == 0.0
    torch.testing.assert_close(tr[-1], exact.flow_matrix(STD), rtol=0, atol=1e-3)
    # a start with a rotation part keeps one: the flow cannot create a rotation, nor undo one
    bent = exact.phi_1_matrix(STD) + 1e-3 * torch.tensor([[0, 1, 0, 0], [-1, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0.0]],
                                                         dtype=torch.float64)
    assert exact.rotation_part(exact.linear_dmd_flow(bent, S, exact.dmd_sigmas(), 1.0, 200)[-1]) > 1e-4


def test_dmd2_normaliser_keeps_a_diagonal_student_diagonal():
    """Per-sample L1 normalisation is invariant under coordinate sign flips: off-diagonal entries vanish in
    expectation for diagonal S and A (checked to the Monte Carlo error)."""
    A = torch.diag(torch.tensor([0.5, 0.4, 0.3, 0.1], dtype=torch.float64))
    runs = torch.stack([exact.sampled_linear_gradient(A, S, exact.dmd_sigmas(), 50_000, seed=s) for s in range(10)])
    mean, se = runs.mean(0), runs.std(0) / 10 ** 0.5
    off = ~torch.eye(4, dtype=torch.bool)
    assert bool((mean[off].abs() < 4 * se[off]).all())               # zero within the Monte Carlo error
    assert bool((torch.diagonal(mean) < -10 * torch.diagonal(se)).all())   # every a_i < s_i grows


def test_linear_helpers_refuse_bad_input():
    with pytest.raises(ValueError, match="square"):
        exact.linear_dm_gradient(torch.zeros(2, 3), S, [1.0])
    with pytest.raises(ValueError, match="same shape"):
        exact.linear_dm_gradient(torch.eye(2), S, [1.0])
    with pytest.raises(ValueError, match="weights"):
        exact.linear_dm_gradient(torch.eye(4), S, [1.0], weights=[-1.0])
    with pytest.raises(ValueError, match="steps"):
        exact.linear_dmd_flow(torch.eye(4), S, [1.0], lr=0.1, steps=-1)
    with pytest.raises(ValueError, match="lr"):
        exact.linear_dmd_flow(torch.eye(4), S, [1.0], lr=0.0, steps=1)
    with pytest.raises(ValueError, match="n must"):
        exact.sampled_linear_gradient(torch.eye(4), S, [1.0], 0)


def test_flow_and_phi_1_matrices_are_the_closed_forms():
    z = torch.randn(7, 4, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    torch.testing.assert_close(z @ exact.flow_matrix(STD).T, gaussian_flow_map(z, 0.0, STD))
    g = exact.ExactGaussian(None, STD)
    torch.testing.assert_close(z @ exact.phi_1_matrix(STD).T, g(80.0 * z, torch.full((7,), 80.0)))
    lo, hi = dmdlib.band_indices(1000)
    assert exact.dmd_sigmas().numel() == hi - lo + 1


# ----------------------------------------------------------------------------- the preset

def test_exact_presets():
    for name in ("smoke", "quick", "paper"):
        P = get_preset("exact", name)
        assert isinstance(P, ExactPreset) and P.name == name and 0.0 in P.taus and P.notes
        assert max(P.structure_ks) <= P.structure_dim
    with pytest.raises(ValueError, match="allowed"):
        get_preset("exact", "huge")
    P = get_preset("exact", "smoke")
    for kw, match in (({"structure_ks": (64,)}, "structure_dim"), ({"taus": (0.1,)}, "include 0"),
                      ({"ambient_dims": (1,)}, "ambient_dims"), ({"taus": (0.0, -1.0)}, "taus"),
                      ({"gaussian_std": ()}, "gaussian_std"), ({"radius": 0.0}, "radius"),
                      ({"separation": -1.0}, "separation")):
        with pytest.raises(ValueError, match=match):
            replace(P, **kw)


def test_linear_dmd_runs_dmd2_updates_with_exact_scores():
    r = exact.linear_dmd(STD.tolist(), 40, 64, 1e-3, "adamw", "phi_1", warmup=5, seed=3, record_every=10)
    assert r["step"] == [0, 10, 20, 30, 40] and len(r["rotation"]) == 5 and r["A"].shape == (4, 4)
    assert r["rotation"][0] == 0.0 and r["scale"][-1] > r["scale"][0]           # starts at Phi_1, grows
    again = exact.linear_dmd(STD.tolist(), 40, 64, 1e-3, "adamw", "phi_1", warmup=5, seed=3, record_every=10)
    assert torch.equal(r["A"], again["A"])                                       # seeded
    kept = exact.linear_dmd(STD.tolist(), 50, 256, 1.0, "sgd", "flow", seed=0)
    assert kept["rotation"][-1] < 0.01 and float((kept["A"] - exact.flow_matrix(STD)).abs().max()) < 0.02
    for kw, match in (({"optimizer": "adam"}, "optimizer"), ({"start": "zero"}, "start"), ({"steps": -1}, "steps"),
                      ({"batch": 0}, "batch"), ({"lr": 0.0}, "lr")):
        args = {"std": STD.tolist(), "steps": 1, "batch": 8, "lr": 1e-3} | kw
        with pytest.raises(ValueError, match=match):
            exact.linear_dmd(**args)


# ----------------------------------------------------------------------------- the sweeps' records and rules

from dmdlib import exact_plots, exact_sweeps  # noqa: E402


def test_spread_of_a_mixtures_own_samples_is_its_std():
    mix = exact.sphere_mixture(8, 4, 16, 2.0, 0.2, 1.2)
    x = mix.sample(4000, torch.Generator().manual_seed(0))
    assert exact_sweeps.spread(x, mix) == pytest.approx(0.2, rel=0.03)
    collapsed = mix.means[mix.component(x)].float() + 0.1 * (x - mix.means[mix.component(x)].float())
    rec = exact_sweeps.spread_record({"data": x, "ref": x, "phi_8": x, "g": collapsed}, mix)
    assert rec["ratio"] == pytest.approx(0.1, rel=0.05) and rec["ok"] is False
    assert exact_sweeps.spread_record({"data": x, "ref": x, "phi_8": x, "g": x}, mix)["ok"] is True


def _iv(v, h=0.01):
    return {"value": v, "ci_low": v - h, "ci_high": v + h}


def test_copying_index_runs_from_chance_to_the_second_network():
    a = {"chance": _iv(0.1), "second": _iv(0.9), "student": _iv(0.5)}
    ix = exact_sweeps.copying_index(a)
    assert ix["value"] == pytest.approx(0.5) and ix["ceiling"] == 0.9
    assert exact_sweeps.copying_index({**a, "student": _iv(0.9)})["value"] == pytest.approx(1.0)
    assert exact_sweeps.copying_index({**a, "second": _iv(0.1)})["ceiling"] == 1.0    # second not above chance
    assert exact_sweeps.copying_index({"chance": _iv(1.0), "student": _iv(1.0)}) is None


def test_verdict_rules_need_results():
    def pt(d, word, conv=True, ok=True):
        return {"ambient_dim": d, "tau": 0.0, "converged": conv, "spread": {"ok": ok}, "reading": {"reading": word}}

    v = exact_sweeps.dimension_verdict([pt(2, "remaps"), pt(64, "copies"), pt(256, "remaps", ok=False)], "ambient_dim")
    assert v["verdict"] == "reproduced" and (v["low"], v["high"], v["results"], v["points"]) == (2, 64, 2, 3)
    assert exact_sweeps.dimension_verdict([pt(2, "copies", conv=False), pt(4, "copies")], "ambient_dim")["verdict"] \
        == "not run at this scale"
    assert exact_sweeps.resolution_verdict([pt(4, "remaps")])["verdict"] == "not run at this scale"


def test_run_point_records_a_point_and_reloads_it(tmp_path):
    p = get_preset("exact", "smoke").point
    spec = exact.ring_spec(4, 0.2, components=8)
    run, rec = exact_sweeps.run_point(spec, p, tmp_path, 0, "cpu", progress_bar=False, ambient_dim=4, tau=0.2)
    assert (rec["ambient_dim"], rec["tau"]) == (4, 0.2) and rec["result"] == exact_sweeps.is_result(rec)
    assert {"agreement", "intrinsic_delta_e", "relative_error"} <= set(rec["measures"])
    assert set(rec["flow_level"]) == {"delta_e", "agreement", "relative_error"} and "ok" in rec["spread"]
    assert rec["regressed_start"]["relative"] >= 0 and rec["reading"]["reading"] in dmdlib.evaluation.READINGS
    table = exact_sweeps.points_table([rec], lambda q: f"d = {q['ambient_dim']}")
    assert table.count("\n") == 2 and "| d = 4 |" in table
    _, again = exact_sweeps.run_point(spec, p, tmp_path, 0, "cpu", progress_bar=False, ambient_dim=4, tau=0.2)
    assert again["delta_e"] == rec["delta_e"] and again["flow_level"] == rec["flow_level"]
    g = exact.gaussian_spec([1.0, 0.3])
    _, grec = exact_sweeps.run_point(g, p, tmp_path, 0, "cpu", progress_bar=False, components=1)
    assert "spread" not in grec and "agreement" not in grec["flow_level"]
    # the chapter's figures draw from such records
    import matplotlib
    matplotlib.use("Agg")
    pts = [rec, {**rec, "ambient_dim": 8, "tau": 0.0, "converged": False, "result": False}]
    exact_plots.plot_measures_sweep(pts, lambda q: str(q["ambient_dim"]), "d")
    exact_plots.plot_measures_sweep([grec], lambda q: "M = 1", "one Gaussian")
    exact_plots.plot_phase_diagram(pts, [4, 8], [0.0, 0.2])
    traj = exact.linear_dmd_flow(exact.phi_1_matrix(STD), S, exact.dmd_sigmas(), 1.0, 5)
    exact_plots.plot_linear_flow(traj, STD.tolist(), {"x": exact.linear_dmd(STD.tolist(), 5, 8, 1e-3)})


# ----------------------------------------------------------------------------- the chapter at smoke

@pytest.mark.slow
def test_chapter_09_runs_at_smoke_and_records_every_point(tmp_path):
    """notebooks/09_exact_teacher at smoke: every sweep's points in metrics.json with the measures, the verdicts
    of the two mechanism claims in the claims' words, the linear-Gaussian runs, and a rerun that trains nothing."""
    import json
    from pathlib import Path

    import papermill as pm

    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "o"
    params = {"preset": "smoke", "device": "cpu", "seed": 0, "output_dir": str(out)}
    pm.execute_notebook(str(root / "notebooks" / "09_exact_teacher.ipynb"), str(tmp_path / "a.ipynb"), cwd=str(root),
                        kernel_name="python3", progress_bar=False, parameters=params)
    m = json.loads((out / "metrics.json").read_text())
    P = get_preset("exact", "smoke")
    assert [q["structure_dim"] for q in m["structure"]] == list(P.structure_ks)
    assert [q["ambient_dim"] for q in m["ambient"]] == list(P.ambient_dims)
    assert sorted((q["ambient_dim"], q["tau"]) for q in m["resolution"]) == sorted(
        (d, float(t)) for d in P.phase_dims for t in P.taus)
    for q in m["structure"] + m["ambient"] + m["resolution"] + [m["gaussian"]]:
        assert {"delta_e", "ci_low", "ci_high", "converged", "gates", "references", "measures", "reading",
                "flow_level", "regressed_start", "result"} <= set(q)
        assert "relative_error" in q["measures"] and q["reading"]["reading"] in dmdlib.evaluation.READINGS
    words = {"reproduced", "contradicted", "inconclusive", "not run at this scale"}
    assert {m["verdicts"][k]["verdict"] for k in ("structure_dim", "ambient_dim", "resolution")} <= words
    assert m["linear"]["closed_form"]["max_rotation"] == 0.0 and len(m["linear"]) == 5
    assert set(m["wall_time_per_sweep_s"]) == {"structure", "ambient", "resolution", "linear", "gaussian"}
    pm.execute_notebook(str(root / "notebooks" / "09_exact_teacher.ipynb"), str(tmp_path / "b.ipynb"), cwd=str(root),
                        kernel_name="python3", progress_bar=False, parameters=params)
    text = "\n".join("".join(o.get("text", "")) for c in json.loads((tmp_path / "b.ipynb").read_text())["cells"]
                     if c["cell_type"] == "code" for o in c.get("outputs", []) if o.get("output_type") == "stream")
    assert "trained now" not in text and "loaded from the run folder" in text
    again = json.loads((out / "metrics.json").read_text())
    assert [q["delta_e"] for q in again["ambient"]] == [q["delta_e"] for q in m["ambient"]]


def test_heun_with_eight_steps_overshoots_a_gaussians_spread():
    """Why the chapter adds a flow level: Phi_8 of N(0, diag(s^2)) spreads wider than the data, Phi_64 does not."""
    g = exact.ExactGaussian(None, STD)
    z = torch.randn(20_000, 4, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    assert bool((dmdlib.phi_k(g, z, 8).std(0) / STD > 1.2).all())
    torch.testing.assert_close(dmdlib.phi_k(g, z, 64).std(0) / STD, torch.ones(4, dtype=torch.float64), rtol=0.02, atol=0)
