"""The GPU path's numerics (issue #24): what a CPU can show of it, and the checks that need a GPU (marked ``cuda``;
skipped without one; ``bench/gpu_check.sh`` runs them).

On a CPU, bf16 autocast shows items 1 and 2 (the DM gradient and the attention weights stay float32 under
autocast) and the flags show items 3, 4 and 10 (TF32 off while sampling, determinism in reference mode on CUDA,
the new ``fp32_precision`` settings); item 5 is a refusal, item 8 a memory layout.
"""
import copy
import dataclasses
import os
import sys
from pathlib import Path

import pytest
import torch

import dmdlib
from dmdlib import TeacherConfig, DMDConfig, accel, dm_gradient
from dmdlib.nets import ADMUNet
from dmdlib.nets.adm import _Float32AttentionWeights
from dmdlib.precond import EDMPrecond

ROOT = Path(__file__).resolve().parents[1]
CUDA = torch.cuda.is_available()


def cosine(a, b):
    return torch.nn.functional.cosine_similarity(a.double().flatten(), b.double().flatten(), dim=0).item()


def adm8(seed=0, std=None):
    """An 8x8 ADM UNet in EDM's wrapper (8 channels, mult [1, 2, 2], attention at 8x8: the quick manifold UNet's
    shape); ``std``: every weight drawn from N(0, std^2) (a network whose output is not zero)."""
    torch.manual_seed(seed)
    net = EDMPrecond(ADMUNet(img_resolution=8, in_channels=1, out_channels=1, model_channels=8, channel_mult=[1, 2, 2],
                             channel_mult_emb=4, num_blocks=1, attn_resolutions=[8], dropout=0))
    if std is not None:
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for p in net.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * std)
    return net


def dm_measurement(device="cpu", seed=0):
    """The measurement of issue #24: random weights (std 0.2), a fake score whose weights are the real ones
    perturbed by 1e-3 (relative, per weight), 16 samples, log-sigma uniform in [-3, 3]."""
    real = adm8(seed, std=0.2).eval().to(device)
    fake = copy.deepcopy(real)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in fake.parameters():
            p.mul_(1 + 1e-3 * torch.randn(p.shape, generator=g).to(device))
    x = torch.randn(16, 1, 8, 8, generator=g).to(device)
    sigma = torch.exp(torch.rand(16, generator=g) * 6 - 3).to(device)
    eps = torch.randn(16, 1, 8, 8, generator=g).to(device)
    return fake, real, x, sigma, eps


def unguarded_dm_gradient(x, fake, real, sigma, eps):
    """The DM gradient's formula evaluated in the caller's precision (what dm_gradient computed before #24)."""
    with torch.no_grad():
        s = sigma.reshape(-1, 1, 1, 1)
        x_t = x + s * eps
        d_fake, d_real = fake(x_t, sigma), real(x_t, sigma)
        norm = (x - d_real).abs().flatten(1).mean(1).reshape(-1, 1, 1, 1)
        return ((d_fake - d_real) / norm).float()


# ----------------------------------------------------------------------------- 1. the DM gradient under autocast

def test_dm_gradient_is_float32_under_bf16_autocast():
    """Under bf16 autocast the gradient's two passes would be rounded to bf16, and D_fake - D_real (a 1e-3 relative
    difference) drowns in the rounding: cosine about 0 to fp32 (measured -0.04 here). dm_gradient computes in float32
    whatever the caller's autocast: cosine >= 0.99 (it is the fp32 computation: 1.0)."""
    fake, real, x, sigma, eps = dm_measurement()
    g32 = dm_gradient(x, fake, real, sigma, eps)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        gb = dm_gradient(x, fake, real, sigma, eps)
        raw = unguarded_dm_gradient(x, fake, real, sigma, eps)
    assert cosine(raw, g32) < 0.5                   # the measurement is sensitive: bf16 passes lose the gradient
    assert gb.dtype == torch.float32
    assert cosine(gb, g32) >= 0.99
    # bf16 inputs (a generator output under autocast) are cast up, not the other way round
    with torch.autocast("cpu", dtype=torch.bfloat16):
        gx = dm_gradient(x.bfloat16(), fake, real, sigma, eps)
    assert gx.dtype == torch.float32 and cosine(gx, dm_gradient(x.bfloat16().float(), fake, real, sigma, eps)) > 0.9999


def test_dm_gradient_leaves_the_callers_settings():
    fake, real, x, sigma, eps = dm_measurement()
    prev = accel.set_tf32(True)
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            dm_gradient(x, fake, real, sigma, eps)
            assert torch.is_autocast_enabled("cpu")
        assert accel.tf32_flags() == (True, True, "high")
    finally:
        accel.set_tf32(prev[0])


# ----------------------------------------------------------------------------- 2. attention weights

def test_attention_weights_are_float32_under_autocast():
    """q, k in float32 under bf16 autocast: the weights (and their gradients) are the fp32 ones, not bf16's."""
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(2, 16, 9, generator=g) * 3, torch.randn(2, 16, 11, generator=g) * 3   # peaked softmax
    dw = torch.randn(2, 9, 11, generator=g)

    def weights_and_grads(autocast):
        q1, k1 = q.clone().requires_grad_(), k.clone().requires_grad_()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            w = _Float32AttentionWeights.apply(q1, k1)
            w.backward(dw)
        return w.detach(), q1.grad, k1.grad

    w32, gq32, gk32 = weights_and_grads(False)
    w, gq, gk = weights_and_grads(True)
    assert w.dtype == torch.float32
    torch.testing.assert_close(w, w32, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(gq, gq32, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(gk, gk32, atol=1e-5, rtol=1e-4)
    # bf16 activations: float32 arithmetic, only the result rounded to bf16 (bf16 logits would err by ~3e-2 here)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        wb = _Float32AttentionWeights.apply(q.bfloat16(), k.bfloat16())
    exact = torch.einsum("ncq,nck->nqk", q.bfloat16().double(), k.bfloat16().double() / 4).softmax(2)
    assert wb.dtype == torch.bfloat16 and (wb.double() - exact).abs().max() < 4e-3


# ----------------------------------------------------------------------------- 3. sampling in fp32

class Recorder(torch.nn.Module):
    """A denoiser that records the arithmetic settings of every call."""

    def __init__(self, net):
        super().__init__()
        self.net, self.seen = net, []

    def forward(self, x, sigma, labels=None):
        self.seen.append((accel.tf32_flags(), torch.is_autocast_enabled(x.device.type), x.dtype))
        return self.net(x, sigma, labels)


def check_sampling_is_fp32(device):
    net = Recorder(adm8(std=0.05).to(device).eval())
    z = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(0)).to(device)
    plain = dmdlib.phi_k(net, z, 3)
    net.seen.clear()
    prev = accel.set_tf32(True)
    try:
        with torch.autocast(device, dtype=torch.bfloat16):
            x = dmdlib.phi_k(net, z, 3, batch_size=2)
            assert torch.is_autocast_enabled(device)
        assert accel.tf32_flags() == (True, True, "high")              # the caller's settings come back
    finally:
        accel.set_tf32(prev[0])
    assert len(net.seen) == 2 * (2 * 3 - 1)
    assert all(s == ((False, False, "highest"), False, torch.float32) for s in net.seen)
    assert x.dtype == torch.float32 and torch.equal(x, plain)


def test_sampling_runs_fp32_with_tf32_and_autocast_off():
    """Phi_K inside bf16 autocast with TF32 on: every denoiser call sees TF32 off, autocast off, float32 input,
    and the samples are bit-identical to a plain fp32 call."""
    check_sampling_is_fp32("cpu")


def test_one_step_generation_is_fp32_and_sampling_key():
    """accel.fp32 and sampler.one_step (the evaluation's one-step generation) compute in float32 with TF32 and
    autocast off inside the caller's bf16 autocast with TF32 on; the key of cached samples names that."""
    gen = dmdlib.OneStepGenerator(adm8(std=0.05)).eval()
    z = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        plain = gen(z)
        prev = accel.set_tf32(True)
        try:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                assert not torch.equal(gen(z), plain)                          # autocast reaches G
                with accel.fp32(z):
                    assert accel.tf32_flags() == (False, False, "highest") and not torch.is_autocast_enabled("cpu")
                    x = gen(z)
                assert torch.is_autocast_enabled("cpu") and accel.tf32_flags()[0]
        finally:
            accel.set_tf32(prev[0])
    assert torch.equal(x, plain)
    seen = []

    def gen_recorded(z, labels=None):
        seen.append((accel.tf32_flags(), torch.is_autocast_enabled("cpu"), labels is None))
        return gen(z)

    prev = accel.set_tf32(True)
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = dmdlib.sampler.one_step(gen_recorded, z, batch_size=3)
    finally:
        accel.set_tf32(prev[0])
    with torch.no_grad():
        chunks = torch.cat([gen(z[:3]), gen(z[3:])])
    assert torch.equal(y, chunks) and seen == [((False, False, "highest"), False, True)] * 2
    key = accel.sampling_key("cpu")
    assert key["device_type"] == "cpu" and "fp32" in key["precision"]
    assert accel.sampling_key(torch.device("cuda", 0))["device_type"] == "cuda"


# ----------------------------------------------------------------------------- 4. determinism

def det_flags():
    return (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark,
            torch.are_deterministic_algorithms_enabled(), os.environ.get("CUBLAS_WORKSPACE_CONFIG"))


def test_reference_mode_is_deterministic_on_cuda_and_restores(monkeypatch):
    """The flags a training loop sets for ``device='cuda'`` (flags only: no GPU needed) in reference mode, none on
    a CPU or on the fast path, and the previous ones afterwards."""
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    before = det_flags()
    assert before[2] is False
    seen = {}

    @accel.tf32_from_speed
    def loop(name, device="auto", speed=None):
        seen[name] = det_flags()

    for name, device, speed in (("ref", "cuda", None), ("ref-dev", torch.device("cuda", 0), accel.REFERENCE),
                                ("layout", "cuda:0", accel.Speed(channels_last=True, fused_optim=True)),
                                ("fast", "cuda", accel.Speed(tf32=True, amp="bf16")), ("cpu", "cpu", None)):
        loop(name, device=device, speed=speed)
        assert det_flags() == before, name
    for name in ("ref", "ref-dev", "layout"):
        assert seen[name] == (True, False, True, accel.CUBLAS_WORKSPACE), name
    assert seen["fast"] == before and seen["cpu"] == before
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":16:8")                  # the user's choice is kept
    with accel.deterministic_mode(None, "cuda"):
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":16:8" and not torch.are_deterministic_algorithms_enabled()


# ----------------------------------------------------------------------------- 5. fp16 is refused

def test_fp16_autocast_is_refused_with_the_allowed_values():
    with pytest.raises(ValueError) as e:
        accel.Speed(amp="fp16")
    msg = str(e.value)
    assert "Speed.amp" in msg and "'bf16'" in msg and "None" in msg and "gradient scaling" in msg
    assert accel.Speed(amp="bf16").amp == "bf16"


# ----------------------------------------------------------------------------- 8. the EMA's memory layout

def test_teacher_ema_has_the_networks_memory_layout(monkeypatch):
    """With channels_last, every EMA update reads the network and the EMA in one layout (channels_last); the
    returned EMA has the default layout (that of a reloaded run) and the values of the reference layout."""
    from dmdlib import teacher as T

    layouts = []
    real_update = T.ema_update

    def spy(ema, net, cfg, nimg):
        fmt = [(e.is_contiguous(memory_format=torch.channels_last), n.is_contiguous(memory_format=torch.channels_last))
               for e, n in zip(ema.parameters(), net.parameters())
               if e.ndim == 4 and e.shape[1] > 1 and e.shape[2] * e.shape[3] > 1]    # where the two layouts differ
        layouts.append(fmt)
        return real_update(ema, net, cfg, nimg)

    monkeypatch.setattr(T, "ema_update", spy)
    cfg = TeacherConfig(iterations=3, batch_size=8, lr=1e-3, lr_rampup_kimg=0.0, checkpoint_every=3, log_every=3,
                        ema_halflife_kimg=0.01, snapshots=())
    data = torch.rand(32, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    fn = lambda n, g: data[torch.randint(0, 32, (n,), generator=g)]  # noqa: E731
    res = {}
    for name, speed in (("cl", accel.Speed(channels_last=True)), ("ref", None)):
        res[name] = dmdlib.train_teacher(adm8(), fn, cfg, device="cpu", progress_bar=False, speed=speed)
    assert len(layouts) == 6 and layouts[0]
    assert all(e and n for e, n in layouts[0]) and all(e == n for fmt in layouts for e, n in fmt)
    assert all(not e and not n for e, n in layouts[3])                      # the reference: default layout
    for p in res["cl"].ema.parameters():
        assert p.is_contiguous()
    ref, cl = res["ref"].ema.state_dict(), res["cl"].ema.state_dict()
    assert max((ref[k] - cl[k]).abs().max().item() for k in ref) < 1e-5     # summation order only


# ----------------------------------------------------------------------------- 10. the fp32_precision settings

def test_tf32_settings_set_and_restore_without_raising():
    """set_tf32 / tf32_mode / fp32 use torch's fp32_precision settings where they exist: they work after the
    caller used either API, and put the caller's settings back."""
    new_api = hasattr(torch.backends.cuda.matmul, "fp32_precision")
    state = accel._tf32_state()
    try:
        for caller in ("new", "legacy"):
            if caller == "new" and new_api:
                torch.backends.cuda.matmul.fp32_precision = "tf32"
                torch.backends.cudnn.conv.fp32_precision = "ieee"
                expect = (True, False, "high")
            else:
                torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = False, True
                expect = (False, True, "highest")
            assert accel.tf32_flags() == expect
            with accel.tf32_mode(accel.Speed(tf32=True)):
                assert accel.tf32_flags() == (True, True, "high")
                with accel.tf32_mode(None):
                    assert accel.tf32_flags() == (False, False, "highest")
                assert accel.tf32_flags() == (True, True, "high")
            assert accel.tf32_flags() == expect
            if new_api:   # reading the new settings never raises; the legacy reads raise after new-API writes
                assert torch.backends.cuda.matmul.fp32_precision in ("tf32", "ieee", "none")
                assert torch.backends.cudnn.conv.fp32_precision in ("tf32", "ieee", "none")
    finally:
        accel._restore_tf32(state)


# ----------------------------------------------------------------------------- on a GPU (bench/gpu_check.sh)

def _cuda_teacher(run_dir=None, iterations=1, stop_after=None):
    cfg = TeacherConfig(iterations=iterations, batch_size=16, lr=1e-3, lr_rampup_kimg=0.0, checkpoint_every=1,
                        log_every=1, ema_halflife_kimg=0.01, snapshots=())
    data = (torch.rand(64, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1).cuda()
    fn = lambda n, g: data[torch.randint(0, 64, (n,), generator=g, device="cuda")]  # noqa: E731
    return dmdlib.train_teacher(adm8(), fn, cfg, run_dir=run_dir, device="cuda", progress_bar=False,
                                stop_after=stop_after, speed=accel.REFERENCE)


def _cuda_student(run_dir=None, iterations=1, stop_after=None):
    cfg = DMDConfig(iterations=iterations, batch_size=8, lr=1e-3, lr_fake=1e-3, warmup_steps=0, checkpoint_every=1,
                    log_every=1, gen_every=1)
    return dmdlib.distill(adm8(std=0.05), (1, 8, 8), cfg, run_dir=run_dir, device="cuda", progress_bar=False,
                          stop_after=stop_after, speed=accel.REFERENCE)


def _same(a, b):
    a, b = a.state_dict(), b.state_dict()
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.cuda
def test_cuda_sampling_has_tf32_off():
    check_sampling_is_fp32("cuda")


@pytest.mark.cuda
def test_cuda_reference_runs_are_bit_identical():
    t1, t2 = _cuda_teacher(), _cuda_teacher()
    assert _same(t1.ema, t2.ema) and _same(t1.denoiser, t2.denoiser)
    s1, s2 = _cuda_student(), _cuda_student()
    assert _same(s1.generator, s2.generator) and _same(s1.fake, s2.fake)


@pytest.mark.cuda
def test_cuda_reference_resume_is_bit_identical(tmp_path):
    full = _cuda_teacher(tmp_path / "t-full", iterations=4)
    _cuda_teacher(tmp_path / "t-part", iterations=4, stop_after=2)
    part = _cuda_teacher(tmp_path / "t-part", iterations=4)
    assert part.started_at == 2 and _same(full.ema, part.ema)
    full = _cuda_student(tmp_path / "s-full", iterations=4)
    _cuda_student(tmp_path / "s-part", iterations=4, stop_after=2)
    part = _cuda_student(tmp_path / "s-part", iterations=4)
    assert part.started_at == 2 and _same(full.generator, part.generator) and _same(full.fake, part.fake)


@pytest.mark.cuda
def test_cuda_fast_path_dm_gradient_matches_fp32():
    """The DM gradient on the fast path (bf16 autocast and TF32 on) has cosine >= 0.99 to the fp32 one."""
    fake, real, x, sigma, eps = dm_measurement("cuda")
    with accel.tf32_mode(None):
        g32 = dm_gradient(x, fake, real, sigma, eps)
    with accel.tf32_mode(accel.FAST), torch.autocast("cuda", dtype=torch.bfloat16):
        gb = dm_gradient(x, fake, real, sigma, eps)
        raw = unguarded_dm_gradient(x, fake, real, sigma, eps)
    print(f"DM gradient cosine to fp32 on CUDA: fast path {cosine(gb, g32):.4f}, unguarded bf16 {cosine(raw, g32):.4f}")
    assert cosine(gb, g32) >= 0.99


@pytest.mark.cuda
def test_cuda_benchmarks_run():
    sys.path.insert(0, str(ROOT / "bench"))
    import bench_mnist

    out = bench_mnist.main(["--unet", "smoke", "--device", "cuda", "--steps", "5", "--warmup", "2", "--students", "2",
                            "--skip-delta-e", "--no-compile"])   # gpu_check times the compiled fast path itself
    assert out["ratio_teacher"] > 0 and out["ratio_dmd"] > 0 and out["students"]["speedup"] > 0
    assert out["sampler_check"]["after_training"] == 0 and out["sampler_check"]["inside_bf16_tf32"] == 0
