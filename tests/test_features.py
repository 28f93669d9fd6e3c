"""The Frechet distance in MNIST-classifier features: closed forms, the cached classifier and its checks."""
import json

import numpy as np
import pytest
import torch

from dmdlib import features


def test_frechet_distance_closed_forms():
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    c = np.diag([1.0, 2.0, 3.0])
    assert features.frechet_distance((mu1, c), (mu1, c)) == pytest.approx(0.0, abs=1e-9)
    assert features.frechet_distance((mu1, c), (mu2, c)) == pytest.approx(5.0)
    c2 = np.diag([4.0, 2.0, 0.25])
    expect = ((np.sqrt(np.diag(c)) - np.sqrt(np.diag(c2))) ** 2).sum()
    assert features.frechet_distance((mu1, c), (mu1, c2)) == pytest.approx(expect)
    with pytest.raises(ValueError, match="dimensions"):
        features.frechet_distance((mu1, c), (mu1[:2], c[:2, :2]))


def test_frechet_distance_of_samples():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((4000, 5)), rng.standard_normal((4000, 5))
    shifted = b + np.array([1.0, 0, 0, 0, 0])
    assert features.frechet_distance(a, b) < 0.05
    assert features.frechet_distance(a, shifted) == pytest.approx(1.0, abs=0.1)
    with pytest.raises(ValueError, match="N >= 2"):
        features.gaussian_stats(np.zeros((1, 3)))


def test_classifier_cache_is_verified_and_rebuilt(tmp_path, monkeypatch):
    calls = []

    def fake_train(data_dir=None, device="cpu", progress_bar=False):
        calls.append(1)
        torch.manual_seed(len(calls))
        return features.MnistClassifier().eval(), 0.99

    monkeypatch.setattr(features, "train_mnist_classifier", fake_train)
    net, info = features.mnist_classifier(data_dir=tmp_path)
    weights, record = features._paths(tmp_path)
    assert calls == [1] and info["test_accuracy"] == 0.99 and info["sha256"] == features.file_sha256(weights)
    net2, _ = features.mnist_classifier(data_dir=tmp_path)          # cached: no training
    assert calls == [1] and all(torch.equal(a, b) for a, b in zip(net.state_dict().values(),
                                                                  net2.state_dict().values()))
    weights.write_bytes(weights.read_bytes()[:-7] + b"garbage")     # damaged: retrained, with a warning
    with pytest.warns(UserWarning, match="checksum"):
        features.mnist_classifier(data_dir=tmp_path)
    assert calls == [1, 1]
    rec = json.loads(record.read_text())
    rec["recipe"]["epochs"] = 99                                     # another recipe: retrained
    record.write_text(json.dumps(rec))
    with pytest.warns(UserWarning):
        features.mnist_classifier(data_dir=tmp_path)
    assert len(calls) == 3


def test_classifier_below_accuracy_floor_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(features, "train_mnist_classifier",
                        lambda data_dir=None, device="cpu", progress_bar=False: (features.MnistClassifier(), 0.9))
    with pytest.raises(RuntimeError, match="accuracy 0.9000 < 0.98"):
        features.mnist_classifier(data_dir=tmp_path)
    assert not features._paths(tmp_path)[0].exists()


def test_the_real_classifier_reaches_98_percent():
    """The shared cache (trained on first use, about a minute): >= 98% on the 10,000 test digits."""
    from dmdlib.data.mnist import mnist_tensor

    net, info = features.mnist_classifier()
    assert info["test_accuracy"] >= features.MIN_TEST_ACCURACY
    x, y = mnist_tensor("cpu")
    assert features.classifier_accuracy(net, x[60_000:], y[60_000:]) == pytest.approx(info["test_accuracy"])
    f = features.classifier_features(net, x[:10])
    assert f.shape == (10, features.FEATURE_DIM) and f.dtype == np.float64


def test_low_resolution_digits_share_the_feature_space():
    """16x16 digits (2x2 block averages) are compared in the 32x32 classifier's features after pixel repetition."""
    from dmdlib import specs

    torch.manual_seed(0)
    net = features.MnistClassifier().eval()
    x32 = torch.rand(6, 1, 32, 32) * 2 - 1
    x16 = specs.at_resolution(x32, 16)
    assert x16.shape == (6, 1, 16, 16)
    assert x16[0, 0, 0, 0] == pytest.approx(x32[0, 0, :2, :2].mean().item())
    assert specs.at_resolution(x32, 32) is x32
    up = x16.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)
    np.testing.assert_allclose(features.classifier_features(net, x16), features.classifier_features(net, up))
    with pytest.raises(ValueError, match="divide"):
        specs.at_resolution(x32, 12)


def test_frechet_distance_matches_the_matrix_square_root_and_handles_singular_covariances():
    from scipy import linalg

    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((500, 6)), rng.standard_normal((500, 6)) @ rng.standard_normal((6, 6))
    (ma, ca), (mb, cb) = features.gaussian_stats(a), features.gaussian_stats(b)
    ref = ((ma - mb) ** 2).sum() + np.trace(ca) + np.trace(cb) - 2 * np.trace(np.real(linalg.sqrtm(ca @ cb)))
    assert features.frechet_distance(a, b) == pytest.approx(ref, rel=1e-8)
    dead = np.concatenate([a, np.zeros((500, 3))], axis=1)            # three features that never fire
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert features.frechet_distance(dead, dead) == pytest.approx(0.0, abs=1e-9)
