"""Figure helpers for the paper's plots (matplotlib only; each returns the figure)."""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from .metrics import _as_2d_float64, optimal_assignment, pair_distances, squared_distances


def _plt():
    import matplotlib.pyplot as plt
    return plt


def seed_colors(z, cmap: str = "hsv") -> np.ndarray:
    """One RGBA colour per noise seed, from the angle of its first two coordinates.

    Nearby seeds get nearby colours, so a continuous map keeps colours
    together and a remapping shows as colours moving between regions.
    """
    z = _as_2d_float64(z, "z")
    ang = (np.arctan2(z[:, 1], z[:, 0]) + np.pi) / (2 * np.pi)
    return _plt().get_cmap(cmap)(ang)


def plot_pairing_panels(z, phi_8, phi_1, g, colors=None, title: Optional[str] = None,
                        dims: Sequence[int] = (0, 1), lim: Optional[float] = None, s: float = 3.0):
    """Paper Fig. 2 / 5: z, Phi_8(z), Phi_1(z), G(z) side by side, coloured by seed."""
    plt = _plt()
    colors = seed_colors(z) if colors is None else colors
    fig, axes = plt.subplots(1, 4, figsize=(13, 3.4))
    names = ["noise $z$", r"teacher $\Phi_8(z)$", r"teacher $\Phi_1(z)$", r"student $G(z)$"]
    for ax, data, name in zip(axes, (z, phi_8, phi_1, g), names):
        d = _as_2d_float64(data, name)
        ax.scatter(d[:, dims[0]], d[:, dims[1]], c=colors, s=s, linewidths=0)
        ax.set_title(name)
        ax.set_aspect("equal")
        if lim is not None and name != "noise $z$":
            ax.set_xlim(-lim, lim)
            ax.set_ylim(-lim, lim)
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_distance_heatmap(teacher, student, n: int = 100, ax=None, title: Optional[str] = None):
    """Paper Fig. 3 / 10: ||Phi_K(z_i) - G(z_j)||^2 for the first n seeds, OT matches boxed in red.

    The diagonal is the DMD pairing (DT); the red boxes are the optimal
    one-to-one pairing of the same n points (OT). Copying puts the boxes on
    the diagonal.
    """
    from matplotlib.patches import Rectangle

    plt = _plt()
    t, s = _as_2d_float64(teacher, "teacher")[:n], _as_2d_float64(student, "student")[:n]
    m = squared_distances(t, s)
    perm = optimal_assignment(t, s)
    if ax is None:
        fig, ax = plt.subplots(figsize=(5, 4.4))
    else:
        fig = ax.figure
    im = ax.imshow(m, cmap="viridis", interpolation="nearest")
    for i, j in enumerate(perm):
        ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=0.8))
    ax.set_xlabel("student index $j$")
    ax.set_ylabel("teacher index $i$")
    on_diag = float(np.mean(perm == np.arange(len(perm))))
    ax.set_title(title or f"OT matches on the diagonal: {100 * on_diag:.0f}%")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label=r"$\|\Phi_K(z_i) - G(z_j)\|^2$")
    return fig


def plot_copying_scatter(phi_1, phi_8, g, ax=None, title: Optional[str] = None, scale: float = 1.0):
    """Paper Fig. 8 / 9: ||Phi_1 - Phi_8|| (x) against ||G - Phi_8|| (y), with the line y = x.

    Points below the line are seeds where the student moved from Phi_1
    towards the teacher's own target Phi_8(z) (copying).
    """
    plt = _plt()
    x = pair_distances(phi_1, phi_8) * scale
    y = pair_distances(g, phi_8) * scale
    if ax is None:
        fig, ax = plt.subplots(figsize=(4.4, 4.2))
    else:
        fig = ax.figure
    ax.scatter(x, y, s=3, alpha=0.5, linewidths=0)
    top = float(max(x.max(), y.max())) * 1.05
    ax.plot([0, top], [0, top], "r--", lw=1, label="$y = x$")
    ax.set_xlim(0, top)
    ax.set_ylim(0, top)
    ax.set_xlabel(r"$\|\Phi_1(z) - \Phi_8(z)\|$")
    ax.set_ylabel(r"$\|G(z) - \Phi_8(z)\|$")
    ax.set_title(title or f"below the line: {100 * np.mean(y < x):.0f}% of seeds")
    ax.legend(loc="upper left")
    return fig


def plot_losses(logs: dict, ax=None, title: Optional[str] = None):
    """DM loss and fake-score loss over distillation (log scale), from ``DMDResult.logs``."""
    plt = _plt()
    if ax is None:
        fig, ax = plt.subplots(figsize=(6, 3.4))
    else:
        fig = ax.figure
    ax.plot(logs["dm"]["iteration"], logs["dm"]["value"], label="DM loss (generator)")
    ax.plot(logs["fake"]["iteration"], logs["fake"]["value"], label="fake-score loss", alpha=0.7)
    ax.set_yscale("log")
    ax.set_xlabel("DMD iteration")
    ax.legend()
    if title:
        ax.set_title(title)
    return fig


def plot_metric_along(evals: list, key: str = "delta_e", ax=None, label: Optional[str] = None,
                      ylabel: str = r"$\Delta_E$"):
    """A metric recorded by ``distill(eval_fn=...)`` against the DMD iteration."""
    plt = _plt()
    if ax is None:
        fig, ax = plt.subplots(figsize=(5, 3.4))
    else:
        fig = ax.figure
    it = [e["iteration"] for e in evals]
    ax.plot(it, [e[key] for e in evals], marker="o", label=label)
    ax.set_xlabel("DMD iteration")
    ax.set_ylabel(ylabel)
    return fig


def plot_image_rows(rows: dict, n: int = 30, title: Optional[str] = None):
    """Paper Fig. 1 (top) / 6: one row of n images per entry of ``rows`` ({label: [N, C, H, W] in [-1, 1]})."""
    plt = _plt()
    labels = list(rows)
    imgs = [np.asarray(_as_np(rows[k])[:n]) for k in labels]
    c, h, w = imgs[0].shape[1:]
    fig, axes = plt.subplots(len(labels), 1, figsize=(n * 0.42, len(labels) * 0.5 + 0.3))
    axes = np.atleast_1d(axes)
    for ax, lab, im in zip(axes, labels, imgs):
        strip = np.concatenate([np.pad(x, ((0, 0), (1, 1), (1, 1)), constant_values=1.0) for x in im], axis=2)
        strip = (np.clip(strip, -1, 1) + 1) / 2
        ax.imshow(strip[0] if c == 1 else strip.transpose(1, 2, 0), cmap="gray" if c == 1 else None,
                  vmin=0, vmax=1, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_ylabel(lab, rotation=0, ha="right", va="center", fontsize=9)
    if title:
        fig.suptitle(title)
    fig.subplots_adjust(hspace=0.05, left=0.08, right=0.99, top=0.9 if title else 0.98, bottom=0.02)
    return fig


def _as_np(a):
    return a.detach().cpu().numpy() if hasattr(a, "detach") else np.asarray(a)


def plot_pca_triplets(phi_8, phi_1, g, title: Optional[str] = None, s: float = 3.0):
    """Paper Fig. 1 (bottom) / 7: Phi_8, Phi_1 and G projected on the two leading PCs of Phi_8.

    Each seed keeps one colour in all panels: the angle of its Phi_8 point in
    the PC plane, so the teacher panel is a colour wheel and a student that
    copies reproduces it.
    """
    from .metrics import pca_projection

    plt = _plt()
    p8, p1, pg = pca_projection(phi_8, phi_1, g, k=2)
    colors = seed_colors(p8)
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.9), sharex=True, sharey=True)
    for ax, d, name in zip(axes, (p8, p1, pg),
                           (r"teacher $\Phi_8(z)$", r"teacher $\Phi_1(z)$", r"student $G(z)$")):
        ax.scatter(d[:, 0], d[:, 1], c=colors, s=s, linewidths=0)
        ax.set_title(name)
        ax.set_xlabel("PC 1 of $\\Phi_8$")
    axes[0].set_ylabel("PC 2 of $\\Phi_8$")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def _ax(ax, figsize):
    if ax is None:
        return _plt().subplots(figsize=figsize)
    return ax.figure, ax


def plot_estimates(labels: Sequence[str], values, ci_low, ci_high, ax=None, ylabel: str = r"$\Delta_E$",
                   log: bool = False, title: Optional[str] = None):
    """Point estimates with their interval, one per label (the ablation and convergence tables as a figure)."""
    fig, ax = _ax(ax, (5, 3.4))
    v, lo, hi = (np.asarray(a, dtype=np.float64) for a in (values, ci_low, ci_high))
    x = np.arange(len(labels))
    err = np.vstack([np.clip(v - lo, 0, None), np.clip(hi - v, 0, None)])
    ax.errorbar(x, v, yerr=err, fmt="o", capsize=4)
    ax.set_xticks(x, labels)
    ax.set_ylabel(ylabel)
    if log:
        ax.set_yscale("symlog", linthresh=1e-4)
    if title:
        ax.set_title(title)
    return fig


def plot_ratio_histogram(r, thresholds=(1 / 3, 0.25, 0.1, 0.05), ax=None, title: Optional[str] = None):
    """Paper Fig. 12: histogram of the memorisation ratios r(y) with the thresholds marked."""
    fig, ax = _ax(ax, (5.5, 3.4))
    ax.hist(np.asarray(r, dtype=np.float64), bins=np.linspace(0, 1, 41), color="tab:blue", alpha=0.8)
    for t in thresholds:
        ax.axvline(t, color="tab:red", ls="--", lw=1)
        ax.text(t, ax.get_ylim()[1] * 0.95, f" {t:.3g}", color="tab:red", fontsize=8, va="top")
    ax.set_xlim(0, 1)
    ax.set_xlabel(r"$r(y) = \|y - x^1(y)\| \,/\, \|y - x^2(y)\|$")
    ax.set_ylabel("samples")
    if title:
        ax.set_title(title)
    return fig


def plot_boundary_scatter(d, delta, ax=None, xlabel: str = r"$D(z)$", title: Optional[str] = None, s: float = 4.0):
    """Paper Fig. 11: delta(z) against a distance to the training set; below the dashed line = moved towards Phi_K."""
    fig, ax = _ax(ax, (5, 3.8))
    d, delta = np.asarray(d, dtype=np.float64), np.asarray(delta, dtype=np.float64)
    ax.scatter(d, delta, s=s, alpha=0.6, linewidths=0)
    ax.axhline(0.0, color="tab:red", ls="--", lw=1.2, label=r"$\delta = 0$")
    slope, icept = np.polyfit(d, delta, 1)
    xs = np.linspace(d.min(), d.max(), 2)
    ax.plot(xs, slope * xs + icept, color="k", lw=1, label="least-squares line")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(r"$\delta(z) = \|G - \Phi_K\| - \|\Phi_1 - \Phi_K\|$")
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    return fig


def plot_dm_curves(curves: dict, turning: Optional[dict] = None, ax=None, max_iteration: Optional[float] = None,
                   title: Optional[str] = None):
    """Paper Fig. 4: the DM loss of several students ({label: (iterations, values)}), turning points marked."""
    fig, ax = _ax(ax, (6, 3.6))
    for label, (it, v) in curves.items():
        it, v = np.asarray(it, dtype=np.float64), np.asarray(v, dtype=np.float64)
        keep = it <= max_iteration if max_iteration is not None else np.ones_like(it, dtype=bool)
        line, = ax.plot(it[keep], v[keep], label=label)
        tp = (turning or {}).get(label)
        if tp is not None and (max_iteration is None or tp["iteration"] <= max_iteration):
            ax.plot([tp["iteration"]], [tp["value"]], marker="v", color=line.get_color(), ms=8)
    ax.set_xlabel("DMD iteration")
    ax.set_ylabel("DM loss")
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    return fig


_REF_STYLE = {"start": ("s", "tab:gray", r"start $\Delta_E(\Phi_K, \Phi_1)$"),
              "random": ("x", "tab:red", "random pairing"),
              "reproducibility": ("D", "tab:green", "second teacher")}


def plot_delta_e_references(results: dict, ax=None, title: Optional[str] = None, log: bool = True):
    """Each student's Delta_E with its interval beside its reference levels ({label: {"delta_e", "references"}}).

    A filled circle is a converged student, a hollow one a student that failed
    a convergence gate; the references (start, random pairing, second
    teacher) are drawn with their own markers and intervals.
    """
    fig, ax = _ax(ax, (1.6 + 1.5 * len(results), 3.8))
    seen = set()
    for i, (label, res) in enumerate(results.items()):
        rec = res["delta_e"]
        ok = rec.get("converged", True)
        err = [[max(rec["delta_e"] - rec["ci_low"], 0)], [max(rec["ci_high"] - rec["delta_e"], 0)]]
        ax.errorbar([i], [rec["delta_e"]], yerr=err, fmt="o", capsize=4, color="tab:blue", ms=7,
                    mfc="tab:blue" if ok else "white",
                    label=None if ("student" in seen) else r"student $\Delta_E(\Phi_K, G)$ (hollow: not converged)")
        seen.add("student")
        for j, (name, ref) in enumerate((res.get("references") or {}).items()):
            marker, color, lab = _REF_STYLE.get(name, ("^", "k", name))
            x = i + 0.18 * (j + 1)
            err = [[max(ref["delta_e"] - ref["ci_low"], 0)], [max(ref["ci_high"] - ref["delta_e"], 0)]]
            ax.errorbar([x], [ref["delta_e"]], yerr=err, fmt=marker, color=color, capsize=2, ms=5,
                        label=None if name in seen else lab)
            seen.add(name)
    ax.set_xticks(np.arange(len(results)) + 0.25, list(results))
    ax.set_ylabel(r"$\Delta_E$ (mean over seed sets, 95% CI)")
    if log:
        ax.set_yscale("symlog", linthresh=1e-3)
    ax.legend(fontsize=7, loc="best")
    if title:
        ax.set_title(title)
    return fig


def plot_delta_e_vs_n(curves: dict, ax=None, title: Optional[str] = None):
    """Delta_E-hat_N against N ({label: {"n": [...], "delta_e": [...], "ci_low": [...], "ci_high": [...]}})."""
    fig, ax = _ax(ax, (5.5, 3.6))
    for label, c in curves.items():
        n, v = np.asarray(c["n"], dtype=np.float64), np.asarray(c["delta_e"], dtype=np.float64)
        lo = np.asarray([x if x is not None else np.nan for x in c["ci_low"]], dtype=np.float64)
        hi = np.asarray([x if x is not None else np.nan for x in c["ci_high"]], dtype=np.float64)
        err = np.vstack([np.nan_to_num(np.clip(v - lo, 0, None)), np.nan_to_num(np.clip(hi - v, 0, None))])
        ax.errorbar(n, v, yerr=err, fmt="o-", capsize=3, label=label)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("N (seeds per set)")
    ax.set_ylabel(r"$\hat\Delta_E^{(N)}$")
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    return fig


def plot_sweep(points: Sequence[dict], key: str, ax=None, anchors: Optional[dict] = None, xlabel: Optional[str] = None,
               title: Optional[str] = None):
    """Delta_E against a dimension (notebook 06): one record per point (``key`` its dimension, the Delta_E
    interval keys, ``converged`` and ``references``), with the second-teacher, start and random-pairing
    levels per point and horizontal lines at ``anchors`` ({label: value}, e.g. the paper's numbers).

    Log-log axes (symlog on y, so that exact zeros show); hollow markers are students that failed a
    convergence gate.
    """
    fig, ax = _ax(ax, (6.0, 4.0))
    x = np.asarray([p[key] for p in points], dtype=np.float64)

    def band(recs, **kw):
        v = np.asarray([r["delta_e"] for r in recs])
        err = np.vstack([np.clip(v - [r["ci_low"] for r in recs], 0, None), np.clip([r["ci_high"] for r in recs] - v, 0, None)])
        return v, err

    v, err = band(points)
    ax.plot(x, v, "-", color="tab:blue", lw=1)
    for xi, vi, lo, hi, p in zip(x, v, err[0], err[1], points):
        ok = p.get("converged", True)
        ax.errorbar([xi], [vi], yerr=[[lo], [hi]], fmt="o", capsize=4, color="tab:blue", ms=7,
                    mfc="tab:blue" if ok else "white")
    ax.plot([], [], "o-", color="tab:blue", label=r"student $\Delta_E(\Phi_K, G)$ (hollow: not converged)")
    for name in ("reproducibility", "start", "random"):
        have = [(xi, p["references"][name]) for xi, p in zip(x, points) if name in (p.get("references") or {})]
        if not have:
            continue
        marker, color, lab = _REF_STYLE.get(name, ("^", "k", name))
        xs = np.asarray([h[0] for h in have])
        rv, rerr = band([h[1] for h in have])
        ax.errorbar(xs, rv, yerr=rerr, fmt=marker + "--", color=color, capsize=2, ms=5, lw=0.8, label=lab)
    for i, (label, value) in enumerate((anchors or {}).items()):
        ax.axhline(value, color=f"C{i + 3}", ls=":", lw=1.2, label=label)
    ax.set_xscale("log", base=2)
    ax.set_xticks(x, [str(int(xi)) for xi in x])
    ax.set_yscale("symlog", linthresh=1e-3)
    ax.set_xlabel(xlabel or key)
    ax.set_ylabel(r"$\Delta_E$ (95% CI)")
    ax.legend(fontsize=7, loc="best")
    if title:
        ax.set_title(title)
    return fig


CALIBRATION_ROWS = (("delta_e", r"$\Delta_E$", "symlog"), ("agreement", "mode agreement (dashed: chance)", "linear"),
                    ("intrinsic_delta_e", r"intrinsic $\Delta_E$", "symlog"),
                    ("relative_error", "relative pairing error", "linear"))
"""The rows of :func:`plot_calibration`: (measure key, axis label, y scale)."""


def _value(rec: dict) -> float:
    return rec["delta_e"] if "delta_e" in rec else rec["value"]


def plot_calibration(results: dict, rows: Sequence[tuple] = CALIBRATION_ROWS, title: Optional[str] = None):
    """Notebook 00: every measure of every constructed student against the ambient dimension.

    ``results`` is ``{family: {student: {dim: measures}}}`` (what
    :func:`dmdlib.calibration.calibrate` returns per family); one column per
    family, one row per measure of ``rows``, each student a line with its
    95% interval, the chance agreement dashed in the agreement row. Log axes
    in d (symlog in Delta_E, so that exact zeros show).
    """
    plt = _plt()
    fams = list(results)
    fig, axes = plt.subplots(len(rows), len(fams), figsize=(3.6 * len(fams), 2.7 * len(rows)), squeeze=False,
                             sharex="col")
    for j, fam in enumerate(fams):
        for k, (student, per_dim) in enumerate(results[fam].items()):
            dims = np.asarray(sorted(per_dim), dtype=np.float64)
            for i, (key, label, scale) in enumerate(rows):
                ax = axes[i][j]
                recs = [per_dim[int(d)].get(key) for d in dims]
                if any(r is None for r in recs):
                    continue
                v = np.asarray([_value(r) for r in recs])
                err = np.vstack([np.clip(v - [r["ci_low"] for r in recs], 0, None),
                                 np.clip(np.asarray([r["ci_high"] for r in recs]) - v, 0, None)])
                ax.errorbar(dims, v, yerr=err, fmt="o-", ms=3, lw=1, capsize=2, color=f"C{k}", label=student)
                if key == "agreement":
                    ax.plot(dims, [per_dim[int(d)]["chance"]["value"] for d in dims], ls="--", lw=0.8,
                            color=f"C{k}")
        for i, (key, label, scale) in enumerate(rows):
            ax = axes[i][j]
            ax.set_xscale("log", base=2)
            if scale == "symlog":
                ax.set_yscale("symlog", linthresh=1e-2)
                ax.set_ylim(bottom=0)
            if i == 0:
                ax.set_title(fam)
            if j == 0:
                ax.set_ylabel(label)
            if i == len(rows) - 1:
                ax.set_xlabel("ambient dimension d")
        axes[0][j].legend(fontsize=6, loc="best")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_remap_planes(cases: dict, s: float = 2.0, lim: float = 3.0):
    """Constructed students in their 2-D plane: for each ``{title: (teacher_xy, student_xy)}`` the teacher's
    points and the student's, each seed in the colour of its teacher point's angle (a remapping moves colours);
    both axes span [-lim, lim]."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2 * len(cases), figsize=(2.9 * 2 * len(cases), 3.0), squeeze=False)
    for j, (name, (x, y)) in enumerate(cases.items()):
        x, y = _as_2d_float64(x, "teacher_xy"), _as_2d_float64(y, "student_xy")
        colors = seed_colors(x)
        for ax, data, who in ((axes[0][2 * j], x, "teacher"), (axes[0][2 * j + 1], y, "student")):
            ax.scatter(data[:, 0], data[:, 1], c=colors, s=s, linewidths=0)
            ax.set_title(f"{name}: {who}", fontsize=8)
            ax.set_aspect("equal")
            ax.set_xlim(-lim, lim)
            ax.set_ylim(-lim, lim)
            ax.set_xticks([])
            ax.set_yticks([])
    fig.tight_layout()
    return fig
