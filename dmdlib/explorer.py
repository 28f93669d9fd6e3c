"""Seed explorer: one seed z, the teacher's Phi_1(z) and Phi_8(z), the student's G(z), and where the three land in
the principal plane of Phi_8 (paper Fig. 2 / 5 and Fig. 1 bottom / 7, one seed at a time).

``students`` maps a label (a data set or a student) to ``{"z", "phi_1", "phi_8", "g"}``: arrays or tensors with the
same first dimension N, row i belonging to seed i (extra keys such as a run's ``"data"`` are ignored, so
``dict(run.samples, z=run.z[:N])`` works). Vectors [N, d] (the toys; the first two coordinates are plotted, the plane
the data live in) and images [N, C, H, W] or [N, H, W] in [-1, 1] (MNIST, the manifold) are told apart by shape.

Two views of the same content, both emitted by :func:`seed_explorer`:

* **static** (:meth:`SeedExplorer.html`): ``<div class="dmd-explorer" id="dmd-explorer-<n>">`` holding, per student,
  a ``<details>`` element with one PNG (a base64 ``data:`` URI, so no extra file) of the first ``n_seeds`` seeds, one
  row per seed. No JavaScript, no outside request: this is what the static book shows.
* **live** (:meth:`SeedExplorer.widget`): an ipywidgets Dropdown (the student) and IntSlider (the seed, 0..N-1)
  above an Image widget redrawn on every change; the PCA projections are computed once per student.

How the live view renders in the static book: myst-nb prefers the ``application/vnd.jupyter.widget-view+json``
output over every other one and writes it as an inert ``<script type="application/vnd.jupyter.widget-view+json">``;
the book loads no widget JavaScript (``nb_ipywidgets_js: {}`` in _config.yml), so nothing is shown and nothing is
logged. The widget's ``text/plain`` repr ("VBox(children=...)") is replaced by an empty string, so a viewer that
falls back to plain text (nbconvert without widgets, a repository preview) shows nothing either. The widget is only
displayed when ipywidgets is importable and an IPython kernel is running.
"""
from __future__ import annotations

import base64
import html
import io
import itertools
from dataclasses import dataclass

import numpy as np

KINDS = ("auto", "vectors", "images")
KEYS = ("z", "phi_1", "phi_8", "g")
TITLES = {"z": "noise $z$", "phi_1": r"teacher $\Phi_1(z)$", "phi_8": r"teacher $\Phi_8(z)$", "g": r"student $G(z)$"}
PCA_STYLE = {"phi_8": ("o", "black", "#9a9a9a"), "phi_1": ("^", "tab:blue", "#9ecae1"),
             "g": ("s", "tab:red", "#fc9272")}   # marker, highlight colour, background colour
_ids = itertools.count(1)


def _np(a) -> np.ndarray:
    a = a.detach().cpu().numpy() if hasattr(a, "detach") else np.asarray(a)
    return a.astype(np.float32, copy=False)


@dataclass
class _Student:
    """One student's arrays (float32, CPU), its kind and its precomputed PCA coordinates [N, 2] per output."""
    label: str
    kind: str
    arrays: dict
    pca: dict
    n: int


def _check_student(label, entry, kind: str) -> _Student:
    if not isinstance(entry, dict):
        raise TypeError(f"students[{label!r}] must be a dict with keys {KEYS}, got {type(entry).__name__}")
    missing = [k for k in KEYS if k not in entry]
    if missing:
        raise ValueError(f"students[{label!r}] lacks the keys {missing} (needs {KEYS})")
    arrays = {k: _np(entry[k]) for k in KEYS}
    shapes = {k: tuple(a.shape) for k, a in arrays.items()}
    if any(len(s) < 2 for s in shapes.values()):
        raise ValueError(f"students[{label!r}]: every array must be [N, ...], got shapes {shapes}")
    n = shapes["z"][0]
    if any(s[0] != n for s in shapes.values()):
        raise ValueError(f"students[{label!r}]: z, phi_1, phi_8 and g must have the same first dimension N, "
                         f"got shapes {shapes}")
    if n < 2:
        raise ValueError(f"students[{label!r}]: need N >= 2 seeds for the PCA plane, got N = {n}")
    if not shapes["phi_1"] == shapes["phi_8"] == shapes["g"]:
        raise ValueError(f"students[{label!r}]: phi_1, phi_8 and g must have the same shape, got shapes {shapes}")
    found = "images" if len(shapes["phi_8"]) in (3, 4) else "vectors" if len(shapes["phi_8"]) == 2 else None
    if found is None:
        raise ValueError(f"students[{label!r}]: outputs must be vectors [N, d] or images [N, C, H, W] / [N, H, W], "
                         f"got shape {shapes['phi_8']}")
    if kind != "auto" and kind != found:
        raise ValueError(f"kind={kind!r} but students[{label!r}] holds {found} (shape {shapes['phi_8']}); "
                         f"use kind='auto' or {found!r}")
    if found == "vectors" and (shapes["phi_8"][1] < 2 or len(shapes["z"]) != 2 or shapes["z"][1] < 2):
        raise ValueError(f"students[{label!r}]: vectors need at least two coordinates ([N, d], d >= 2), "
                         f"got shapes {shapes}")
    if found == "images":
        if len(shapes["phi_8"]) == 3:                  # [N, H, W] -> [N, 1, H, W]
            arrays = {k: a[:, None] if a.ndim == 3 else a for k, a in arrays.items()}
        if arrays["z"].shape != arrays["phi_8"].shape or arrays["phi_8"].shape[1] not in (1, 3):
            raise ValueError(f"students[{label!r}]: images need z of the outputs' shape and 1 or 3 channels, "
                             f"got shapes {shapes}")
    return _Student(str(label), found, arrays, {}, n)


def _pca(st: _Student, reference) -> None:
    """Project phi_8, phi_1 and g on the two leading PCs of the reference (default: the student's phi_8), once."""
    from .metrics import pca_projection

    if reference is None:
        reference = "phi_8"
    ref = st.arrays[reference] if isinstance(reference, str) else _np(reference)
    p = pca_projection(ref, st.arrays["phi_8"], st.arrays["phi_1"], st.arrays["g"], k=2)
    st.pca = dict(zip(("phi_8", "phi_1", "g"), p[1:]))


def _lim(*arrays, dims=(0, 1)):
    lo = min(float(a[:, list(dims)].min()) for a in arrays)
    hi = max(float(a[:, list(dims)].max()) for a in arrays)
    pad = 0.05 * (hi - lo) + 1e-6
    return lo - pad, hi + pad


def _to_png(fig, dpi: float, colors: int) -> bytes:
    """The figure as a palette PNG: ``colors`` colours by octree quantisation without dithering, which keeps the
    few saturated colours of the highlights exact (median cut merges them into greys) and the file small."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from PIL import Image

    canvas = FigureCanvasAgg(fig)
    fig.set_dpi(dpi)
    canvas.draw()
    img = Image.fromarray(np.asarray(canvas.buffer_rgba())[..., :3])
    buf = io.BytesIO()
    img = img.quantize(colors=colors, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE)
    img.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


class SeedExplorer:
    """The validated students, their PCA projections, and the figure of one (student, seed); see the module doc."""

    def __init__(self, students: dict, n_seeds: int = 8, kind: str = "auto", pca_reference=None):
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        if not isinstance(students, dict) or not students:
            raise ValueError(f"students must be a non-empty dict {{label: {{{', '.join(KEYS)}}}}}, got {students!r:.80}")
        if isinstance(n_seeds, bool) or not isinstance(n_seeds, (int, np.integer)) or n_seeds < 1:
            raise ValueError(f"n_seeds must be an integer >= 1, got {n_seeds!r}")
        if isinstance(pca_reference, str) and pca_reference not in KEYS:
            raise ValueError(f"pca_reference must be None, one of {KEYS} or an array, got {pca_reference!r}")
        self.students = {}
        for label, entry in students.items():
            st = _check_student(label, entry, kind)
            _pca(st, pca_reference)
            self.students[st.label] = st
        self.n_seeds = int(n_seeds)
        self.current = None            # (label, seed) of the live view's last drawing

    # ------------------------------------------------------------------ one figure: rows of seeds, five panels each

    def figure(self, label: str, seeds, width: float = 8.0, row_height: float = 1.7, background: int = 1000):
        """A matplotlib Figure (not registered with pyplot) of ``seeds`` (an int or a list), one row per seed: z,
        Phi_1(z), Phi_8(z), G(z) (vectors: the seed over up to ``background`` other seeds in grey; images: the four
        images) and the seed's Phi_1, Phi_8 and G on the PC plane of the reference, joined by a line."""
        from matplotlib.figure import Figure

        if label not in self.students:
            raise ValueError(f"label must be one of {list(self.students)}, got {label!r}")
        st = self.students[label]
        seeds = [int(seeds)] if np.isscalar(seeds) else [int(s) for s in seeds]
        if not seeds or any(not 0 <= s < st.n for s in seeds):
            raise ValueError(f"seed indices must be in [0, {st.n - 1}] for {label!r}, got {seeds}")
        top, bottom = 0.3, 0.3                                                  # inches for titles and labels
        height = row_height * len(seeds) + top + bottom
        fig = Figure(figsize=(width, height))
        axes = np.asarray(fig.subplots(len(seeds), 5, squeeze=False))
        fig.subplots_adjust(left=0.035, right=0.995, top=1 - top / height, bottom=bottom / height,
                            wspace=0.06, hspace=0.3)
        bg = np.linspace(0, st.n - 1, min(st.n, background)).astype(int)       # background points
        a = st.arrays
        out_lim = _lim(a["phi_1"], a["phi_8"], a["g"]) if st.kind == "vectors" else None
        z_lim = _lim(a["z"]) if st.kind == "vectors" else None
        pc_lim = _lim(*st.pca.values())
        for row, s in zip(axes, seeds):
            for ax, key in zip(row[:4], KEYS):
                if st.kind == "vectors":
                    ax.scatter(a[key][bg, 0], a[key][bg, 1], s=3, c="#9a9a9a", linewidths=0)
                    ax.scatter(a[key][s, 0], a[key][s, 1], s=30, c="tab:red", edgecolors="black", linewidths=0.7)
                    lim = z_lim if key == "z" else out_lim
                    ax.set_xlim(*lim)
                    ax.set_ylim(*lim)
                else:
                    im = a[key][s] / 3.0 if key == "z" else a[key][s]                # noise: +-3 sd to +-1
                    im = (np.clip(im, -1, 1) + 1) / 2
                    ax.imshow(im[0] if im.shape[0] == 1 else im.transpose(1, 2, 0), cmap="gray", vmin=0, vmax=1,
                              interpolation="nearest")
            ax = row[4]
            for key in ("phi_8", "phi_1", "g"):
                ax.scatter(st.pca[key][bg, 0], st.pca[key][bg, 1], s=3, c=PCA_STYLE[key][2], linewidths=0)
            trip = np.stack([st.pca["phi_1"][s], st.pca["phi_8"][s], st.pca["g"][s]])
            ax.plot(trip[:, 0], trip[:, 1], c="black", lw=0.8)
            for key in ("phi_8", "phi_1", "g"):
                m, c, _ = PCA_STYLE[key]
                ax.scatter(*st.pca[key][s], marker=m, s=30, c=c, edgecolors="black", linewidths=0.6, zorder=3)
            ax.set_xlim(*pc_lim)
            ax.set_ylim(*pc_lim)
            for ax in row:
                ax.set_aspect("equal", adjustable="box")
                ax.set_xticks([])
                ax.set_yticks([])
            d_g = float(np.linalg.norm(a["g"][s] - a["phi_8"][s]))
            d_1 = float(np.linalg.norm(a["phi_1"][s] - a["phi_8"][s]))
            row[0].set_ylabel(f"seed {s}", fontsize=8, labelpad=2)
            row[1].set_xlabel(rf"$\|\Phi_1-\Phi_8\|$ = {d_1:.2f}", fontsize=7, labelpad=1)
            row[3].set_xlabel(rf"$\|G-\Phi_8\|$ = {d_g:.2f}", fontsize=7, labelpad=1)
        for ax, key in zip(axes[0], KEYS):
            ax.set_title(TITLES[key], fontsize=8, pad=3)
        axes[0, 4].set_title("PCs of $\\Phi_8$: \u25cf $\\Phi_8$ \u25b2 $\\Phi_1$ \u25a0 $G$", fontsize=7, pad=3)
        return fig

    def png(self, label: str, seeds, dpi: float = 60, colors: int | None = None, **kw) -> bytes:
        """:meth:`figure` as palette-PNG bytes (``kw`` goes to :meth:`figure`); ``colors`` defaults to 16 for
        vectors (flat colours) and 64 for images (grey levels)."""
        if colors is None:
            st = self.students.get(label)
            colors = 64 if st is not None and st.kind == "images" else 16
        return _to_png(self.figure(label, seeds, **kw), dpi, colors)

    # ------------------------------------------------------------------ the static view

    def html(self, dpi: float = 60, background: int = 200) -> str:
        """The static explorer: one ``<details>`` per student (the first open) with a PNG of its first n_seeds seeds."""
        parts = []
        for i, (label, st) in enumerate(self.students.items()):
            n = min(self.n_seeds, st.n)
            uri = "data:image/png;base64," + base64.b64encode(self.png(label, range(n), dpi=dpi, background=background)).decode("ascii")
            esc = html.escape(label)
            parts.append(
                f'<details class="dmd-explorer-student"{" open" if i == 0 else ""}>'
                f'<summary><strong>{esc}</strong>: seeds 0 to {n - 1}</summary>'
                f'<img src="{uri}" alt="seed explorer, {esc}: seeds 0 to {n - 1}" style="max-width:100%;height:auto">'
                f'</details>')
        caption = ("<p><em>Seed explorer, static version:</em> each row is one evaluation seed z, with the teacher's "
                   "one-step and 8-step outputs \u03a6<sub>1</sub>(z), \u03a6<sub>8</sub>(z), the student's G(z) "
                   "(the seed highlighted over the whole sample) and, right, the three on the principal plane of "
                   "\u03a6<sub>8</sub>, joined \u03a6<sub>1</sub>\u2013\u03a6<sub>8</sub>\u2013G. Click a name to "
                   "open or close it. Running this notebook in Jupyter adds an interactive explorer (any student, "
                   "any seed).</p>")
        return (f'<div class="dmd-explorer" id="dmd-explorer-{next(_ids)}">' + caption + "".join(parts) + "</div>")

    # ------------------------------------------------------------------ the live view

    def widget(self, dpi: float = 72):
        """The live explorer: Dropdown (student) and IntSlider (seed) above an Image of :meth:`figure`."""
        import ipywidgets as w

        labels = list(self.students)
        dd = w.Dropdown(options=labels, value=labels[0], description="student")
        sl = w.IntSlider(value=0, min=0, max=self.students[labels[0]].n - 1, description="seed",
                         continuous_update=False)
        img = w.Image(format="png")

        def redraw(_=None):
            sl.max = self.students[dd.value].n - 1       # may clamp sl.value, which redraws once more
            if self.current != (dd.value, sl.value):
                self.current = (dd.value, sl.value)
                img.value = self.png(dd.value, sl.value, dpi=dpi, width=11.0, row_height=2.3)

        dd.observe(redraw, "value")
        sl.observe(redraw, "value")
        redraw()
        box = w.VBox([w.HBox([dd, sl]), img])
        box.add_class("dmd-explorer-live")
        return box


def _kernel_running() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    ip = get_ipython()
    return ip is not None and getattr(ip, "kernel", None) is not None


def seed_explorer(students: dict, n_seeds: int = 8, kind: str = "auto", pca_reference=None) -> None:
    """Display the seed explorer (see the module doc): always the static HTML block, then, in a running IPython
    kernel with ipywidgets installed, the live widget (its plain-text repr emptied).

    ``students``: {label: {"z", "phi_1", "phi_8", "g"}} with the same N rows; ``n_seeds``: rows of the static view;
    ``kind``: one of ``"auto"``, ``"vectors"``, ``"images"``; ``pca_reference``: the PCA basis, None (each student's
    phi_8), a key of the student dicts, or an array [M, ...] of the outputs' shape.
    """
    from IPython.display import HTML, display

    ex = SeedExplorer(students, n_seeds=n_seeds, kind=kind, pca_reference=pca_reference)
    display(HTML(ex.html()))
    if not _kernel_running():
        return
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        return
    display(widget_bundle(ex.widget()), raw=True)


def widget_bundle(widget) -> dict:
    """The widget's display data with its ``text/plain`` repr replaced by an empty string."""
    data = widget._repr_mimebundle_()
    data = data[0] if isinstance(data, tuple) else data
    return {**data, "text/plain": ""}
