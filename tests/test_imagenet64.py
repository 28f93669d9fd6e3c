"""The ImageNet-64 network (EDM's ADM, 1000 classes) of the paper's conditional experiment (Figs. 6-8):
parameter count, strict save/load round trip of the full configuration, errors naming bad keys, one forward pass.

The full network has 296M parameters (1.2 GB in float32); the module builds it once (about 20 s and 3 GB on
one CPU thread). Marked ``slow`` so that it can be skipped with ``-m 'not slow'``; CI runs it.
"""
import pytest
import torch

from dmdlib.nets.adm import ADMUNet, load_imagenet64
from dmdlib.precond import EDMPrecond
from dmdlib.presets import IMAGENET64_UNET

pytestmark = pytest.mark.slow
safetensors = pytest.importorskip("safetensors.torch")

N_PARAMS = 295_899_267   # EDM's ImageNet-64 ADM with 1000 classes (EDM's implementation)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A full-size network with random weights (zero-initialised layers made non-zero) and its .safetensors file."""
    torch.manual_seed(0)
    net = EDMPrecond(ADMUNet(**IMAGENET64_UNET.kwargs())).eval()
    with torch.no_grad():
        for p in net.parameters():
            if not p.any():          # conv1 / proj / out_conv start at 0: make the output depend on every block
                p.normal_(0, 1e-2)
    path = tmp_path_factory.mktemp("imagenet64") / "weights.safetensors"
    safetensors.save_file(net.state_dict(), str(path))
    return net, path


def test_configuration_is_edms_imagenet64_adm(saved):
    net, _ = saved
    assert sum(p.numel() for p in net.parameters()) == N_PARAMS
    unet = net.model
    assert (unet.img_resolution, unet.in_channels, unet.out_channels, unet.label_dim) == (64, 3, 3, 1000)
    assert unet.map_label.weight.shape == (768, 1000)     # 4 x 192 embedding channels, no bias


def test_strict_round_trip_and_forward(saved):
    net, path = saved
    loaded = load_imagenet64(path)
    assert isinstance(loaded, EDMPrecond) and not loaded.training
    a, b = net.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) and b[k].device.type == "cpu" and b[k].dtype == a[k].dtype for k in a)
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    label = torch.nn.functional.one_hot(torch.tensor([207]), 1000).float()
    with torch.no_grad():
        out = loaded(x, 2.5, label)
        other = loaded(x, 2.5, torch.nn.functional.one_hot(torch.tensor([3]), 1000).float())
    assert out.shape == (1, 3, 64, 64) and torch.isfinite(out).all()
    assert not torch.equal(out, other)   # the label conditions the output


def test_missing_and_unexpected_keys_raise(saved, tmp_path):
    net, _ = saved
    state = net.state_dict()
    dropped = "model.enc.32x32_block1.qkv.weight"
    part = {k: v for k, v in state.items() if k != dropped}
    part["model.extra.weight"] = torch.zeros(1)
    path = tmp_path / "bad.pt"
    torch.save(part, path)
    del part
    with pytest.raises(RuntimeError, match=r"missing keys \(1\):\s+model\.enc\.32x32_block1\.qkv\.weight") as err:
        load_imagenet64(path)
    assert "unexpected keys (1):\n    model.extra.weight" in str(err.value)
