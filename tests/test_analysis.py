"""Memorisation ratio, nearest neighbours, D(z), delta(z), correlations, the DM-loss turning point."""
import numpy as np
import pytest
import torch

from dmdlib import analysis as A


def brute(q, ref):
    d = np.sqrt(((q[:, None, :].astype(np.float64) - ref[None, :, :]) ** 2).sum(-1))
    return d


def test_nearest_neighbours_match_brute_force_with_large_offset():
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((500, 64)) + 1e3  # a large common offset: cancellation without centring
    q = ref[:40] + 0.01 * rng.standard_normal((40, 64))
    d, i = A.nearest_neighbours(q, ref, k=2, batch=16)
    bd = brute(q, ref)
    order = np.argsort(bd, axis=1)[:, :2]
    np.testing.assert_array_equal(i, order)
    np.testing.assert_allclose(d, np.take_along_axis(bd, order, 1), rtol=1e-10)
    assert (i[:, 0] == np.arange(40)).all()


def test_memorisation_ratio_and_fractions():
    rng = np.random.default_rng(1)
    train = rng.standard_normal((300, 16))
    copies = train[:10] + 1e-4 * rng.standard_normal((10, 16))   # memorised: r ~ 0
    fresh = rng.standard_normal((50, 16))                        # generic: r close to 1
    r = A.memorisation_ratio(np.concatenate([copies, fresh]), train)
    assert r.shape == (60,) and ((r >= 0) & (r <= 1)).all()
    assert (r[:10] < 0.01).all() and np.median(r[10:]) > 0.5
    f = A.memorised_fractions(r)
    assert f[1 / 3] == pytest.approx(10 / 60 + np.mean(r[10:] < 1 / 3) * 50 / 60)
    assert list(f) == [1 / 3, 0.25, 0.1, 0.05]
    # exact duplicates of two training points: d2 = 0 gives r = 0, never NaN
    r2 = A.memorisation_ratio(np.stack([train[0]]), np.stack([train[0], train[0], train[1]]))
    assert r2.tolist() == [0.0]


def test_mean_distance_to_set_matches_brute_force_and_accepts_images():
    rng = np.random.default_rng(2)
    ref = rng.uniform(-1, 1, (200, 1, 8, 8)).astype(np.float32)
    q = rng.uniform(-1, 1, (30, 1, 8, 8)).astype(np.float32)
    got = A.mean_distance_to_set(torch.from_numpy(q), torch.from_numpy(ref), batch=7)
    want = brute(q.reshape(30, -1), ref.reshape(200, -1)).mean(1)
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_displacement_sign():
    phi_k = np.zeros((3, 2))
    phi_1 = np.array([[2.0, 0], [2.0, 0], [2.0, 0]])
    g = np.array([[1.0, 0], [2.0, 0], [3.0, 0]])
    np.testing.assert_allclose(A.displacement(g, phi_1, phi_k), [-1.0, 0.0, 1.0])


def test_correlation_known_cases():
    rng = np.random.default_rng(3)
    x = rng.standard_normal(300)
    y = -2 * x + 0.5 * rng.standard_normal(300)
    p = A.correlation(x, y, "pearson", n_boot=200)
    s = A.correlation(np.exp(x), y, "spearman", n_boot=200)  # rank correlation ignores the monotone map
    assert p["r"] < -0.9 and p["ci_low"] <= p["r"] <= p["ci_high"]
    assert s["r"] == pytest.approx(A.correlation(x, y, "spearman", n_boot=10)["r"])
    with pytest.raises(ValueError, match="method"):
        A.correlation(x, y, "kendall")
    with pytest.raises(ValueError, match="length"):
        A.correlation(x[:2], y[:2])


def test_turning_point_of_a_rise_then_fall_curve():
    it = np.arange(0, 6000, 50)
    v = np.where(it < 900, it / 900.0, np.exp(-(it - 900) / 2000.0)) + 0.01 * np.sin(it)
    tp = A.turning_point(it, v, window=5)
    assert abs(tp["iteration"] - 900) <= 100
    assert A.turning_point(it, it.astype(float)) is None  # still rising: no turning point
    with pytest.raises(ValueError):
        A.turning_point(it, v[:-1])


def test_bad_inputs():
    with pytest.raises(ValueError, match="features"):
        A.nearest_neighbours(np.zeros((2, 3)), np.zeros((5, 4)))
    with pytest.raises(ValueError, match="k must"):
        A.nearest_neighbours(np.zeros((2, 3)), np.zeros((5, 3)), k=6)
    with pytest.raises(ValueError, match="non-finite"):
        A.mean_distance_to_set(np.full((2, 3), np.nan), np.zeros((5, 3)))
