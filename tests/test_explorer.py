"""The seed explorer (dmdlib.explorer): its static HTML fallback, its validation and its live widget."""
import base64
import io
import re

import numpy as np
import pytest
import torch
from PIL import Image

from dmdlib import explorer
from dmdlib.explorer import SeedExplorer, seed_explorer, widget_bundle

IMG_SRC = re.compile(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"')


def toy(n=40, d=4, seed=0):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, d))
    x = np.tanh(z)
    return {"z": z, "phi_1": 0.5 * x, "phi_8": x, "g": x[rng.permutation(n)], "data": z[:3]}   # extra key ignored


def images(n=12, r=8, seed=0):
    z = torch.randn(n, 1, r, r, generator=torch.Generator().manual_seed(seed))
    x = torch.tanh(z)
    return {"z": z, "phi_1": 0.3 * x, "phi_8": x, "g": x.flip(0)}


def decoded_pngs(html):
    out = []
    for b64 in IMG_SRC.findall(html):
        raw = base64.b64decode(b64, validate=True)
        assert raw[:8] == b"\x89PNG\r\n\x1a\n"
        out.append(Image.open(io.BytesIO(raw)))
    return out


@pytest.mark.parametrize("make", [toy, images], ids=["vectors", "images"])
def test_static_html_one_block_per_student_with_decodable_pngs(make):
    students = {"chessboard": make(seed=0), "moons <&>": make(seed=1)}
    html = SeedExplorer(students, n_seeds=3).html()
    assert re.match(r'<div class="dmd-explorer" id="dmd-explorer-\d+">', html)
    assert html.count('class="dmd-explorer-student"') == 2
    assert "moons &lt;&amp;&gt;" in html and "moons <&>" not in html          # labels escaped
    imgs = decoded_pngs(html)
    assert len(imgs) == 2 and all(im.width > 0 and im.height > 0 for im in imgs)
    assert not re.search(r"https?://", html)
    assert "<script" not in html
    assert "static version" in html and "interactive" in html
    for bad in ("\\(", "\\[", "$$", "$\\"):                                    # no raw TeX in the page text
        assert bad not in html


def test_static_rows_follow_n_seeds_and_ids_are_unique():
    a, b = SeedExplorer({"x": toy()}, n_seeds=2).html(), SeedExplorer({"x": toy()}, n_seeds=6).html()
    (ia,), (ib,) = decoded_pngs(a), decoded_pngs(b)
    assert ib.height > 2 * ia.height and ia.width == ib.width
    assert "seeds 0 to 1" in a and "seeds 0 to 5" in b
    assert re.search(r'id="(dmd-explorer-\d+)"', a).group(1) != re.search(r'id="(dmd-explorer-\d+)"', b).group(1)
    many = SeedExplorer({"x": toy(n=5)}, n_seeds=50).html()                     # n_seeds larger than N: all N
    assert "seeds 0 to 4" in many


def test_static_size_is_small():
    html = SeedExplorer({k: toy(n=1000, seed=i) for i, k in enumerate("abc")}, n_seeds=8).html()
    assert len(html) < 150_000, len(html)


def test_pca_is_that_of_the_reference():
    from dmdlib.metrics import pca_projection

    s = toy()
    ex = SeedExplorer({"t": s})
    p8, p1, pg = pca_projection(s["phi_8"], s["phi_1"], s["g"])
    for key, want in (("phi_8", p8), ("phi_1", p1), ("g", pg)):
        np.testing.assert_allclose(ex.students["t"].pca[key], want, rtol=1e-4, atol=1e-4)
    other = SeedExplorer({"t": s}, pca_reference="g").students["t"].pca["g"]
    np.testing.assert_allclose(other, pca_projection(s["g"])[0], rtol=1e-4, atol=1e-4)


def test_figure_highlights_the_seed():
    s = toy()
    fig = SeedExplorer({"t": s}).figure("t", 7)
    axes = fig.axes
    assert len(axes) == 5
    for ax, key in zip(axes[:4], explorer.KEYS):
        highlighted = ax.collections[1].get_offsets()
        np.testing.assert_allclose(np.asarray(highlighted)[0], s[key][7, :2], rtol=1e-5)


@pytest.mark.parametrize("students, match", [
    ({}, "students"),
    ([("a", toy())], "students"),
    ({"a": {**toy(), "g": toy()["g"][:-1]}}, "first dimension"),
    ({"a": {k: v for k, v in toy().items() if k != "phi_1"}}, "phi_1"),
    ({"a": {**toy(), "phi_1": toy(d=3)["phi_1"]}}, "same shape"),
    ({"a": toy(d=1)}, "two coordinates"),
    ({"a": toy(n=1)}, "N >= 2"),
    ({"a": {**images(), "z": images()["z"][:, :, :4]}}, "z of the outputs' shape"),
])
def test_invalid_students_name_the_problem(students, match):
    with pytest.raises(ValueError, match=match):
        SeedExplorer(students)


def test_invalid_parameters_are_named():
    with pytest.raises(ValueError, match="kind must be one of"):
        SeedExplorer({"a": toy()}, kind="points")
    with pytest.raises(ValueError, match="kind='images' but"):
        SeedExplorer({"a": toy()}, kind="images")
    with pytest.raises(ValueError, match="n_seeds"):
        SeedExplorer({"a": toy()}, n_seeds=0)
    with pytest.raises(ValueError, match="pca_reference"):
        SeedExplorer({"a": toy()}, pca_reference="data")
    ex = SeedExplorer({"a": toy(n=10)})
    with pytest.raises(ValueError, match=r"seed indices must be in \[0, 9\]"):
        ex.figure("a", 10)
    with pytest.raises(ValueError, match="label must be one of"):
        ex.figure("b", 0)


def test_widget_redraws_on_slider_and_dropdown():
    pytest.importorskip("ipywidgets")   # requirements.txt pins it; skipped only where it is not installed
    ex = SeedExplorer({"toys": toy(n=30), "mnist": images(n=12)})
    box = ex.widget()
    (dd, sl), img = box.children[0].children, box.children[1]
    assert ex.current == ("toys", 0) and img.value[:8] == b"\x89PNG\r\n\x1a\n"
    first = img.value
    sl.value = 5
    assert ex.current == ("toys", 5) and img.value != first
    assert sl.max == 29
    sl.value = 20
    dd.value = "mnist"                                   # 12 seeds: the slider is clamped to 11 and redrawn
    assert sl.max == 11 and ex.current == ("mnist", 11)
    assert Image.open(io.BytesIO(img.value)).width > 0


def test_widget_bundle_has_no_plain_text_repr():
    pytest.importorskip("ipywidgets")
    bundle = widget_bundle(SeedExplorer({"a": toy()}).widget())
    assert bundle["text/plain"] == ""
    assert "model_id" in bundle["application/vnd.jupyter.widget-view+json"]


def test_seed_explorer_outside_a_kernel_displays_only_the_static_html(monkeypatch):
    shown = []
    monkeypatch.setattr("IPython.display.display", lambda *a, **k: shown.append((a, k)))
    assert seed_explorer({"a": toy()}, n_seeds=2) is None
    assert len(shown) == 1 and 'class="dmd-explorer"' in shown[0][0][0].data


def test_seed_explorer_in_a_kernel_adds_the_widget(monkeypatch):
    pytest.importorskip("ipywidgets")
    shown = []
    monkeypatch.setattr("IPython.display.display", lambda *a, **k: shown.append((a, k)))
    monkeypatch.setattr(explorer, "_kernel_running", lambda: True)
    seed_explorer({"a": toy()}, n_seeds=2)
    assert len(shown) == 2 and shown[1][1] == {"raw": True} and shown[1][0][0]["text/plain"] == ""
