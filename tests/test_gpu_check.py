"""bench/gpu_check.sh's CPU part (what CI runs of the one-command GPU check): it says there is no GPU, runs the CPU
tests of the fast-path numerics, the sampler check and a tiny throughput run, exits 0 and writes its JSON."""
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_cpu_part(tmp_path):
    out = tmp_path / "gpu_check.json"
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHON": sys.executable, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(["sh", str(ROOT / "bench" / "gpu_check.sh"), "--json", str(out)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "no GPU" in proc.stdout
    rep = json.loads(out.read_text())
    assert rep["ok"] is True and rep["cuda_available"] is False and rep["torch"]
    assert rep["cpu_tests"]["ok"] and rep["cpu_tests"]["returncode"] == 0 and "passed" in rep["cpu_tests"]["summary"]
    tp = rep["throughput"]
    assert tp["ok"] and tp["batch"] == 32 and tp["ratio_teacher"] > 0 and tp["ratio_dmd"] > 0
    assert tp["reference"]["speed"] == {"tf32": False, "amp": None, "channels_last": False, "compile": False,
                                        "fused_optim": False}
    assert rep["sampler_check"]["after_training"] == 0 and rep["sampler_check"]["inside_bf16_tf32"] == 0
