"""dmdlib.provenance: the hashes a result records and the fresh/stale/unverified verdict, on small fake repositories."""
import json
import os
import types
from pathlib import Path

import pytest

from dmdlib import notebook
from dmdlib import provenance as pv

ROOT = Path(__file__).resolve().parents[1]


def _nb(cells):
    return {"cells": cells, "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                        "language": "python"}},
            "nbformat": 4, "nbformat_minor": 5}


def _code(src, **extra):
    return {"cell_type": "code", "metadata": extra.pop("metadata", {}), "source": src,
            "outputs": extra.pop("outputs", []), "execution_count": extra.pop("execution_count", None), **extra}


def _md(src):
    return {"cell_type": "markdown", "metadata": {}, "source": src}


SOURCE_CELLS = [_md("# Title\n\nSome prose."), _code('preset = "quick"\nseed = 0', metadata={"tags": ["parameters"]}),
                _code("import dmdlib\nprint(seed)")]


def _write(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=1))
    return path


def _executed_copy():
    """What papermill makes of SOURCE_CELLS: outputs, counts, tags, an injected-parameters cell, list sources."""
    c0, c1, c2 = (json.loads(json.dumps(c)) for c in SOURCE_CELLS)
    c1["metadata"]["tags"].append("remove-input")
    c1["execution_count"] = 1
    injected = _code('# Parameters\npreset = "smoke"\n', metadata={"tags": ["injected-parameters"]}, execution_count=2)
    c2["source"] = ["import dmdlib\n", "print(seed)"]
    c2["outputs"] = [{"output_type": "stream", "name": "stdout", "text": "0\n"}]
    c2["execution_count"] = 3
    c2["metadata"]["papermill"] = {"duration": 1.0}
    return _nb([c0, c1, injected, c2])


def test_notebook_hash_ignores_outputs_metadata_and_injected_parameters(tmp_path):
    src = _write(tmp_path / "a.ipynb", _nb(SOURCE_CELLS))
    executed = _write(tmp_path / "b.ipynb", _executed_copy())
    assert pv.notebook_sha256(src) == pv.notebook_sha256(executed)


@pytest.mark.parametrize("index, new", [(2, "import dmdlib\nprint(seed + 1)"), (0, "# Title\n\nOther prose.")],
                         ids=["code", "markdown"])
def test_notebook_hash_follows_code_and_markdown(tmp_path, index, new):
    cells = json.loads(json.dumps(SOURCE_CELLS))
    before = pv.notebook_sha256(_write(tmp_path / "a.ipynb", _nb(cells)))
    cells[index]["source"] = new
    assert pv.notebook_sha256(_write(tmp_path / "a.ipynb", _nb(cells))) != before


# ----------------------------------------------------------------------------- a fake repository

@pytest.fixture
def repo(tmp_path):
    """A repository with a package dmdlib/ (a.py loaded, b.py not), requirements.txt, a notebook and a result."""
    r = tmp_path / "repo"
    for name in ("__init__.py", "a.py", "b.py"):
        (r / "dmdlib").mkdir(parents=True, exist_ok=True)
        (r / "dmdlib" / name).write_text(f'"""{name}"""\n# a comment\nx = 1\n')
    (r / "requirements.txt").write_text("torch==2.13.0\n")
    nb = _write(r / "notebooks" / "01_x.ipynb", _nb(SOURCE_CELLS))
    (tmp_path / "elsewhere.py").write_text("")
    modules = {"dmdlib": types.SimpleNamespace(__file__=str(r / "dmdlib" / "__init__.py")),
               "dmdlib.a": types.SimpleNamespace(__file__=str(r / "dmdlib" / "a.py")),
               "other": types.SimpleNamespace(__file__=str(tmp_path / "elsewhere.py")),
               "builtin": types.SimpleNamespace()}
    src = pv.sources(nb, modules=modules, package_dir=r / "dmdlib")
    metrics = _write(r / "results" / "quick" / "01_x" / "metrics.json",
                     {"preset": "quick", "commit": "c0ffee" * 6, "dirty": False, "sources": src})
    return types.SimpleNamespace(root=r, nb=nb, metrics=metrics, sources=src)


def test_sources_record_loaded_package_modules_only(repo):
    assert set(repo.sources["dmdlib"]) == {"dmdlib/__init__.py", "dmdlib/a.py"}
    assert repo.sources["dmdlib"]["dmdlib/a.py"] == pv.code_sha256(repo.root / "dmdlib" / "a.py")
    assert repo.sources["requirements"] == pv.file_sha256(repo.root / "requirements.txt")
    assert repo.sources["notebook"] == pv.notebook_sha256(repo.nb)


def test_fresh_when_nothing_changed(repo):
    assert pv.staleness(repo.metrics, repo.nb, root=repo.root) == ("fresh", [])


def test_executed_copy_and_unloaded_module_keep_it_fresh(repo):
    _write(repo.nb, _executed_copy())                           # outputs, tags and the injected cell do not count
    (repo.root / "dmdlib" / "b.py").write_text("changed = True\n")   # the run did not load b.py
    assert pv.staleness(repo.metrics, repo.nb, root=repo.root) == ("fresh", [])


def test_changed_code_cell_is_stale_and_named(repo):
    cells = json.loads(json.dumps(SOURCE_CELLS))
    cells[2]["source"] += "\nprint(1)"
    _write(repo.nb, _nb(cells))
    assert pv.staleness(repo.metrics, repo.nb, root=repo.root) == (
        "stale", ["notebooks/01_x.ipynb: code or markdown changed"])


def test_docstrings_comments_and_layout_do_not_count(repo):
    (repo.root / "dmdlib" / "a.py").write_text('"""a.py, its docstring reworded."""\n\n# another comment\nx  =  1\n')
    assert pv.staleness(repo.metrics, repo.nb, root=repo.root) == ("fresh", [])
    f = repo.root / "dmdlib" / "f.py"
    f.write_text('def f(a):\n    """Doc."""\n    return a  # c\n')
    g = pv.code_sha256(f)
    f.write_text('def f(a):\n    """Other words,\n    two lines."""\n\n    return a\n')
    assert pv.code_sha256(f) == g
    f.write_text('def f(a):\n    """Doc."""\n    return a + 0\n')
    assert pv.code_sha256(f) != g
    f.write_text('def f(a):\n    return "Doc."\n')   # a string that is code, not a docstring, counts
    assert pv.code_sha256(f) != g
    f.write_text("def f(:\n")                           # a file that does not parse: its bytes
    assert pv.code_sha256(f) == pv.file_sha256(f)


def test_changed_or_removed_loaded_module_is_stale_and_named(repo):
    (repo.root / "dmdlib" / "a.py").write_text("x = 2\n")
    assert pv.staleness(repo.metrics, repo.nb, root=repo.root) == ("stale", ["dmdlib/a.py: code changed"])
    (repo.root / "dmdlib" / "a.py").unlink()
    (repo.root / "requirements.txt").write_text("torch==2.14.0\n")
    assert pv.staleness(repo.metrics, repo.nb, root=repo.root) == (
        "stale", ["dmdlib/a.py: removed", "requirements.txt: changed"])


def test_legacy_record_is_unverified(repo):
    m = json.loads(repo.metrics.read_text())
    del m["sources"]
    _write(repo.metrics, m)
    status, reasons = pv.staleness(repo.metrics, repo.nb, root=repo.root)
    assert status == "unverified" and len(reasons) == 1 and "no sources" in reasons[0] and "c0ffeec0ffee" in reasons[0]


def test_unrecorded_notebook_is_unverified_unless_something_changed(repo):
    m = json.loads(repo.metrics.read_text())
    m["sources"]["notebook"] = None
    _write(repo.metrics, m)
    assert pv.staleness(repo.metrics, repo.nb, root=repo.root) == (
        "unverified", ["notebooks/01_x.ipynb: its sources were not recorded"])
    (repo.root / "dmdlib" / "__init__.py").write_text("x = 3\n")
    assert pv.staleness(repo.metrics, repo.nb, root=repo.root) == ("stale", ["dmdlib/__init__.py: code changed"])


def test_unreadable_or_missing_metrics(repo):
    repo.metrics.write_text("{not json")
    status, reasons = pv.staleness(repo.metrics, repo.nb, root=repo.root)
    assert status == "stale" and "not readable JSON" in reasons[0]
    with pytest.raises(FileNotFoundError):
        pv.staleness(repo.metrics.parent / "absent.json", repo.nb, root=repo.root)


# ----------------------------------------------------------------------------- write_metrics records them

def test_write_metrics_records_sources_of_this_process(tmp_path):
    nb = ROOT / "notebooks" / "01_lowdim_remapping.ipynb"
    m = notebook.write_metrics(tmp_path, {"x": 1}, preset="smoke", seed=0, device="cpu", hardware={}, wall_time_s=1.0,
                         notebook=nb)
    assert json.loads((tmp_path / "metrics.json").read_text())["sources"] == m["sources"]
    src = m["sources"]
    assert src["notebook"] == pv.notebook_sha256(nb)
    for rel in ("dmdlib/notebook.py", "dmdlib/provenance.py", "dmdlib/__init__.py"):
        assert src["dmdlib"][rel] == pv.code_sha256(ROOT / rel)
    assert src["requirements"] == pv.file_sha256(ROOT / "requirements.txt")
    assert pv.staleness(tmp_path / "metrics.json", nb, root=ROOT) == ("fresh", [])


def test_notebook_named_through_the_environment(tmp_path, monkeypatch):
    monkeypatch.delenv(pv.ENV_NOTEBOOK, raising=False)
    nb = _write(tmp_path / "n.ipynb", _nb(SOURCE_CELLS))
    assert pv.sources()["notebook"] is None
    with pv.notebook_named(nb):
        assert os.environ[pv.ENV_NOTEBOOK] == str(nb.resolve())
        m = notebook.write_metrics(tmp_path, {}, preset="smoke", seed=0, device="cpu", hardware={}, wall_time_s=0.0)
    assert pv.ENV_NOTEBOOK not in os.environ
    assert m["sources"]["notebook"] == pv.notebook_sha256(nb)
