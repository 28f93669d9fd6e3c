"""The landing page's claims table (scripts/claims.py): the committed quick results, every verdict branch of
every rule on synthetic metrics, missing and malformed results, and the staging into the built intro.md."""
import json
import shutil
from pathlib import Path

import pytest

from dmdlib.paper import PAPER
from smoke_book import load_build_book, load_script

ROOT = Path(__file__).resolve().parents[1]

cl = load_script("claims")
bb = load_build_book()

CLAIM = {c.id: c for c in cl.CLAIMS}


def _row(table: str, needle: str) -> str:
    return next(line for line in table.splitlines() if line.startswith("|") and needle in line)


def _verdict(row: str) -> str:
    return row.split(" | ")[4].strip("* ")


# ----------------------------------------------------------------------------- the committed quick results

def test_quick_table_from_committed_results():
    table = cl.claims_table(ROOT / "results", "quick")
    row = _row(table, "low-dimensional student remaps")
    assert str(PAPER["chessboard"]["delta_e"]) in row and _verdict(row) == "reproduced"
    assert "(quick, N = 1000, R = 10)" in row
    assert "{doc}`01 <../notebooks/01_lowdim_remapping>`" in row
    row = _row(table, "MNIST student copies")
    assert str(PAPER["mnist_uncond"]["delta_e"]) in row and "(quick, N = 1000, R = 10)" in row
    assert "1.05, 0.389, 0.237, 0.0367 at 1024, 2048, 4096, 8192 kimg" in _row(table, "longer-trained")
    m = json.loads((ROOT / "results" / "quick" / "01_lowdim_remapping" / "metrics.json").read_text())
    assert f"`{m['commit'][:12]}`" in table and "`results/quick/<chapter>/metrics.json`" in table
    assert len([line for line in table.splitlines() if line.startswith("| ")]) == 2 + len(cl.CLAIMS)   # header, rule, rows
    for line in table.splitlines()[2:2 + len(cl.CLAIMS)]:
        assert _verdict(line) in cl.VERDICTS


def test_missing_chapters_are_not_run(tmp_path):
    table = cl.claims_table(tmp_path, "paper")
    for c in cl.CLAIMS:
        row = _row(table, c.claim[:30])
        assert "no result committed" in row and _verdict(row) == "not run at this scale"
    assert "recorded at commit" not in table


def test_links_only_to_chapters_in_the_book():
    table = cl.claims_table(ROOT / "results", "quick", in_book={"02_mnist_copying"})
    assert "{doc}`02 <../notebooks/02_mnist_copying>`" in table
    assert "`01_lowdim_remapping` (not in this book yet)" in table and "{doc}`01" not in table


# ----------------------------------------------------------------------------- synthetic metrics, every branch

def rec(d, lo, hi, conv=None, n=1000, r=10):
    out = {"delta_e": d, "ci_low": lo, "ci_high": hi, "n": n, "r": r}
    if conv is not None:
        out["converged"] = conv
        out["gates"] = {"failed": [] if conv else ["plateau"]}
    return out


def ch01(conv=True, lo=5.0, start_hi=0.05, repro_hi=0.3):
    return {"preset": "quick", "commit": "ab" * 20, "datasets": {"chessboard": {
        "delta_e": rec(6.0, lo, 7.0, conv),
        "references": {"start": rec(0.04, 0.03, start_hi), "reproducibility": rec(0.2, 0.1, repro_hi)}}}}


def student(conv=True, hi=0.01, random=3.0):
    return {"delta_e": rec(hi / 2, 0.0, hi, conv), "references": {"random": rec(random, random - 0.1, random + 0.1)}}


def ch02(**kw):
    return {"preset": "quick", **student(**kw)}


def ch03(frac=0.0, **kw):
    return {"preset": "quick", "variants": {"baseline": student(**kw), "gan": student()},
            "memorisation": {"fractions": {"0.3333": frac, "0.1": 0.0}, "n_samples": 1000, "r_min": 0.6}}


def loss(peak_at=3, end=0.1, peak=0.5):
    v = [0.001, 0.1, 0.3, peak, 0.4, 0.3, 0.2, end, end, end]
    return {"iteration": [10.0 * i for i in range(len(v))], "value": v}


def ch04(values=(1.0, 0.4, 0.2, 0.03), conv=(True, True, True, True), tps=None, curves=None):
    kimg = (16.0, 32.0, 64.0, 128.0)
    students = []
    for i, (k, d, c) in enumerate(zip(kimg, values, conv)):
        s = {"teacher_kimg": k, "delta_e": rec(d, d * 0.9, d * 1.1, c)}
        if curves is not False:
            s["dm_loss"] = (curves or {}).get(i, loss())
            s["turning_point"] = (tps or {}).get(i, {"iteration": 30.0, "value": 0.45})
        students.append(s)
    return {"preset": "quick", "teacher_unit": "kimg", "turning_window": 3, "students": students[::-1]}


def ch05(conv=True, hi=-0.2):
    return {"preset": "quick", "delta_e": rec(0.001, 0.0, 0.002, conv),
            "correlations": {"spearman_average": {"r": hi - 0.05, "ci_low": hi - 0.1, "ci_high": hi, "n": 1000}}}


def cond_rec(dataset, conditional, d, conv=True):
    return {"dataset": dataset, "conditional": conditional, **rec(d, d * 0.8, d * 1.2, conv)}


def ch07(cond=0.001, uncond=0.01, conv_cond=True, conv_uncond=True, manifold=True):
    records = [cond_rec("mnist", True, cond, conv_cond), cond_rec("mnist", False, uncond, conv_uncond)]
    if manifold:
        records += [cond_rec("manifold", True, 0.002), cond_rec("manifold", False, 0.004)]
    return {"preset": "quick", "records": records}


def ch06(values=(5.0, 1.0, 0.01, 0.005), conv=(True, True, True, True), taught=None):
    ks = (1, 4, 16, 32)
    taught = (None,) * 4 if taught is None else taught   # None: a record without the on-manifold check
    return {"preset": "quick", "intrinsic": [
        {"intrinsic_dim": k, **rec(d, d * 0.9, d * 1.1, c),
         "references": {"start": rec(0.001, 0.0, 0.002), "random": rec(3.0, 2.9, 3.1),
                        "reproducibility": rec(0.0, 0.0, 0.0)}, **({} if t is None else {"teacher_ok": t})}
        for k, d, c, t in list(zip(ks, values, conv, taught))[::-1]]}


NR, R, NOT = "not run at this scale", "reproduced", "not reproduced"


@pytest.mark.parametrize("claim, metrics, verdict, text", [
    ("remapping", ch01(), R, "6 [5, 7] (quick, N = 1000, R = 10); start level"),
    ("remapping", ch01(lo=0.25), NOT, "second teacher"),                   # overlaps the second-teacher level
    ("remapping", ch01(lo=0.2, start_hi=0.3, repro_hi=0.1), NOT, ""),      # overlaps the start level
    ("remapping", ch01(conv=False), NR, ""),
    ("mnist-copying", ch02(), R, "random pairing 3 [2.9, 3.1]"),
    ("mnist-copying", ch02(hi=0.16), NOT, ""),                             # above 5% of the random level
    ("mnist-copying", ch02(conv=False), NR, ""),
    ("no-auxiliary-loss", ch03(), R, "plain DMD"),
    ("no-auxiliary-loss", ch03(hi=0.5), NOT, "with GAN"),
    ("no-auxiliary-loss", ch03(conv=False), NR, ""),
    ("no-memorisation", ch03(frac=0.0), R, "0 of 1000 teacher samples with r < 1/3"),
    ("no-memorisation", ch03(frac=0.002), NOT, "2 of 1000"),
    ("teacher-trend", ch04(), R, "4 of 4"),
    ("teacher-trend", ch04(values=(1.0, 0.4, 0.4, 0.03)), R, ""),         # non-increasing is enough
    ("teacher-trend", ch04(values=(1.0, 0.2, 0.4, 0.03)), NOT, ""),
    ("teacher-trend", ch04(conv=(False, False, True, True)), NR, "2 of 4 (not converged: 16, 32 kimg)"),
    ("teacher-trend", ch04(values=(0.01, 0.2, 0.4, 0.03), conv=(False, True, True, True)), NOT, "3 of 4"),
    ("two-stages", ch04(), R, "4 of 4 students rise, then fall"),
    ("two-stages", ch04(conv=(False,) * 4), R, "not needed (0 of 4 converged)"),
    ("two-stages", ch04(tps={2: None}), NOT, "3 of 4 students"),           # no turning point: never fell
    ("two-stages", ch04(curves={1: loss(end=0.6)}), NOT, "3 of 4 students"),   # ends above its peak
    ("two-stages", ch04(curves=False), NR, "no DM-loss curves recorded"),
    ("two-stages", ch04(curves={0: {"iteration": [10.0, 20.0, 30.0, 40.0], "value": [0.9, 0.5, 0.4, 0.3]}},
                        tps={0: {"iteration": 20.0, "value": 0.6}}), NOT, "3 of 4 students"),   # falls only
    ("boundary", ch05(), R, "Spearman correlation"),
    ("boundary", ch05(hi=0.05), NOT, ""),
    ("boundary", ch05(conv=False), NR, ""),
    ("conditional", ch07(), R, "manifold: conditional"),
    ("conditional", ch07(cond=0.009), NOT, ""),                            # the intervals overlap
    ("conditional", ch07(cond=0.02), NOT, ""),
    ("conditional", ch07(conv_cond=False), NR, "conditional not converged (plateau)"),
    ("conditional", ch07(conv_uncond=False), NR, ""),
    ("conditional", {"preset": "quick", "records": [cond_rec("mnist", False, 0.01)]}, NR,
     "result lacks the conditional MNIST record"),
    ("intrinsic-dimension", ch06(), "extension (no paper claim)", "copying from k = 16 on"),
    ("intrinsic-dimension", ch06(values=(0.01, 1.0, 0.01, 0.005)), "extension (no paper claim)",
     "copying from k = 16 on"),                                            # the onset: every k above it copies
    ("intrinsic-dimension", ch06(values=(5.0, 4.0, 3.0, 2.0)), "extension (no paper claim)", "no k copies"),
    ("intrinsic-dimension", ch06(conv=(True, False, True, True)), NR, "3 of 4"),
    ("intrinsic-dimension", ch06(taught=(True, True, False, True)), NR, "3 of 4"),   # a teacher missed the manifold
    ("intrinsic-dimension", ch06(taught=(True,) * 4), "extension (no paper claim)", "copying from k = 16 on"),
])
def test_every_verdict_branch(claim, metrics, verdict, text):
    ours, conv, v = cl.claim_row(CLAIM[claim], metrics)
    assert v == verdict, (ours, conv)
    assert text in ours + " " + conv


def test_intrinsic_text_names_both_ends():
    ours, conv, _ = cl.claim_row(CLAIM["intrinsic-dimension"], ch06())
    assert "from 5 [4.5, 5.5] (k = 1) to 0.005 [0.0045, 0.0055] (k = 32)" in ours and conv == "4 of 4"


@pytest.mark.parametrize("claim, metrics, text", [
    ("remapping", {"preset": "quick"}, "result lacks key `datasets`"),
    ("remapping", [], "result lacks key `datasets`"),
    ("remapping", {**ch01(), "datasets": {"chessboard": {**ch01()["datasets"]["chessboard"], "references": {
        "start": rec(0.04, 0.03, 0.05)}}}}, "result lacks key `datasets.chessboard.references.reproducibility`"),
    ("mnist-copying", {**ch02(), "delta_e": {**rec(0.1, 0.0, "x"), "converged": True}},
     "result key `delta_e.ci_high` is not a number: 'x'"),
    ("mnist-copying", {**ch02(), "delta_e": rec(0.1, 0.0, 0.2)}, "result lacks key `delta_e.converged`"),
    ("no-memorisation", {"preset": "quick", "memorisation": {"fractions": {"0.1": 0.0}, "n_samples": 1000}},
     "result lacks key `memorisation.fractions` at r = 1/3"),
    ("teacher-trend", {"preset": "quick", "students": []}, "result key `students` holds no students"),
    ("two-stages", {**ch04(), "turning_window": None}, "result key `turning_window` is not a number"),
    ("boundary", {"preset": "quick", "delta_e": rec(0.0, 0.0, 0.0, True)}, "result lacks key `correlations`"),
    ("conditional", {"preset": "quick"}, "result lacks key `records`"),
    ("intrinsic-dimension", {"preset": "quick", "intrinsic": [{"intrinsic_dim": 1, **rec(1.0, 0.9, 1.1, True)}]},
     "result lacks key `intrinsic.0.references`"),
])
def test_malformed_results_say_what_is_missing(claim, metrics, text):
    ours, conv, v = cl.claim_row(CLAIM[claim], metrics)
    assert ours == text or ours.startswith(text), ours
    assert v == "not run at this scale" and conv == ""


def test_unreadable_metrics_file(tmp_path):
    d = tmp_path / "quick" / "02_mnist_copying"
    d.mkdir(parents=True)
    (d / "metrics.json").write_text("{not json")
    row = _row(cl.claims_table(tmp_path, "quick"), "MNIST student copies")
    assert "`results/quick/02_mnist_copying/metrics.json` is not readable JSON" in row
    assert _verdict(row) == "not run at this scale"


def _write_results(root: Path, preset: str, chapters: dict):
    for stem, m in chapters.items():
        d = root / preset / stem
        d.mkdir(parents=True, exist_ok=True)
        (d / "metrics.json").write_text(json.dumps(m))


def test_whole_table_from_synthetic_results(tmp_path):
    _write_results(tmp_path, "paper", {"01_lowdim_remapping": ch01(), "02_mnist_copying": ch02(hi=0.5),
                                       "04_teacher_convergence": ch04(conv=(False, False, True, True)),
                                       "06_where_copying_begins": ch06(), "07_conditioning": ch07()})
    table = cl.claims_table(tmp_path, "paper", executed={"05_boundary": ch05(hi=0.1), "99_other": ch05()})
    assert _verdict(_row(table, "remaps")) == "reproduced"
    assert _verdict(_row(table, "MNIST student copies")) == "not reproduced"
    assert _verdict(_row(table, "longer-trained")) == "not run at this scale"
    assert _verdict(_row(table, "first rises")) == "reproduced"
    assert _verdict(_row(table, "far from the training data")) == "not reproduced"   # from this build
    assert _verdict(_row(table, "Conditioning")) == "reproduced"
    assert _verdict(_row(table, "intrinsic dimension")) == "extension (no paper claim)"
    assert "no result committed" in _row(table, "GAN")
    assert "recorded at commit `abababababab`" in table        # 01 records a commit, the others none
    assert "chapter 05_boundary was executed in this build instead (not committed)" in table
    assert "99_other" not in table


def test_verdict_rules_are_stated_under_the_table():
    table = cl.claims_table(ROOT / "results", "quick")
    note = table.split("\n\n", 1)[1]
    for i, c in enumerate(cl.CLAIMS, 1):
        assert f"({i}) {c.rule}." in note
    assert "below 5% of the random-pairing level" in note


def test_paper_numbers_come_from_dmdlib_paper():
    assert CLAIM["remapping"].paper == PAPER["chessboard"]["delta_e"]
    assert CLAIM["mnist-copying"].paper == PAPER["mnist_uncond"]["delta_e"]
    assert CLAIM["teacher-trend"].paper == {k: v for k, v in PAPER["mnist_uncond_by_teacher"].items() if k != "where"}
    assert CLAIM["boundary"].paper is None and CLAIM["boundary"].paper_text().startswith("no number (")


# ----------------------------------------------------------------------------- the slot and the build

def test_fill_slot():
    assert cl.fill_slot("# A\n\n<!-- claims-table -->\n\n## B\n", "| t |\n") == "# A\n\n| t |\n\n## B\n"
    with pytest.raises(ValueError, match="no <!-- claims-table --> slot"):
        cl.fill_slot("# A\n", "| t |")


def test_build_stages_the_table_and_keeps_the_repository_intro(tmp_path, monkeypatch):
    """A fake repository with chapter 01 and its committed quick result: the staged intro.md holds the table in
    place of the slot; the repository's intro.md keeps the slot (no jupyter-book: --no-html)."""
    r = tmp_path / "repo"
    stem = "01_lowdim_remapping"
    (r / "notebooks").mkdir(parents=True)
    (r / "book").mkdir()
    (r / "_config.yml").write_text("title: t\n")
    (r / "_toc.yml").write_text(f"format: jb-book\nroot: book/intro\nchapters:\n  - file: notebooks/{stem}\n"
                                "  - file: book/reproducibility\n")
    intro = "# Intro\n\nThe table below.\n\n<!-- claims-table -->\n\n## The question\n"
    (r / "book" / "intro.md").write_text(intro)
    (r / "book" / "reproducibility.md").write_text("# Reproducibility\n")
    nb = {"cells": [{"cell_type": "markdown", "metadata": {}, "source": "# Chapter 01"}], "metadata": {},
          "nbformat": 4, "nbformat_minor": 5}
    (r / "notebooks" / f"{stem}.ipynb").write_text(json.dumps(nb))
    res = r / "results" / "quick" / stem
    res.mkdir(parents=True)
    (res / f"{stem}.ipynb").write_text(json.dumps(nb))
    # without its recorded sources the result is "unverified", so it is rendered, not re-executed (the fake
    # repository has none of the sources the real result hashed)
    m = json.loads((ROOT / "results" / "quick" / stem / "metrics.json").read_text())
    m.pop("sources", None)
    (res / "metrics.json").write_text(json.dumps(m))
    monkeypatch.setattr(bb, "ROOT", r)

    assert bb.main(["--preset", "quick", "--build-dir", str(tmp_path / "build"), "--no-html"]) == 0
    staged = (tmp_path / "build" / "book-quick" / "book" / "intro.md").read_text()
    assert "<!-- claims-table -->" not in staged
    assert staged.startswith("# Intro\n\nThe table below.\n\n| claim | paper |") and staged.endswith("\n\n## The question\n")
    row = _row(staged, "remaps")
    assert _verdict(row) == "reproduced" and "{doc}`01 <../notebooks/01_lowdim_remapping>`" in row
    assert "`02_mnist_copying` (not in this book yet)" in staged      # not in this book's toc: no link
    assert (r / "book" / "intro.md").read_text() == intro             # the repository's copy keeps its slot


def test_repository_intro_keeps_the_slot():
    assert cl.SLOT in (ROOT / "book" / "intro.md").read_text()


# ----------------------------------------------------------------------------- chapter 09: an exact teacher

def exact_point(key, value, word="remaps", conv=True, spread_ok=True, agree=0.2, tau=0.0, second=0.9, chance=0.05,
                error=0.5):
    """A chapter-09 point record: Delta_E, converged, reading, mode agreement (chance, second network) and the
    relative pairing error."""
    iv = lambda v, h=0.02: {"value": v, "ci_low": v - h, "ci_high": v + h}  # noqa: E731
    return {key: value, "tau": tau, **rec(0.5, 0.45, 0.55, conv), "reading": {"reading": word},
            "references": {"random": rec(3.0, 2.9, 3.1)}, "spread": {"ok": spread_ok, "ratio": 1.0},
            "measures": {"agreement": {"student": iv(agree), "chance": iv(chance, 0.005), "second": iv(second)},
                         "relative_error": {"student": iv(error), "random": iv(0.8)}}}


def _res(rows, conv=True):
    """rows: {d: ((agreement, error) at tau = 0, (agreement, error) at tau = 0.8)}."""
    out = []
    for d, ((a0, e0), (a1, e1)) in rows.items():
        for t, a, e in ((0.0, a0, e0), (0.4, (a0 + a1) / 2, (e0 + e1) / 2), (0.8, a1, e1)):
            out.append(exact_point("ambient_dim", d, tau=t, agree=a, error=e, conv=conv))
    return out


def ch09(structure=None, ambient=None, resolution=None):
    s = structure or [exact_point("structure_dim", 2, "remaps"), exact_point("structure_dim", 32, "copies")]
    a = ambient or [exact_point("ambient_dim", 2, "remaps"), exact_point("ambient_dim", 256, "copies")]
    r = resolution or _res({4: ((0.8, 0.1), (0.2, 0.6)), 64: ((0.8, 0.1), (0.2, 0.6))})
    return {"preset": "quick", "structure": s, "ambient": a, "resolution": r}


def _amb(words, conv=(True, True, True), spread=(True, True, True), agree=(0.2, 0.2, 0.2)):
    return [exact_point("ambient_dim", d, w, c, o, g) for d, w, c, o, g in zip((2, 16, 256), words, conv, spread, agree)]


def _sph(w0, w1, a0=0.2, a1=0.2, conv1=True):
    return [exact_point("structure_dim", 2, w0, agree=a0), exact_point("structure_dim", 32, w1, agree=a1, conv=conv1)]


C, I = "contradicted", "inconclusive"


@pytest.mark.parametrize("claim, metrics, verdict, text", [
    ("exact-structure", ch09(), R, "k = 2: remaps, index"),
    ("exact-structure", ch09(structure=_sph("copies", "copies")), C, "2 of 2 are results"),   # copies without dimension
    ("exact-structure", ch09(structure=_sph("remaps", "remaps", 0.6, 0.2)), C, "index 0.18"),  # copying falls with k
    ("exact-structure", ch09(structure=_sph("remaps", "remaps", 0.2, 0.6)), I, ""),   # rises, but nothing copies
    ("exact-structure", ch09(structure=_sph("remaps", "unresolved")), I, ""),
    ("exact-structure", ch09(structure=_sph("remaps", "copies", conv1=False)), NR,
     "1 of 2 are results (no result: k = 32)"),
    ("exact-ambient", ch09(ambient=_amb(("remaps", "remaps", "copies"))), R, "d = 256: copies"),
    ("exact-ambient", ch09(ambient=_amb(("copies", "remaps", "remaps"))), C, ""),
    ("exact-ambient", ch09(ambient=_amb(("remaps", "copies", "measures disagree"))), I, ""),
    # the largest point is no result (a collapsed spread): the largest result, d = 16, decides
    ("exact-ambient", ch09(ambient=_amb(("remaps", "copies", "remaps"), spread=(True, True, False))), R,
     "2 of 3 are results (no result: d = 256)"),
    ("exact-ambient", ch09(ambient=_amb(("remaps", "copies", "remaps"), conv=(False, True, False))), NR, "1 of 3"),
    ("exact-resolution", ch09(), R, "index 0.88 [0.86, 0.91] against 0.18"),
    ("exact-resolution", ch09(resolution=_res({4: ((0.2, 0.6), (0.8, 0.1)), 64: ((0.2, 0.6), (0.8, 0.1))})), C,
     "(falls)"),
    # index falls, error rises: the measures disagree (chapter 09's quick d = 4)
    ("exact-resolution", ch09(resolution=_res({4: ((0.2, 0.1), (0.8, 0.6))})), I, "(disagree)"),
    ("exact-resolution", ch09(resolution=_res({4: ((0.8, 0.1), (0.2, 0.6)), 64: ((0.2, 0.6), (0.8, 0.1))})), I, ""),
    ("exact-resolution", ch09(resolution=_res({4: ((0.5, 0.3), (0.51, 0.31))})), I, "(flat)"),   # overlapping
    ("exact-resolution", ch09(resolution=_res({4: ((0.8, 0.1), (0.2, 0.6))}, conv=False)), NR,
     "no result at τ = 0 or τ = 0.8"),
])
def test_exact_teacher_rows(claim, metrics, verdict, text):
    ours, conv, v = cl.claim_row(CLAIM[claim], metrics)
    assert v == verdict, (ours, conv)
    assert text in ours + " " + conv
    assert v in cl.VERDICTS


def test_exact_teacher_rows_name_what_is_missing():
    ours, conv, v = cl.claim_row(CLAIM["exact-ambient"], {"preset": "quick", "ambient": []})
    assert ours == "result key `ambient` holds no points" and v == "not run at this scale"
    bad = ch09()
    del bad["resolution"][0]["reading"]
    ours, _, v = cl.claim_row(CLAIM["exact-resolution"], bad)
    assert ours == "result lacks key `resolution.0.reading`" and v == "not run at this scale"
    assert CLAIM["exact-resolution"].chapter == "09_exact_teacher" and CLAIM["exact-ambient"].paper is None
