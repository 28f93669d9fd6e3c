"""The GPU fast path: TF32, bf16 autocast, channels_last, torch.compile, fused optimizers.

``Speed()`` is the reference configuration as the authors ran it (fp32, TF32
off, eager); ``speed=None`` in a training loop means the same, and the loop
then turns TF32 off for both matmuls and cuDNN convolutions (PyTorch's cuDNN
default would run convolutions in TF32 on a GPU). ``FAST`` turns every switch
on. Training loops take a ``speed`` argument and restore the global TF32
flags when they return; sampling (Phi_K) and Delta_E always run in fp32/fp64,
whatever the training used, so the measured quantities do not depend on the
fast path.

On a CPU, ``channels_last`` is a pure memory-layout change that speeds up
oneDNN convolutions (about 1.3x for training and 1.5x for sampling the
small quick UNet on 2 cores), so :func:`default_speed` turns it on there;
fused AdamW also exists there (a single kernel for the optimizer step);
TF32 does nothing, and compile and bf16 autocast are accepted (compile
costs about a minute per network).
"""
from __future__ import annotations

import contextlib
import functools
import inspect
from dataclasses import asdict, dataclass
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


CPU_DEFAULT = Speed(channels_last=True, fused_optim=True)


def default_speed(device) -> Speed:
    """The speed settings the notebooks use on ``device``: the reference on CUDA; on a CPU, channels_last and
    the fused AdamW kernel (the optimizer step of the toy MLP drops from about 3 ms to 0.4 ms).

    Both compute the reference's fp32 arithmetic, TF32 off (the CPU switches
    change memory layout and kernel fusion only, so results agree up to
    summation order).
    """
    return CPU_DEFAULT if torch.device(device).type == "cpu" else REFERENCE


def speed_record(speed: Optional[Speed]) -> dict:
    """The speed settings as a run folder records them (``None`` is the reference, recorded as ``Speed()``)."""
    return asdict(speed if speed is not None else REFERENCE)


def tf32_flags() -> tuple:
    """The global TF32 state: (cuda.matmul.allow_tf32, cudnn.allow_tf32, float32 matmul precision)."""
    return (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
            torch.get_float32_matmul_precision())


def set_tf32(enabled: bool) -> tuple:
    """Allow (or forbid) TF32 in CUDA matmuls and cuDNN convolutions; returns the previous :func:`tf32_flags`."""
    prev = tf32_flags()
    torch.backends.cuda.matmul.allow_tf32 = bool(enabled)
    torch.backends.cudnn.allow_tf32 = bool(enabled)
    torch.set_float32_matmul_precision("high" if enabled else "highest")
    return prev


@contextlib.contextmanager
def tf32_mode(speed: Optional[Speed]):
    """TF32 as ``speed`` says (off for ``None``, the reference) inside the block; the previous flags after it."""
    prev = set_tf32(bool(speed is not None and speed.tf32))
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = prev[0], prev[1]
        torch.set_float32_matmul_precision(prev[2])


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
    """Extra keyword arguments for Adam/AdamW: ``fused=True`` on CUDA or CPU when asked for."""
    if speed is not None and speed.fused_optim and torch.device(device).type in ("cuda", "cpu"):
        return {"fused": True}
    return {}


def to_memory_format(x: torch.Tensor, speed: Optional[Speed]) -> torch.Tensor:
    if speed is not None and speed.channels_last and x.ndim == 4:
        return x.contiguous(memory_format=torch.channels_last)
    return x


def tf32_from_speed(fn):
    """Decorator for training loops: run ``fn`` under :func:`tf32_mode` of its ``speed`` argument."""
    sig = inspect.signature(fn)

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        bound = sig.bind(*args, **kwargs)
        with tf32_mode(bound.arguments.get("speed")):
            return fn(*args, **kwargs)
    return wrapper
