"""Run infrastructure: devices, parameter validation, atomic JSON, presets."""
import json
import math
import os

import numpy as np
import pytest
import torch

import dmdlib
from dmdlib import get_preset, resolve_device, write_json
from dmdlib.notebook import validate_params
from dmdlib.runs import atomic_torch_save, make_generator, prepare_run_dir

NO_GPU = not torch.cuda.is_available()


def test_resolve_device_auto_and_cpu():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device().type == expected


@pytest.mark.skipif(not NO_GPU, reason="needs a machine without a visible GPU")
@pytest.mark.parametrize("dev", ["cuda", "cuda:0", "cuda:3"])
def test_resolve_device_cuda_without_gpu(dev):
    with pytest.raises(ValueError, match="no CUDA GPU") as e:
        resolve_device(dev)
    assert "'cpu'" in str(e.value) and "'auto'" in str(e.value)


@pytest.mark.parametrize("dev", ["tpu", "CPU", "cuda:x", "gpu", "", 0, None, torch.device("cpu")])
def test_resolve_device_unknown(dev):
    with pytest.raises(ValueError) as e:
        resolve_device(dev)
    for allowed in ("'auto'", "'cpu'", "'cuda'", "'cuda:N'"):
        assert allowed in str(e.value)


def test_validate_params(tmp_path):
    out = tmp_path / "nested" / "out"
    assert validate_params("smoke", "cpu", 0, out) == torch.device("cpu")
    assert out.is_dir()
    assert validate_params("paper", "auto", 7, str(out)).type in ("cpu", "cuda")
    with pytest.raises(ValueError, match="preset") as e:
        validate_params("fast", "cpu", 0, out)
    for name in ("'smoke'", "'quick'", "'paper'"):
        assert name in str(e.value)
    for seed in (-1, 1.5, True, "0", None):
        with pytest.raises(ValueError, match="seed"):
            validate_params("smoke", "cpu", seed, out)
    with pytest.raises(ValueError, match="allowed"):
        validate_params("smoke", "tpu", 0, out)
    for bad in ("", None, 3):
        with pytest.raises(ValueError, match="output_dir"):
            validate_params("smoke", "cpu", 0, bad)


def test_make_generator():
    a = torch.randn(5, generator=make_generator(3, "cpu"))
    b = torch.randn(5, generator=make_generator(3, "cpu"))
    assert torch.equal(a, b)
    for bad in (-1, 1.0, True, "3"):
        with pytest.raises(ValueError, match="seed"):
            make_generator(bad, "cpu")


def test_write_json_atomic_and_types(tmp_path):
    from dataclasses import dataclass

    @dataclass
    class D:
        a: int
        b: tuple

    obj = {"f32": np.float32(0.25), "f64": np.float64(1.5), "i64": np.int64(7), "bool": np.bool_(True),
           "t0": torch.tensor(2.5), "t1": torch.arange(3), "t2": torch.ones(2, 2), "dc": D(1, (2, 3)),
           "path": tmp_path, "nested": [{"x": (1, 2)}], 3: "int key"}
    path = tmp_path / "sub" / "m.json"
    write_json(path, obj)
    back = json.loads(path.read_text())
    assert back == {"f32": 0.25, "f64": 1.5, "i64": 7, "bool": True, "t0": 2.5, "t1": [0, 1, 2],
                    "t2": [[1.0, 1.0], [1.0, 1.0]], "dc": {"a": 1, "b": [2, 3]}, "path": str(tmp_path),
                    "nested": [{"x": [1, 2]}], "3": "int key"}
    assert path.read_text().endswith("\n")
    assert sorted(os.listdir(path.parent)) == ["m.json"], "no temporary files may be left"
    # overwrite in place
    write_json(path, {"v": 1})
    assert json.loads(path.read_text()) == {"v": 1}
    assert sorted(os.listdir(path.parent)) == ["m.json"]


def test_write_json_failure_leaves_no_temp_and_keeps_old(tmp_path):
    path = tmp_path / "m.json"
    write_json(path, {"v": 1})
    with pytest.raises(TypeError):
        write_json(path, {"v": object()})
    assert json.loads(path.read_text()) == {"v": 1}
    assert sorted(os.listdir(tmp_path)) == ["m.json"]


def test_write_json_non_finite():
    # Delta_E may be math.inf by convention; write_json writes strict JSON, non-finite values as strings
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        write_json(os.path.join(d, "x.json"), {"delta_e": math.inf, "nan": float("nan")})
        back = json.loads(open(os.path.join(d, "x.json")).read())
    assert back == {"delta_e": "inf", "nan": "nan"}
    assert float(back["delta_e"]) == math.inf


def test_atomic_torch_save(tmp_path):
    path = tmp_path / "c.pt"
    atomic_torch_save({"w": torch.ones(3), "it": 4}, path)
    ck = dmdlib.load_checkpoint(path)
    assert torch.equal(ck["w"], torch.ones(3)) and ck["it"] == 4
    assert os.listdir(tmp_path) == ["c.pt"]


def test_prepare_run_dir(tmp_path):
    cfg = {"kind": "x", "config": dmdlib.TeacherConfig(iterations=3, checkpoint_every=1, log_every=1)}
    d = prepare_run_dir(tmp_path / "r", cfg)
    assert json.loads((d / "config.json").read_text())["config"]["iterations"] == 3
    prepare_run_dir(tmp_path / "r", cfg)  # same config: fine
    with pytest.raises(dmdlib.ConfigMismatchError, match="kind"):
        prepare_run_dir(tmp_path / "r", {**cfg, "kind": "y"})


def test_get_preset():
    p = get_preset("toy", "smoke")
    assert p.name == "smoke" and isinstance(p.teacher, dmdlib.TeacherConfig)
    for name in dmdlib.PRESET_NAMES:
        q = get_preset("toy", name)
        assert q.name == name
        assert q.teacher.checkpoint_every % q.teacher.log_every == 0
        assert q.dmd.checkpoint_every % q.dmd.log_every == 0
    paper = get_preset("toy", "paper")
    assert (paper.width, paper.depth, paper.fourier_dim, paper.k, paper.n_eval) == (384, 5, 32, 8, 1000)
    assert paper.dmd.lr == 2e-6 and paper.dmd.weight_decay == 0.01 and paper.dmd.gen_every == 5
    with pytest.raises(ValueError, match="allowed") as e:
        get_preset("toy", "nope")
    for name in ("smoke", "quick", "paper"):
        assert name in str(e.value)
    with pytest.raises(ValueError, match="experiment"):
        get_preset("cifar", "smoke")


def test_hardware_info_and_stopwatch():
    info = dmdlib.hardware_info("cpu")
    assert info["device"] == "cpu" and info["torch"] == torch.__version__ and info["torch_threads"] >= 1
    sw = dmdlib.Stopwatch()
    assert sw() >= 0


def test_write_json_numpy_arrays(tmp_path):
    write_json(tmp_path / "a.json", {"one": np.array([1.0]), "many": np.array([[1, 2], [3, 4]])})
    assert json.loads((tmp_path / "a.json").read_text()) == {"one": [1.0], "many": [[1, 2], [3, 4]]}
