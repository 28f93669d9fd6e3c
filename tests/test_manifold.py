"""The synthetic MLP-manifold image data set (paper appendix A): shapes, determinism, dimension, classes."""
import time

import pytest
import torch
from torch.autograd.functional import jacobian

from dmdlib.data import MLPManifold
from dmdlib.data import manifold as mf


def g(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def m16():
    return MLPManifold(latent_dim=16, resolution=16, num_classes=10, seed=0)


@pytest.mark.parametrize("k,r,c", [(16, 32, 10), (2, 16, 0), (1, 8, 3), (8, 4, 4), (16, 16, 16)])
def test_shapes(k, r, c):
    m = MLPManifold(latent_dim=k, resolution=r, num_classes=c, seed=1, hidden=64 if r < 32 else 256)
    x, y = m.sample(7, generator=g())
    assert x.shape == (7, 1, r, r) and x.dtype == torch.float32 and bool(torch.isfinite(x).all())
    assert m.image_shape == (1, r, r)
    if c == 0:
        assert y is None
    else:
        assert y.shape == (7,) and y.dtype == torch.long and bool(((y >= 0) & (y < c)).all())
        oh = m.one_hot(y)
        assert oh.shape == (7, c) and oh.dtype == torch.float32 and torch.equal(oh.argmax(1), y)
        assert torch.equal(oh.sum(1), torch.ones(7))
    u = torch.randn(3, k, generator=g(1))
    assert m.decode(u, y[:3] if c else None).shape == (3, 1, r, r)


def test_sample_is_decode_of_the_generator_draws(m16):
    """sample draws u ~ N(0, I) first, then the labels, from the given generator only."""
    x, y = m16.sample(64, generator=g(3))
    gen = g(3)
    u = torch.randn(64, 16, generator=gen)
    labels = torch.randint(0, 10, (64,), generator=gen)
    assert torch.equal(y, labels)
    assert torch.equal(x, m16.decode(u, labels))


def test_determinism_and_seed(m16):
    a = m16.sample(100, generator=g(5))
    b = m16.sample(100, generator=g(5))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    c = m16.sample(100, generator=g(6))
    assert not torch.equal(a[0], c[0])
    # the same seed rebuilds the same map; the global RNG is neither used nor advanced
    state = torch.get_rng_state()
    torch.manual_seed(1234)
    again = MLPManifold(16, 16, 10, seed=0)
    torch.manual_seed(999)
    assert torch.equal(again.sample(100, generator=g(5))[0], a[0])
    torch.set_rng_state(state)
    before = torch.get_rng_state()
    MLPManifold(4, 8, 2, seed=3)
    assert torch.equal(torch.get_rng_state(), before)
    # another seed is another map (same latents and labels, different images) and other stripe places
    other = MLPManifold(16, 16, 10, seed=1)
    u = torch.randn(20, 16, generator=g(7))
    labels = torch.arange(20) % 10
    assert (other.decode(u, labels) - m16.decode(u, labels)).abs().mean() > 0.2
    assert other.stripe_slots != m16.stripe_slots
    assert other.data_id != m16.data_id


def test_data_id_names_the_recipe(m16):
    assert m16.data_id == "mlp-manifold:k=16:r=16:c=10:h=256:seed=0:v1"
    assert MLPManifold(2, 8, 0, seed=4, hidden=32).data_id == "mlp-manifold:k=2:r=8:c=0:h=32:seed=4:v1"
    assert "mlp-manifold:k=16" in repr(m16)


@pytest.mark.parametrize("k", [1, 2, 8, 16])
def test_jacobian_rank_is_the_latent_dimension(k):
    """decode is an immersion: at random u the Jacobian [r*r, k] has full rank k (float64)."""
    m = MLPManifold(latent_dim=k, resolution=16, num_classes=10, seed=2).to(dtype=torch.float64)
    gen = g(k)
    for _ in range(3):
        u = torch.randn(k, generator=gen, dtype=torch.float64)
        label = torch.randint(0, 10, (1,), generator=gen)
        j = jacobian(lambda v: m.decode(v[None], label).flatten(), u)
        assert j.shape == (256, k)
        s = torch.linalg.svdvals(j)
        assert int((s > 1e-6 * s[0]).sum()) == k
        assert float(s[-1] / s[0]) > 1e-3  # and well conditioned, not barely so


def test_jacobian_rank_check_detects_a_lower_dimension():
    """The rank test can fail: tying two latent directions gives rank k - 1."""
    m = MLPManifold(latent_dim=4, resolution=16, num_classes=0, seed=0).to(dtype=torch.float64)
    m.w1[:, 1] = m.w1[:, 0]
    u = torch.randn(4, generator=g(), dtype=torch.float64)
    s = torch.linalg.svdvals(jacobian(lambda v: m.decode(v[None]).flatten(), u))
    assert int((s > 1e-6 * s[0]).sum()) == 3


def test_normalisation_mean_and_std():
    m = MLPManifold(16, 16, 0, seed=0)
    assert m.mean == pytest.approx(0.0, abs=1e-9) and m.std == pytest.approx(0.5, abs=1e-9)
    x, _ = m.sample(4000, generator=g(8))
    assert float(x.mean()) == pytest.approx(0.0, abs=0.02)
    assert float(x.std()) == pytest.approx(0.5, abs=0.01)
    per_pixel = x.flatten(1).std(0)
    assert float(per_pixel.min()) > 0.45 and float(per_pixel.max()) < 0.55  # every pixel has std 0.5
    assert float(((x >= -1) & (x <= 1)).float().mean()) > 0.9  # roughly in [-1, 1]
    # images are smooth: neighbouring pixels are strongly correlated
    a, b = x[:, 0, :, :-1].flatten(), x[:, 0, :, 1:].flatten()
    assert float(torch.corrcoef(torch.stack([a, b]))[0, 1]) > 0.5
    # with stripes the data set is slightly brighter; mean and std say by how much
    mc = MLPManifold(16, 16, 10, seed=0)
    xc, _ = mc.sample(4000, generator=g(8))
    assert 0.05 < mc.mean < 0.15 and 0.5 < mc.std < 0.6
    assert float(xc.mean()) == pytest.approx(mc.mean, abs=0.02)
    assert float(xc.std()) == pytest.approx(mc.std, abs=0.01)


def test_stripes_are_distinct_white_bands(m16):
    r, w = 16, m16.stripe_width
    assert w == 2 and len(m16.stripe_slots) == 10 and len(set(m16.stripe_slots)) == 10
    masks = (m16.stripes > 0).reshape(10, r, r)
    for c in range(10):
        assert int(masks[c].sum()) == w * r
    for c in range(10):
        for d in range(c + 1, 10):
            assert int((masks[c] & masks[d]).sum()) <= w * w  # at most a crossing square
    # both orientations are used (random slots drawn from rows and columns)
    assert {o for o, _ in m16.stripe_slots} == {"horizontal", "vertical"}
    # inside its stripe a labelled image is whitened: mean 0.8 and std 0.1 (still moving with u)
    x, y = m16.sample(2000, generator=g(9))
    inside = x.flatten(1)[masks.flatten(1)[y]]
    assert float(inside.mean()) == pytest.approx(0.8, abs=0.02)
    assert float(inside.std()) == pytest.approx(0.1, abs=0.01)


def test_classes_are_recoverable():
    """A nearest-template classifier (white on each class's stripe, stripes estimated from data) gets > 99%."""
    for r in (16, 32):
        m = MLPManifold(16, r, 10, seed=1)
        x, y = m.sample(500, generator=g(10))
        flat = x.flatten(1)
        masks = torch.stack([(flat[y == c].mean(0) - flat.mean(0)) > 0.4 for c in range(10)]).float()
        assert bool((masks.sum(1) > 0).all())
        assert len({tuple(mk.tolist()) for mk in masks}) == 10  # class stripes differ in location
        x2, y2 = m.sample(500, generator=g(11))
        dist = ((1 - x2.flatten(1)) ** 2) @ masks.T / masks.sum(1)
        assert float((dist.argmin(1) == y2).float().mean()) > 0.99
        # without the stripes (unconditional images) the same classifier is at chance
        bare = MLPManifold(16, r, 0, seed=1).sample(500, generator=g(11))[0]
        dist0 = ((1 - bare.flatten(1)) ** 2) @ masks.T / masks.sum(1)
        assert float((dist0.argmin(1) == y2).float().mean()) < 0.3


def test_unconditional_has_no_labels():
    m = MLPManifold(4, 8, 0)
    x, y = m.sample(5, generator=g())
    assert y is None and x.shape == (5, 1, 8, 8)
    with pytest.raises(ValueError, match="labels must be None"):
        m.decode(torch.zeros(2, 4), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="num_classes > 0"):
        m.one_hot(torch.zeros(2, dtype=torch.long))


def test_to_dtype_and_device(m16):
    u = torch.randn(5, 16, generator=g())
    y = torch.arange(5)
    x32 = m16.decode(u, y)
    m64 = MLPManifold(16, 16, 10, seed=0).to(dtype=torch.float64)
    assert m64.dtype == torch.float64 and m64.device == torch.device("cpu")
    x64 = m64.decode(u.double(), y)
    assert x64.dtype == torch.float64 and torch.allclose(x64.float(), x32, atol=1e-5)
    assert m64.sample(3, generator=g(), device="cpu")[0].dtype == torch.float64
    if torch.cuda.is_available():
        mc = MLPManifold(16, 16, 10, seed=0).to("cuda")
        xc, yc = mc.sample(4, generator=torch.Generator("cuda").manual_seed(0), device="cuda")
        assert xc.is_cuda and yc.is_cuda
        assert torch.allclose(mc.decode(u.cuda(), y.cuda()).cpu(), x32, atol=1e-5)


def test_sampling_is_fast(m16):
    """It runs inside training loops: 256 images at r = 16 in well under 10 ms on one CPU thread (~1 ms measured)."""
    gen = g()
    m16.sample(256, generator=gen)
    times = []
    for _ in range(20):
        t = time.perf_counter()
        m16.sample(256, generator=gen)
        times.append(time.perf_counter() - t)
    assert sorted(times)[10] < 0.01


def test_validation_errors(m16):
    bad = [(dict(latent_dim=0), "latent_dim"), (dict(latent_dim=2.0), "latent_dim"),
           (dict(latent_dim=True), "latent_dim"), (dict(latent_dim=33, hidden=32), "latent_dim .*min\\(hidden"),
           (dict(latent_dim=17, resolution=4), "latent_dim"),
           (dict(resolution=3), "resolution must be an integer >= 4"), (dict(resolution=16.0), "resolution"),
           (dict(num_classes=-1), "num_classes"), (dict(num_classes=17), "num_classes .*<= 16"),
           (dict(num_classes=9, resolution=4), "num_classes .*<= 8"),
           (dict(seed=-1), "seed"), (dict(seed="0"), "seed"), (dict(hidden=0), "hidden")]
    for kw, msg in bad:
        with pytest.raises(ValueError, match=msg):
            MLPManifold(**{"latent_dim": 2, "resolution": 8, **kw})
    u = torch.zeros(3, 16)
    with pytest.raises(ValueError, match=r"u must be a tensor of shape \[n, 16\]"):
        m16.decode(torch.zeros(3, 15), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="u must be torch.float32"):
        m16.decode(u.double(), torch.zeros(3, dtype=torch.long))
    for labels in (None, torch.zeros(3), torch.zeros(2, dtype=torch.long), [0, 1, 2]):
        with pytest.raises(ValueError, match="labels must be a LongTensor"):
            m16.decode(u, labels)
    for labels in (torch.tensor([0, 1, 10]), torch.tensor([-1, 0, 0])):
        with pytest.raises(ValueError, match=r"values in 0\.\.9"):
            m16.decode(u, labels)
        with pytest.raises(ValueError, match=r"values in 0\.\.9"):
            m16.one_hot(labels)
    for n in (0, 2.0, True):
        with pytest.raises(ValueError, match="n must be"):
            m16.sample(n)
    with pytest.raises(ValueError, match="device must be the manifold's device"):
        m16.sample(2, device="meta")
    with pytest.raises(ValueError, match="dtype must be a floating"):
        MLPManifold(2, 8, 0).to(dtype=torch.long)


def test_recipe_constants_are_the_documented_ones():
    doc = mf.__doc__
    assert mf.STRIPE_BLEND == 0.8 and "x + 0.8 (1 - x)" in doc
    assert mf.GAIN == 1.5 and "GAIN = 1.5" in doc and mf.BIAS_STD == 0.5 and "BIAS_STD = 0.5" in doc
    assert mf.BLUR_PER_RES == 1 / 16 and "r / 16" in doc
    assert mf.CALIBRATION_N == 10_000 and "10,000 latents" in doc


# ----------------------------------------------------------------------------- distance from the manifold

def test_distance_is_zero_on_the_manifold_and_bounded_by_a_perturbation():
    m = MLPManifold(latent_dim=2, resolution=8, num_classes=0, seed=0, hidden=64)
    x, _ = m.sample(40, generator=g(11))
    on = m.distance(x, bank=5000, steps=300)
    assert on.shape == (40,) and float(on.max()) < 0.05 * float(x.flatten(1).norm(dim=1).mean())
    eps = 0.3 * torch.randn(x.shape, generator=g(12))
    off = m.distance(x + eps, bank=5000, steps=300)
    # the nearest point is at most as far as the point the perturbation started from (up to the local search)
    assert bool((off <= eps.flatten(1).norm(dim=1) + 1e-3).all())
    # and most of an isotropic perturbation in 64 dimensions is normal to a 2-dimensional manifold
    assert float(off.mean()) > 0.8 * float(eps.flatten(1).norm(dim=1).mean())


def test_distance_uses_each_images_class():
    m = MLPManifold(latent_dim=2, resolution=8, num_classes=3, seed=0, hidden=64)
    x, y = m.sample(30, generator=g(13))
    assert float(m.distance(x, y, bank=5000, steps=300).max()) < 0.2
    wrong = (y + 1) % 3   # the stripe of another class is far from these images
    assert float(m.distance(x, wrong, bank=5000, steps=300).min()) > 1.0


def test_distance_errors():
    m = MLPManifold(latent_dim=2, resolution=8, num_classes=0, seed=0, hidden=64)
    with pytest.raises(ValueError, match="x must be a tensor of shape"):
        m.distance(torch.zeros(3, 64))
    with pytest.raises(ValueError, match="bank must be an integer"):
        m.distance(torch.zeros(3, 1, 8, 8), bank=0)
    with pytest.raises(ValueError, match="labels must be None"):
        m.distance(torch.zeros(3, 1, 8, 8), torch.zeros(3, dtype=torch.long))
