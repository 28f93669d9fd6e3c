"""dmdlib.stats, the tests behind the verdicts (issue 22), on constructed data: Welch's interval, the two stages of a
loss curve (rise-then-fall, flat, rise-only, fall-only, noisy flat), Page's trend test (falling, rising, constant)
and the partial rank correlation (a correlation driven entirely by a confounder, and a real effect)."""
import math

import numpy as np
import pytest

from dmdlib import stats


# ----------------------------------------------------------------------------- Welch

def test_welch_matches_scipy_and_reads_both_directions():
    from scipy import stats as ss

    a, b = [1.0, 1.2, 0.9, 1.1], [0.5, 0.7, 0.4, 0.8, 0.6]
    w = stats.welch(a, b)
    ref = ss.ttest_ind(a, b, equal_var=False, alternative="greater")
    assert w["p_greater"] == pytest.approx(ref.pvalue) and w["p_less"] == pytest.approx(1 - ref.pvalue)
    assert w["difference"] == pytest.approx(np.mean(a) - np.mean(b)) and w["ci_low"] > 0
    assert stats.welch(b, a)["ci_high"] < 0
    same = stats.welch([1.0, 1.0], [1.0, 1.0])
    assert same["ci_low"] == same["ci_high"] == 0 and same["p_greater"] == 0.5
    with pytest.raises(ValueError, match="a must hold at least 2 finite values"):
        stats.welch([1.0], [1.0, 2.0])


def test_slope_of_a_line_and_of_noise():
    x = np.arange(10.0)
    s = stats.slope(x, 2 * x + 1)
    assert s["slope"] == pytest.approx(2) and s["change"] == pytest.approx(18) and s["p_greater"] == 0
    rng = np.random.default_rng(0)
    assert stats.slope(x, rng.standard_normal(10))["p_greater"] > 0.05
    with pytest.raises(ValueError, match="x must not be constant"):
        stats.slope([1, 1, 1], [1, 2, 3])


# ----------------------------------------------------------------------------- two stages

IT = np.arange(1, 113) * 10.0          # 112 logged points, as chapter 04 at quick


def curve(kind, noise=0.01, seed=0):
    t = IT / IT[-1]
    base = {"rise-then-fall": 0.1 + 0.4 * np.exp(-((t - 0.15) / 0.06) ** 2) + 0.1 * (t < 0.15) * t / 0.15,
            "flat": np.full_like(t, 0.3),
            "rise-only": 0.1 + 0.3 * t,
            "fall-only": 0.5 - 0.3 * t}[kind]
    v = base + noise * np.random.default_rng(seed).standard_normal(t.size)
    v[:3] = [0.0, 0.002, 0.01]            # the construction's start near 0
    return v


@pytest.mark.parametrize("kind, shape", [("rise-then-fall", "rises, then falls"), ("flat", "flat"),
                                         ("rise-only", "rises only"), ("fall-only", "falls only")])
def test_two_stages_reads_constructed_curves(kind, shape):
    r = stats.two_stages(IT, curve(kind), window=5, skip=3)
    assert r["shape"] == shape, r
    assert r["late_above_peak"] is (kind == "rise-only")       # a curve that never stops rising
    assert r["windows"]["late"][-1] == IT[-1]                  # the late window ends with the run
    if kind == "rise-then-fall":                                # the peak window sits on the peak (t = 0.15)
        assert r["windows"]["peak"][0] <= 0.15 * IT[-1] <= r["windows"]["peak"][1]
        assert r["windows"]["rise"][1] <= r["windows"]["peak"][1] < r["windows"]["late"][0]


def test_the_start_near_zero_is_not_a_rise():
    v = curve("flat", noise=0.01)
    assert v[0] == 0.0 and stats.two_stages(IT, v, skip=3)["shape"] == "flat"


def test_noisy_flat_curves_rarely_read_as_two_stages():
    """Picking the maximum of a noisy curve would make a flat one rise and fall; the interleaved halves keep
    'rises, then falls' at its level (5%, much less since both tests must pass)."""
    rng = np.random.default_rng(1)
    hits = sum(stats.two_stages(IT, 0.3 + 0.03 * rng.standard_normal(IT.size))["shape"] == "rises, then falls"
               for _ in range(300))
    assert hits / 300 <= 0.03


def test_two_stages_too_short_and_errors():
    assert stats.two_stages([5.0, 10.0], [0.0, 0.1])["shape"] == "too short"
    with pytest.raises(ValueError, match="window must be an integer >= 2"):
        stats.two_stages(IT, curve("flat"), window=1)
    with pytest.raises(ValueError, match="same length"):
        stats.two_stages(IT[:5], curve("flat"))


# ----------------------------------------------------------------------------- Page's trend test

def test_page_trend_directions_and_constant():
    falling = [[1.0, 0.4, 0.2, 0.03], [0.9, 0.5, 0.1, 0.05], [1.2, 0.3, 0.25, 0.01]]
    r = stats.page_trend(falling)
    assert r["exact"] and r["p_decreasing"] == pytest.approx(1 / 24 ** 3) and r["p_increasing"] == 1.0
    assert r["rho"] == -1.0
    rising = stats.page_trend(np.array(falling)[:, ::-1])
    assert rising["p_increasing"] < 0.001 and rising["p_decreasing"] == 1.0
    const = stats.page_trend([[0.5] * 4] * 3)
    assert const["p_increasing"] == const["p_decreasing"] == 1.0 and const["rho"] == 0.0
    mc = stats.page_trend(np.array(falling * 3), n_perm=2000)   # (4!)^9 orders: Monte Carlo
    assert not mc["exact"] and mc["p_decreasing"] == pytest.approx(1 / 2001)
    with pytest.raises(ValueError, match=r"\[blocks, levels\]"):
        stats.page_trend([1.0, 2.0])


def test_page_trend_exact_matches_monte_carlo():
    v = np.random.default_rng(3).random((3, 4))
    ex, mc = stats.page_trend(v), stats.page_trend(v, exact_max=0, n_perm=20000)
    assert mc["p_decreasing"] == pytest.approx(ex["p_decreasing"], abs=0.015)


# ----------------------------------------------------------------------------- partial rank correlation

def test_partial_spearman_removes_a_confounder():
    rng = np.random.default_rng(0)
    z = rng.standard_normal(1000)
    x, y = z + 0.3 * rng.standard_normal(1000), -z + 0.3 * rng.standard_normal(1000)
    p = stats.partial_spearman(x, y, z, n_boot=200)
    assert p["raw"] < -0.8                                   # driven entirely by z
    assert abs(p["r"]) < 0.1 and p["ci_low"] < 0 < p["ci_high"] and p["fisher_low"] < 0 < p["fisher_high"]


def test_partial_spearman_keeps_a_real_effect():
    rng = np.random.default_rng(1)
    z = rng.standard_normal(1000)
    x = z + rng.standard_normal(1000)
    y = -z - 0.5 * x + 0.5 * rng.standard_normal(1000)
    p = stats.partial_spearman(x, y, z, n_boot=200)
    assert p["ci_high"] < -0.3 and p["fisher_high"] < -0.3 and p["n"] == 1000
    assert p["r"] == pytest.approx(stats.partial_spearman(np.exp(x), y, z ** 3, n_boot=10)["r"])   # ranks only
    with pytest.raises(ValueError, match="same length"):
        stats.partial_spearman(x, y[:10], z)
    assert math.isfinite(p["fisher_low"])
