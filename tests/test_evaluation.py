"""The evaluation protocol: seed streams, reference levels and the convergence verdict."""
import math

import numpy as np
import pytest
import torch

from dmdlib import evaluation as ev
from dmdlib import pairing
from dmdlib.metrics import delta_e_sets, pairing_inefficiency
from dmdlib.presets import ConvergenceGates
from dmdlib.runs import derived_seed


def test_derived_seeds_are_deterministic_distinct_and_validated():
    assert derived_seed(0, "eval") == derived_seed(0, "eval")
    seeds = {derived_seed(s, k) for s in range(5) for k in ("eval", "data", "reference")}
    assert len(seeds) == 15 and all(0 <= x < 2 ** 63 for x in seeds)
    for bad in (-1, 1.0, True):
        with pytest.raises(ValueError, match="seed"):
            derived_seed(bad, "eval")
    with pytest.raises(ValueError, match="stream"):
        derived_seed(0, "")


def test_eval_seed_sets_are_disjoint_and_start_with_eval_noise():
    z = pairing.eval_seed_sets(3, 50, (4,), seed=2)
    assert z.shape == (150, 4)
    assert torch.equal(z[:50], pairing.eval_noise(50, (4,), 2))
    assert len({tuple(r.tolist()) for r in z}) == 150
    assert not torch.equal(z, pairing.eval_seed_sets(3, 50, (4,), seed=3))
    assert not torch.equal(z[:50], pairing.stream_noise(50, (4,), 2, "reference"))


def test_fit_numbers_scales_by_floor_or_sampler_gap():
    rng = np.random.default_rng(0)
    t1, t2 = rng.standard_normal((300, 2)), rng.standard_normal((300, 2))
    floor = ev.w2_squared(t2, t1)
    start = 0.1 * rng.standard_normal((300, 2))            # a collapsed start, far in W2
    good = rng.standard_normal((300, 2))
    f = ev.fit_numbers(ev.w2_squared, good, t1, floor, start=start)
    assert set(f) == {"d_student", "d_floor", "d_sampler", "fit_ratio", "d_start"}
    assert f["d_start"] > 5 * f["d_floor"] and f["d_sampler"] == 0.0
    assert 0.5 < f["fit_ratio"] < 2.0                       # an independent sample: about the floor
    assert f["fit_ratio"] == pytest.approx(f["d_student"] / floor)
    # a coarse sampler (a shrunken copy of the teacher) sets the scale when it is farther than the floor
    coarse = 0.7 * rng.standard_normal((300, 2))
    g = ev.fit_numbers(ev.w2_squared, start, t1, floor, sampler=coarse)
    assert g["d_sampler"] > floor
    assert g["fit_ratio"] == pytest.approx(g["d_student"] / g["d_sampler"])
    assert ev.fit_numbers(ev.w2_squared, good, t1, 0.0)["fit_ratio"] == math.inf   # no scale at all


def test_travel():
    rng = np.random.default_rng(1)
    phi_1, phi_8 = rng.standard_normal((50, 3)), rng.standard_normal((50, 3))
    assert ev.travel(phi_8, phi_1, phi_8) == pytest.approx(1.0)
    assert ev.travel(phi_1, phi_1, phi_8) == 0.0
    assert ev.travel(phi_1 + 0.5 * (phi_8 - phi_1), phi_1, phi_8) == pytest.approx(0.5)


def _evals(values):
    return [{"iteration": 100 * i, "delta_e": v} for i, v in enumerate(values)]


def test_plateau_detects_a_trend_not_fluctuations():
    gates = ConvergenceGates(fit_max=2.0, travel_min=0.5, plateau_window=3, plateau_rel_tol=0.25, plateau_random_frac=0.0005)
    random_level = 20.0   # the record's random-pairing Delta_E: near 0 the tolerance is 0.0005 x 20 = 0.01
    rng = np.random.default_rng(0)
    steady = ev.plateau(_evals(list(10 + rng.normal(0, 3, 12))), 3)       # noisy but level
    drift = ev.plateau(_evals(list(np.linspace(2, 20, 12))), 3)            # a clean linear drift
    assert steady["change"] <= 0.25 * steady["level"] + 0.01
    assert drift["drift"] == pytest.approx(18 * 5 / 11) and drift["change"] == pytest.approx(drift["drift"])
    assert drift["level"] == pytest.approx(np.mean(np.linspace(2, 20, 12)[-6:]))
    assert (drift["recent"], drift["previous"]) == (pytest.approx(np.mean(np.linspace(2, 20, 12)[-3:])),
                                                    pytest.approx(np.mean(np.linspace(2, 20, 12)[-6:-3])))
    short = ev.plateau(_evals([1.0, 1.0, 1.0]), 2)
    assert short["change"] == math.inf and short["n_evals"] == 3
    assert ev.plateau(list(reversed(_evals([0.0, 1.0, 2.0, 3.0]))), 2)["drift"] == pytest.approx(3.0)
    fit_ok = {"fit_ratio": 0.8}
    v = ev.verdict(gates, fit_ok, 0.9, steady, random_level)
    assert v["converged"] and v["failed"] == []
    assert ev.verdict(gates, fit_ok, 0.9, drift, random_level)["failed"] == ["plateau"]
    bad = ev.verdict(gates, {"fit_ratio": 2.1}, 0.2, short, random_level)
    assert not bad["converged"] and bad["failed"] == ["fit", "travel", "plateau"]
    assert ev.verdict_text(ev.student_record(
        {"delta_e": 1, "ci_low": 0, "ci_high": 2, "sd": 1, "n": 3, "r": 2, "level": 0.95, "e_dt": 1, "e_ot": 1},
        bad)) == "not converged (fit, travel, plateau)"
    # near zero the random-level tolerance decides: a copying student creeping from 0 to 0.004 has stopped changing
    # against a random level of 20 (tolerance 0.01) ...
    creep = ev.plateau(_evals([0, 0.001, 0.0, 0.004, 0.002, 0.003]), 3)
    assert ev.verdict(gates, fit_ok, 0.9, creep, random_level)["converged"]
    # ... but on data whose random level is 0.5 (tolerance 0.00025) a steady rise of 0.01 is a drift, not a plateau
    rise = ev.plateau(_evals(list(np.linspace(0.0, 0.01, 6))), 3)
    assert ev.verdict(gates, fit_ok, 0.9, rise, 0.5)["failed"] == ["plateau"]
    assert ev.verdict(gates, fit_ok, 0.9, rise, random_level)["converged"]
    with pytest.raises(ValueError, match="random_level"):
        ev.verdict(gates, fit_ok, 0.9, steady, float("nan"))
    with pytest.raises(ValueError, match="window"):
        ev.plateau([], 1)


def test_reference_levels():
    rng = np.random.default_rng(4)
    phi_8 = rng.standard_normal((400, 8))
    g = phi_8 + 0.2 * rng.standard_normal((400, 8))
    phi_1 = 0.3 * phi_8 + 0.1 * rng.standard_normal((400, 8))
    other = phi_8 + 0.5 * rng.standard_normal((400, 8))
    refs = ev.reference_levels(phi_8, phi_1, g, r=4, phi_k_other=other)
    assert set(refs) == {"start", "random", "reproducibility"}
    assert refs["start"]["delta_e"] == pytest.approx(delta_e_sets(phi_8, phi_1, 4)["delta_e"])
    assert refs["reproducibility"]["delta_e"] == pytest.approx(delta_e_sets(phi_8, other, 4)["delta_e"])
    assert refs["random"]["delta_e"] > 20 * delta_e_sets(phi_8, g, 4)["delta_e"]
    assert all({"delta_e", "ci_low", "ci_high", "n", "r"} <= set(v) for v in refs.values())
    assert refs["random"]["n"] == 100 and refs["random"]["r"] == 4
    assert "reproducibility" not in ev.reference_levels(phi_8, phi_1, g, r=4)
    # the random pairing permutes within each set: set i is still set i's points
    assert pairing_inefficiency(phi_8[:100], g[:100]) < refs["random"]["delta_e"]


# ----------------------------------------------------------------------------- the reading: Delta_E with an undiluted measure

def _iv(v, half=0.01):
    return {"value": v, "ci_low": v - half, "ci_high": v + half}


def _de(v, half=0.01):
    return {"delta_e": v, "ci_low": v - half, "ci_high": v + half}


def test_agreement_regime_produces_every_word():
    chance, second = _iv(0.1), _iv(0.9)
    # the line lies 5% of the way from the ceiling (the second teacher, 0.9) down to chance (0.1): 0.86
    assert ev.agreement_regime({"student": _iv(0.95), "chance": chance, "second": second}) == "copies"
    assert ev.agreement_regime({"student": _iv(0.5), "chance": chance, "second": second}) == "remaps"
    assert ev.agreement_regime({"student": _iv(0.86, 0.02), "chance": chance, "second": second}) == "unresolved"
    # no second teacher (or one at chance): the ceiling is a perfect copy
    assert ev.agreement_regime({"student": _iv(0.93), "chance": chance}) == "remaps"
    assert ev.agreement_regime({"student": _iv(0.99, 0.0), "chance": chance, "second": _iv(0.1)}) == "copies"
    # a constant (chance = 1): nothing to judge
    assert ev.agreement_regime({"student": _iv(1.0, 0.0), "chance": _iv(1.0, 0.0)}) == "unresolved"


def test_reading_produces_every_word_and_no_student_is_both():
    refs = {"random": _de(10.0)}
    agree = lambda v: {"agreement": {"student": _iv(v), "chance": _iv(0.1), "second": _iv(0.9)}}  # noqa: E731
    assert ev.reading(_de(0.01), refs, agree(0.95))["reading"] == "copies"
    assert ev.reading(_de(5.0), refs, agree(0.3))["reading"] == "remaps"
    r = ev.reading(_de(0.01), refs, agree(0.3))          # Delta_E ~0 in high dimension, modes moved
    assert r == {"reading": "measures disagree", "delta_e": "copies", "undiluted": "remaps", "measure": "agreement"}
    assert ev.reading(_de(0.5, 0.2), refs, agree(0.95))["reading"] == "unresolved"     # Delta_E straddles its line
    assert ev.reading(_de(0.01), refs, None)["reading"] == "unresolved"                # nothing undiluted known
    intr = {"intrinsic_delta_e": {"student": _de(3.0), "random": _de(20.0)}}            # no modes: intrinsic Delta_E
    assert ev.reading(_de(0.01), refs, intr) == {"reading": "measures disagree", "delta_e": "copies",
                                                 "undiluted": "remaps", "measure": "intrinsic_delta_e"}
    for v, a in ((0.01, 0.95), (5.0, 0.3), (0.01, 0.3), (5.0, 0.95), (0.5, 0.86)):
        words = ev.reading(_de(v), refs, agree(a))
        assert words["reading"] in ev.READINGS
        assert not (words["delta_e"] == "copies" and words["undiluted"] == "copies" and words["reading"] == "remaps")
