"""Run directories: atomic writes, checkpoints that resume bit-exactly, run information.

A run directory holds ``config.json`` (the configuration that produced it),
``checkpoint.pt`` (the latest training state, replaced atomically), and
whatever the run writes at the end (snapshots, ``result.pt``, loss logs).
Checkpoints hold only tensors and plain Python values, so they load with
``torch.load(..., weights_only=True)``; nothing in dmdlib unpickles
arbitrary objects. A file that cannot be loaded (truncated, corrupted, or
not written by dmdlib) raises :class:`CorruptCheckpointError`, which names
the file and what to do. Temporary files left by a process killed while
writing are removed when the run folder is next prepared.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import platform
import re
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

ALLOWED_DEVICES = "'auto', 'cpu', 'cuda' or 'cuda:N'"


class NonFiniteLossError(RuntimeError):
    """A loss became NaN/inf; the run stopped and its last good checkpoint was kept."""


class ConfigMismatchError(RuntimeError):
    """A run directory holds a run made with a different configuration."""


class DeviceMismatchError(ConfigMismatchError):
    """A run directory holds a run made on another device type (its random streams continue only there)."""


class CorruptCheckpointError(RuntimeError):
    """A checkpoint file cannot be loaded (truncated, corrupted, or not a dmdlib checkpoint).

    ``path`` is the file; the message says how to recover.
    """

    def __init__(self, path, error: BaseException):
        self.path = Path(path)
        detail = (str(error).strip().splitlines() or [""])[0].split(". ")[0][:160]   # torch's first sentence only
        cause = f"{type(error).__name__}: {detail}" if detail else type(error).__name__
        super().__init__(
            f"{self.path} cannot be loaded: it is truncated or corrupted (e.g. the process was killed or the disk "
            f"was full while it was written or copied) or it is not a dmdlib checkpoint ({cause}). "
            f"{_recovery_advice(self.path)}")


def _recovery_advice(path: Path) -> str:
    """What to do about an unreadable file, by its role in a run folder."""
    if path.name == "checkpoint.pt":
        what = "restart this run from its beginning"
    elif path.name == "result.pt":
        what = "train this run again"
    else:
        what = "recreate it"
    return f"Delete it and run again to {what}, or restore it from a backup."


def check_stop_after(stop_after) -> None:
    """Validate the ``stop_after`` argument of the training loops (None or an integer >= 1)."""
    if stop_after is not None and (isinstance(stop_after, bool) or not isinstance(stop_after, int) or stop_after < 1):
        raise ValueError(f"stop_after must be None or an integer >= 1, got {stop_after!r}")


def check_data_id(data_id) -> None:
    """Validate a ``data_id`` argument (None or a non-empty string naming the training data)."""
    if data_id is not None and (not isinstance(data_id, str) or not data_id):
        raise ValueError(f"data_id must be None or a non-empty string naming the data, got {data_id!r}")


def check_finite(value: float, what: str, first: int, last: int, desc: str, run_dir, hint: str) -> None:
    """Raise :class:`NonFiniteLossError` if a logged loss is NaN/inf, naming the iterations and run folder."""
    if not math.isfinite(value):
        raise NonFiniteLossError(
            f"{desc}: non-finite {what} ({value}) in iterations {first}-{last}; stopped. The last good "
            f"checkpoint is kept" + (f" in {run_dir}" if run_dir else "") + f"; {hint}.")


def resolve_device(device: str = "auto") -> torch.device:
    """'auto' -> 'cuda' when a GPU is visible, else 'cpu'. Validates the name."""
    if not isinstance(device, str):
        raise ValueError(f"device must be a string: {ALLOWED_DEVICES}; got {device!r}")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cpu":
        return torch.device("cpu")
    if device == "cuda" or (device.startswith("cuda:") and device[5:].isdigit()):
        if not torch.cuda.is_available():
            raise ValueError(f"device={device!r} was requested but no CUDA GPU is visible; use 'cpu' or 'auto'")
        return torch.device(device)
    raise ValueError(f"unknown device {device!r}; allowed: {ALLOWED_DEVICES}")


def make_generator(seed: int, device) -> torch.Generator:
    """A torch.Generator on ``device`` seeded with ``seed`` (the only source of randomness of a run)."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    g = torch.Generator(device=torch.device(device))
    g.manual_seed(seed)
    return g


def derived_seed(seed: int, stream: str) -> int:
    """An independent seed for one purpose (``stream``) of a run with seed ``seed``.

    SHA-256 of ``"<seed>/<stream>"``, cut to 63 bits: the evaluation seeds,
    fresh data, reference samples and a second teacher each get their own
    stream, none of which coincides with a training seed (small integers) or
    with another stream.
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if not isinstance(stream, str) or not stream:
        raise ValueError(f"stream must be a non-empty string, got {stream!r}")
    return int.from_bytes(hashlib.sha256(f"{seed}/{stream}".encode()).digest()[:8], "little") >> 1


def _default_mode() -> int:
    """0666 minus the process umask: the permissions an ordinary open() would give (mkstemp gives 0600)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _atomic_replace(path, write) -> None:
    """``write(tmp)`` to a temporary file in ``path``'s folder, fsync it, then atomically replace ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, _default_mode())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder, fsync and os.replace."""
    _atomic_replace(path, lambda tmp: Path(tmp).write_bytes(data))


def atomic_torch_save(obj: Any, path) -> None:
    """torch.save to a temporary file, then atomically replace ``path``."""
    _atomic_replace(path, lambda tmp: torch.save(obj, tmp))


def resume_state(run_dir, map_location="cpu") -> Optional[dict]:
    """What a run folder holds to continue from: its final ``result.pt``, else its ``checkpoint.pt``, else None."""
    run_dir = Path(run_dir)
    final = run_dir / "result.pt"
    path = final if final.exists() else run_dir / "checkpoint.pt"
    return load_checkpoint(path, map_location=map_location) if path.exists() else None


def load_checkpoint(path, map_location="cpu") -> dict:
    """Load a dmdlib checkpoint with ``weights_only=True`` (tensors and plain values only).

    A file that exists but cannot be loaded raises :class:`CorruptCheckpointError`
    (naming the file and what to do) instead of torch's unpickling error; a
    missing or unreadable file raises the operating system's error.
    """
    open(path, "rb").close()  # a missing or unreadable file: the OS's error, which names it
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # truncated zip (RuntimeError, OSError), garbage (UnpicklingError), empty (EOFError)
        raise CorruptCheckpointError(path, e) from None


_TEMP_NAME = re.compile(r"^\..+\.[A-Za-z0-9_]+\.tmp$")


def remove_stale_temps(run_dir) -> list:
    """Delete the temporary files (``.<name>.<random>.tmp``) that a killed writer left in ``run_dir``.

    :func:`atomic_write_bytes` and :func:`atomic_torch_save` remove their
    temporary file when they fail, but a killed process cannot. A run folder
    is used by one process at a time, so at the start of a run every such
    file is stale. Returns the removed paths.
    """
    removed = []
    for f in sorted(Path(run_dir).rglob(".*.tmp")):
        if f.is_file() and _TEMP_NAME.match(f.name):
            f.unlink(missing_ok=True)
            removed.append(f)
    return removed


def tensors_sha256(*tensors: torch.Tensor) -> str:
    """SHA-256 of tensors' shapes, dtypes and values (identifies e.g. a set of regression pairs)."""
    h = hashlib.sha256()
    for t in tensors:
        t = t.detach().to("cpu").contiguous()
        h.update(f"{tuple(t.shape)}:{t.dtype};".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def code_version() -> str:
    """``dmdlib.__version__``: the version of the training code, recorded in every run folder."""
    from . import __version__

    return __version__


def _jsonable(obj):
    if dataclasses.is_dataclass(obj):
        return _jsonable(dataclasses.asdict(obj))
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (torch.Tensor, np.ndarray)):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return _jsonable(obj.item())
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)  # "inf", "-inf", "nan": strict JSON has no non-finite numbers
    return obj


def write_json(path, obj: Any) -> None:
    """Atomically write ``obj`` as indented, strict JSON.

    Dataclasses, tensors, numpy arrays and scalars are converted; non-finite
    floats (e.g. Delta_E = inf) are written as the strings "inf", "-inf", "nan".
    """
    atomic_write_bytes(path, (json.dumps(_jsonable(obj), indent=2, allow_nan=False) + "\n").encode())


def _diff_keys(a, b, prefix="") -> list:
    """Dotted names of the entries in which two nested dicts differ."""
    if not (isinstance(a, dict) and isinstance(b, dict)):
        return [prefix or "<root>"] if a != b else []
    out = []
    for k in sorted(set(a) | set(b)):
        out += _diff_keys(a.get(k), b.get(k), f"{prefix}.{k}" if prefix else k)
    return out


def config_tag(*parts) -> str:
    """An 8-hex-digit tag of a configuration (dataclasses, dicts, numbers), used in run-folder names.

    A changed preset then trains into a new folder instead of colliding with
    the runs of the old one.
    """
    blob = json.dumps(_jsonable(list(parts)), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:8]


INFO_KEY = "info"
DEVICE_KEY = "device"
LEGACY_DEVICE = "cpu"   # the device of folders written before it was recorded: dmdlib had run on CPUs only


def device_record(device) -> dict:
    """``{"device": <device type>}`` (e.g. ``"cpu"``, ``"cuda"``) for a run's ``config.json``; ``{}`` for None.

    A run draws its random numbers from a generator on its device, so it
    can be resumed (and its result reproduced) only on a device of that
    type: :func:`prepare_run_dir` refuses another one.
    """
    return {} if device is None else {DEVICE_KEY: torch.device(device).type}


def prepare_run_dir(run_dir, config: dict) -> Path:
    """Create ``run_dir`` and record ``config``; refuse to mix runs with different configurations.

    ``config`` must hold everything that changes the run's result; a folder
    whose ``config.json`` differs raises :class:`ConfigMismatchError` naming
    the differing entries. A ``config`` with a ``"device"`` entry
    (:func:`device_record`) in a folder made on another device type raises
    :class:`DeviceMismatchError`, which says where the run can continue; a
    folder whose ``config.json`` has no ``"device"`` (written before it was
    recorded, when dmdlib ran on CPUs only) counts as made on ``"cpu"``.
    A new ``config.json`` also gets an ``"info"``
    entry (the git commit of the code, :func:`git_state`), which is
    informational and not compared. Stale temporary files of a killed
    writer are removed (:func:`remove_stale_temps`).
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(run_dir)
    cfg_path = run_dir / "config.json"
    config = _jsonable(config)
    if INFO_KEY in config:
        raise ValueError(f"config must not hold the key {INFO_KEY!r} (reserved for informational entries)")
    if cfg_path.exists():
        old = json.loads(cfg_path.read_text())
        old.pop(INFO_KEY, None)
        if DEVICE_KEY in config:
            legacy = DEVICE_KEY not in old
            made_on = old.setdefault(DEVICE_KEY, LEGACY_DEVICE)
            if made_on != config[DEVICE_KEY]:
                raise DeviceMismatchError(
                    f"run directory {run_dir} holds a run made on device type {made_on!r}"
                    + (" (its config.json records no device: it was written before the device was recorded, "
                       "when dmdlib ran on CPUs only)" if legacy else "")
                    + f", not {config[DEVICE_KEY]!r}: its random numbers are drawn on its device, so it continues "
                    f"(and reloads) only there; run it with device={made_on!r}, or choose another output_dir")
        if old != config:
            diff = _diff_keys(old, config)
            raise ConfigMismatchError(
                f"run directory {run_dir} holds a run with a different configuration "
                f"(differs in: {', '.join(diff)}); choose another output_dir or delete the folder")
    else:
        write_json(cfg_path, {**config, INFO_KEY: {"git": git_state()}})
    return run_dir


def hardware_info(device=None) -> dict:
    """Host, CPU count, torch version and GPU name, for printing and for metrics.json."""
    dev = torch.device(device) if device is not None else None
    info = {"python": platform.python_version(), "torch": torch.__version__,
            "platform": platform.platform(), "cpu": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "device": str(dev) if dev is not None else None}
    if dev is not None and dev.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(dev)
    return info


def git_state(root=None) -> dict:
    """The code version: ``{"commit": <HEAD sha or None>, "dirty": <bool or None>}`` of the repository at ``root``.

    ``root`` defaults to the checkout dmdlib is imported from. ``dirty`` is
    true when tracked or untracked files other than ``results/`` and
    ``_build/`` (what a book build writes) differ from the commit, i.e. when
    the code that ran is not exactly the commit named. Both are None outside
    a git checkout.
    """
    import subprocess

    root = Path(root) if root is not None else Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=30)
        if commit.returncode != 0:
            return {"commit": None, "dirty": None}
        status = subprocess.run(["git", "status", "--porcelain", "--", ".", ":(exclude)results", ":(exclude)_build"],
                                cwd=root, capture_output=True, text=True, timeout=30)
        return {"commit": commit.stdout.strip(), "dirty": bool(status.stdout.strip()) if status.returncode == 0 else None}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


class Stopwatch:
    """Wall time since construction, in seconds."""

    def __init__(self):
        self.start = time.perf_counter()

    def __call__(self) -> float:
        return time.perf_counter() - self.start


def capture_rng(generator: torch.Generator) -> torch.Tensor:
    return generator.get_state()


def restore_rng(generator: torch.Generator, state: Optional[torch.Tensor]) -> None:
    if state is not None:
        generator.set_state(state.to("cpu", torch.uint8))
