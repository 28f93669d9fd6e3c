"""Every notebook runs at the `smoke` preset under papermill, and the book builds with warnings as errors."""
import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
REQUIRED = ("preset", "device", "seed", "output_dir")


@pytest.mark.parametrize("nb_path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_structure(nb_path):
    nb = nbformat.read(nb_path, as_version=4)
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, "exactly one cell must be tagged 'parameters'"
    for name in REQUIRED:
        assert f"{name} =" in tagged[0].source, f"parameters cell must define {name}"
    for c in nb.cells:
        if c.cell_type == "code":
            assert not c.get("outputs"), "source notebooks are committed without outputs"
    toc = (ROOT / "_toc.yml").read_text()
    assert f"notebooks/{nb_path.stem}" in toc, "every notebook is a page of the book"


def test_bad_preset_is_rejected(tmp_path):
    import papermill as pm

    with pytest.raises(pm.PapermillExecutionError, match="allowed"):
        pm.execute_notebook(str(NOTEBOOKS[0]), str(tmp_path / "out.ipynb"), cwd=str(ROOT), progress_bar=False,
                            kernel_name="python3",
                            parameters={"preset": "huge", "device": "cpu", "seed": 0,
                                        "output_dir": str(tmp_path / "o")})


def test_smoke_book_builds(tmp_path):
    build = tmp_path / "build"
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "build_book.py"), "--preset", "smoke",
                           "--device", "cpu", "--build-dir", str(build), "--warnings-as-errors"],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-5000:]
    assert (build / "_build" / "html" / "index.html").exists()
    # the MNIST chapters share one teacher: a single teacher run folder
    assert len(list((build / "outputs" / "smoke" / "mnist-runs").glob("teacher-*"))) == 1
    for nb in NOTEBOOKS:
        metrics = json.loads((build / "outputs" / "smoke" / nb.stem / "metrics.json").read_text())
        assert metrics["preset"] == "smoke"
        if nb.stem.startswith("03"):
            assert set(metrics["variants"]) == {"baseline", "gan", "regression"}
            assert set(metrics["memorisation"]["fractions"]) == {"0.3333", "0.25", "0.1", "0.05"}
        if nb.stem.startswith("04"):
            assert [s["teacher_kimg"] for s in metrics["students"]] == [0.128, 0.256]
            assert all(s["delta_e"] >= 0 for s in metrics["students"])
        if nb.stem.startswith("05"):
            assert {"pearson_average", "spearman_average", "pearson_nearest",
                    "spearman_nearest"} <= set(metrics["correlations"])
        html = build / "_build" / "html" / "notebooks" / f"{nb.stem}.html"
        assert html.exists()
