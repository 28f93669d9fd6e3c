"""`make kernel` registers the venv as the Jupyter kernel "dmdlib", which every notebook names, and a notebook
executes under it at smoke (papermill started with no kernel name: the notebook's own kernelspec)."""
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import set_kernelspec  # noqa: E402


def test_make_kernel_registers_the_venv_and_a_notebook_runs_under_it(tmp_path, monkeypatch):
    import papermill as pm

    bin_dir = Path(sys.executable).parent
    prefix = tmp_path / "prefix"        # `make kernel` installs into the venv (--sys-prefix); here into a scratch prefix
    proc = subprocess.run(["make", "-s", "kernel", "STAMP=", f"BIN={bin_dir}", f"KERNEL_WHERE=--prefix={prefix}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    monkeypatch.setenv("JUPYTER_PATH", str(prefix / "share" / "jupyter"))
    listed = subprocess.run([str(bin_dir / "jupyter"), "kernelspec", "list", "--json"], capture_output=True,
                            text=True, timeout=120, env=os.environ.copy())
    assert listed.returncode == 0, listed.stderr
    spec = json.loads(listed.stdout)["kernelspecs"][set_kernelspec.KERNEL]["spec"]
    assert spec["display_name"] == set_kernelspec.KERNELSPEC["display_name"]
    assert Path(spec["argv"][0]).resolve() == Path(sys.executable).resolve()      # this venv's interpreter

    assert set_kernelspec.main(["--check"]) == 0                                   # every notebook names it
    nb = ROOT / "notebooks" / "08_across_seeds.ipynb"
    out = tmp_path / "out.ipynb"
    pm.execute_notebook(str(nb), str(out), cwd=str(ROOT), progress_bar=False,
                        parameters={"preset": "smoke", "device": "cpu", "seed": 0, "output_dir": str(tmp_path / "o"),
                                    "summary": str(tmp_path / "no-sweeps")})
    executed = json.loads(out.read_text())
    assert executed["metadata"]["kernelspec"]["name"] == set_kernelspec.KERNEL
    assert executed["metadata"]["papermill"]["exception"] is not True
    assert (tmp_path / "o" / "metrics.json").exists()
