"""The ADM U-Net (Dhariwal & Nichol 2021, "Diffusion Models Beat GANs on Image Synthesis").

The configuration and parameterisation follow EDM's re-implementation
(Karras et al. 2022, "Elucidating the Design Space of Diffusion-Based
Generative Models", NVlabs/edm, ``training/networks.py``, class
``DhariwalUNet``), so that an EDM (or DMD2) checkpoint converted to a plain
state dict loads here with ``strict=True`` and computes the same function:

* noise embedding: sinusoidal features of ``noise_labels`` (= c_noise(sigma),
  EDM Table 1), then Linear -> SiLU -> Linear; an optional augmentation
  embedding is added before the MLP and a class embedding after it;
* encoder: a 3x3 input conv, then per resolution ``num_blocks`` residual
  blocks (with self-attention at ``attn_resolutions``) and a residual
  down-sampling block between resolutions;
* decoder: two middle blocks (the first with attention), then per resolution
  ``num_blocks + 1`` residual blocks fed with the concatenated encoder
  activations, and a residual up-sampling block between resolutions;
* output: GroupNorm -> SiLU -> 3x3 conv (zero-initialised).

Residual blocks use ADM's scale-shift norm, GroupNorm(h) (1 + scale) + shift,
with (scale, shift) an affine function of the embedding; re-sampling is a
2x2 box filter (average pooling / nearest-neighbour up-sampling) applied
inside the block before its first conv and on its skip path. Attention
weights are evaluated in float32 whatever the activation dtype.

Mixed precision as in EDM: parameters stay where they are; every layer casts
its weights to the dtype of its input, so the network runs in the dtype of
``x`` (float32, bfloat16 or float16) while the embedding MLP runs in the dtype
of ``noise_labels`` (float32 in EDMPrecond). The output has ``x``'s dtype.

Initialisation as in EDM's ADM configuration, drawn from torch's global RNG in
the same order as EDM (so ``torch.manual_seed`` reproduces EDM's own initial
weights): uniform(+-1/sqrt(fan_in)) weights and biases (PyTorch's default, as
in the original ADM code), the class embedding N(0, 1) per entry, and the
last layer of every residual branch (``conv1``, ``proj``), the augmentation
embedding and ``out_conv`` zero-initialised, so a fresh network outputs 0.

Converting an EDM snapshot. EDM's ``.pkl`` files contain pickled code and
need EDM's ``dnnlib`` and ``torch_utils`` to load; dmdlib never unpickles
arbitrary files. Run, once, inside an EDM checkout::

    import pickle, torch
    import dnnlib
    with dnnlib.util.open_url('edm-imagenet-64x64-cond-adm.pkl') as f:
        net = pickle.load(f)['ema']          # EDM's EDMPrecond
    torch.save(net.state_dict(), 'teacher.pt')   # keys 'model.<...>'

then, here, ``load_edm_state_dict('teacher.pt', EDMPrecond(ADMUNet(...)))``
(or an ``ADMUNet`` directly: the 'model.' prefix is added or removed as
needed).
"""
from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Optional, Sequence

import torch
from torch import nn
from torch.nn import functional as F

# ADM's initialisation in EDM's terms: kaiming_uniform scaled by sqrt(1/3) is
# uniform(-1/sqrt(fan_in), 1/sqrt(fan_in)); "zero" layers start at exactly 0.
_INIT = dict(init_mode="kaiming_uniform", init_weight=math.sqrt(1 / 3), init_bias=math.sqrt(1 / 3))
_INIT_ZERO = dict(init_mode="kaiming_uniform", init_weight=0.0, init_bias=0.0)


def init_tensor(shape: Sequence[int], mode: str, fan_in: int, fan_out: int) -> torch.Tensor:
    """A freshly drawn tensor with EDM's init modes (unit gain; drawn from the global RNG).

    xavier_uniform: U(+-sqrt(6/(fan_in+fan_out)));  xavier_normal: N(0, 2/(fan_in+fan_out));
    kaiming_uniform: U(+-sqrt(3/fan_in));            kaiming_normal: N(0, 1/fan_in).
    """
    if mode == "xavier_uniform":
        return math.sqrt(6 / (fan_in + fan_out)) * (torch.rand(*shape) * 2 - 1)
    if mode == "xavier_normal":
        return math.sqrt(2 / (fan_in + fan_out)) * torch.randn(*shape)
    if mode == "kaiming_uniform":
        return math.sqrt(3 / fan_in) * (torch.rand(*shape) * 2 - 1)
    if mode == "kaiming_normal":
        return math.sqrt(1 / fan_in) * torch.randn(*shape)
    raise ValueError(f"unknown init mode {mode!r}")


class Linear(nn.Module):
    """y = x W^T + b, with W cast to x's dtype (parameters ``weight`` [out, in], ``bias`` [out])."""

    def __init__(self, in_features: int, out_features: int,
                 bias: bool = True,                      # learn an additive bias
                 init_mode: str = "kaiming_normal",      # see init_tensor
                 init_weight: float = 1.0,               # multiplier of the drawn weight
                 init_bias: float = 0.0):                # multiplier of the drawn bias
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        fans = dict(mode=init_mode, fan_in=in_features, fan_out=out_features)
        self.weight = nn.Parameter(init_tensor([out_features, in_features], **fans) * init_weight)
        self.bias = nn.Parameter(init_tensor([out_features], **fans) * init_bias) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x @ self.weight.to(x.dtype).t()
        return y if self.bias is None else y + self.bias.to(x.dtype)


class Conv2d(nn.Module):
    """Optional 2x re-sampling followed by a 'same'-padded k x k convolution.

    Re-sampling uses the separable filter ``resample_filter`` (normalised to sum
    1) depthwise: stride-2 filtering to go down, a stride-2 transposed filter
    (times 4) to go up. With the default [1, 1] these are 2x2 average pooling
    and nearest-neighbour up-sampling. ``kernel=0`` gives a pure re-sampler
    without parameters (used on ADM's skip paths). The 2-D filter is kept as
    the buffer ``resample_filter`` (present in EDM's state dicts).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: int,
                 bias: bool = True,                      # learn an additive bias
                 up: bool = False,                       # up-sample 2x before the conv
                 down: bool = False,                     # down-sample 2x before the conv
                 resample_filter: Sequence[float] = (1, 1),  # 1-D taps of the re-sampling filter
                 init_mode: str = "kaiming_normal",      # see init_tensor
                 init_weight: float = 1.0,               # multiplier of the drawn weight
                 init_bias: float = 0.0):                # multiplier of the drawn bias
        super().__init__()
        if up and down:
            raise ValueError("Conv2d cannot both up- and down-sample")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.up, self.down = up, down
        k2 = kernel * kernel
        fans = dict(mode=init_mode, fan_in=in_channels * k2, fan_out=out_channels * k2)
        self.weight = (nn.Parameter(init_tensor([out_channels, in_channels, kernel, kernel], **fans) * init_weight)
                       if kernel else None)
        self.bias = nn.Parameter(init_tensor([out_channels], **fans) * init_bias) if kernel and bias else None
        taps = torch.as_tensor(resample_filter, dtype=torch.float32)
        filt = torch.outer(taps, taps)[None, None] / taps.sum().square()
        self.register_buffer("resample_filter", filt if (up or down) else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.up or self.down:
            f = self.resample_filter.to(x.dtype)
            pad = (f.shape[-1] - 1) // 2
            c = x.shape[1]
            if self.up:
                x = F.conv_transpose2d(x, (f * 4).tile([c, 1, 1, 1]), groups=c, stride=2, padding=pad)
            else:
                x = F.conv2d(x, f.tile([c, 1, 1, 1]), groups=c, stride=2, padding=pad)
        if self.weight is not None:
            w = self.weight.to(x.dtype)
            x = F.conv2d(x, w, padding=w.shape[-1] // 2)
        if self.bias is not None:
            x = x + self.bias.to(x.dtype).reshape(1, -1, 1, 1)
        return x


class GroupNorm(nn.Module):
    """Group normalisation with min(num_groups, num_channels // min_channels_per_group) groups."""

    def __init__(self, num_channels: int,
                 num_groups: int = 32,                   # groups when there are enough channels
                 min_channels_per_group: int = 4,        # fewer groups for narrow layers
                 eps: float = 1e-5):                     # variance floor
        super().__init__()
        self.num_groups = min(num_groups, num_channels // min_channels_per_group)
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.group_norm(x, self.num_groups, self.weight.to(x.dtype), self.bias.to(x.dtype), self.eps)


class PositionalEmbedding(nn.Module):
    """Transformer-style sinusoidal features [cos(t w_j), sin(t w_j)], w_j = max_positions^(-j/(C/2)).

    (With ``endpoint=True`` the exponents run to exactly -1 instead.)
    """

    def __init__(self, num_channels: int,
                 max_positions: int = 10000,             # sets the lowest frequency
                 endpoint: bool = False):                # include the lowest frequency 1/max_positions
        super().__init__()
        self.num_channels, self.max_positions, self.endpoint = num_channels, max_positions, endpoint

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        half = self.num_channels // 2
        expo = torch.arange(half, dtype=torch.float32, device=t.device) / (half - (1 if self.endpoint else 0))
        freqs = (1 / self.max_positions) ** expo
        arg = torch.outer(t, freqs.to(t.dtype))
        return torch.cat([arg.cos(), arg.sin()], dim=1)


class _Float32AttentionWeights(torch.autograd.Function):
    """softmax_k(q^T k / sqrt(c)) computed in float32 (autocast off), returned (and saved) in q's dtype.

    q, k: [n, c, tokens]. The backward pass is also evaluated in float32, so
    low-precision activations keep accurate attention weights and gradients
    without float32 copies being stored for autograd.
    """

    generate_vmap_rule = True   # torch.func.vmap support (students trained side by side, dmd.distill_concurrent)

    @staticmethod
    def forward(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        root_c = math.sqrt(k.shape[1])
        with torch.autocast(q.device.type, enabled=False):   # autocast would run the einsum in bf16 again
            logits = torch.einsum("ncq,nck->nqk", q.to(torch.float32), k.to(torch.float32) / root_c)
            return logits.softmax(dim=2).to(q.dtype)

    @staticmethod
    def setup_context(ctx, inputs, output):
        q, k = inputs
        ctx.save_for_backward(q, k, output)

    @staticmethod
    def backward(ctx, grad_w: torch.Tensor):
        q, k, w = ctx.saved_tensors
        root_c = math.sqrt(k.shape[1])
        with torch.autocast(q.device.type, enabled=False):
            w32, g32 = w.to(torch.float32), grad_w.to(torch.float32)
            grad_logits = w32 * (g32 - (g32 * w32).sum(dim=2, keepdim=True))   # softmax Jacobian-vector product
            grad_q = torch.einsum("nck,nqk->ncq", k.to(torch.float32), grad_logits).to(q.dtype) / root_c
            grad_k = torch.einsum("ncq,nqk->nck", q.to(torch.float32), grad_logits).to(k.dtype) / root_c
        return grad_q, grad_k


class UNetBlock(nn.Module):
    """ADM residual block (BigGAN-style re-sampling, scale-shift norm), optionally followed by self-attention.

    h = conv0(SiLU(norm0(x)))                      (conv0 re-samples first when up/down)
    h = SiLU(norm1(h) (1 + scale) + shift),        (scale, shift) = affine(emb)
    h = conv1(dropout(h)) + skip(x)                (skip: 1x1 conv if the width changes, else re-sampling or identity)
    attention (multi-head, 64 channels per head in ADM):
    h = h + proj(Attention(qkv(norm2(h))))
    conv1 and proj start at zero, so a fresh block is the identity (or its skip).
    """

    def __init__(self, in_channels: int, out_channels: int, emb_channels: int,
                 up: bool = False,                       # up-sample 2x
                 down: bool = False,                     # down-sample 2x
                 attention: bool = False,                # append a self-attention layer
                 num_heads: Optional[int] = None,        # attention heads; None: out_channels // channels_per_head
                 channels_per_head: int = 64,            # used when num_heads is None
                 dropout: float = 0.0,                   # dropout before conv1
                 eps: float = 1e-5):                     # GroupNorm epsilon
        super().__init__()
        self.in_channels, self.out_channels, self.emb_channels = in_channels, out_channels, emb_channels
        if not attention:
            self.num_heads = 0
        else:
            self.num_heads = num_heads if num_heads is not None else out_channels // channels_per_head
        self.dropout = dropout

        self.norm0 = GroupNorm(in_channels, eps=eps)
        self.conv0 = Conv2d(in_channels, out_channels, kernel=3, up=up, down=down, **_INIT)
        self.affine = Linear(emb_channels, 2 * out_channels, **_INIT)
        self.norm1 = GroupNorm(out_channels, eps=eps)
        self.conv1 = Conv2d(out_channels, out_channels, kernel=3, **_INIT_ZERO)
        self.skip = None
        if out_channels != in_channels or up or down:
            # a learned 1x1 projection only when the width changes; otherwise just re-sample
            self.skip = Conv2d(in_channels, out_channels, kernel=1 if out_channels != in_channels else 0,
                               up=up, down=down, **_INIT)
        if self.num_heads:
            self.norm2 = GroupNorm(out_channels, eps=eps)
            self.qkv = Conv2d(out_channels, 3 * out_channels, kernel=1, **_INIT)
            self.proj = Conv2d(out_channels, out_channels, kernel=1, **_INIT_ZERO)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv0(F.silu(self.norm0(x)))
        scale, shift = self.affine(emb)[:, :, None, None].to(h.dtype).chunk(2, dim=1)
        h = F.silu(torch.addcmul(shift, self.norm1(h), scale + 1))
        h = self.conv1(F.dropout(h, p=self.dropout, training=self.training))
        h = h + (x if self.skip is None else self.skip(x))
        if self.num_heads:
            n, c = h.shape[:2]
            # qkv channels are laid out [head, channel-in-head, (q, k, v)]
            q, k, v = self.qkv(self.norm2(h)).reshape(n * self.num_heads, c // self.num_heads, 3, -1).unbind(2)
            w = _Float32AttentionWeights.apply(q, k)
            a = torch.einsum("nqk,nck->ncq", w, v)
            h = self.proj(a.reshape(h.shape)) + h
        return h


class ADMUNet(nn.Module):
    """ADM U-Net F(x, noise_labels, class_labels, augment_labels) with EDM's names and defaults.

    The defaults are EDM's ImageNet-64 ADM (about 296M parameters with 1000
    classes); the paper's MNIST teacher is ``ADMUNet(32, 1, 1,
    model_channels=64, dropout=0)`` (31.1M parameters). ``class_labels`` are
    one-hot (or soft) [batch, label_dim]; None means all-zero labels (what
    EDM's preconditioner feeds when no label is given, and the "null" label
    under ``label_dropout``). Wrap in :class:`~dmdlib.precond.EDMPrecond` for D(x; sigma).
    """

    def __init__(self, img_resolution: int, in_channels: int, out_channels: int,
                 label_dim: int = 0,                     # number of classes, 0 = unconditional
                 augment_dim: int = 0,                   # augmentation-label size, 0 = none
                 model_channels: int = 192,              # base width
                 channel_mult: Sequence[int] = (1, 2, 3, 4),  # width multiplier per resolution
                 channel_mult_emb: int = 4,              # embedding width = model_channels * this
                 num_blocks: int = 3,                    # residual blocks per resolution (encoder)
                 attn_resolutions: Sequence[int] = (32, 16, 8),  # resolutions with self-attention
                 dropout: float = 0.10,                  # dropout inside residual blocks
                 label_dropout: float = 0.0):            # training-time probability of zeroing the label
        super().__init__()
        self.img_resolution, self.in_channels, self.out_channels = img_resolution, in_channels, out_channels
        self.label_dim, self.augment_dim = label_dim, augment_dim
        self.label_dropout = label_dropout
        emb_channels = model_channels * channel_mult_emb
        block = dict(emb_channels=emb_channels, channels_per_head=64, dropout=dropout)

        # embedding of noise level, augmentation and class
        self.map_noise = PositionalEmbedding(model_channels)
        self.map_augment = (Linear(augment_dim, model_channels, bias=False, **_INIT_ZERO)
                            if augment_dim else None)
        self.map_layer0 = Linear(model_channels, emb_channels, **_INIT)
        self.map_layer1 = Linear(emb_channels, emb_channels, **_INIT)
        self.map_label = (Linear(label_dim, emb_channels, bias=False, init_mode="kaiming_normal",
                                 init_weight=math.sqrt(label_dim)) if label_dim else None)

        # encoder: keys '<res>x<res>_conv' | '_down' | '_block<i>'
        self.enc = nn.ModuleDict()
        width = in_channels
        for level, mult in enumerate(channel_mult):
            res = img_resolution >> level
            if level == 0:
                self.enc[f"{res}x{res}_conv"] = Conv2d(width, model_channels * mult, kernel=3, **_INIT)
                width = model_channels * mult
            else:
                self.enc[f"{res}x{res}_down"] = UNetBlock(width, width, down=True, **block)
            for i in range(num_blocks):
                self.enc[f"{res}x{res}_block{i}"] = UNetBlock(width, model_channels * mult,
                                                              attention=res in attn_resolutions, **block)
                width = model_channels * mult
        skip_widths = [m.out_channels for m in self.enc.values()]

        # decoder: keys '<res>x<res>_in0', '_in1' (lowest resolution) | '_up' | '_block<i>'
        self.dec = nn.ModuleDict()
        for level, mult in reversed(list(enumerate(channel_mult))):
            res = img_resolution >> level
            if level == len(channel_mult) - 1:
                self.dec[f"{res}x{res}_in0"] = UNetBlock(width, width, attention=True, **block)
                self.dec[f"{res}x{res}_in1"] = UNetBlock(width, width, **block)
            else:
                self.dec[f"{res}x{res}_up"] = UNetBlock(width, width, up=True, **block)
            for i in range(num_blocks + 1):
                self.dec[f"{res}x{res}_block{i}"] = UNetBlock(width + skip_widths.pop(), model_channels * mult,
                                                              attention=res in attn_resolutions, **block)
                width = model_channels * mult
        self.out_norm = GroupNorm(width)
        self.out_conv = Conv2d(width, out_channels, kernel=3, **_INIT_ZERO)

    def forward(self, x: torch.Tensor, noise_labels: torch.Tensor,
                class_labels: Optional[torch.Tensor] = None,
                augment_labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        noise_labels = torch.as_tensor(noise_labels, device=x.device)
        if not noise_labels.is_floating_point():
            noise_labels = noise_labels.to(torch.float32)
        noise_labels = noise_labels.reshape(-1)
        if noise_labels.numel() == 1 and x.shape[0] != 1:
            noise_labels = noise_labels.expand(x.shape[0])

        emb = self.map_noise(noise_labels)
        if self.map_augment is not None and augment_labels is not None:
            emb = emb + self.map_augment(augment_labels)
        emb = self.map_layer1(F.silu(self.map_layer0(emb)))
        if self.map_label is not None:
            if class_labels is None:
                labels = torch.zeros(x.shape[0], self.label_dim, device=x.device, dtype=emb.dtype)
            else:
                labels = class_labels if class_labels.is_floating_point() else class_labels.to(torch.float32)
            if self.training and self.label_dropout:
                keep = torch.rand([x.shape[0], 1], device=x.device) >= self.label_dropout
                labels = labels * keep.to(labels.dtype)
            emb = emb + self.map_label(labels)
        emb = F.silu(emb)

        skips = []
        for layer in self.enc.values():
            x = layer(x) if isinstance(layer, Conv2d) else layer(x, emb)
            skips.append(x)
        for layer in self.dec.values():
            if x.shape[1] != layer.in_channels:   # the '_block<i>' layers take an encoder activation
                x = torch.cat([x, skips.pop()], dim=1)
            x = layer(x, emb)
        return self.out_conv(F.silu(self.out_norm(x)))


def load_edm_state_dict(path, model: nn.Module, map_location="cpu", assign: bool = False) -> nn.Module:
    """Load a plain EDM/DMD2 state dict (``.pt`` or ``.safetensors``) strictly into ``model``; return it.

    ``model`` is an :class:`ADMUNet` or a wrapper keeping it as ``.model``
    (:class:`~dmdlib.precond.EDMPrecond`); keys may carry the 'model.' prefix or not.
    ``.pt`` files are read with ``torch.load(weights_only=True)``: no code is
    unpickled. For EDM ``.pkl`` snapshots see the module docstring.
    ``assign=True`` makes the file's tensors (cast to the model's dtypes) the
    model's own instead of copying them, so ``model`` may be built on the
    ``meta`` device (no memory, no initial draws) as :func:`load_imagenet64` does.
    """
    path = os.fspath(path)
    if path.endswith(".pkl"):
        raise ValueError(f"{path}: EDM .pkl snapshots contain pickled code and are not loaded by dmdlib; "
                         "convert it to a plain state dict first (see the docstring of dmdlib.nets.adm)")
    if path.endswith(".safetensors"):
        try:
            from safetensors.torch import load_file
        except ImportError as err:
            raise ImportError(f"{path}: reading .safetensors needs the 'safetensors' package") from err
        state = load_file(path, device=str(map_location))
    else:
        state = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise TypeError(f"{path}: expected a flat state dict of tensors, got {type(state).__name__}")

    target = model.state_dict()

    def prefixed(keys) -> bool:
        return len(keys) > 0 and all(k.startswith("model.") for k in keys)

    if prefixed(target) and not prefixed(state):
        state = {"model." + k: v for k, v in state.items()}
    elif prefixed(state) and not prefixed(target):
        state = {k[len("model."):]: v for k, v in state.items()}

    missing = sorted(set(target) - set(state))
    unexpected = sorted(set(state) - set(target))
    wrong_shape = [f"{k}: {tuple(state[k].shape)} in file, {tuple(v.shape)} in model"
                   for k, v in target.items() if k in state and state[k].shape != v.shape]
    if missing or unexpected or wrong_shape:
        def listing(title, items):
            shown = "".join(f"\n    {s}" for s in items[:20])
            more = f"\n    ... and {len(items) - 20} more" if len(items) > 20 else ""
            return f"\n  {title} ({len(items)}):{shown}{more}" if items else ""
        raise RuntimeError(f"{path} does not match {type(model).__name__}:"
                           + listing("missing keys", missing) + listing("unexpected keys", unexpected)
                           + listing("shape mismatches", wrong_shape))
    if assign:
        state = {k: v.to(target[k].dtype) for k, v in state.items()}
    model.load_state_dict(state, strict=True, assign=assign)
    return model


def load_imagenet64(path, device="cpu", config=None) -> nn.Module:
    """The conditional ImageNet-64 teacher ``EDMPrecond(ADMUNet(**IMAGENET64_UNET.kwargs()))``, weights from ``path``.

    ``config`` (a :class:`~dmdlib.configs.UNetConfig`) replaces IMAGENET64_UNET (tests use a tiny one).

    The network is EDM's ImageNet-64 ADM (``dmdlib.configs.IMAGENET64_UNET``:
    192 channels, 1000 classes, 295,899,267 parameters, sigma_data 0.5), in
    evaluation mode on ``device``; call it as ``D(x, sigma, labels)`` with
    x [batch, 3, 64, 64] in [-1, 1] and one-hot labels [batch, 1000]. The
    weights are loaded strictly by :func:`load_edm_state_dict`: a missing,
    unexpected or wrongly shaped entry raises a RuntimeError listing them.

    What to supply: a plain state dict (name -> tensor) of that network, as
    ``.safetensors`` or as a ``.pt`` written by ``torch.save`` (read with
    ``torch.load(weights_only=True)``), with EDM's parameter names, with or
    without the ``model.`` prefix. Two sources fit:

    * EDM's ``edm-imagenet-64x64-cond-adm.pkl`` (NVlabs/edm): the ``'ema'``
      entry of that pickle is EDM's preconditioned network;
    * DMD2's ImageNet-64 generator (tianweiy/DMD2), an EDM-preconditioned
      network of the same architecture: keep only the generator's entries
      (not a fake score's or a GAN classifier's) and strip any prefix a
      training wrapper added, so that the names are EDM's (``model.<...>``
      or without ``model.``).

    How to convert (once, outside dmdlib, which never unpickles files): in a
    checkout of the code that wrote the file (EDM's ``dnnlib`` and
    ``torch_utils`` must be importable to unpickle an EDM ``.pkl``), load the
    snapshot, take the network (``['ema']`` for EDM), move it to the CPU in
    float32, take its ``state_dict()`` and save that dictionary of tensors
    with ``safetensors.torch.save_file`` (or ``torch.save``); see also the
    module docstring. Only unpickle files from a source you trust.
    """
    from ..precond import EDMPrecond
    from ..configs import IMAGENET64_UNET

    cfg = IMAGENET64_UNET if config is None else config
    with torch.device("meta"):   # no 1.2 GB of initial draws: the file provides every tensor
        net = EDMPrecond(ADMUNet(**cfg.kwargs()))
    load_edm_state_dict(path, net, map_location=device, assign=True)
    return net.eval().requires_grad_(False)
