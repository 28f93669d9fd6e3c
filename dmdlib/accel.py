"""The GPU fast path: TF32, bf16 autocast, channels_last, torch.compile, fused optimizers.

``Speed()`` is the reference configuration as the authors ran it (fp32, TF32
off, eager). ``FAST`` turns every switch on. Training loops take a ``speed``
argument; sampling (Phi_K) and Delta_E always run in fp32/fp64, whatever the
training used, so the measured quantities do not depend on the fast path.
On a CPU the switches are accepted but only ``compile`` and bf16 autocast
have an effect (usually a slowdown: the fast path is meant for CUDA).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

AMP_DTYPES = {None: None, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class Speed:
    tf32: bool = False             # TF32 matmuls and convolutions (Ampere and newer)
    amp: Optional[str] = None      # autocast dtype for training forward passes: None, "bf16" or "fp16"
    channels_last: bool = False    # NHWC memory format for 4-D activations and conv weights
    compile: bool = False          # torch.compile each trained/evaluated network (in place)
    fused_optim: bool = False      # fused Adam/AdamW kernels (CUDA only)

    def __post_init__(self):
        if self.amp not in AMP_DTYPES:
            raise ValueError(f"amp must be one of {list(AMP_DTYPES)}, got {self.amp!r}")


REFERENCE = Speed()
FAST = Speed(tf32=True, amp="bf16", channels_last=True, compile=True, fused_optim=True)


def set_tf32(enabled: bool) -> None:
    """Allow (or forbid) TF32 in CUDA matmuls and cuDNN convolutions."""
    torch.backends.cuda.matmul.allow_tf32 = bool(enabled)
    torch.backends.cudnn.allow_tf32 = bool(enabled)
    torch.set_float32_matmul_precision("high" if enabled else "highest")


def autocast(device: torch.device, speed: Optional[Speed]):
    """An autocast context for the training forward passes (a no-op without amp)."""
    if speed is None or speed.amp is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=AMP_DTYPES[speed.amp])


def prepare(module: nn.Module, speed: Optional[Speed]) -> nn.Module:
    """Apply channels_last and torch.compile in place (state_dict keys are unchanged)."""
    if speed is None:
        return module
    if speed.channels_last:
        module.to(memory_format=torch.channels_last)
    if speed.compile and getattr(module, "_compiled_call_impl", None) is None:
        module.compile()
    return module


def optimizer_kwargs(device: torch.device, speed: Optional[Speed]) -> dict:
    """Extra keyword arguments for Adam/AdamW: ``fused=True`` on CUDA when asked for."""
    if speed is not None and speed.fused_optim and torch.device(device).type == "cuda":
        return {"fused": True}
    return {}


def to_memory_format(x: torch.Tensor, speed: Optional[Speed]) -> torch.Tensor:
    if speed is not None and speed.channels_last and x.ndim == 4:
        return x.contiguous(memory_format=torch.channels_last)
    return x
