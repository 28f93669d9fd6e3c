"""Chapter 09's figures: the measures of a sweep, the phase diagram over dimension x teacher resolution, and the
linear-Gaussian limit (:mod:`dmdlib.exact`, :mod:`dmdlib.exact_sweeps`)."""
from __future__ import annotations

from typing import Callable, Optional, Sequence

import numpy as np

from .exact_sweeps import is_result, point_index
from .plots import _ax, _plt


def _errorbar(ax, x, recs, key, color, marker, label, hollow=None, **kw):
    v = np.asarray([r[key] for r in recs], dtype=np.float64)
    err = np.vstack([np.clip(v - [r["ci_low"] for r in recs], 0, None), np.clip([r["ci_high"] for r in recs] - v, 0, None)])
    if hollow is None:
        ax.errorbar(x, v, yerr=err, fmt=marker + "--", color=color, capsize=2, ms=5, lw=0.8, label=label, **kw)
        return
    ax.plot(x, v, "-", color=color, lw=1)
    for xi, vi, lo, hi, h in zip(x, v, err[0], err[1], hollow):
        ax.errorbar([xi], [vi], yerr=[[lo], [hi]], fmt=marker, capsize=4, color=color, ms=7, mfc="white" if h else color)
    ax.plot([], [], marker + "-", color=color, label=label)


def plot_measures_sweep(points: Sequence[dict], label: Callable, xlabel: str, title: Optional[str] = None, axes=None):
    """Three panels against the points of a sweep (one x position per point, labelled ``label(p)``): mode agreement
    (where the data has modes) with chance, the second network's and the flow level; Delta_E with its random,
    second-network and flow levels (symlog); the relative pairing error with its random, second-network and
    flow levels. Hollow markers: points that are no result (:func:`dmdlib.exact_sweeps.is_result`)."""
    plt = _plt()
    if axes is None:
        fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    else:
        fig = axes[0].figure
    x = np.arange(len(points))
    hollow = [not is_result(p) for p in points]
    ms = [p.get("measures") or {} for p in points]
    ax = axes[0]
    if all("agreement" in m for m in ms):
        a = [m["agreement"] for m in ms]
        _errorbar(ax, x, [r["student"] for r in a], "value", "tab:blue", "o", "student (hollow: no result)", hollow)
        ax.plot(x, [r["chance"]["value"] for r in a], "k:", lw=1.2, label="chance")
        if all("second" in r for r in a):
            _errorbar(ax, x, [r["second"] for r in a], "value", "tab:green", "^", "second network")
        flows = [p.get("flow_level", {}).get("agreement") for p in points]
        if all(f is not None for f in flows):
            _errorbar(ax, x, flows, "value", "tab:purple", "s", r"flow level ($\Phi_{64}$)")
        ax.set_ylim(-0.02, 1.02)
        ax.set_ylabel("mode agreement (95% CI)")
    else:
        ax.text(0.5, 0.5, "one mode: no mode agreement", ha="center", va="center", transform=ax.transAxes)
    ax = axes[1]
    _errorbar(ax, x, points, "delta_e", "tab:blue", "o", r"student $\Delta_E(\Phi_K, G)$", hollow)
    for name, color, marker, lab in (("random", "tab:red", "v", "random pairing"),
                                     ("reproducibility", "tab:green", "^", "second network")):
        recs = [p["references"].get(name) for p in points]
        if all(r is not None for r in recs):
            _errorbar(ax, x, recs, "delta_e", color, marker, lab)
    flows = [p.get("flow_level", {}).get("delta_e") for p in points]
    if all(f is not None for f in flows):
        _errorbar(ax, x, flows, "delta_e", "tab:purple", "s", r"flow level ($\Phi_{64}$)")
    ax.set_yscale("symlog", linthresh=1e-3)
    ax.set_ylabel(r"$\Delta_E$ (95% CI)")
    ax = axes[2]
    rel = [m["relative_error"] for m in ms]
    _errorbar(ax, x, [r["student"] for r in rel], "value", "tab:blue", "o", "student", hollow)
    _errorbar(ax, x, [r["random"] for r in rel], "value", "tab:red", "v", "random pairing")
    if all("second" in r for r in rel):
        _errorbar(ax, x, [r["second"] for r in rel], "value", "tab:green", "^", "second network")
    flows = [p.get("flow_level", {}).get("relative_error") for p in points]
    if all(f is not None for f in flows):
        _errorbar(ax, x, flows, "value", "tab:purple", "s", r"flow level ($\Phi_{64}$)")
    ax.set_ylabel("relative pairing error (95% CI)")
    for ax in axes:
        ax.set_xticks(x, [label(p) for p in points])
        ax.set_xlabel(xlabel)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="best")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def _grid(points, dims, taus, value):
    grid = np.full((len(dims), len(taus)), np.nan)
    cells = {}
    for p in points:
        if p["ambient_dim"] in dims and p["tau"] in taus:
            i, j = dims.index(p["ambient_dim"]), taus.index(p["tau"])
            grid[i, j] = value(p)
            cells[(i, j)] = p
    return grid, cells


def plot_phase_diagram(points: Sequence[dict], dims: Sequence[int], taus: Sequence[float]):
    """Two heat maps over ambient dimension (rows) x teacher resolution tau (columns): the copying index
    (mode agreement from chance, 0, to the second network's, 1; :func:`dmdlib.exact_sweeps.copying_index`) and
    Delta_E over its random-pairing level (log colour). Each cell is annotated with its value and reading
    (C copies, R remaps, D measures disagree, ? unresolved); cells that are no result are boxed in white and
    marked 'n.r.', cells not run are grey."""
    plt = _plt()
    dims, taus = list(dims), list(taus)
    fig, axes = plt.subplots(1, 2, figsize=(12, 1.2 + 1.1 * len(dims)))
    index = lambda p: (point_index(p) or {"value": np.nan})["value"]  # noqa: E731
    ratio = lambda p: p["delta_e"] / p["references"]["random"]["delta_e"]  # noqa: E731
    short = {"copies": "C", "remaps": "R", "measures disagree": "D", "unresolved": "?"}
    for ax, (value, name, kw) in zip(axes, (
            (index, "copying index (0 chance, 1 second network)", {"vmin": 0.0, "vmax": 1.0, "cmap": "viridis"}),
            (ratio, r"$\Delta_E$ / random-pairing level", {"cmap": "magma_r"}))):
        grid, cells = _grid(points, dims, taus, value)
        if "vmin" not in kw:   # Delta_E / random: a log scale over the positive cells
            from matplotlib.colors import LogNorm

            grid = np.where(grid > 0, grid, np.nan)
            pos = grid[np.isfinite(grid)]
            if pos.size:
                kw = {**kw, "norm": LogNorm(vmin=max(float(pos.min()), 1e-4), vmax=max(float(pos.max()), 2e-4))}
        ax.set_facecolor("0.85")
        im = ax.imshow(np.ma.masked_invalid(grid), aspect="auto", origin="lower", **kw)
        for (i, j), p in cells.items():
            ok = is_result(p)
            v, shown = value(p), grid[i, j]
            rgb = (np.ravel(im.cmap(float(np.ravel(im.norm(float(shown)))[0])))[:3] if np.isfinite(shown)
                       else (0.85, 0.85, 0.85))
            dark = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2] < 0.5   # white text on dark cells
            ax.text(j, i, f"{v:.2g}\n{short.get(p['reading']['reading'], '?')}" + ("" if ok else " n.r."),
                    ha="center", va="center", fontsize=8, color="w" if ok and dark else "k",
                    bbox=None if ok else {"facecolor": "white", "alpha": 0.7, "lw": 0})
        ax.set_xticks(range(len(taus)), [f"{t:g}" for t in taus])
        ax.set_yticks(range(len(dims)), [str(d) for d in dims])
        ax.set_xlabel(r"teacher resolution $\tau$ (0: converged)")
        ax.set_ylabel("ambient dimension d")
        ax.set_title(name, fontsize=10)
        fig.colorbar(im, ax=ax)
    fig.tight_layout()
    return fig


def plot_linear_flow(trajectory, std, runs: dict, ax=None):
    """Left: the diagonal of A along the closed-form flow (:func:`dmdlib.exact.linear_dmd_flow`) from Phi_1,
    with the flow map's entries s_i dashed. Right: the rotation part ||(A - A^T)/2||_F along the closed-form
    flow (zero) and along the stochastic runs ``runs`` ({label: :func:`dmdlib.exact.linear_dmd` output})."""
    from .exact import rotation_part

    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.0))
    tr = np.asarray(trajectory)
    steps = np.arange(tr.shape[0])
    for i, s in enumerate(np.asarray(std, dtype=np.float64)):
        line, = axes[0].plot(steps, tr[:, i, i], lw=1.5, label=f"$a_{{{i + 1}}}$ (target $s_{{{i + 1}}}$ = {s:g})")
        axes[0].axhline(s, color=line.get_color(), ls="--", lw=0.8)
    axes[0].set_xlabel("gradient step (closed form)")
    axes[0].set_ylabel("diagonal entry of A")
    axes[0].legend(fontsize=7)
    axes[1].plot(steps, [rotation_part(a) for a in trajectory], "k-", lw=2, label="closed-form flow (exact)")
    for label, r in runs.items():
        axes[1].plot(r["step"], r["rotation"], lw=1.2, label=label)
    axes[1].set_xlabel("generator update (stochastic runs) / gradient step (closed form)")
    axes[1].set_ylabel(r"rotation part $\|(A - A^T)/2\|_F$")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    return fig


__all__ = ["plot_linear_flow", "plot_measures_sweep", "plot_phase_diagram"]
