"""Every notebook runs at the `smoke` preset under papermill, the book builds with warnings as errors, and the
numbers the chapters write are checked, not only their presence."""
import json
import math
from pathlib import Path

import nbformat
import pytest
from smoke_book import build_smoke_book

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
REQUIRED = ("preset", "device", "seed", "output_dir")
TRAINING_CHAPTERS = ("01", "02", "03", "04", "05")   # the chapters that train (08 reads a sweep's summary)


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
        assert "delta_e_bootstrap" not in c.source, "the bootstrap over seed pairs is not a valid interval"
    toc = (ROOT / "_toc.yml").read_text()
    assert f"notebooks/{nb_path.stem}" in toc, "every notebook is a page of the book"


def test_bad_preset_is_rejected(tmp_path):
    import papermill as pm

    with pytest.raises(pm.PapermillExecutionError, match="allowed"):
        pm.execute_notebook(str(NOTEBOOKS[0]), str(tmp_path / "out.ipynb"), cwd=str(ROOT), progress_bar=False,
                            kernel_name="python3",
                            parameters={"preset": "huge", "device": "cpu", "seed": 0,
                                        "output_dir": str(tmp_path / "o")})


# ----------------------------------------------------------------------------- the smoke book and its numbers

def _walk(obj, path=""):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _walk(v, f"{path}.{k}" if path else str(k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _walk(v, f"{path}[{i}]")
    else:
        yield path, obj


def _records(obj, path=""):
    """Every Delta_E record (a dict with delta_e, ci_low, ci_high, n, r) in a metrics tree."""
    if isinstance(obj, dict):
        if {"delta_e", "ci_low", "ci_high", "n", "r"} <= set(obj) and isinstance(obj["delta_e"], (int, float)):
            yield path, obj
        for k, v in obj.items():
            yield from _records(v, f"{path}.{k}" if path else str(k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _records(v, f"{path}[{i}]")


def _student_records(metrics):
    return [(p, r) for p, r in _records(metrics) if "converged" in r]


def _stream_text(nb_path):
    nb = nbformat.read(nb_path, as_version=4)
    return "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
                     if o.get("output_type") == "stream")


def test_smoke_book_builds_and_chapters_share_runs(smoke_book):
    assert (smoke_book / "_build" / "html" / "index.html").exists()
    # the MNIST chapters share their teachers: one folder per teacher seed (the teacher and the second teacher)
    assert len(list((smoke_book / "outputs" / "smoke" / "mnist-runs").glob("teacher-*"))) == 2
    for nb in NOTEBOOKS:
        assert (smoke_book / "_build" / "html" / "notebooks" / f"{nb.stem}.html").exists()
    # the generated Reproducibility page: every chapter executed now, and fresh against this checkout
    assert (smoke_book / "_build" / "html" / "book" / "reproducibility.html").exists()
    repro = (smoke_book / "book-smoke" / "book" / "reproducibility.md").read_text().splitlines()
    for nb in NOTEBOOKS:
        row = next(line for line in repro if line.startswith(f"| `{nb.stem}` |"))
        assert row.startswith(f"| `{nb.stem}` | executed in this build | smoke |") and row.endswith("| fresh |"), row


@pytest.mark.parametrize("nb_path", NOTEBOOKS, ids=lambda p: p.name)
def test_smoke_metrics_are_finite_and_consistent(smoke_book, nb_path):
    m = json.loads((smoke_book / "outputs" / "smoke" / nb_path.stem / "metrics.json").read_text())
    assert m["preset"] == "smoke" and m["seed"] == 0 and m["wall_time_s"] > 0
    assert "commit" in m and "dirty" in m and "hardware" in m
    for path, v in _walk(m):
        assert not (isinstance(v, str) and v.lower() in ("nan", "inf", "-inf")), f"{path} is not finite: {v}"
        assert not (isinstance(v, float) and not math.isfinite(v)), f"{path} is not finite: {v}"
    recs = list(_records(m))
    for path, r in recs:
        assert r["ci_low"] <= r["delta_e"] <= r["ci_high"], path
        assert r["delta_e"] >= 0 and r["n"] >= 2 and r["r"] >= 2, path
        if "e_dt" in r:
            assert r["e_ot"] <= r["e_dt"] + 1e-12, path
    flat = dict(_walk(m))
    for path, v in flat.items():   # every transport pair anywhere (records, fit tables, logs)
        if path.endswith("e_ot") and path[:-4] + "e_dt" in flat:
            assert v <= flat[path[:-4] + "e_dt"] + 1e-12, path
    if nb_path.stem.startswith(TRAINING_CHAPTERS):
        assert _student_records(m), "every chapter reports a student's Delta_E with its verdict"
    for path, r in _student_records(m):
        g = r["gates"]
        assert {"fit_ratio", "travel", "plateau_change", "failed", "thresholds"} <= set(g), path
        assert r["converged"] == (g["failed"] == []), path


def test_smoke_first_delta_e_along_is_the_start(smoke_book):
    """At iteration 0 the student is Phi_1, so the first Delta_E along distillation is Delta_E(Phi_8, Phi_1)."""
    toy = json.loads((smoke_book / "outputs" / "smoke" / "01_lowdim_remapping" / "metrics.json").read_text())
    mnist = json.loads((smoke_book / "outputs" / "smoke" / "02_mnist_copying" / "metrics.json").read_text())
    for m in list(toy["datasets"].values()) + [mnist]:
        assert m["delta_e_along"]["iteration"][0] == 0
        assert m["delta_e_along"]["delta_e"][0] == pytest.approx(m["delta_e_start_set0"], rel=1e-6, abs=1e-9)


def test_smoke_chapter_contents(smoke_book):
    out = smoke_book / "outputs" / "smoke"
    m1 = json.loads((out / "01_lowdim_remapping" / "metrics.json").read_text())
    assert set(m1["datasets"]) == {"chessboard", "moons", "gaussian_mixture"}
    for name, d in m1["datasets"].items():
        assert set(d["references"]) >= {"start", "random"}
        if name == "chessboard":                     # the smoke preset's curve_datasets
            assert d["delta_e_vs_n"]["n"] == sorted(d["delta_e_vs_n"]["n"]) and len(d["delta_e_vs_n"]["n"]) >= 3
        else:
            assert d["delta_e_vs_n"] is None
    m3 = json.loads((out / "03_ablations" / "metrics.json").read_text())
    assert set(m3["variants"]) == {"baseline", "gan", "regression"}
    assert set(m3["memorisation"]["fractions"]) == {"0.3333", "0.25", "0.1", "0.05"}
    ctrl = m3["memorisation_control"]                 # the positive control, tested like the teacher
    assert ctrl["subset"] == 16 and ctrl["fired"] == (ctrl["fraction"] >= ctrl["min_fraction"])
    m4 = json.loads((out / "04_teacher_convergence" / "metrics.json").read_text())
    assert [s["teacher_kimg"] for s in m4["students"]] == [0.128, 0.256]
    assert all(s["two_stages"]["shape"] == "too short" for s in m4["students"])   # 2 logged points at smoke
    m5 = json.loads((out / "05_boundary" / "metrics.json").read_text())
    assert {"pearson_average", "spearman_average", "pearson_nearest", "spearman_nearest",
            "partial_spearman_average"} <= set(m5["correlations"])
    p = m5["correlations"]["partial_spearman_average"]
    assert p["ci_low"] <= p["r"] <= p["ci_high"] and p["raw"] == pytest.approx(m5["correlations"]["spearman_average"]["r"])


def test_second_build_reloads_every_run(smoke_book):
    """Building again into the same folder trains nothing: every teacher and student is reloaded."""
    runs = sorted(p for p in (smoke_book / "outputs" / "smoke").rglob("result.pt"))
    before = {p: p.stat().st_mtime_ns for p in runs}
    build_smoke_book(smoke_book)
    assert {p: p.stat().st_mtime_ns for p in runs} == before
    assert sorted((smoke_book / "outputs" / "smoke").rglob("result.pt")) == runs
    for nb in NOTEBOOKS:
        text = _stream_text(smoke_book / "outputs" / "smoke" / nb.stem / nb.name)
        assert "trained now" not in text and "resumed at" not in text, nb.name
        if nb.stem.startswith(TRAINING_CHAPTERS):
            assert "loaded from the run folder" in text, nb.name


def test_smoke_book_reads_like_a_report(smoke_book):
    """Offline math, result tables as tables with math in them, numbered figures, hidden parameters, the API."""
    import re

    html = smoke_book / "_build" / "html"
    pages = [html / "index.html", *(html / "book").glob("*.html"), *(html / "notebooks").glob("*.html")]
    for page in pages:
        text = page.read_text()
        assert not re.search(r"<script[^>]*src=\"(https?:)?//", text), f"{page.name} loads a script from the network"
        assert not re.search(r'<span class="(?:doc|std std-ref)">[^<]*\\', text), f"{page.name}: raw TeX in a link"
    assert (html / "_static" / "mathjax" / "tex-chtml.js").is_file()
    assert 'src="../_static/mathjax/tex-chtml.js' in (html / "book" / "background.html").read_text()
    for nb in NOTEBOOKS:
        text = (html / "notebooks" / f"{nb.stem}.html").read_text()
        tables = re.findall(r"<table.*?</table>", text, flags=re.S)
        for t in tables:
            assert "$" not in t and "| ---" not in t, f"{nb.stem}: a table with unparsed Markdown or TeX"
        cells = re.findall(r'<div class="cell ([^"]*)"', text)
        injected = [c for c in cells if "tag_injected-parameters" in c]
        assert len(injected) == 1 and "tag_hide-input" in injected[0], nb.stem
        assert not any(re.search(r"\btag_parameters\b", c) for c in cells), f"{nb.stem}: defaults cell shown"
        if nb.stem.startswith(TRAINING_CHAPTERS):
            assert '<span class="caption-number">Fig. ' in text and "Reproduces paper Fig" in text, nb.stem
    mnist = (html / "notebooks" / "02_mnist_copying.html").read_text()
    assert any('class="math' in t for t in re.findall(r"<table.*?</table>", mnist, flags=re.S))
    api = (html / "book" / "api.html").read_text()
    assert 'id="dmdlib.metrics.pairing_inefficiency"' in api and ".. py:function::" not in api
