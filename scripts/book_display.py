"""How an executed notebook is shown in the book: hidden set-up cells and numbered, captioned figures.

The source notebooks (``notebooks/*.ipynb``) carry the display metadata of each cell:

* ``tags``: myst-nb's ``hide-input``, ``hide-output``, ``remove-cell``, ... (the set-up, provenance
  and configuration cells are collapsed, the defaults of the ``parameters`` cell removed);
* ``figures``: a list of ``{"image": I, "name": ..., "caption": ...}``, one per figure of the
  cell that reproduces a figure of the paper. ``I`` picks the cell's I-th image output
  (0-based; negative counts from the end; ``"all"``: every image not picked otherwise, each
  named ``<name>-<k>``).

:func:`present` applies them to an executed notebook before the book is built:

1. the display metadata is copied from the source notebook by cell id, so an executed notebook
   made from an older commit (committed results) is shown like a fresh one;
2. papermill's ``injected-parameters`` cell is collapsed (``hide-input``);
3. every image listed in ``figures`` is moved, in place, into a cell of its own whose myst-nb
   ``figure`` option makes it a numbered figure with its caption (myst-nb wraps *every*
   display output of a cell in the figure, so a cell that also shows tables, progress bars or
   other images is split at its figures; the outputs keep their order).

Only metadata and the grouping of outputs change; no code and no output is altered.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

OWN_TAGS = ("parameters", "injected-parameters")   # tags that belong to the executed notebook
INJECTED_TAGS = ("hide-input",)                    # what the injected-parameters cell gets
OUTPUT_TAGS = ("hide-output", "remove-output")     # carried over to the cells split off a cell


def _tags(cell) -> list:
    return list(cell.get("metadata", {}).get("tags", []))


def _set_tags(cell, tags) -> None:
    meta = cell.setdefault("metadata", {})
    if tags:
        meta["tags"] = list(dict.fromkeys(tags))
    else:
        meta.pop("tags", None)


def _is_image(output) -> bool:
    return (output.get("output_type") in ("display_data", "execute_result")
            and any(k.startswith("image/") for k in output.get("data", {})))


def sync_display_metadata(nb: dict, source: dict) -> None:
    """Copy the display tags and ``figures`` of ``source``'s cells onto ``nb``'s cells with the same id."""
    by_id = {c["id"]: c for c in source.get("cells", []) if "id" in c}
    for cell in nb.get("cells", []):
        src = by_id.get(cell.get("id"))
        if src is None:
            continue
        own = [t for t in _tags(cell) if t in OWN_TAGS]
        _set_tags(cell, own + [t for t in _tags(src) if t not in OWN_TAGS])
        figures = src.get("metadata", {}).get("figures")
        if figures:
            cell["metadata"]["figures"] = copy.deepcopy(figures)
        else:
            cell.get("metadata", {}).pop("figures", None)


def _figure_specs(figures, n_images: int) -> dict:
    """{image index: {"name", "caption"}} for a cell with ``n_images`` image outputs."""
    picked, every = {}, None
    for spec in figures:
        which = spec.get("image", 0)
        opts = {k: v for k, v in spec.items() if k != "image"}
        if which == "all":
            every = opts
            continue
        if not isinstance(which, int) or isinstance(which, bool):
            raise ValueError(f"figures: 'image' must be an integer or 'all', got {which!r}")
        if -n_images <= which < n_images:
            picked.setdefault(which % n_images, opts)
    if every is not None:
        rest = [i for i in range(n_images) if i not in picked]
        for k, i in enumerate(rest, 1):
            opts = dict(every)
            if opts.get("name") and len(rest) > 1:
                opts["name"] = f"{opts['name']}-{k}"
            picked[i] = opts
    return picked


def split_figures(cell: dict) -> list:
    """The cell, followed by one cell per captioned figure and one per run of outputs after it."""
    figures = cell.get("metadata", {}).get("figures")
    if cell.get("cell_type") != "code" or not figures:
        return [cell]
    outputs = cell.get("outputs", [])
    specs = _figure_specs(figures, sum(_is_image(o) for o in outputs))
    if not specs:
        return [cell]
    head = copy.deepcopy(cell)
    head["outputs"] = []
    head["metadata"].pop("figures", None)
    out_tags = [t for t in _tags(cell) if t in OUTPUT_TAGS]
    cells, current, k = [head], head, -1

    def new_cell(suffix, metadata):
        # a non-empty source (myst-nb skips empty cells), never shown (remove-input)
        return {"cell_type": "code", "execution_count": None, "id": f"{cell.get('id', 'cell')}-{suffix}",
                "metadata": metadata, "outputs": [], "source": "# output of the cell above"}

    for out in outputs:
        if _is_image(out):
            k += 1
            if k in specs:
                fig = new_cell(f"fig{k}", {"tags": ["remove-input"], "mystnb": {"figure": specs[k]}})
                fig["outputs"].append(out)
                cells.append(fig)
                current = None
                continue
        if current is None:
            current = new_cell(f"out{k}", {"tags": ["remove-input"] + out_tags})
            cells.append(current)
        current["outputs"].append(out)
    return cells


def present(nb: dict, source: dict | None = None) -> dict:
    """``nb`` (an executed notebook as a JSON dict) as the book shows it; ``source``: its source notebook."""
    nb = copy.deepcopy(nb)
    if source is not None:
        sync_display_metadata(nb, source)
    for cell in nb.get("cells", []):
        if "injected-parameters" in _tags(cell):
            _set_tags(cell, _tags(cell) + list(INJECTED_TAGS))
    nb["cells"] = [c for cell in nb.get("cells", []) for c in split_figures(cell)]
    return nb


def present_file(path, source_path=None) -> None:
    """Rewrite the executed notebook at ``path`` in place with :func:`present`."""
    from dmdlib.runs import atomic_write_bytes

    path = Path(path)
    nb = json.loads(path.read_text(encoding="utf-8"))
    source = json.loads(Path(source_path).read_text(encoding="utf-8")) if source_path else None
    text = json.dumps(present(nb, source), indent=1, ensure_ascii=False) + "\n"
    atomic_write_bytes(path, text.encode("utf-8"))
