"""Pairing measures that dimension does not dilute: mode agreement, chance agreement, relative pairing error,
intrinsic Delta_E, their intervals, and the mode functions and intrinsic coordinates of every data family."""
import math

import numpy as np
import pytest
import torch
from scipy import stats

from dmdlib import (GaussianMixture, chance_agreement, chance_agreement_sets, delta_e_interval, delta_e_sets,
                    mode_agreement, mode_agreement_sets, pairing_measures, relative_pairing_error,
                    relative_pairing_error_sets, t_interval, teacher_spread)
from dmdlib.data import MLPManifold, toy
from dmdlib import features

R, N = 10, 400


def ring_sets(dim, seed=0):
    """Teacher outputs of the paper's ring mixture in R^dim on R sets of N, with their components."""
    mix = GaussianMixture.ring(dim)
    x, c = mix.sample(R * N, torch.Generator().manual_seed(seed), return_components=True, dtype=torch.float64)
    return mix, x, c


def permute_within_sets(a, seed):
    rng = np.random.default_rng(seed)
    idx = np.concatenate([i * N + rng.permutation(N) for i in range(R)])
    return a[torch.as_tensor(idx)]


# ----------------------------------------------------------------------------- the measures on constructed students

def test_copy():
    mix, x, _ = ring_sets(8)
    m = mix.component(x)
    assert mode_agreement(m, m) == 1.0
    assert relative_pairing_error(x, x.clone()) == 0.0
    rec = pairing_measures(x, x.clone(), R, m, m.clone(), mix.structured(x), mix.structured(x))
    assert rec["agreement"]["value"] == 1.0 and rec["agreement"]["ci_low"] == 1.0
    assert rec["relative_error"]["value"] == 0.0
    assert rec["delta_e"]["delta_e"] == 0.0 and rec["intrinsic_delta_e"]["delta_e"] == 0.0
    assert set(rec) == {"delta_e", "relative_error", "agreement", "chance", "intrinsic_delta_e"}
    for key in ("relative_error", "agreement", "chance"):
        assert set(rec[key]) == {"value", "ci_low", "ci_high", "sd", "n", "r", "level", "values"}
        assert rec[key]["n"] == N and rec[key]["r"] == R and len(rec[key]["values"]) == R


def test_random_permutation_is_at_chance():
    """A random permutation of the teacher's outputs within each set: agreement at chance, relative error ~1.

    The expected relative error of a uniform permutation is 1 - 1/N (a seed is its own image with probability
    1/N); both statements are checked against the 95% intervals of R = 10 sets (fixed seeds).
    """
    mix, x, _ = ring_sets(8)
    y = permute_within_sets(x, 1)
    m_x, m_y = mix.component(x), mix.component(y)
    agree = mode_agreement_sets(m_x, m_y, R)
    chance = chance_agreement_sets(m_x, m_y, R)
    assert agree["ci_low"] <= chance["value"] <= agree["ci_high"]
    assert abs(chance["value"] - 1 / 32) < 0.005
    rel = relative_pairing_error_sets(x, y, R)
    assert rel["ci_low"] <= 1 - 1 / N <= rel["ci_high"] and rel["ci_high"] - rel["ci_low"] < 0.1


def test_mode_swap_has_zero_agreement():
    """Each sample keeps its offset and moves to the component 90 degrees further round: no seed keeps its mode,
    and Delta_E collapses with the dimension while the agreement stays 0 (issue 21)."""
    out = {}
    for dim in (2, 256):
        mix, x, c = ring_sets(dim)
        y = x - mix.means[c] + mix.means[(c + 8) % 32]
        rec = pairing_measures(x, y, R, mix.component(x), mix.component(y), mix.structured(x), mix.structured(y))
        assert rec["agreement"]["value"] == 0.0
        assert rec["intrinsic_delta_e"]["ci_low"] > 50        # the structured plane sees the swap at every d
        out[dim] = rec
    assert out[2]["delta_e"]["ci_low"] > 50 and out[256]["delta_e"]["delta_e"] < 0.01


def test_chance_agreement_by_hand():
    assert chance_agreement([0, 0, 1, 1], [0, 1, 1, 1]) == pytest.approx(0.5 * 0.25 + 0.5 * 0.75)
    assert chance_agreement([0, 0, 0, 0], [1, 1, 1, 1]) == 0.0
    assert chance_agreement(np.array([3, 7, 7]), np.array([7, 3, 9])) == pytest.approx(1 / 3 * 1 / 3 + 2 / 3 * 1 / 3)
    assert mode_agreement([0, 1, 2, 3], [0, 1, 0, 0]) == 0.5


def test_relative_error_scale_invariance_and_spread():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(50, 7)), rng.normal(size=(50, 7))
    assert relative_pairing_error(3.5 * x, 3.5 * y) == pytest.approx(relative_pairing_error(x, y), rel=1e-12)
    brute = np.mean([((x[i] - x[j]) ** 2).sum() for i in range(50) for j in range(50) if i != j])
    assert teacher_spread(x) == pytest.approx(brute, rel=1e-12)
    # an independent sample of the same distribution: ~1
    big_x, big_y = rng.normal(size=(20_000, 3)), rng.normal(size=(20_000, 3))
    assert relative_pairing_error(big_x, big_y) == pytest.approx(1.0, abs=0.03)


def test_t_interval_is_delta_e_intervals_arithmetic():
    v = [0.3, 0.5, 0.4, 0.9]
    t = t_interval(v, 0.9)
    half = stats.t.ppf(0.95, 3) * np.std(v, ddof=1) / 2
    assert t["value"] == pytest.approx(np.mean(v)) and t["ci_high"] - t["value"] == pytest.approx(half)
    rng = np.random.default_rng(1)
    pairs = [(rng.normal(size=(30, 2)), rng.normal(size=(30, 2))) for _ in range(4)]
    d = delta_e_interval(pairs, 0.9)
    t = t_interval(d["values"], 0.9)
    assert (d["delta_e"], d["ci_low"], d["ci_high"], d["sd"]) == (t["value"], t["ci_low"], t["ci_high"], t["sd"])
    assert t_interval([1.0, math.inf])["ci_high"] == math.inf


@pytest.mark.parametrize("call, match", [
    (lambda: mode_agreement([0, 1], [0, 1, 2]), "same length"),
    (lambda: mode_agreement([0.5, 1.0], [0, 1]), "integer"),
    (lambda: mode_agreement(np.zeros((2, 2), dtype=int), np.zeros((2, 2), dtype=int)), "1-D"),
    (lambda: chance_agreement([], []), "N >= 1"),
    (lambda: relative_pairing_error(np.ones((5, 2)), np.zeros((5, 2))), "identical"),
    (lambda: relative_pairing_error(np.ones((5, 2)), np.zeros((4, 2))), "same shape"),
    (lambda: mode_agreement_sets([0, 1, 0], [0, 1, 0], 2), "split"),
    (lambda: mode_agreement_sets([0, 1], [0, 1], 1), "at least 2"),
    (lambda: relative_pairing_error_sets(np.ones((4, 2)), np.ones((6, 2)), 2), "same number of rows"),
    (lambda: t_interval([1.0, 2.0], level=1.5), "level"),
    (lambda: pairing_measures(np.ones((4, 2)), np.ones((4, 2)), 2, teacher_modes=[0, 1, 0, 1]), "together"),
])
def test_bad_inputs(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# ----------------------------------------------------------------------------- mode functions and coordinates

def replay_chessboard(n, seed):
    g = torch.Generator().manual_seed(seed)
    cell = torch.randint(0, 8, (n,), generator=g)
    row = cell // 2
    return 4 * row + 2 * (cell % 2) + (row % 2)


@pytest.mark.parametrize("embedding", ["pad", "orthogonal"])
def test_chessboard_cell_is_exact(embedding):
    x = toy.chessboard(5000, 16, generator=torch.Generator().manual_seed(3), embedding=embedding, embedding_seed=2)
    cells = toy.chessboard_cell(x, embedding, 2)
    assert torch.equal(cells, replay_chessboard(5000, 3))
    assert torch.equal(toy.toy_modes("chessboard", x, embedding, 2), cells)
    assert ((cells // 4 + cells % 4) % 2 == 0).all()                        # black cells only
    torch.testing.assert_close(toy.toy_plane(x, embedding, 2), toy.unembed(x.double(), embedding, 2)[:, :2])
    assert toy.chessboard_cell(torch.tensor([[5.0, -9.0, 0, 0]])).item() == 3   # off the board: the nearest cell


def test_moon_is_exact_on_clean_data():
    g = torch.Generator().manual_seed(4)
    which = torch.randint(0, 2, (5000,), generator=g)
    x = toy.moons(5000, 4, generator=torch.Generator().manual_seed(4), noise=0.0)
    assert torch.equal(toy.moon(x), which)
    jittered = toy.moons(5000, 4, generator=torch.Generator().manual_seed(4))   # the data's own jitter (std 0.05)
    assert (toy.moon(jittered) == which).float().mean() > 0.999
    # the moons' point symmetry about their centre swaps the two moons
    assert torch.equal(toy.moon(-x), 1 - which)


def test_mixture_component_is_the_most_likely_one():
    x = toy.gaussian_mixture(5000, 8, generator=torch.Generator().manual_seed(5), embedding="orthogonal")
    mix = GaussianMixture.ring(8, embedding="orthogonal")
    assert torch.equal(toy.mixture_component(x, "orthogonal"), mix.component(x))
    g = torch.Generator().manual_seed(5)
    k = torch.randint(0, 32, (5000,), generator=g)
    # overlapping components (means 0.39 apart, std 0.2): the most likely one is the drawn one about 2/3 of the time
    acc = float((mix.component(x) == k).float().mean())
    assert 0.6 < acc < 0.75
    clean = toy.unembed(mix.means.float(), "orthogonal")                   # the means themselves
    assert torch.equal(toy.mixture_component(mix.means, "orthogonal"), torch.arange(32)) and clean.shape == (32, 8)


def test_manifold_class_is_exact_on_clean_samples_and_robust():
    m = MLPManifold(16, 8, 10, seed=0)
    x, labels = m.sample(20_000, torch.Generator().manual_seed(6))
    assert torch.equal(m.classify(x), labels)
    noisy = x + 0.1 * torch.randn(x.shape, generator=torch.Generator().manual_seed(7))
    assert (m.classify(noisy) == labels).float().mean() > 0.999
    noisier = x + 0.2 * torch.randn(x.shape, generator=torch.Generator().manual_seed(8))
    assert (m.classify(noisier) == labels).float().mean() > 0.99
    m32 = MLPManifold(16, 32, 10, seed=1)
    x, labels = m32.sample(5000, torch.Generator().manual_seed(9))
    assert torch.equal(m32.classify(x), labels)
    with pytest.raises(ValueError, match="num_classes"):
        MLPManifold(4, 8, 0).classify(x[:, :, :8, :8])


def test_manifold_project_recovers_the_latent():
    m = MLPManifold(16, 8, 10, seed=0)
    g = torch.Generator().manual_seed(10)
    u0 = torch.randn(300, 16, generator=g)
    labels = torch.randint(0, 10, (300,), generator=g)
    x = m.decode(u0, labels)
    u, dist = m.project(x, labels, bank=5000)
    err = (u - u0).norm(dim=1)
    assert float(err.median()) < 1e-3 and float((err < 0.05).float().mean()) > 0.95
    assert torch.equal(dist, m.distance(x, labels, bank=5000))
    torch.testing.assert_close((m.decode(u, labels) - x).flatten(1).norm(dim=1), dist)


def test_mnist_classify_is_the_argmax():
    torch.manual_seed(0)
    net = features.MnistClassifier().eval()
    x32 = torch.rand(7, 1, 32, 32) * 2 - 1
    with torch.no_grad():
        assert torch.equal(features.classify(net, x32, batch=3), net(x32).argmax(1))
    x16 = x32[:, :, ::2, ::2].contiguous()
    up = x16.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)
    assert torch.equal(features.classify(net, x16), features.classify(net, up))
    with pytest.raises(ValueError, match="images"):
        features.classify(net, torch.zeros(3, 32, 32))


def test_intrinsic_delta_e_of_a_copy_is_zero():
    x = toy.chessboard(2 * N, 64, generator=torch.Generator().manual_seed(11), embedding="orthogonal")
    y = x + 1e-3 * torch.randn(x.shape, generator=torch.Generator().manual_seed(12))
    d = delta_e_sets(toy.toy_plane(x, "orthogonal"), toy.toy_plane(x.clone(), "orthogonal"), 2)
    assert d["delta_e"] == 0.0
    assert delta_e_sets(toy.toy_plane(x, "orthogonal"), toy.toy_plane(y, "orthogonal"), 2)["delta_e"] < 0.05
