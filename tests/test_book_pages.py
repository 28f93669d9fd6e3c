"""The book reads like a report: offline math, result tables parsed as Markdown, numbered figures, hidden set-up
cells, and the reference pages. Fast: no notebook is executed and no book is built (tests/test_notebooks.py
builds the smoke book and checks its HTML)."""
import copy
import importlib
import json
import re
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
sys.path.insert(0, str(ROOT / "scripts"))
import book_display  # noqa: E402

CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())
SPHINX = CONFIG["sphinx"]
HIDING = {"hide-input", "hide-output", "hide-cell", "remove-input", "remove-output", "remove-cell"}


def _tags(cell):
    return cell.get("metadata", {}).get("tags", [])


# ----------------------------------------------------------------------------- _config.yml

def test_math_is_rendered_by_a_bundled_mathjax():
    assert "sphinx-mathjax-offline" in SPHINX["extra_extensions"]
    path = SPHINX["config"]["mathjax_path"]
    assert "//" not in path and not path.startswith("/"), "mathjax_path must be relative to _static, not a URL"
    ext = importlib.import_module("sphinx-mathjax-offline")
    shipped = Path(ext.__file__).parent / "static" / "mathjax"
    assert (shipped / path.removeprefix("mathjax/")).is_file(), "the wheel must ship the script mathjax_path names"

    class App:                     # what the extension does to a Sphinx application
        class config:
            mathjax_path = None
        hooks = []

        def connect(self, event, fn):
            self.hooks.append(event)

    app = App()
    ext.setup(app)
    assert app.config.mathjax_path == path and "build-finished" in app.hooks


def test_math_in_page_titles_is_typeset():
    # myst-parser would restrict MathJax to the content's math elements: a chapter title with $\Delta_E$ would show
    # as raw TeX in the navigation bar
    assert SPHINX["config"]["myst_update_mathjax"] is False


def test_page_titles_are_plain_text():
    """A page's <title> (the browser tab) is not typeset: book/_ext/book_assets.py writes its math as text."""
    sys.path.insert(0, str(ROOT / "book" / "_ext"))
    import book_assets

    heading = 'Robustness: <span class="math notranslate nohighlight">\\(\\Delta_E\\)</span> across training seeds'
    for title, plain in ((heading, "Robustness: ΔE across training seeds"),
                         ("$\\Phi_8$ of $x^{2}$ &amp; $\\mathrm{FD}_{\\infty}$", "Φ₈ of x² &amp; FD∞"),
                         ("No math &lt;here&gt;", "No math &lt;here&gt;")):
        context = {"title": title}
        book_assets.plain_title(None, "page", "page.html", context, None)
        assert context["title"] == plain


def test_no_script_comes_from_a_cdn():
    # the progress bars' ipywidgets JavaScript would be loaded from a CDN on every chapter
    assert SPHINX["config"]["nb_ipywidgets_js"] == {}


def test_markdown_outputs_are_parsed_as_myst():
    assert SPHINX["config"]["nb_render_markdown_format"] == "myst"
    assert {"dollarmath", "amsmath"} <= set(CONFIG["parse"]["myst_enable_extensions"])


def test_figures_are_numbered_and_the_api_is_generated():
    assert SPHINX["config"]["numfig"] is True
    assert "sphinx.ext.autodoc" in SPHINX["extra_extensions"]
    assert SPHINX["config"]["autodoc_default_options"]["members"] is True
    assert SPHINX["config"]["autodoc_inherit_docstrings"] is False, "torch's docstrings break the nitpicky build"


# ----------------------------------------------------------------------------- pages

def _toc_files():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    return [toc["root"]] + [c["file"] for part in toc["parts"] for c in part["chapters"]]


def test_pages_are_in_the_toc_and_the_intro_is_a_landing_page():
    files = _toc_files()
    for page in ("book/background", "book/assumptions", "book/paper_scale", "book/api"):
        assert page in files and (ROOT / f"{page}.md").exists(), page
    intro = (ROOT / "book" / "intro.md").read_text()
    assert "<!-- claims-table -->" in intro
    # the landing page reads: the question, the headline figures, the claims table, then the rest of the book
    order = [intro.index(s) for s in ("## The question", "<!-- headline-figure -->", "<!-- claims-table -->",
                                      "## What is in this book")]
    assert order == sorted(order), "the question, the headline figures, then the claims table, before the contents"
    assert intro.count("\n## ", 0, intro.index("<!-- claims-table -->")) <= 2, "the claims table goes near the top"
    assert len(intro.splitlines()) < 80, "long explanations belong on the background pages"


def test_background_has_the_definitions():
    text = (ROOT / "book" / "background.md").read_text()
    for needle in (r"c_\text{skip}", r"\rho", "L_\\text{DM}", r"\Delta_E = \frac{E_\text{DT}}{E_\text{OT}} - 1",
                   "Lemma C.1", r"R_\theta"):
        assert needle in text, needle


def test_api_page_documents_every_module():
    api = (ROOT / "book" / "api.md").read_text()
    # autodoc writes reStructuredText: in a MyST page it must run inside eval-rst, or its output shows as text
    documented = set(re.findall(r"```\{eval-rst\}\n\.\. automodule:: (\S+)\n```", api))
    modules = {".".join(p.relative_to(ROOT).with_suffix("").parts) for p in (ROOT / "dmdlib").rglob("*.py")
               if p.name not in ("__init__.py", "__main__.py")}
    assert modules == documented, f"missing: {modules - documented}; unknown: {documented - modules}"


def _sci(x):
    """x as the page writes it: '1.98 \\times 10^{17}'."""
    e = len(str(int(x))) - 1
    return f"{x / 10 ** e:.2f} \\times 10^{{{e}}}"


def test_paper_scale_costs_follow_the_paper_preset():
    """The FLOP estimate on the page is recomputed from the paper preset: change a preset, and this fails."""
    from dmdlib.presets import MNIST_PRESETS

    text = (ROOT / "book" / "paper_scale.md").read_text()
    p = MNIST_PRESETS["paper"]
    gflop = 8.07e9
    images = p.teacher.iterations * p.teacher.batch_size
    teacher = images * 3 * gflop                                   # backward = 2 x forward
    per_iteration = (8 + 4 * (p.dmd.gen_every - 1)) / p.dmd.gen_every   # forward-pass equivalents per image
    student = p.dmd.iterations * p.dmd.batch_size * per_iteration * gflop
    n_students = 1 + (len(p.teacher.snapshots) - 1) + 2           # 02, the other snapshots of 04, GAN + regression
    book = 2 * teacher + n_students * student
    assert f"{p.teacher.iterations:,} iterations at batch {p.teacher.batch_size}" in text
    assert f"{images:,}".replace(",", "{,}") + " \\times 3" in text
    assert f"{p.dmd.iterations:,}".replace(",", "{,}") + f" \\times {p.dmd.batch_size} \\times {per_iteration:g}" in text
    for value in (teacher, student, book):
        assert _sci(value) in text, _sci(value)
    assert f"{n_students} students" in text or f"{n_students} \\times" in text
    hours = {"teacher": teacher / 20e12 / 3600, "student": student / 20e12 / 60, "book": book / 20e12 / 3600}
    assert f"about {hours['teacher']:.1f} hours" in text
    assert f"about {hours['student']:.0f} minutes" in text
    assert f"about {hours['book']:.1f} hours" in text


# ----------------------------------------------------------------------------- notebooks as the book shows them

def _executed_like(nb_path):
    """The notebook as papermill leaves it: parameters injected (no kernel is started)."""
    import nbformat
    from papermill.iorw import load_notebook_node
    from papermill.parameterize import parameterize_notebook

    nb = load_notebook_node(str(nb_path))
    nb = parameterize_notebook(nb, {"preset": "smoke", "device": "cpu", "seed": 0, "output_dir": "/tmp/x"})
    return json.loads(nbformat.writes(nb))


@pytest.mark.parametrize("nb_path", NOTEBOOKS, ids=lambda p: p.name)
def test_injected_parameters_are_hidden(nb_path):
    shown = book_display.present(_executed_like(nb_path), json.loads(nb_path.read_text()))
    injected = [c for c in shown["cells"] if "injected-parameters" in _tags(c)]
    assert len(injected) == 1 and "hide-input" in _tags(injected[0])
    defaults = [c for c in shown["cells"] if "parameters" in _tags(c)]
    assert len(defaults) == 1 and "remove-cell" in _tags(defaults[0]), "the defaults papermill overrides are not shown"


@pytest.mark.parametrize("nb_path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_code_cell_is_collapsed(nb_path):
    """A reader sees prose, figures and tables: every code cell's source is hidden or removed."""
    nb = json.loads(nb_path.read_text())
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            tags = set(_tags(cell))
            assert tags & {"hide-input", "hide-cell", "remove-input", "remove-cell"}, cell["id"]
            assert tags - {"parameters"} <= HIDING, cell["id"]


def test_figures_are_named_uniquely_and_say_which_paper_figure():
    names = set()
    for nb_path in NOTEBOOKS:
        for cell in json.loads(nb_path.read_text())["cells"]:
            for spec in cell.get("metadata", {}).get("figures", []):
                assert spec["name"].startswith("fig-") and spec["name"] not in names, spec["name"]
                names.add(spec["name"])
                assert "paper" in spec["caption"], f"{spec['name']}: say which paper figure it reproduces, or none"
                assert spec.get("image", 0) == "all" or isinstance(spec.get("image", 0), int)
    assert len(names) >= 20
    for p in NOTEBOOKS:
        if p.stem.startswith(("01", "02", "03", "04", "05")):
            assert "Reproduces paper Fig" in p.read_text(), p.name


def _img(tag):
    return {"output_type": "display_data", "data": {"image/png": tag, "text/plain": "<Figure>"}, "metadata": {}}


def _md(text):
    return {"output_type": "display_data", "data": {"text/markdown": text, "text/plain": "<Markdown>"}, "metadata": {}}


def _stream(text):
    return {"output_type": "stream", "name": "stdout", "text": text}


def _cell(outputs, figures, tags=("hide-input",)):
    return {"cell_type": "code", "id": "c", "execution_count": 1, "source": "plot()",
            "metadata": {"tags": list(tags), "figures": figures}, "outputs": outputs}


def test_split_figures_keeps_the_order_and_captions_each_figure():
    outs = [_stream("a"), _md("| x |\n| - |\n| 1 |"), _img("A"), _stream("b"), _img("B"), _img("C")]
    cells = book_display.split_figures(_cell(outs, [{"image": 0, "name": "fig-a", "caption": "cap A"},
                                                     {"image": -1, "name": "fig-c", "caption": "cap C"}],
                                              tags=("hide-input", "hide-output")))
    flat = [o for c in cells for o in c["outputs"]]
    assert flat == outs, "no output is lost, duplicated or reordered"
    assert cells[0]["source"] == "plot()" and cells[0]["outputs"] == outs[:2] and "figures" not in cells[0]["metadata"]
    figs = [c for c in cells if "mystnb" in c["metadata"]]
    assert [f["metadata"]["mystnb"]["figure"] for f in figs] == [{"name": "fig-a", "caption": "cap A"},
                                                                  {"name": "fig-c", "caption": "cap C"}]
    assert all(len(f["outputs"]) == 1 and f["metadata"]["tags"] == ["remove-input"] for f in figs)
    rest = [c for c in cells[1:] if "mystnb" not in c["metadata"]]
    assert [c["outputs"] for c in rest] == [[outs[3], outs[4]]]       # B has no caption: shown as before
    assert rest[0]["metadata"]["tags"] == ["remove-input", "hide-output"]
    assert all(c["source"].strip() for c in cells), "myst-nb skips cells with an empty source"
    assert len({c["id"] for c in cells}) == len(cells)


def test_split_figures_all_names_each_remaining_figure():
    cells = book_display.split_figures(_cell([_img("A"), _img("B"), _img("C")],
                                             [{"image": -1, "name": "fig-last", "caption": "last"},
                                              {"image": "all", "name": "fig-row", "caption": "row"}]))
    names = [c["metadata"]["mystnb"]["figure"]["name"] for c in cells if "mystnb" in c["metadata"]]
    assert names == ["fig-row-1", "fig-row-2", "fig-last"]
    single = book_display.split_figures(_cell([_img("A")], [{"image": "all", "name": "fig-row", "caption": "r"}]))
    assert single[1]["metadata"]["mystnb"]["figure"]["name"] == "fig-row"
    none = _cell([_stream("no figure at this preset")], [{"image": 0, "name": "fig-x", "caption": "x"}])
    assert book_display.split_figures(none) == [none]
    with pytest.raises(ValueError, match="image"):
        book_display.split_figures(_cell([_img("A")], [{"image": "first", "name": "fig-x", "caption": "x"}]))


def test_display_metadata_comes_from_the_source_notebook():
    """An executed notebook from an older commit (committed results) is shown with today's tags and captions."""
    source = json.loads(NOTEBOOKS[0].read_text())
    stale = _executed_like(NOTEBOOKS[0])
    for cell in stale["cells"]:                      # as executed before the display metadata existed
        cell["metadata"] = {"tags": [t for t in _tags(cell) if t in book_display.OWN_TAGS]}
    fig_cell = next(c for c in source["cells"] if c["metadata"].get("figures"))
    target = next(c for c in stale["cells"] if c["id"] == fig_cell["id"])
    target["outputs"] = [_img("X")]
    shown = book_display.present(copy.deepcopy(stale), source)
    by_id = {c["id"]: c for c in shown["cells"]}
    for cell in source["cells"]:
        assert set(_tags(cell)) <= set(_tags(by_id[cell["id"]])), cell["id"]
    assert any(c.get("metadata", {}).get("mystnb", {}).get("figure", {}).get("name", "").startswith(
        fig_cell["metadata"]["figures"][0]["name"]) for c in shown["cells"])
    assert book_display.present(stale) != shown, "without the source, the stale metadata stays"


def test_build_book_presents_the_staged_notebooks(tmp_path):
    """build_book.present_notebooks rewrites the staged notebooks in place with the source's display metadata."""
    from smoke_book import load_build_book

    bb = load_build_book()
    (tmp_path / "notebooks").mkdir()
    staged = tmp_path / "notebooks" / NOTEBOOKS[0].name
    staged.write_text(json.dumps(_executed_like(NOTEBOOKS[0]), indent=1))
    bb.present_notebooks(tmp_path)
    shown = json.loads(staged.read_text())
    injected = [c for c in shown["cells"] if "injected-parameters" in _tags(c)]
    assert injected and "hide-input" in _tags(injected[0])


def _title(path: Path) -> str:
    if path.suffix == ".ipynb":
        first = json.loads(path.read_text())["cells"][0]
        text = "".join(first["source"])
    else:
        text = path.read_text()
    return next(line for line in text.splitlines() if line.startswith("# "))


def test_links_to_titles_with_math_have_their_own_text():
    """A {doc} or {ref} link shows its target's title as plain text: a title with $...$ would show raw TeX."""
    pages = sorted((ROOT / "book").glob("*.md"))
    labels = {}
    for page in pages:
        lines = page.read_text().splitlines()
        for i, line in enumerate(lines):
            m = re.fullmatch(r"\((\S+)\)=", line)
            if m:
                labels[m.group(1)] = lines[i + 1]
    checked = 0
    for page in pages:
        for role, target in re.findall(r"\{(doc|ref)\}`([^`<]+)`", page.read_text()):
            if role == "doc":
                base = (page.parent / target).resolve()
                path = next(p for p in (base.with_suffix(".md"), base.with_suffix(".ipynb")) if p.exists())
                title = _title(path)
            else:
                title = labels[target]
            assert "$" not in title, f"{page.name}: {{{role}}}`{target}` shows {title!r} raw; give it a text"
            checked += 1
    assert checked >= 10
