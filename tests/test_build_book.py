"""scripts/build_book.py: which chapters are rendered from results, executed or given a placeholder (no notebook
is executed here: papermill is replaced by a fake that records its calls)."""
import json
import os
import shutil
import sys
import types
from pathlib import Path

import pytest

from dmdlib import provenance as pv
from smoke_book import load_build_book

ROOT = Path(__file__).resolve().parents[1]


bb = load_build_book()


# ----------------------------------------------------------------------------- the decision, as a table

@pytest.mark.parametrize("status, preset, fresh, execute_missing, selected, action", [
    ("fresh", "quick", False, False, True, "render"),
    ("unverified", "quick", False, False, True, "render"),
    ("stale", "quick", False, False, True, "execute"),
    ("missing", "quick", False, False, True, "execute"),
    ("missing", "smoke", False, False, True, "execute"),
    ("fresh", "quick", True, False, True, "execute"),          # --fresh
    ("unverified", "smoke", True, False, True, "execute"),
    ("fresh", "quick", True, False, False, "render"),          # --fresh --only other
    ("stale", "quick", False, False, False, "render"),         # --only other: never executed, rendered stale
    ("missing", "quick", False, False, False, "source"),
    ("fresh", "paper", False, False, True, "render"),
    ("unverified", "paper", False, False, True, "render"),
    ("missing", "paper", False, False, True, "placeholder"),   # paper needs a GPU: never executed unasked
    ("stale", "paper", False, False, True, "render"),
    ("missing", "paper", False, True, True, "execute"),        # --execute-missing
    ("stale", "paper", False, True, True, "execute"),
    ("fresh", "paper", False, True, True, "render"),
    ("missing", "paper", False, True, False, "placeholder"),   # --execute-missing --only other
    ("fresh", "paper", True, False, True, "execute"),          # --fresh at paper
])
def test_plan_chapter(status, preset, fresh, execute_missing, selected, action):
    p = bb.plan_chapter("02_x", status, ["dmdlib/a.py: changed"] if status == "stale" else [], preset=preset,
                        fresh=fresh, execute_missing=execute_missing, selected=selected)
    assert p.action == action and p.status == status and p.stem == "02_x"


def test_plan_says_why():
    p = bb.plan_chapter("02_x", "stale", ["dmdlib/a.py: changed", "requirements.txt: changed"], preset="quick")
    assert "dmdlib/a.py: changed" in p.why and "requirements.txt: changed" in p.why
    p = bb.plan_chapter("02_x", "missing", [], preset="paper")
    assert "results/paper/02_x/" in p.why and "--execute-missing" in p.why


def test_plan_rejects_unknown_values():
    with pytest.raises(ValueError, match="allowed: fresh, stale, unverified, missing"):
        bb.plan_chapter("x", "old", preset="quick")
    with pytest.raises(ValueError, match="allowed: smoke, quick, paper"):
        bb.plan_chapter("x", "fresh", preset="huge")


# ----------------------------------------------------------------------------- a whole build on a fake repository

def _nb(stem, outputs=False):
    code = {"cell_type": "code", "metadata": {}, "source": f"print('{stem}')", "execution_count": None,
            "outputs": [{"output_type": "stream", "name": "stdout", "text": f"ran {stem}\n"}] if outputs else []}
    return {"cells": [{"cell_type": "markdown", "metadata": {}, "source": f"# Chapter {stem}\n\nProse."}, code],
            "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
            "nbformat": 4, "nbformat_minor": 5}


def _write(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))
    return path


STEMS = ("01_a", "02_b", "03_c")


@pytest.fixture
def fake(tmp_path, monkeypatch):
    """A repository with three chapters and results for 01 and 03 at smoke and paper, plus a fake papermill."""
    r = tmp_path / "repo"
    (r / "dmdlib").mkdir(parents=True)
    (r / "dmdlib" / "a.py").write_text("x = 1\n")
    (r / "requirements.txt").write_text("torch\n")
    (r / "_config.yml").write_text("title: t\n")
    (r / "_toc.yml").write_text("format: jb-book\nroot: book/intro\nchapters:\n"
                                + "".join(f"  - file: notebooks/{s}\n" for s in STEMS)
                                + "  - file: book/reproducibility\n")
    (r / "book").mkdir()
    (r / "book" / "intro.md").write_text("# Intro\n")
    (r / "book" / "reproducibility.md").write_text("# Reproducibility\n\nstub\n")
    modules = {"dmdlib.a": types.SimpleNamespace(__file__=str(r / "dmdlib" / "a.py"))}
    for s in STEMS:
        nb = _write(r / "notebooks" / f"{s}.ipynb", _nb(s))
        for preset in ("smoke", "paper"):
            if s == "02_b":
                continue
            d = r / "results" / preset / s
            _write(d / f"{s}.ipynb", _nb(s, outputs=True))
            _write(d / "metrics.json", {"preset": preset, "seed": 0, "wall_time_s": 754.0, "commit": "ab" * 20,
                                        "dirty": False, "hardware": {"cpu": "x86_64", "cpu_count": 2,
                                                                     **({"gpu": "NVIDIA H100"} if preset == "paper"
                                                                        else {})},
                                        "sources": pv.sources(nb, modules=modules, package_dir=r / "dmdlib")})
    calls = []

    def execute_notebook(inp, out, parameters=None, **kw):
        calls.append((Path(inp).stem, os.environ.get(pv.ENV_NOTEBOOK), parameters))
        shutil.copy(inp, out)
        _write(Path(parameters["output_dir"]) / "metrics.json",
               {"preset": parameters["preset"], "seed": parameters["seed"], "wall_time_s": 1.5, "commit": None,
                "dirty": None, "hardware": {"cpu": "fake", "cpu_count": 1}})

    monkeypatch.setitem(sys.modules, "papermill", types.SimpleNamespace(
        execute_notebook=execute_notebook, inspect_notebook=lambda path: {}))
    monkeypatch.setattr(bb, "ROOT", r)
    monkeypatch.delenv(pv.ENV_NOTEBOOK, raising=False)
    return types.SimpleNamespace(root=r, calls=calls, build=tmp_path / "build")


def _staged(fake, preset, stem):
    return json.loads((fake.build / f"book-{preset}" / "notebooks" / f"{stem}.ipynb").read_text())


def test_paper_build_renders_results_and_stages_placeholders(fake, capsys):
    assert bb.main(["--preset", "paper", "--build-dir", str(fake.build), "--no-html"]) == 0
    assert fake.calls == []                                        # nothing executed
    assert _staged(fake, "paper", "01_a") == _nb("01_a", outputs=True)
    page = "".join(_staged(fake, "paper", "02_b")["cells"][0]["source"])
    assert page.startswith("# Chapter 02_b\n")
    assert "No paper-scale result of this chapter is committed" in page and "`results/paper/02_b/`" in page
    assert "--preset paper --device cuda --only 02_b --execute-missing --results-dir results --no-html" in page
    log = capsys.readouterr().out
    assert "01_a: rendered from results/paper/01_a/01_a.ipynb: fresh result" in log
    assert "02_b: placeholder page: no result in results/paper/02_b/" in log
    repro = (fake.build / "book-paper" / "book" / "reproducibility.md").read_text()
    row = next(line for line in repro.splitlines() if line.startswith("| `01_a`"))
    assert "NVIDIA H100, 2 CPU cores" in row and "12.6 min" in row and "`abababababab`" in row and "fresh" in row
    assert "| `02_b` | placeholder (no result) |" in repro


def test_paper_execute_missing_executes_only_the_missing_chapter(fake, tmp_path):
    bb.main(["--preset", "paper", "--build-dir", str(fake.build), "--no-html", "--execute-missing",
             "--results-dir", str(tmp_path / "res")])
    assert [c[0] for c in fake.calls] == ["02_b"]
    assert sorted(p.name for p in (tmp_path / "res" / "paper").iterdir()) == ["02_b"]   # only what was executed


def test_default_build_executes_only_stale_and_missing(fake, capsys):
    (fake.root / "dmdlib" / "a.py").write_text("x = 2\n")         # every result with a.py in its sources: stale
    m = json.loads((fake.root / "results" / "smoke" / "03_c" / "metrics.json").read_text())
    del m["sources"]                                               # 03: a legacy record
    _write(fake.root / "results" / "smoke" / "03_c" / "metrics.json", m)
    bb.main(["--preset", "smoke", "--build-dir", str(fake.build), "--no-html"])
    assert [c[0] for c in fake.calls] == ["01_a", "02_b"]
    nb_env = {c[0]: c[1] for c in fake.calls}
    assert nb_env["01_a"] == str((fake.root / "notebooks" / "01_a.ipynb").resolve())   # the kernel is told its notebook
    assert not (fake.root / "results" / "smoke" / "02_b").exists()  # nothing written back without --results-dir
    log = capsys.readouterr().out
    assert "01_a: executing" in log and "stale result (dmdlib/a.py: code changed)" in log
    staged = _staged(fake, "smoke", "03_c")                        # unverified: rendered, with a note
    assert "unverified" in staged["cells"][1]["source"] and staged["cells"][2:] == _nb("03_c", True)["cells"][1:]
    repro = (fake.build / "book-smoke" / "book" / "reproducibility.md").read_text()
    assert "| `01_a` | executed in this build |" in repro
    assert "unverified: metrics.json records no sources" in repro


def test_fresh_and_only(fake):
    bb.main(["--preset", "smoke", "--build-dir", str(fake.build), "--no-html", "--fresh"])
    assert [c[0] for c in fake.calls] == list(STEMS)
    fake.calls.clear()
    bb.main(["--preset", "smoke", "--build-dir", str(fake.build), "--no-html", "--fresh", "--only", "03"])
    assert [c[0] for c in fake.calls] == ["03_c"]
    assert _staged(fake, "smoke", "01_a") == _nb("01_a", outputs=True)   # the others: from their results
    assert _staged(fake, "smoke", "02_b") == _nb("02_b")                 # or unexecuted without one


def test_dry_run_only_prints_the_plan(fake, capsys):
    assert bb.main(["--preset", "paper", "--build-dir", str(fake.build), "--dry-run"]) == 0
    assert fake.calls == [] and not fake.build.exists()
    log = capsys.readouterr().out
    assert "01_a: would render: fresh result" in log and "02_b: would placeholder: no result" in log


def test_headline_figures_come_from_the_executed_notebooks(tmp_path):
    """The landing page's headline images are the chapters' own outputs; a chapter without outputs says so."""
    import base64

    bb = load_build_book()
    png = base64.b64encode(b"\x89PNG\r\n\x1a\nfake").decode()
    (tmp_path / "book").mkdir()
    (tmp_path / "notebooks").mkdir()
    (tmp_path / bb.INTRO_PAGE).write_text("# Intro\n\n" + bb.HEADLINE_SLOT + "\n\nrest\n")
    stem, cell_id, index, _ = bb.HEADLINE[0]
    outputs = [{"output_type": "display_data", "data": {"image/png": "x", "text/plain": "<Figure>"}}] * index \
        + [{"output_type": "display_data", "data": {"image/png": png, "text/plain": "<Figure>"}}]
    nb = {"cells": [{"cell_type": "code", "id": cell_id, "source": "", "metadata": {}, "outputs": outputs}]}
    (tmp_path / "notebooks" / f"{stem}.ipynb").write_text(json.dumps(nb))
    assert bb.stage_headline(tmp_path, "quick")
    text = (tmp_path / bb.INTRO_PAGE).read_text()
    assert bb.HEADLINE_SLOT not in text and "rest" in text
    assert (tmp_path / "book" / f"headline-{stem}.png").read_bytes() == base64.b64decode(png)
    assert f"{{figure}} headline-{stem}.png" in text
    missing = bb.HEADLINE[1][0]
    assert f"Chapter `{missing}` has no executed result" in text
    (tmp_path / bb.INTRO_PAGE).write_text("# no slot\n")
    assert not bb.stage_headline(tmp_path, "quick")
