"""The GPU fast path: TF32, bf16 autocast, channels_last, torch.compile, fused optimizers.

``Speed()`` is the reference configuration as the authors ran it (fp32, TF32
off, eager); ``speed=None`` in a training loop means the same, and the loop
then turns TF32 off for both matmuls and cuDNN convolutions (PyTorch's cuDNN
default would run convolutions in TF32 on a GPU) and, on a GPU, makes cuDNN
and cuBLAS deterministic (:func:`deterministic_mode`), so that a reference
run repeats and resumes bit for bit. ``FAST`` turns every switch on.
Training loops take a ``speed`` argument and restore the global flags when
they return.

Whatever the training used, three computations run in float32 with TF32
off and autocast off (:func:`fp32`), so the measured quantities do not
depend on the fast path: sampling (Phi_K, :func:`dmdlib.sampler.heun_sample`),
the one-step generation of the evaluation (:func:`dmdlib.sampler.one_step`), and
the DM gradient (:func:`dmdlib.dmd.dm_gradient`), the difference of two
nearly equal denoiser outputs, which bf16 or TF32 rounding would drown.

bf16 is the only autocast dtype: fp16 needs gradient scaling, which the
loops do not do (the DM loss's normalisation would underflow in fp16), so
``Speed(amp="fp16")`` is refused.

On a CPU, ``channels_last`` is a pure memory-layout change that speeds up
oneDNN convolutions (about 1.3x for training and 1.5x for sampling the
small quick UNet on 2 cores), so :func:`default_speed` turns it on there;
fused AdamW also exists there (a single kernel for the optimizer step);
TF32 does nothing, and compile and bf16 autocast are accepted (compile
costs about a minute per network).

TF32 is set through PyTorch's ``fp32_precision`` settings where they exist
(torch >= 2.9: ``torch.backends.cuda.matmul`` and ``torch.backends.cudnn.conv``;
reading the legacy ``allow_tf32`` flags after they were set raises there),
through the legacy flags otherwise.
"""
from __future__ import annotations

import contextlib
import functools
import inspect
import os
from dataclasses import asdict, dataclass
from typing import Optional

import torch
from torch import nn

AMP_DTYPES = {None: None, "bf16": torch.bfloat16}
REFUSED_AMP = {"fp16": "fp16 needs gradient scaling, which the training loops do not do (the DM loss's "
                       "normalisation underflows in fp16)"}


@dataclass(frozen=True)
class Speed:
    tf32: bool = False             # TF32 matmuls and convolutions (Ampere and newer)
    amp: Optional[str] = None      # autocast dtype for training forward passes: None or "bf16"
    channels_last: bool = False    # NHWC memory format for 4-D activations and conv weights
    compile: bool = False          # torch.compile each trained/evaluated network (in place)
    fused_optim: bool = False      # fused Adam/AdamW kernels (CUDA only)

    def __post_init__(self):
        if self.amp not in AMP_DTYPES:
            why = f" ({REFUSED_AMP[self.amp]})" if self.amp in REFUSED_AMP else ""
            raise ValueError(f"Speed.amp must be one of {list(AMP_DTYPES)}, got {self.amp!r}{why}")


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


def is_reference(speed: Optional[Speed]) -> bool:
    """Whether ``speed`` computes the reference's arithmetic: fp32, TF32 off, no autocast, eager (channels_last
    and fused optimizers change memory layout and kernel fusion only)."""
    return speed is None or not (speed.tf32 or speed.amp is not None or speed.compile)


# ----------------------------------------------------------------------------- TF32

# the new API (torch >= 2.9): (backend, op) settings "ieee" | "tf32" | "none" (inherit from the backend's, then the
# global one); the legacy flags are views of the same state, and reading them after a new-API write raises
_NEW_API = hasattr(torch.backends.cuda.matmul, "fp32_precision") and hasattr(torch.backends, "cudnn") \
    and hasattr(torch.backends.cudnn, "conv")


def _sites():
    """The new-API settings TF32 is controlled by: CUDA matmuls and cuDNN convolutions."""
    return (torch.backends.cuda.matmul, torch.backends.cudnn.conv)


def _effective(site, backend) -> str:
    """A new-API setting with "none" resolved through its backend's and the global setting ("ieee" if all are
    "none")."""
    for v in (site.fp32_precision, backend.fp32_precision, torch.backends.fp32_precision):
        if v != "none":
            return v
    return "ieee"


def tf32_flags() -> tuple:
    """The global TF32 state: (CUDA matmuls may use TF32, cuDNN convolutions may, float32 matmul precision
    "high" or "highest")."""
    if _NEW_API:
        mm = _effective(torch.backends.cuda.matmul, torch.backends.cudnn) == "tf32"
        conv = _effective(torch.backends.cudnn.conv, torch.backends.cudnn) == "tf32"
        return (mm, conv, "high" if mm else "highest")
    return (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
            torch.get_float32_matmul_precision())


def _tf32_state():
    """The raw settings that ``_restore_tf32`` puts back."""
    if _NEW_API:
        return tuple(s.fp32_precision for s in _sites())
    return tf32_flags()


def _restore_tf32(state) -> None:
    if _NEW_API:
        for s, v in zip(_sites(), state):
            s.fp32_precision = v
    else:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = state[0], state[1]
        torch.set_float32_matmul_precision(state[2])


def set_tf32(enabled: bool) -> tuple:
    """Allow (or forbid) TF32 in CUDA matmuls and cuDNN convolutions; returns the previous :func:`tf32_flags`."""
    prev = tf32_flags()
    if _NEW_API:
        for s in _sites():
            s.fp32_precision = "tf32" if enabled else "ieee"
    else:
        torch.backends.cuda.matmul.allow_tf32 = bool(enabled)
        torch.backends.cudnn.allow_tf32 = bool(enabled)
        torch.set_float32_matmul_precision("high" if enabled else "highest")
    return prev


@contextlib.contextmanager
def tf32_mode(speed: Optional[Speed]):
    """TF32 as ``speed`` says (off for ``None``, the reference) inside the block; the previous settings after it."""
    state = _tf32_state()
    set_tf32(bool(speed is not None and speed.tf32))
    try:
        yield
    finally:
        _restore_tf32(state)


@contextlib.contextmanager
def fp32(device):
    """Float32 arithmetic inside the block, whatever the caller set: autocast off on ``device``'s type (a device,
    its name, or a tensor on it) and TF32 off; the caller's settings after it."""
    kind = device.device.type if torch.is_tensor(device) else torch.device(device).type
    state = _tf32_state()
    set_tf32(False)
    try:
        with torch.autocast(kind, enabled=False):
            yield
    finally:
        _restore_tf32(state)


def sampling_key(device) -> dict:
    """The arithmetic of sampling on ``device``, for the key of cached samples (Phi_K): float32 with TF32 and
    autocast off (:func:`fp32`), and the device type (GPU and CPU kernels round differently)."""
    return {"precision": "fp32, TF32 off, no autocast", "device_type": _device_type(device)}


# ----------------------------------------------------------------------------- determinism

CUBLAS_WORKSPACE = ":4096:8"    # a cuBLAS workspace configuration under which cuBLAS is deterministic


@contextlib.contextmanager
def deterministic_mode(speed: Optional[Speed], device):
    """On a GPU in reference mode (:func:`is_reference`): deterministic cuDNN (no benchmarking) and deterministic
    PyTorch algorithms inside the block, with ``CUBLAS_WORKSPACE_CONFIG`` set if it is not (cuBLAS reads it
    when its first handle is made: a process that ran cuBLAS before keeps its workspace); the previous settings
    after it. Elsewhere (a CPU, the fast path) nothing changes. Operations without a deterministic
    implementation warn rather than fail (``warn_only``)."""
    kind = _device_type(device)
    if kind != "cuda" or not is_reference(speed):
        yield
        return
    prev = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark,
            torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
            os.environ.get("CUBLAS_WORKSPACE_CONFIG"))
    if prev[4] is None:
        os.environ["CUBLAS_WORKSPACE_CONFIG"] = CUBLAS_WORKSPACE
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = prev[0], prev[1]
        torch.use_deterministic_algorithms(prev[2], warn_only=prev[3])
        if prev[4] is None:
            os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)


def _device_type(device) -> str:
    """The device type of a training loop's ``device`` argument ('auto' is CUDA when a GPU is visible)."""
    if isinstance(device, str):
        if device == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        return "cuda" if device.startswith("cuda") else device
    return torch.device(device).type


# ----------------------------------------------------------------------------- the other switches

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
    """Decorator for training loops: run ``fn`` under :func:`tf32_mode` of its ``speed`` argument and
    :func:`deterministic_mode` of its ``speed`` and ``device`` arguments."""
    sig = inspect.signature(fn)

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        bound = sig.bind(*args, **kwargs)
        bound.apply_defaults()
        speed = bound.arguments.get("speed")
        with tf32_mode(speed), deterministic_mode(speed, bound.arguments.get("device", "cpu")):
            return fn(*args, **kwargs)
    return wrapper
