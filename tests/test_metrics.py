"""Pairing inefficiency Delta_E = E_DT / E_OT - 1 and its helpers."""
import itertools
import math

import numpy as np
import pytest
import torch

import dmdlib
from dmdlib import (delta_e, delta_e_interval, delta_e_sets, delta_e_vs_n, optimal_assignment, pair_distances,
                    pairing_inefficiency, pca_projection, random_pairing, squared_distances, transport_energies)


def rand(n, d, seed):
    return np.random.default_rng(seed).normal(size=(n, d))


def random_orthogonal(d, seed):
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(d, d)))
    return q * np.sign(np.diag(r))


# ----------------------------------------------------------------------------- edge cases

def test_identical_inputs():
    x = rand(20, 3, 0)
    assert transport_energies(x, x) == (0.0, 0.0)
    assert pairing_inefficiency(x, x) == 0.0
    assert delta_e(x, x.copy()) == 0.0


def test_permuted_teacher_is_infinite():
    x = rand(30, 4, 1)
    perm = np.random.default_rng(0).permutation(30)
    e_dt, e_ot = transport_energies(x, x[perm])
    assert e_ot == 0.0 and e_dt > 0
    assert pairing_inefficiency(x, x[perm]) == math.inf
    # the OT assignment undoes the permutation
    assert np.array_equal(x[perm][optimal_assignment(x, x[perm])], x)


def test_hand_two_point_swap():
    t, s = np.array([[0.0], [1.0]]), np.array([[1.0], [0.0]])
    assert transport_energies(t, s) == (1.0, 0.0)
    assert pairing_inefficiency(t, s) == math.inf
    assert optimal_assignment(t, s).tolist() == [1, 0]


def test_hand_two_point_already_optimal():
    t, s = np.array([[0.0], [2.0]]), np.array([[1.0], [3.0]])
    assert transport_energies(t, s) == (1.0, 1.0)
    assert pairing_inefficiency(t, s) == 0.0
    assert optimal_assignment(t, s).tolist() == [0, 1]


def test_hand_three_point():
    # pairs (0,2), (1,0), (2,1.5): E_DT = (4 + 1 + 0.25)/3 = 1.75
    # OT matches sorted to sorted: 0->0, 1->1.5, 2->2: E_OT = 0.25/3, Delta_E = 21 - 1 = 20
    t, s = np.array([[0.0], [1.0], [2.0]]), np.array([[2.0], [0.0], [1.5]])
    e_dt, e_ot = transport_energies(t, s)
    assert e_dt == pytest.approx(1.75, rel=1e-15)
    assert e_ot == pytest.approx(0.25 / 3, rel=1e-15)
    assert pairing_inefficiency(t, s) == pytest.approx(20.0, rel=1e-12)
    assert optimal_assignment(t, s).tolist() == [1, 2, 0]


def test_hand_2d_case():
    # a square's corners paired with their neighbours (a 90-degree rotation), shifted by (0.1, 0)
    t = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])
    s = t[[1, 2, 3, 0]] + np.array([0.1, 0.0])
    # paired distances: ||t_i - t_{i+1} - (0.1, 0)||^2; OT: t_i -> t_i + (0.1, 0), E_OT = 0.01
    e_dt, e_ot = transport_energies(t, s)
    assert e_dt == pytest.approx(np.mean([((t[i] - s[i]) ** 2).sum() for i in range(4)]), rel=1e-14)
    assert e_ot == pytest.approx(0.01, rel=1e-12)
    assert optimal_assignment(t, s).tolist() == [3, 0, 1, 2]


# ----------------------------------------------------------------------------- properties

def test_nonnegative_on_random_data():
    for seed in range(40):
        rng = np.random.default_rng(seed)
        n, d = int(rng.integers(2, 40)), int(rng.integers(1, 6))
        t, s = rng.normal(size=(n, d)), rng.normal(size=(n, d)) * rng.uniform(0.1, 3)
        e_dt, e_ot = transport_energies(t, s)
        assert 0 < e_ot <= e_dt
        assert pairing_inefficiency(t, s) >= 0


@pytest.mark.parametrize("seed", range(6))
def test_brute_force_ot_n5(seed):
    t, s = rand(5, 2, seed), rand(5, 2, 100 + seed)
    best = min(np.mean(((t - s[list(p)]) ** 2).sum(1)) for p in itertools.permutations(range(5)))
    e_dt, e_ot = transport_energies(t, s)
    assert e_ot == pytest.approx(best, rel=1e-12)
    assert e_dt == pytest.approx(np.mean(((t - s) ** 2).sum(1)), rel=1e-12)
    perm = optimal_assignment(t, s)
    assert sorted(perm.tolist()) == list(range(5))
    assert np.mean(((t - s[perm]) ** 2).sum(1)) == pytest.approx(best, rel=1e-12)


@pytest.mark.parametrize("c", [1e-3, 7.5, 1e4])
def test_scale_invariance(c):
    t, s = rand(60, 3, 0), rand(60, 3, 1)
    ref = pairing_inefficiency(t, s)
    assert pairing_inefficiency(c * t, c * s) == pytest.approx(ref, rel=1e-9)
    e_dt, e_ot = transport_energies(c * t, c * s)
    e_dt0, e_ot0 = transport_energies(t, s)
    assert e_dt == pytest.approx(c ** 2 * e_dt0, rel=1e-9)
    assert e_ot == pytest.approx(c ** 2 * e_ot0, rel=1e-9)


def test_translation_and_rotation_invariance():
    t, s = rand(80, 5, 2), rand(80, 5, 3) + 0.3
    ref = pairing_inefficiency(t, s)
    shift = np.random.default_rng(9).normal(size=5) * 50
    assert pairing_inefficiency(t + shift, s + shift) == pytest.approx(ref, rel=1e-9)
    q = random_orthogonal(5, 4)
    assert pairing_inefficiency(t @ q.T, s @ q.T) == pytest.approx(ref, rel=1e-9)
    assert pairing_inefficiency(t @ q.T + shift, s @ q.T + shift) == pytest.approx(ref, rel=1e-9)


def test_not_symmetric_in_roles_but_well_defined():
    # swapping teacher and student leaves E_DT and E_OT unchanged (squared distance is symmetric)
    t, s = rand(25, 3, 5), rand(25, 3, 6)
    a, b = transport_energies(t, s), transport_energies(s, t)
    assert a[0] == pytest.approx(b[0], rel=1e-14) and a[1] == pytest.approx(b[1], rel=1e-12)


# ----------------------------------------------------------------------------- input handling

def test_numpy_and_torch_agree():
    t, s = rand(30, 4, 0), rand(30, 4, 1)
    ref = transport_energies(t, s)
    assert transport_energies(torch.from_numpy(t), torch.from_numpy(s)) == ref
    assert transport_energies(torch.from_numpy(t), s) == ref
    assert transport_energies(t.tolist(), s.tolist()) == ref


def test_multidim_samples_are_flattened():
    t = torch.randn(20, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    s = torch.randn(20, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    assert transport_energies(t, s) == transport_energies(t.reshape(20, 16), s.reshape(20, 16))
    assert pairing_inefficiency(t, s) == pairing_inefficiency(t.reshape(20, 16), s.reshape(20, 16))
    np.testing.assert_array_equal(pair_distances(t, s), pair_distances(t.reshape(20, 16), s.reshape(20, 16)))


def test_float32_is_computed_in_float64():
    t = torch.randn(40, 3, generator=torch.Generator().manual_seed(0))
    s = torch.randn(40, 3, generator=torch.Generator().manual_seed(1))
    e32 = transport_energies(t, s)
    e64 = transport_energies(t.double(), s.double())
    assert e32 == e64
    assert all(isinstance(v, float) for v in e32)
    # a float32 computation of E_DT would differ in the last bits
    assert e32[0] == float(((t.double() - s.double()) ** 2).sum(1).mean())


def test_error_shape_mismatch():
    with pytest.raises(ValueError, match="same shape"):
        transport_energies(rand(10, 3, 0), rand(11, 3, 1))
    with pytest.raises(ValueError, match="same shape"):
        pairing_inefficiency(rand(10, 3, 0), rand(10, 2, 1))
    with pytest.raises(ValueError, match="same shape"):
        pair_distances(np.zeros((4, 2, 2)), np.zeros((4, 4)))


def test_error_too_few_samples():
    with pytest.raises(ValueError, match="N >= 2"):
        pairing_inefficiency(np.zeros((1, 3)), np.ones((1, 3)))
    with pytest.raises(ValueError, match="scalar"):
        pairing_inefficiency(np.float64(1.0), np.float64(2.0))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("which", ["teacher", "student"])
def test_error_non_finite(bad, which):
    t, s = rand(10, 3, 0), rand(10, 3, 1)
    (t if which == "teacher" else s)[4, 1] = bad
    with pytest.raises(ValueError, match=f"{which} contains non-finite"):
        pairing_inefficiency(t, s)
    with pytest.raises(ValueError, match="pairs\\[0\\].*non-finite"):
        delta_e_interval([(t, s), (t, s)])


def test_squared_distances_direct_and_large_offsets():
    t, s = rand(50, 4, 0), rand(50, 4, 1)
    direct = ((t[:, None, :] - s[None, :, :]) ** 2).sum(-1)
    np.testing.assert_allclose(squared_distances(t, s), direct, rtol=1e-12, atol=1e-12)
    for off_t, off_s in [(1e4, 1e4), (1e4, 1e4 + 0.5), (-3e5, -3e5)]:
        tt, ss = t + off_t, s + off_s
        direct = ((tt[:, None, :] - ss[None, :, :]) ** 2).sum(-1)
        m = squared_distances(tt, ss)
        assert m.shape == (50, 50) and (m >= 0).all()
        assert np.max(np.abs(m - direct) / direct) < 1e-9
    # Delta_E unaffected by the common offset
    assert pairing_inefficiency(t + 1e4, s + 1e4) == pytest.approx(pairing_inefficiency(t, s), rel=1e-9)


def test_pair_distances():
    t, s = np.array([[0.0, 0.0], [1.0, 1.0]]), np.array([[3.0, 4.0], [1.0, 1.0]])
    np.testing.assert_array_equal(pair_distances(t, s), [5.0, 0.0])


# ----------------------------------------------------------------------------- interval over seed sets

def _noisy_copy(rng, n, dim=4, noise=0.3):
    x = rng.standard_normal((n, dim))
    return x, x + noise * rng.standard_normal((n, dim))


def test_delta_e_interval_covers_the_expected_estimator_at_its_level():
    """x ~ N(0, I_4), y = x + 0.3 noise, N = 200: E[Delta_E-hat_200] from 3000 independent sets is the target;
    the t-interval of R = 10 fresh sets must cover it about 95% of the time (200 data sets: the Monte Carlo
    standard error of the coverage is 1.5 points). The bootstrap over seed pairs covered it once in 25."""
    rng = np.random.default_rng(0)
    truth = np.mean([pairing_inefficiency(*_noisy_copy(rng, 200)) for _ in range(3000)])
    hits = [delta_e_interval([_noisy_copy(rng, 200) for _ in range(10)]) for _ in range(200)]
    coverage = np.mean([h["ci_low"] <= truth <= h["ci_high"] for h in hits])
    assert 0.91 <= coverage <= 0.99, coverage
    # the estimator grows with N: the same pairing at N = 50 is far lower than at N = 200
    small = np.mean([pairing_inefficiency(*_noisy_copy(rng, 50)) for _ in range(300)])
    assert small < 0.5 * truth


def test_delta_e_interval_fields_and_arithmetic():
    rng = np.random.default_rng(1)
    sets = [_noisy_copy(rng, 30) for _ in range(4)]
    d = delta_e_interval(sets, level=0.9)
    vals = [pairing_inefficiency(t, s) for t, s in sets]
    assert d["values"] == pytest.approx(vals)
    assert d["delta_e"] == pytest.approx(np.mean(vals))
    assert d["sd"] == pytest.approx(np.std(vals, ddof=1))
    half = 2.353363434801823 * d["sd"] / 2.0          # t_{3, 0.95}
    assert (d["ci_low"], d["ci_high"]) == (pytest.approx(d["delta_e"] - half), pytest.approx(d["delta_e"] + half))
    assert (d["n"], d["r"], d["level"]) == (30, 4, 0.9)
    both = np.concatenate([t for t, _ in sets]), np.concatenate([s for _, s in sets])
    assert delta_e_sets(*both, r=4, level=0.9) == d
    assert delta_e_sets(torch.as_tensor(both[0]), torch.as_tensor(both[1]), r=4, level=0.9)["values"] == d["values"]


@pytest.mark.parametrize("pairs,match", [
    ([(rand(10, 2, 0), rand(10, 2, 1))], "at least 2"),
    ([(rand(10, 2, 0), rand(10, 2, 1)), (rand(12, 2, 0), rand(12, 2, 1))], "same N"),
    ([(rand(10, 2, 0), rand(10, 2, 1)), (rand(10, 2, 0), rand(10, 3, 1))], "pairs\\[1\\].*shape"),
    ([(rand(10, 2, 0), rand(10, 2, 1)), rand(10, 2, 0)], "pairs\\[1\\]"),
    (5, "sequence"),
])
def test_delta_e_interval_rejects_bad_input(pairs, match):
    with pytest.raises(ValueError, match=match):
        delta_e_interval(pairs)


@pytest.mark.parametrize("level", [0.0, 1.0, 95, "0.9", True])
def test_delta_e_interval_bad_level(level):
    with pytest.raises(ValueError, match="level"):
        delta_e_interval([(rand(10, 2, 0), rand(10, 2, 1))] * 2, level=level)


def test_delta_e_vs_n_uses_disjoint_sets_of_the_pool():
    rng = np.random.default_rng(2)
    t, s = _noisy_copy(rng, 400)
    curve = delta_e_vs_n(t, s, [50, 100, 400])
    assert [(c["n"], c["r"]) for c in curve] == [(50, 8), (100, 4), (400, 1)]
    assert curve[0]["delta_e"] == pytest.approx(np.mean([pairing_inefficiency(t[i:i + 50], s[i:i + 50])
                                                         for i in range(0, 400, 50)]))
    assert curve[2]["ci_low"] is None and curve[2]["delta_e"] == pytest.approx(pairing_inefficiency(t, s))
    assert curve[0]["delta_e"] < curve[1]["delta_e"] < curve[2]["delta_e"]   # grows with N
    with pytest.raises(ValueError, match="ns"):
        delta_e_vs_n(t, s, [800])
    with pytest.raises(ValueError, match="split"):
        delta_e_sets(t[:10], s[:10], r=3)


def test_random_pairing_is_a_permutation_and_scores_high():
    rng = np.random.default_rng(3)
    t, s = _noisy_copy(rng, 300)
    p = random_pairing(s, seed=1)
    assert sorted(map(tuple, p)) == sorted(map(tuple, s))
    assert pairing_inefficiency(t, p) > 10 * pairing_inefficiency(t, s)
    assert torch.equal(random_pairing(torch.as_tensor(s), 1), torch.as_tensor(p))


# ----------------------------------------------------------------------------- PCA

def test_pca_projection_long_axis():
    rng = np.random.default_rng(0)
    q = random_orthogonal(3, 1)
    mu = np.array([3.0, -2.0, 1.0])
    cloud = rng.normal(size=(2000, 3)) * np.array([5.0, 1.0, 0.3]) @ q.T + mu
    long_axis = q[:, 0]
    other = rng.normal(size=(7, 3))
    m = cloud.mean(0)  # projections are relative to the reference's sample mean
    ref, probe, oth = pca_projection(cloud, m + np.stack([long_axis, q[:, 1]]), other, k=2)
    assert ref.shape == (2000, 2) and probe.shape == (2, 2) and oth.shape == (7, 2)
    # the long axis projects onto (+-1, ~0), the second axis onto (~0, +-1)
    assert abs(probe[0, 0]) == pytest.approx(1.0, abs=0.01) and abs(probe[0, 1]) < 0.05
    assert abs(probe[1, 1]) == pytest.approx(1.0, abs=0.02) and abs(probe[1, 0]) < 0.05
    # variance ordering, centred reference
    assert ref[:, 0].var() > ref[:, 1].var()
    np.testing.assert_allclose(ref.mean(0), 0.0, atol=1e-10)
    assert ref[:, 0].std() == pytest.approx(5.0, rel=0.05)
    # an explicit centre replaces the sample mean
    _, probe_mu = pca_projection(cloud, mu + long_axis[None], k=2, center=mu)
    assert abs(probe_mu[0, 0]) == pytest.approx(1.0, abs=0.01) and abs(probe_mu[0, 1]) < 0.05
    (one,) = pca_projection(torch.from_numpy(cloud).float(), k=1)
    assert one.shape == (2000, 1)


def test_pca_projection_errors():
    with pytest.raises(ValueError, match="k must be"):
        pca_projection(rand(10, 3, 0), k=4)
    with pytest.raises(ValueError, match="features"):
        pca_projection(rand(10, 3, 0), rand(5, 2, 1))


# ----------------------------------------------------------------------------- Lemma C.1

@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lemma_c1_copying_vs_remapping(seed):
    z = torch.randn(1000, 2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    teacher = dmdlib.deformed_circle_teacher(z, 0.05)
    copy_ = dmdlib.rotation_student(z, 0.0)
    remap = dmdlib.rotation_student(z, math.pi)
    torch.testing.assert_close(copy_.norm(dim=1), torch.ones(1000, dtype=torch.float64))
    torch.testing.assert_close(remap.norm(dim=1), torch.ones(1000, dtype=torch.float64))
    # the teacher lies on (1 + delta) x^2 + y^2 = 1
    torch.testing.assert_close(1.05 * teacher[:, 0] ** 2 + teacher[:, 1] ** 2, torch.ones(1000, dtype=torch.float64))
    assert pairing_inefficiency(teacher, copy_) < 0.05
    assert pairing_inefficiency(teacher, remap) > 10
    # the remapping student pays E_DT ~ 4 (antipodal pairs) while OT is tiny
    e_dt, e_ot = transport_energies(teacher, remap)
    assert e_dt == pytest.approx(4.0, rel=0.03) and e_ot < 0.05


def test_constructions_validation():
    with pytest.raises(ValueError, match=r"\[N, 2\]"):
        dmdlib.deformed_circle_teacher(torch.zeros(3, 3))
    with pytest.raises(ValueError, match="delta"):
        dmdlib.deformed_circle_teacher(torch.ones(3, 2), delta=-1.0)
    with pytest.raises(ValueError, match=r"\[N, 2\]"):
        dmdlib.rotation_student(torch.zeros(3), 0.0)
    z = torch.tensor([[3.0, 4.0]])
    torch.testing.assert_close(dmdlib.rotation_student(z, math.pi / 2), torch.tensor([[-0.8, 0.6]]))
