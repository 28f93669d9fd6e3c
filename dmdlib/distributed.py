"""Data parallelism under torchrun: one process per device, the global batch split across ranks.

``torchrun --nproc_per_node=N`` (``python -m torch.distributed.run``) starts N
copies of a command and tells each its ``RANK``, ``LOCAL_RANK`` and
``WORLD_SIZE``. :func:`init` joins them in one process group (NCCL on GPUs,
Gloo on CPUs). While a process group is active, the training loops
(:func:`dmdlib.teacher.train_teacher`, :func:`dmdlib.dmd.distill`) run
data-parallel with the code of one process:

* **draws**: every rank draws the random numbers of the *global* batch (data,
  noise, sigma, indices) from the run's generator, which is seeded alike on
  every rank, and keeps its own contiguous block of rows (:func:`shard`).
  The generators stay in step, so N processes compute what one process
  computes on the same global batch, up to the order of floating-point sums,
  and one process (no process group) is the single-device loop exactly;
* **gradients**: the trained networks are wrapped in PyTorch's
  ``DistributedDataParallel`` (:func:`wrap`), which averages gradients over
  the ranks during the backward pass; each rank's loss is the mean over its
  block, so the average is the gradient of the global batch's loss. Every
  rank then holds the same gradient, hence the same gradient-norm clipping
  (the norm of the global gradient), the same optimizer step and the same
  EMA: weights are never exchanged after the start;
* **logs**: logged losses are averaged over the ranks (:func:`mean`), i.e.
  they are the global batch's;
* **files**: rank 0 alone prepares the run folder and writes checkpoints,
  snapshots and outputs (:func:`on_main`, :func:`main_first`); every rank
  reads a checkpoint when a run resumes, so a stopped torchrun job restarted
  with the same command continues where it stopped;
* **waiting**: while rank 0 works alone (fetching MNIST, computing Phi_8 on
  10,000 seeds), the other ranks wait in a control message. Control
  messages (:func:`on_main`, :func:`main_first`, :func:`barrier`) go
  through a Gloo group (:func:`control_group`; the default group itself
  under Gloo), which waits on the CPU, and every group is made with a
  timeout of ``TIMEOUT`` (NCCL's default watchdog would end a wait
  after 10 minutes).

The global batch must be divisible by the number of processes.
"""
from __future__ import annotations

import contextlib
import datetime
import os
from typing import Callable

import torch
import torch.distributed as dist
from torch import nn

from .runs import resolve_device


TIMEOUT = datetime.timedelta(hours=2)   # how long a rank may wait for the others (rank 0 alone: data, Phi_8)
_control = None                          # the Gloo group of control messages when the default group is not Gloo


def launched() -> bool:
    """Whether this process was started by torchrun (``WORLD_SIZE`` is set)."""
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ


def active() -> bool:
    """Whether a process group is initialised (the training loops are then data-parallel)."""
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if active() else 0


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    """Rank 0 (or the only process): the one that writes."""
    return rank() == 0


def init(device: str = "auto") -> torch.device:
    """Join torchrun's process group (when launched by torchrun) and return this process's device.

    Outside torchrun this is :func:`dmdlib.runs.resolve_device`. Under
    torchrun, ``'auto'`` and ``'cuda'`` become ``cuda:LOCAL_RANK`` (one GPU
    per process) with the NCCL backend; ``'cpu'`` (or ``'auto'`` without a
    GPU) uses Gloo. An explicit ``'cuda:N'`` would put every process on the
    same GPU and is refused when more than one process runs.
    """
    dev = resolve_device(device)
    if not launched():
        return dev
    n = int(os.environ["WORLD_SIZE"])
    if dev.type == "cuda":
        if device.startswith("cuda:") and n > 1:
            raise ValueError(f"device={device!r} under torchrun with {n} processes would put them all on one GPU; "
                             "use 'auto' or 'cuda' (each process takes the GPU of its LOCAL_RANK)")
        if not device.startswith("cuda:"):
            dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(dev)
    if not active():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo", timeout=TIMEOUT)
    control_group()
    return dev


def control_group():
    """The process group of control messages: the default group under Gloo, else a Gloo group of every rank
    (made on first use, which every rank must reach together, as :func:`init` does)."""
    global _control
    if dist.get_backend() == "gloo":
        return None
    if _control is None:
        _control = dist.new_group(backend="gloo", timeout=TIMEOUT)
    return _control


def shutdown() -> None:
    """Leave the process group (after a barrier, so that no rank exits while another still needs it)."""
    global _control
    if active():
        barrier()
        dist.destroy_process_group()
        _control = None


def check_batch(batch_size: int, name: str) -> None:
    """Refuse a global batch that the processes cannot share equally (``name`` is the option, for the message)."""
    n = world_size()
    if batch_size % n:
        raise ValueError(f"{name} ({batch_size}) is not divisible by the number of processes ({n}); "
                         f"run with a --nproc_per_node that divides it")


def shard(*tensors: torch.Tensor):
    """This rank's block of rows of each global-batch tensor (the tensors themselves in one process).

    Rank r of N keeps rows ``[r B/N, (r+1) B/N)``; returns one tensor for one
    argument, else a tuple.
    """
    n = world_size()
    if n > 1:
        r = rank()
        out = []
        for t in tensors:
            if t.shape[0] % n:
                raise ValueError(f"a batch of {t.shape[0]} rows cannot be split across {n} processes")
            b = t.shape[0] // n
            out.append(t[r * b:(r + 1) * b])
        tensors = tuple(out)
    return tensors[0] if len(tensors) == 1 else tensors


def wrap(module: nn.Module) -> nn.Module:
    """``module`` in ``DistributedDataParallel`` when a process group is active, else ``module`` itself.

    Call the wrapper for forward passes whose gradients must be averaged
    over ranks; read and save weights from ``module`` (the wrapper shares
    them). Construction broadcasts rank 0's weights.
    """
    if not active():
        return module
    p = next(module.parameters())
    ids = [p.device.index] if p.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(module, device_ids=ids)


def mean(value: torch.Tensor) -> torch.Tensor:
    """The mean of a tensor over the ranks (``value`` itself in one process)."""
    if not active():
        return value
    out = value.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out / world_size()


def barrier() -> None:
    """Wait until every rank arrives (through the control group: waits on the CPU, for up to ``TIMEOUT``)."""
    if active():
        dist.barrier(group=control_group())


def _share(status):
    """Broadcast rank 0's ``status`` (any picklable value) to every rank and return it."""
    box = [status]
    dist.broadcast_object_list(box, src=0, group=control_group())
    return box[0]


class RankZeroError(RuntimeError):
    """Raised on the other ranks when rank 0 failed in :func:`on_main` or :func:`main_first`."""


def _failure(message: str) -> RankZeroError:
    return RankZeroError(f"rank 0 failed, so rank {rank()} stops too: {message}")


def on_main(fn: Callable, *args, **kwargs):
    """Run ``fn`` on rank 0 only and return its result on every rank.

    An exception on rank 0 is raised there and, as a :class:`RankZeroError`
    with its message, on every other rank (no rank is left waiting).
    """
    if not active():
        return fn(*args, **kwargs)
    if is_main():
        try:
            out = fn(*args, **kwargs)
        except BaseException as e:
            _share(("error", f"{type(e).__name__}: {e}"))
            raise
        _share(("ok", out))
        return out
    status, out = _share(None)
    if status == "error":
        raise _failure(out)
    return out


@contextlib.contextmanager
def main_first():
    """Run the block on rank 0 first, then on the other ranks (e.g. rank 0 downloads or fills a cache, the
    others then read it). An exception on rank 0 stops every rank. The block must not use collectives."""
    if not active():
        yield
        return
    if is_main():
        try:
            yield
        except BaseException as e:
            _share(f"{type(e).__name__}: {e}")
            raise
        _share(None)
    else:
        err = _share(None)
        if err is not None:
            raise _failure(err)
        yield
