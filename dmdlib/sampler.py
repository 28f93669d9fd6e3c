"""The deterministic EDM Heun sampler, i.e. the teacher map Phi_K.

Algorithm 1 of Karras et al. (2022) with S_churn = 0: x_0 = sigma_max z, an
Euler step of the probability-flow ODE dx/dsigma = (x - D(x, sigma)) / sigma
between consecutive levels of ``karras_sigmas(K)``, and a second-order (Heun)
correction on every step except the last one, which goes to sigma = 0. K steps
therefore cost 2K - 1 denoiser calls, and Phi_1(z) = D(sigma_max z, sigma_max).

Sampling is float32 whatever the caller set: the denoiser runs with TF32
and autocast off (:func:`dmdlib.accel.fp32`; PyTorch's default lets cuDNN
convolutions use TF32 on a GPU), so Phi_K does not depend on the fast path.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch

from . import accel
from .schedule import RHO, SIGMA_MAX, SIGMA_MIN, karras_sigmas

Denoiser = Callable[..., torch.Tensor]


def _call(denoiser, x, sigma, labels, dtype):
    s = torch.full((x.shape[0],), float(sigma), dtype=dtype, device=x.device)
    xin = x.to(dtype)
    out = denoiser(xin, s) if labels is None else denoiser(xin, s, labels)
    return out.to(torch.float64)


@torch.no_grad()
def heun_sample(denoiser: Denoiser, z: torch.Tensor, num_steps: int, sigma_min: float = SIGMA_MIN,
                sigma_max: float = SIGMA_MAX, rho: float = RHO, labels: Optional[torch.Tensor] = None
                ) -> torch.Tensor:
    """Phi_K(z): integrate the probability-flow ODE from sigma_max to 0 with K Heun steps.

    The state is carried in float64 (as in the reference code); the denoiser
    sees ``x`` in ``z``'s dtype and ``sigma`` as a tensor of shape [batch]. The
    step to sigma = 0 returns the denoised estimate itself, which is the Euler
    step x + (0 - t)(x - D)/t written without rounding, so ``num_steps=1``
    returns exactly ``denoiser(sigma_max * z, sigma_max)``. The result has
    ``z``'s dtype.
    """
    if not torch.is_tensor(z) or not z.is_floating_point():
        raise ValueError("z must be a floating-point torch tensor of shape [batch, ...]")
    t_steps = karras_sigmas(num_steps, sigma_min, sigma_max, rho).tolist()
    dtype = z.dtype
    x = z.to(torch.float64) * sigma_max
    with accel.fp32(z):
        for t_cur, t_next in zip(t_steps[:-1], t_steps[1:]):
            denoised = _call(denoiser, x, t_cur, labels, dtype)
            if t_next == 0:
                x = denoised
                break
            d_cur = (x - denoised) / t_cur
            x_next = x + (t_next - t_cur) * d_cur
            d_next = (x_next - _call(denoiser, x_next, t_next, labels, dtype)) / t_next
            x = x + (t_next - t_cur) * (0.5 * d_cur + 0.5 * d_next)
    return x.to(dtype)


@torch.no_grad()
def phi_k(denoiser: Denoiser, z: torch.Tensor, k: int, labels: Optional[torch.Tensor] = None,
          batch_size: Optional[int] = None, **schedule) -> torch.Tensor:
    """Phi_K(z) evaluated in chunks of ``batch_size`` rows (all at once if None)."""
    if batch_size is None or batch_size >= z.shape[0]:
        return heun_sample(denoiser, z, k, labels=labels, **schedule)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    outs = []
    for i in range(0, z.shape[0], batch_size):
        lab = None if labels is None else labels[i:i + batch_size]
        outs.append(heun_sample(denoiser, z[i:i + batch_size], k, labels=lab, **schedule))
    return torch.cat(outs)


@torch.no_grad()
def one_step(generator: Denoiser, z: torch.Tensor, labels: Optional[torch.Tensor] = None,
             batch_size: Optional[int] = None) -> torch.Tensor:
    """G(z) (G(z, labels) with labels) in chunks of ``batch_size`` rows (all at once if None), in float32 with
    TF32 and autocast off (:func:`dmdlib.accel.fp32`), like Phi_K: a student is measured alike whatever speed it
    was trained at. On ``z``'s device; the generator's mode (eval/train) is the caller's."""
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    step = batch_size or max(z.shape[0], 1)
    with accel.fp32(z):
        outs = [generator(z[i:i + step]) if labels is None else generator(z[i:i + step], labels[i:i + step])
                for i in range(0, z.shape[0], step)]
    return torch.cat(outs)
