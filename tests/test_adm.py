"""The ADM U-Net (Dhariwal & Nichol 2021) in EDM's parameterisation (Karras et al. 2022, DhariwalUNet).

tests/fixtures/adm_edm_reference.pt holds weights, inputs and outputs produced
by EDM's own code (NVlabs/edm ``training/networks.py``): a small
DhariwalUNet and a 3-head attention UNetBlock, with randomised weights.
"""
import os

import pytest
import torch

from dmdlib.nets import ADMUNet, load_edm_state_dict
from dmdlib.nets.adm import UNetBlock, _Float32AttentionWeights
from dmdlib.precond import EDMPrecond

FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "adm_edm_reference.pt")

MNIST = dict(img_resolution=32, in_channels=1, out_channels=1, label_dim=0, model_channels=64,
             channel_mult=[1, 2, 3, 4], num_blocks=3, attn_resolutions=[32, 16, 8], channel_mult_emb=4, dropout=0)
IMAGENET64 = dict(img_resolution=64, in_channels=3, out_channels=3, label_dim=1000, model_channels=192,
                  channel_mult=[1, 2, 3, 4], num_blocks=3, attn_resolutions=[32, 16, 8])
TINY = dict(img_resolution=8, in_channels=2, out_channels=3, model_channels=64, channel_mult=[1, 1],
            channel_mult_emb=1, num_blocks=1, attn_resolutions=[4], dropout=0)


def n_params(module):
    return sum(p.numel() for p in module.parameters())


@pytest.fixture(scope="module")
def ref():
    return torch.load(FIXTURE, weights_only=True)


@pytest.fixture(scope="module")
def small(ref):
    net = ADMUNet(**ref["net_kwargs"]).eval()
    net.load_state_dict(ref["net_state_dict"], strict=True)
    return net


# ---------------------------------------------------------------- architecture

@pytest.mark.parametrize("kwargs, expected", [
    (MNIST, 31_118_593),                          # the paper's MNIST teacher
    ({**MNIST, "label_dim": 10}, 31_121_153),     # class-conditional MNIST
    (IMAGENET64, 295_899_267),                    # EDM's ImageNet-64 ADM (count from EDM's DhariwalUNet)
])
def test_parameter_counts(kwargs, expected):
    with torch.device("meta"):
        net = ADMUNet(**kwargs)
    assert n_params(net) == expected


def test_mnist_layout_and_names():
    with torch.device("meta"):
        net = ADMUNet(**MNIST)
    keys = net.state_dict().keys()
    for k in ["map_layer0.weight", "map_layer1.bias", "enc.32x32_conv.weight", "enc.32x32_block0.qkv.weight",
              "enc.16x16_down.conv0.resample_filter", "enc.16x16_down.skip.resample_filter",
              "enc.16x16_block0.skip.weight", "dec.4x4_in0.proj.weight", "dec.4x4_in1.affine.weight",
              "dec.8x8_up.conv0.resample_filter", "dec.32x32_block3.norm2.bias", "out_norm.weight", "out_conv.bias"]:
        assert k in keys, k
    assert not any(k.startswith(("map_label", "map_augment")) for k in keys)
    assert "enc.16x16_down.skip.weight" not in keys           # same width: re-sampling only
    assert list(net.enc) == [f"{r}x{r}_{s}" for r in (32, 16, 8, 4)
                             for s in (["conv"] if r == 32 else ["down"]) + [f"block{i}" for i in range(3)]]
    assert list(net.dec)[:3] == ["4x4_in0", "4x4_in1", "4x4_block0"] and list(net.dec)[-1] == "32x32_block3"
    heads = {k: b.num_heads for k, b in net.enc.items() if k.endswith("block0")}
    assert heads == {"32x32_block0": 1, "16x16_block0": 2, "8x8_block0": 3, "4x4_block0": 0}
    assert net.dec["4x4_in0"].num_heads == 4 and net.dec["4x4_in1"].num_heads == 0


def test_init_is_edm_and_reproducible():
    torch.manual_seed(0)
    a = ADMUNet(**TINY, label_dim=5, augment_dim=2)
    torch.manual_seed(0)
    b = ADMUNet(**TINY, label_dim=5, augment_dim=2)
    sa, sb = a.state_dict(), b.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    for k, v in sa.items():
        zero = k.split(".")[-2] in ("conv1", "proj") or k.startswith(("out_conv", "map_augment"))
        if zero:
            assert not v.any(), k
    bound = 1 / a.map_layer0.in_features ** 0.5                       # uniform(+-1/sqrt(fan_in))
    assert a.map_layer0.weight.abs().max() <= bound and a.map_layer0.weight.abs().max() > 0.9 * bound
    assert a.map_layer0.bias.abs().max() <= bound
    assert torch.equal(a.out_norm.weight, torch.ones(64)) and not a.out_norm.bias.any()
    x = torch.randn(2, 2, 8, 8)
    assert not a(x, torch.zeros(2), torch.eye(5)[:2]).any()         # zero output layer: F = 0 at init


# ---------------------------------------------------------------- forward / backward

@pytest.mark.parametrize("label_dim", [0, 4])
def test_shapes_forward_backward(label_dim):
    torch.manual_seed(1)
    net = ADMUNet(**TINY, label_dim=label_dim)
    with torch.no_grad():                                              # leave the all-zero init
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    x = torch.randn(3, 2, 8, 8, requires_grad=True)
    labels = torch.eye(4)[[0, 3, 1]] if label_dim else None
    y = net(x, torch.randn(3), labels)
    assert y.shape == (3, 3, 8, 8) and y.dtype == torch.float32
    y.square().mean().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())


@pytest.mark.parametrize("res, mult", [(16, [1, 2]), (32, [1, 2, 2])])
def test_output_shapes(res, mult):
    net = ADMUNet(res, 3, 6, label_dim=2, model_channels=16, channel_mult=mult, num_blocks=1,
                  attn_resolutions=[res // 2], dropout=0)
    with torch.no_grad():
        assert net(torch.randn(2, 3, res, res), torch.zeros(2), torch.eye(2)).shape == (2, 6, res, res)


def test_labels_none_int_and_dropout(small, ref):
    x, t = ref["x"], ref["noise_labels"]
    with torch.no_grad():
        zero = small(x, t, torch.zeros(4, 3), ref["augment_labels"])
        assert torch.equal(small(x, t, None, ref["augment_labels"]), zero)     # None = all-zero labels (EDM)
        onehot = small(x, t, ref["class_labels"])
        assert torch.equal(small(x, t, ref["class_labels"].long()), onehot)
        small.train()
        small.label_dropout = 1.0
        try:
            assert torch.equal(small(x, t, ref["class_labels"], ref["augment_labels"]), zero)
        finally:
            small.label_dropout = 0.0
            small.eval()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision(small, ref, dtype):
    x, t, c, a = ref["x"], ref["noise_labels"], ref["class_labels"], ref["augment_labels"]
    with torch.no_grad():
        y = small(x.to(dtype), t, c, a)                  # float32 weights, low-precision activations (EDM's fp16 mode)
        assert y.dtype == dtype
        torch.testing.assert_close(y.float(), ref["output"], atol=0.1, rtol=0.05)
        half = ADMUNet(**ref["net_kwargs"]).eval()
        half.load_state_dict(ref["net_state_dict"])
        d = EDMPrecond(half.to(dtype))(x, 0.7, c)        # EDMPrecond casts the input to the parameter dtype
        d_ref = EDMPrecond(small)(x, 0.7, c)
        assert d.dtype == torch.float32
        torch.testing.assert_close(d, d_ref, atol=0.05, rtol=0.05)


def test_attention_weights_float32_backward():
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(2, 8, 5, generator=g), torch.randn(2, 8, 7, generator=g)
    dw = torch.randn(2, 5, 7, generator=g)
    q1, k1 = q.clone().requires_grad_(), k.clone().requires_grad_()
    w = _Float32AttentionWeights.apply(q1, k1)
    w.backward(dw)
    q2, k2 = q.double().requires_grad_(), k.double().requires_grad_()
    w2 = torch.einsum("ncq,nck->nqk", q2, k2 / 8 ** 0.5).softmax(dim=2)
    w2.backward(dw.double())
    torch.testing.assert_close(w.double(), w2, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(q1.grad.double(), q2.grad, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(k1.grad.double(), k2.grad, atol=1e-6, rtol=1e-5)
    wb = _Float32AttentionWeights.apply(q.bfloat16(), k.bfloat16())
    assert wb.dtype == torch.bfloat16
    torch.testing.assert_close(wb.float(), w.detach(), atol=1e-2, rtol=0)


# ---------------------------------------------------------------- equivalence with EDM's code

def test_matches_edm_network(small, ref):
    assert list(small.state_dict()) == list(ref["net_state_dict"])           # names and order
    with torch.no_grad():
        y = small(ref["x"], ref["noise_labels"], ref["class_labels"], ref["augment_labels"])
    torch.testing.assert_close(y, ref["output"], atol=1e-5, rtol=1e-5)


def test_matches_edm_attention_block(ref):
    block = UNetBlock(**ref["block_kwargs"]).eval()
    assert block.num_heads == 3
    block.load_state_dict(ref["block_state_dict"], strict=True)
    x = ref["block_x"].clone().requires_grad_()
    y = block(x, ref["block_emb"])
    torch.testing.assert_close(y.detach(), ref["block_output"], atol=1e-5, rtol=1e-5)
    y.backward(ref["block_grad_output"])
    torch.testing.assert_close(x.grad, ref["block_grad_x"], atol=1e-5, rtol=1e-5)


def test_edm_precond_state_dict_loads_strictly(ref):
    # EDM's EDMPrecond holds the raw network as .model and has no other state
    pre = EDMPrecond(ADMUNet(**ref["net_kwargs"]))
    pre.load_state_dict({"model." + k: v for k, v in ref["net_state_dict"].items()}, strict=True)
    with torch.no_grad():
        y = pre.model(ref["x"], ref["noise_labels"], ref["class_labels"], ref["augment_labels"])
    torch.testing.assert_close(y, ref["output"], atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------- load_edm_state_dict

@pytest.mark.parametrize("prefix", ["", "model."])
def test_load_edm_state_dict(tmp_path, ref, prefix):
    path = tmp_path / "teacher.pt"
    torch.save({prefix + k: v for k, v in ref["net_state_dict"].items()}, path)
    x, t, c, a = ref["x"], ref["noise_labels"], ref["class_labels"], ref["augment_labels"]
    net = load_edm_state_dict(path, ADMUNet(**ref["net_kwargs"]).eval())
    pre = load_edm_state_dict(str(path), EDMPrecond(ADMUNet(**ref["net_kwargs"]).eval()))
    with torch.no_grad():
        torch.testing.assert_close(net(x, t, c, a), ref["output"], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(pre.model(x, t, c, a), ref["output"], atol=1e-5, rtol=1e-5)


def test_load_edm_state_dict_errors(tmp_path, ref):
    state = dict(ref["net_state_dict"])
    state["map_layer0.wieght"] = state.pop("map_layer0.weight")
    state["out_conv.bias"] = torch.zeros(7)
    bad = tmp_path / "bad.pt"
    torch.save(state, bad)
    with pytest.raises(RuntimeError) as err:
        load_edm_state_dict(bad, ADMUNet(**ref["net_kwargs"]))
    msg = str(err.value)
    assert "missing keys (1)" in msg and "map_layer0.weight" in msg
    assert "unexpected keys (1)" in msg and "map_layer0.wieght" in msg
    assert "out_conv.bias" in msg and "shape" in msg
    with pytest.raises(ValueError, match="pickled code"):
        load_edm_state_dict(tmp_path / "network-snapshot.pkl", ADMUNet(**ref["net_kwargs"]))


def test_load_edm_state_dict_safetensors(tmp_path, ref):
    st = pytest.importorskip("safetensors.torch")
    path = tmp_path / "teacher.safetensors"
    st.save_file({"model." + k: v.contiguous() for k, v in ref["net_state_dict"].items()}, str(path))
    net = load_edm_state_dict(path, ADMUNet(**ref["net_kwargs"]).eval())
    with torch.no_grad():
        y = net(ref["x"], ref["noise_labels"], ref["class_labels"], ref["augment_labels"])
    torch.testing.assert_close(y, ref["output"], atol=1e-5, rtol=1e-5)
