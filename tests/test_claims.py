"""The landing page's claims table (scripts/claims.py): the committed quick results, every outcome of every rule on
constructed metrics (chapter results and published seed runs), the positive controls (a copy reads copies, a
random permutation remaps), missing and malformed results, and the staging into the built intro.md."""
import json
from pathlib import Path

import numpy as np
import pytest

from dmdlib import evaluation
from dmdlib.evidence import SeedRun
from dmdlib.paper import PAPER
from smoke_book import load_build_book, load_script

ROOT = Path(__file__).resolve().parents[1]

cl = load_script("claims")
bb = load_build_book()

CLAIM = {c.id: c for c in cl.CLAIMS}
R, C, I, NR = "reproduced", "contradicted", "inconclusive", "not run at this scale"


def _row(table: str, needle: str) -> str:
    return next(line for line in table.splitlines() if line.startswith("|") and needle in line)


def _verdict(row: str) -> str:
    return row.split(" | ")[4].strip("* ")


def judge(claim, metrics, seeds=()):
    """(ours, converged, verdict, evidence) of a claim."""
    return cl.claim_row(CLAIM[claim], metrics, seeds=seeds)


# ----------------------------------------------------------------------------- constructed students

def rec(d, lo, hi, conv=None, n=1000, r=10):
    out = {"delta_e": d, "ci_low": lo, "ci_high": hi, "n": n, "r": r}
    if conv is not None:
        out["converged"] = conv
        out["gates"] = {"failed": [] if conv else ["plateau"]}
    return out


def level(v, half=0.01):
    return {"value": v, "ci_low": v - half, "ci_high": v + half}


# Delta_E (random level 3, copying line 0.15) and digit agreement (chance 0.1, ceiling 1, line 0.955) per reading
WORDS = {"copies": (0.001, 0.99), "remaps": (2.0, 0.12), "measures disagree": (0.001, 0.12),
         "unresolved": (0.15, 0.12)}


def student(word="copies", conv=True, jitter=0.0):
    """A student record whose reading (computed by dmdlib.evaluation.reading, as the chapters do) is ``word``."""
    d, a = WORDS[word]
    d, a = d * (1 + jitter), min(a + 0.001 * jitter, 1.0)
    half = 0.1 if word == "unresolved" else d * 0.5
    r = rec(d, d - half, d + half, conv)
    refs = {"random": rec(3.0, 2.9, 3.1), "start": rec(1e-4, 0.0, 2e-4), "reproducibility": rec(0.0, 0.0, 0.0)}
    measures = {"agreement": {"student": level(a), "chance": level(0.1)}}
    out = {"delta_e": r, "references": refs, "measures": measures, "reading": evaluation.reading(r, refs, measures)}
    assert out["reading"]["reading"] == word
    return out


def seeds_of(make, n, start=0):
    """``n`` seed runs whose metrics are ``make(seed)``."""
    return [SeedRun(s, {"preset": "quick", "seed": s, **make(s)}, f"seed-{s}") for s in range(start, start + n)]


def ch01(word="remaps", conv=True):
    return {"preset": "quick", "commit": "ab" * 20, "datasets": {"chessboard": student(word, conv)}}


def ch02(word="copies", conv=True):
    return {"preset": "quick", **student(word, conv)}


def ch03(word="copies", conv=True, frac=0.0, fired=True):
    return {"preset": "quick", "seed": 0,
            "variants": {"baseline": student(word, conv), "gan": student("copies", jitter=0.5),
                         "regression": student("copies", jitter=0.2)},
            "memorisation": {"fractions": {"0.3333": frac, "0.1": 0.0}, "n_samples": 1000, "r_min": 0.6},
            "memorisation_control": {"subset": 64, "iterations": 4000, "fraction": 0.7 if fired else 0.2,
                                     "fired": fired, "min_fraction": 0.5}}


def ch03_seed(s, word="copies", frac=0.0, fired=True):
    m = ch03(word, frac=frac, fired=fired)
    for i, v in enumerate(("baseline", "gan", "regression")):
        m["variants"][v] = student("copies" if v != "baseline" else word, jitter=0.1 * s + 0.4 * i)
    return m


IT = np.arange(1, 113) * 10.0


def dm_curve(kind, seed=0):
    """A DM-loss curve whose two-stage test (dmdlib.stats.two_stages) reads: 'both' (rises, then falls), 'climbs'
    (never stops rising: late window above the peak), 'short' (too short); 'plateau' is drawn as 'both' and its test
    result replaced in :func:`ch04` (rises, no significant fall, late window not above the peak)."""
    t = IT / IT[-1]
    if kind == "short":
        return {"iteration": [5.0, 10.0], "value": [0.0, 0.1]}
    base = {"both": 0.1 + 0.4 * np.exp(-((t - 0.15) / 0.06) ** 2) + 0.1 * (t < 0.15) * t / 0.15,
            "climbs": 0.1 + 0.3 * t}["climbs" if kind == "climbs" else "both"]
    v = base + 0.005 * np.random.default_rng(seed).standard_normal(t.size)
    v[:3] = [0.0, 0.002, 0.01]
    return {"iteration": IT.tolist(), "value": v.tolist()}


def ch04(values=(1.0, 0.4, 0.2, 0.03), conv=(True, True, True, True), curves=("both",) * 4, tests=True, seed=0):
    from dmdlib import stats

    kimg = (16.0, 32.0, 64.0, 128.0)
    students = []
    for k, d, c, kind in zip(kimg, values, conv, curves):
        s = {"teacher_kimg": k, "delta_e": rec(d, d * 0.9, d * 1.1, c)}
        if kind is not None:
            s["dm_loss"] = dm_curve(kind, seed)
            if tests:
                s["two_stages"] = stats.two_stages(s["dm_loss"]["iteration"], s["dm_loss"]["value"], window=5, skip=3)
                if kind == "plateau":
                    ts = s["two_stages"]
                    ts.update(shape="rises only", falls=False, fall={**ts["fall"], "p_greater": 0.4, "p_less": 0.6})
        students.append(s)
    return {"preset": "quick", "teacher_unit": "kimg", "students": students[::-1]}


def ch05(r=-0.3, half=0.05, conv=True, raw=-0.7):
    return {"preset": "quick", "delta_e": rec(0.001, 0.0, 0.002, conv),
            "correlations": {"spearman_average": {"r": raw, "ci_low": raw - 0.03, "ci_high": raw + 0.03, "n": 1000},
                             "partial_spearman_average": {"r": r, "ci_low": r - half, "ci_high": r + half,
                                                          "raw": raw, "n": 1000}}}


def cond_rec(dataset, conditional, d, conv=True):
    return {"dataset": dataset, "conditional": conditional, **rec(d, d * 0.8, d * 1.2, conv)}


def ch07(cond=0.001, uncond=0.01, conv_cond=True, conv_uncond=True, manifold=True):
    records = [cond_rec("mnist", True, cond, conv_cond), cond_rec("mnist", False, uncond, conv_uncond)]
    if manifold:
        records += [cond_rec("manifold", True, 0.002), cond_rec("manifold", False, 0.004)]
    return {"preset": "quick", "records": records}


def point(k, word, conv=True, taught=True, jitter=0.0):
    s = student(word, conv, jitter)
    return {"intrinsic_dim": k, **s["delta_e"], "references": s["references"], "measures": s["measures"],
            "reading": s["reading"], "teacher_ok": taught}


def ch06(words=("remaps", "remaps", "copies", "copies"), conv=(True,) * 4, taught=(True,) * 4, reading=True, jitter=0.0):
    pts = [point(k, w, c, t, jitter) for k, w, c, t in zip((1, 4, 16, 32), words, conv, taught)]
    if not reading:
        for p in pts:
            del p["reading"]
    return {"preset": "quick", "intrinsic": pts[::-1]}


# ----------------------------------------------------------------------------- every outcome of every rule

def _spread(word, s):
    """Seed-to-seed jitter: small, except for 'unresolved', whose seeds scatter across the copying line."""
    return 0.3 * (s - 2) if word == "unresolved" else 0.05 * s


def _s01(word, n=5):
    return seeds_of(lambda s: {"datasets": {"chessboard": student(word, jitter=_spread(word, s))}}, n)


def _s02(word, n=5, conv=True):
    return seeds_of(lambda s: student(word, conv, jitter=0.05 * s), n)


def _s04(values, n=3, conv=(True,) * 4, curves=("both",) * 4):
    return seeds_of(lambda s: ch04(tuple(v * (1 + 0.05 * s) for v in values), conv, curves, seed=s + 1), n)


def _s05(r, n=3):
    return seeds_of(lambda s: ch05(r + 0.01 * s), n)


def _s07(cond, uncond, n=3):
    return seeds_of(lambda s: ch07(cond * (1 + 0.1 * s), uncond * (1 + 0.1 * s)), n)


def _s06(words, n=3, conv=(True,) * 4):
    return seeds_of(lambda s: ch06(words, conv=conv, jitter=0.05 * s), n)


CASES = [
    # claim 1: the chessboard remaps (5 seeds)
    ("remapping", ch01(), _s01("remaps"), R, "training seeds (5 seeds)", "read **remaps** (per seed: 5 remaps)"),
    ("remapping", ch01(), _s01("copies"), C, "training seeds (5 seeds)", "read **copies**"),
    ("remapping", ch01(), _s01("measures disagree"), I, "training seeds (5 seeds)", "read **measures disagree**"),
    ("remapping", ch01(), _s01("unresolved"), I, "training seeds (5 seeds)", "read **unresolved**"),
    ("remapping", ch01(), (), I, "evaluation seeds only (no seed runs; 5 needed); within the run: reproduced",
     "read remaps ($\\Delta_E$: remaps; agreement: remaps)"),
    ("remapping", ch01(), _s01("remaps", 4), I, "evaluation seeds only (4 training seeds; 5 needed)",
     "over 4 training seeds"),
    ("remapping", ch01("copies"), (), I, "within the run: contradicted", ""),
    ("remapping", ch01(conv=False), (), NR, "evaluation seeds only", ""),
    ("remapping", {"preset": "quick", "datasets": {"chessboard": {k: v for k, v in student("remaps").items()
                                                                  if k != "reading"}}},
     _s01("remaps"), R, "training seeds (5 seeds)", ""),                 # seeds suffice; the chapter is older
    # claim 2: the mirror
    ("mnist-copying", ch02(), _s02("copies"), R, "training seeds (5 seeds)", "read **copies**"),
    ("mnist-copying", ch02(), _s02("remaps"), C, "training seeds (5 seeds)", ""),
    ("mnist-copying", ch02(), _s02("measures disagree"), I, "training seeds (5 seeds)", ""),
    ("mnist-copying", ch02(), _s02("copies", 2), I,
     "evaluation seeds only (2 training seeds; 5 needed)", ""),
    ("mnist-copying", ch02(), _s02("copies", 3) + seeds_of(lambda s: student("copies", False), 2, 3), I,
     "evaluation seeds only (3 usable of 5 seed runs; 5 needed)", "2 seed run(s) unconverged or without a reading"),
    ("mnist-copying", ch02(conv=False), (), NR, "", ""),
    # claim 3: the plain student copies (3 seeds), the other students shown as Welch differences
    ("no-auxiliary-loss", ch03(), seeds_of(ch03_seed, 3), R, "training seeds (3 seeds)",
     "$\\Delta_E$ GAN − plain:"),
    ("no-auxiliary-loss", ch03(), seeds_of(lambda s: ch03_seed(s, "remaps"), 3), C, "training seeds (3 seeds)", ""),
    ("no-auxiliary-loss", ch03(), seeds_of(lambda s: ch03_seed(s, "measures disagree"), 3), I, "training seeds", ""),
    ("no-auxiliary-loss", ch03(), (), I, "evaluation seeds only (no seed runs; 3 needed)", "with GAN"),
    ("no-auxiliary-loss", ch03(), seeds_of(lambda s: {**ch03_seed(s), "variants": {
        **ch03_seed(s)["variants"], "gan": student("copies", conv=s == 1)}}, 3), R, "training seeds (3 seeds)",
     "(one run; its student converged in 1 of 3 seed runs"),       # a side short of converged seeds says so
    ("no-auxiliary-loss", ch03(conv=False), (), NR, "", ""),
    # claim 4: no memorisation, with its positive control
    ("no-memorisation", ch03(), seeds_of(ch03_seed, 3), R, "training seeds (3 teachers)",
     "0 of 3000 samples of 3 teachers with r < 1/3"),
    ("no-memorisation", ch03(frac=0.002), (), C, "evaluation seeds only", "2 of 1000"),   # one counterexample
    ("no-memorisation", ch03(), seeds_of(lambda s: ch03_seed(s, frac=0.001 * (s == 2)), 3), C, "training seeds", ""),
    ("no-memorisation", ch03(fired=False), seeds_of(lambda s: ch03_seed(s, fired=False), 3), I, "training seeds",
     "did not fire"),
    ("no-memorisation", ch03(), (), I, "evaluation seeds only (no seed runs; 3 needed)", "fired"),
    ("no-memorisation", ch03(), seeds_of(ch03_seed, 2), I, "evaluation seeds only (2 training seeds; 3 needed)", ""),
    ("no-memorisation", {k: v for k, v in ch03().items() if k != "memorisation_control"}, (), NR, "",
     "result lacks key `memorisation_control`"),
    # claim 5: the trend, Page's test on seed-level values
    ("teacher-trend", ch04(), _s04((1.0, 0.4, 0.2, 0.03)), R, "training seeds (3 seeds)", "p(falls) = 7.23e-05"),
    ("teacher-trend", ch04(), _s04((0.03, 0.2, 0.4, 1.0)), C, "training seeds (3 seeds)", "p(rises) = 7.23e-05"),
    ("teacher-trend", ch04(), seeds_of(lambda s: ch04((0.5,) * 4), 3), I, "training seeds (3 seeds)",
     "mean Spearman +0.00"),                                             # a constant sequence is not a trend
    ("teacher-trend", ch04(), _s04((1.0, 0.4, 0.2, 0.03), conv=(False, False, True, True)), NR, "", ""),
    ("teacher-trend", ch04(), (), I, "within the run: reproduced", "p(falls) = 0.0417"),
    ("teacher-trend", ch04(conv=(False, False, True, True)), (), NR, "", "2 of 4 snapshots converged"),
    # claim 6: the partial rank correlation given the start distance
    ("boundary", ch05(), _s05(-0.3), R, "training seeds (3 seeds)", "(raw -0.7"),
    ("boundary", ch05(), _s05(0.3), C, "training seeds (3 seeds)", ""),
    ("boundary", ch05(), seeds_of(lambda s: ch05((-0.3, 0.2, 0.05)[s]), 3), I, "training seeds (3 seeds)", ""),
    ("boundary", ch05(), (), I, "within the run: reproduced", "given the start distance -0.3 [-0.35, -0.25]"),
    ("boundary", ch05(r=0.0, half=0.05), (), I, "evaluation seeds only", ""),
    ("boundary", ch05(conv=False), (), NR, "", ""),
    # claim 7: the two stages
    ("two-stages", ch04(), _s04((1.0, 0.4, 0.2, 0.03)), R, "training seeds (3 seeds)", "12 of 12 students rise, then fall"),
    ("two-stages", ch04(), _s04((1.0, 0.4, 0.2, 0.03), curves=("both", "climbs", "both", "both")), C,
     "training seeds (3 seeds)", "late window above the peak: 32 kimg (seed 0), 32 kimg (seed 1), 32 kimg (seed 2)"),
    ("two-stages", ch04(), _s04((1.0, 0.4, 0.2, 0.03), conv=(True, False, True, True),
                                curves=("both", "climbs", "both", "both")), C,      # judged converged or not, named
     "training seeds (3 seeds)", "late window above the peak: 32 kimg (seed 0, not converged)"),
    ("two-stages", ch04(conv=(True, False, True, True), curves=("both", "climbs", "both", "both")), (), C,
     "evaluation seeds only", "late window above the peak: 32 kimg (not converged)"),
    ("two-stages", ch04(curves=("both", "climbs", "both", "both")), (), C, "evaluation seeds only", ""),
    ("two-stages", ch04(), _s04((1.0, 0.4, 0.2, 0.03), curves=("both", "plateau", "both", "both")), I,
     "training seeds (3 seeds)", "rises only: 32 kimg (seed 0)"),
    ("two-stages", ch04(), (), I, "within the run: reproduced", "4 of 4 students rise, then fall (quick)"),
    ("two-stages", ch04(conv=(False,) * 4), (), I, "", "not needed (0 of 4 converged)"),
    ("two-stages", ch04(curves=("short",) * 4), (), NR, "", "every DM-loss curve too short"),
    ("two-stages", ch04(curves=(None,) * 4), (), NR, "", "no DM-loss curves recorded"),
    # claim 8: conditional against unconditional, Welch on seed means
    ("conditional", ch07(), _s07(0.001, 0.01), R, "training seeds (3 seeds)", "conditional − unconditional"),
    ("conditional", ch07(), _s07(0.02, 0.01), C, "training seeds (3 seeds)", ""),
    ("conditional", ch07(), seeds_of(lambda s: ch07((0.009, 0.011, 0.010)[s], (0.010, 0.009, 0.011)[s]), 3), I,
     "training seeds (3 seeds)", ""),
    ("conditional", ch07(), (), I, "within the run: reproduced", "manifold: conditional"),
    ("conditional", ch07(cond=0.009), (), I, "evaluation seeds only (no seed runs; 3 needed)", ""),
    ("conditional", ch07(cond=0.02), (), I, "within the run: contradicted", ""),
    ("conditional", ch07(conv_cond=False), (), NR, "", "conditional not converged (plateau)"),
    ("conditional", {"preset": "quick", "records": [cond_rec("mnist", False, 0.01)]}, (), NR, "",
     "result lacks the conditional MNIST record"),
    # claim 9: the intrinsic-dimension sweep's ends
    ("intrinsic-dimension", ch06(), _s06(("remaps", "remaps", "copies", "copies")), R, "training seeds (3 seeds)",
     "k = 32 over 3 training seeds"),
    ("intrinsic-dimension", ch06(), _s06(("remaps", "remaps", "remaps", "remaps")), C, "training seeds (3 seeds)", ""),
    ("intrinsic-dimension", ch06(), _s06(("copies", "copies", "copies", "copies")), C, "training seeds (3 seeds)", ""),
    ("intrinsic-dimension", ch06(), _s06(("remaps", "remaps", "copies", "measures disagree")), I,
     "training seeds (3 seeds)", ""),
    ("intrinsic-dimension", ch06(), (), I, "within the run: reproduced", "k = 1: "),
    ("intrinsic-dimension", ch06(conv=(True, True, True, False)), (), NR, "", "3 of 4"),
    ("intrinsic-dimension", ch06(taught=(False, True, True, True)), (), NR, "", "no result"),
    # seed runs exist, but the smallest k converged in none of them: not judged over seeds, and the text says why
    ("intrinsic-dimension", ch06(conv=(False, True, True, True)), _s06(("remaps",) * 4, conv=(False, True, True, True)),
     NR, "evaluation seeds only (0 usable of 3 seed runs; 3 needed)", "over 3 seed runs: k = 1 is a result in 0; "
     "k = 32 is a result in 3"),
    ("intrinsic-dimension", ch06(), _s06(("remaps", "remaps", "copies", "copies"), conv=(False, True, True, True)),
     I, "evaluation seeds only (0 usable of 3 seed runs; 3 needed); within the run: reproduced", "is a result in 0"),
]


@pytest.mark.parametrize("claim, metrics, seeds, verdict, level, text", CASES)
def test_every_outcome_of_every_rule(claim, metrics, seeds, verdict, level, text):
    check_outcome(claim, metrics, seeds, verdict, level, text)


def check_outcome(claim, metrics, seeds, verdict, level, text):
    """The claim's row has the verdict, its evidence names the level and its text contains ``text``."""
    ours, conv, v, lev = judge(claim, metrics, seeds)
    assert v == verdict, (ours, conv, lev)
    assert level in lev, lev
    assert text in ours + " " + conv, ours


def test_each_judge_asks_for_the_seeds_its_claim_declares():
    """Judged on the chapter alone, a rule's evidence names the training seeds it needs: Claim.min_seeds (which
    scripts/seeds.py plans the sweeps from)."""
    for c in cl.CLAIMS:
        levels = {judge(claim, m, seeds)[3] for claim, m, seeds, *_ in CASES + EXACT_CASES if claim == c.id}
        needs = {lev for lev in levels if "needed" in lev}
        assert needs and all(f"{c.min_seeds} needed" in lev for lev in needs), (c.id, needs)


def test_every_rule_produces_each_of_its_words():
    """The cases above reach every verdict word for every claim."""
    for c in cl.CLAIMS:
        assert {case[3] for case in CASES + EXACT_CASES if case[0] == c.id} == set(cl.VERDICTS), c.id


# ----------------------------------------------------------------------------- positive controls

def test_copying_controls_read_copies_and_remaps():
    """A student equal to Phi_8 reads copies and a random permutation of the teacher's outputs remaps (the constructed
    students of dmdlib.calibration, chessboard family), and the claims rules judge them accordingly."""
    from dmdlib import controls

    got = controls.copying_controls(dim=16, n=200, r=5)
    assert got["copy"]["reading"]["reading"] == "copies" and got["permutation"]["reading"]["reading"] == "remaps"
    for name, word in (("copy", "copies"), ("permutation", "remaps")):
        s = got[name]
        s["delta_e"].update(converged=True, n=200, r=5)
        runs = seeds_of(lambda seed: {"datasets": {"chessboard": s}, **s}, 5)
        assert judge("mnist-copying", {"preset": "quick", **s}, runs)[2] == (R if word == "copies" else C)
        assert judge("remapping", {"preset": "quick", "datasets": {"chessboard": s}}, runs)[2] == \
            (R if word == "remaps" else C)


def test_the_old_remapping_rule_would_call_mnist_remapping_and_the_reading_does_not():
    """Claim 1's old rule (the interval above the start and the second-teacher levels) holds for a copying MNIST
    student (Delta_E 0.001 above a start of 1e-4 and a second teacher at 0); its reading copies, so rule 1 says
    contradicted, never reproduced."""
    s = student("copies")
    old_rule = (s["delta_e"]["ci_low"] > s["references"]["start"]["ci_high"]
                and s["delta_e"]["ci_low"] > s["references"]["reproducibility"]["ci_high"])
    assert old_rule
    assert judge("remapping", {"preset": "quick", "datasets": {"chessboard": s}},
                 _s01("copies"))[2] == C


# ----------------------------------------------------------------------------- the committed quick results

def test_quick_table_from_committed_results():
    """The committed results predate the undiluted measures and the new tests: the rules that need them say not run
    at this scale with the missing key; nothing crashes, every row names its evidence."""
    table = cl.claims_table(ROOT / "results", "quick")
    row = _row(table, "low-dimensional student remaps")
    assert str(PAPER["chessboard"]["delta_e"]) in row and "{doc}`01 <../notebooks/01_lowdim_remapping>`" in row
    assert _verdict(row) in cl.VERDICTS
    if "`datasets.chessboard.reading`" in row:
        assert _verdict(row) == NR
    assert "1.05, 0.389, 0.237, 0.0367 at 1024, 2048, 4096, 8192 kimg" in _row(table, "longer-trained")
    m = json.loads((ROOT / "results" / "quick" / "01_lowdim_remapping" / "metrics.json").read_text())
    assert f"`{m['commit'][:12]}`" in table and "`results/quick/<chapter>/metrics.json`" in table
    rows = [line for line in table.splitlines() if line.startswith("| ")]
    assert len(rows) == 2 + len(cl.CLAIMS)
    for line in rows[2:]:
        assert _verdict(line) in cl.VERDICTS
        assert line.split(" | ")[5].startswith(("training seeds (", "evaluation seeds only"))


def test_missing_chapters_are_not_run(tmp_path):
    table = cl.claims_table(tmp_path, "paper")
    for c in cl.CLAIMS:
        row = _row(table, c.claim[:30])
        assert "no result committed" in row and _verdict(row) == NR
    assert "recorded at commit" not in table


def test_links_only_to_chapters_in_the_book():
    table = cl.claims_table(ROOT / "results", "quick", in_book={"02_mnist_copying"})
    assert "{doc}`02 <../notebooks/02_mnist_copying>`" in table
    assert "`01_lowdim_remapping` (not in this book yet)" in table and "{doc}`01" not in table


@pytest.mark.parametrize("claim, metrics, text", [
    ("remapping", {"preset": "quick"}, "result lacks key `datasets`"),
    ("remapping", [], "result lacks key `datasets`"),
    ("remapping", {"preset": "quick", "datasets": {"chessboard": {**student("remaps"), "reading": {"reading": "maybe"}}}},
     "result key `datasets.chessboard.reading.reading` is not one of"),
    ("mnist-copying", {**ch02(), "delta_e": {**rec(0.1, 0.0, "x"), "converged": True}},
     "result key `delta_e.ci_high` is not a number: 'x'"),
    ("mnist-copying", {**ch02(), "delta_e": rec(0.1, 0.0, 0.2)}, "result lacks key `delta_e.converged`"),
    ("no-memorisation", {**ch03(), "memorisation": {"fractions": {"0.1": 0.0}, "n_samples": 1000}},
     "result lacks key `memorisation.fractions` at r = 1/3"),
    ("no-memorisation", {**ch03(), "memorisation_control": {"fired": "yes", "fraction": 0.7}},
     "result key `memorisation_control.fired` is not true/false"),
    ("teacher-trend", {"preset": "quick", "students": []}, "result key `students` holds no students"),
    ("two-stages", ch04(tests=False), "result lacks key `students.0.two_stages`"),
    ("boundary", {"preset": "quick", "delta_e": rec(0.0, 0.0, 0.0, True)}, "result lacks key `correlations`"),
    ("boundary", {**ch05(), "correlations": {"spearman_average": {"r": -0.7}}},
     "result lacks key `correlations.partial_spearman_average`"),
    ("conditional", {"preset": "quick"}, "result lacks key `records`"),
    ("intrinsic-dimension", ch06(reading=False), "result lacks key `intrinsic.0.reading`"),
    ("intrinsic-dimension", {"preset": "quick", "intrinsic": []}, "result key `intrinsic` holds no records"),
])
def test_malformed_results_say_what_is_missing(claim, metrics, text):
    ours, conv, v, level = judge(claim, metrics)
    assert ours == text or ours.startswith(text), ours
    assert v == NR and conv == "" and level == "evaluation seeds only"


def test_unreadable_metrics_file(tmp_path):
    d = tmp_path / "quick" / "02_mnist_copying"
    d.mkdir(parents=True)
    (d / "metrics.json").write_text("{not json")
    row = _row(cl.claims_table(tmp_path, "quick"), "MNIST student copies")
    assert "`results/quick/02_mnist_copying/metrics.json` is not readable JSON" in row
    assert _verdict(row) == NR


def _write_results(root: Path, preset: str, chapters: dict):
    for stem, m in chapters.items():
        d = root / preset / stem
        d.mkdir(parents=True, exist_ok=True)
        (d / "metrics.json").write_text(json.dumps(m))


def _publish_seeds(root: Path, preset: str, sub: str, notebook: str, runs: list):
    """Seed runs laid out as `make seeds` publishes them: <sub>/sweep.json and <sub>/<run>/{metrics,done}.json."""
    d = root / preset / "seeds" / sub
    d.mkdir(parents=True, exist_ok=True)
    (d / "sweep.json").write_text(json.dumps({"notebook": f"{notebook}.ipynb", "preset": preset}))
    for r in runs:
        (d / r.run).mkdir()
        (d / r.run / "metrics.json").write_text(json.dumps(r.metrics))
        (d / r.run / "done.json").write_text(json.dumps({"parameters": {"preset": preset, "seed": r.seed,
                                                                        "device": "cpu", "output_dir": "x"}}))


def test_whole_table_from_synthetic_results_and_published_seeds(tmp_path):
    _write_results(tmp_path, "paper", {"01_lowdim_remapping": ch01(), "02_mnist_copying": ch02(),
                                       "04_teacher_convergence": ch04(conv=(False, False, True, True)),
                                       "06_where_copying_begins": ch06(), "07_conditioning": ch07()})
    _publish_seeds(tmp_path, "paper", "01", "01_lowdim_remapping", _s01("remaps"))
    _publish_seeds(tmp_path, "paper", "02", "02_mnist_copying", _s02("remaps"))
    table = cl.claims_table(tmp_path, "paper", executed={"05_boundary": ch05(r=0.3), "99_other": ch05()})
    assert _verdict(_row(table, "remaps the teacher")) == R
    assert "training seeds (5 seeds)" in _row(table, "remaps the teacher")
    assert _verdict(_row(table, "MNIST student copies")) == C                # its seeds remap
    assert _verdict(_row(table, "longer-trained")) == NR
    assert _verdict(_row(table, "first rises")) == I                           # evaluation seeds only
    assert _verdict(_row(table, "far from the training data")) == I            # from this build, capped
    assert "within the run: contradicted" in _row(table, "far from the training data")
    assert _verdict(_row(table, "Conditioning")) == I
    assert _verdict(_row(table, "intrinsic dimension")) == I
    assert "no result committed" in _row(table, "GAN")
    assert "recorded at commit `abababababab`" in table        # 01 records a commit, the others none
    assert "seed runs from `results/paper/seeds/<notebook>/` (01_lowdim_remapping: 5 runs, 02_mnist_copying: 5 runs)" \
        in table
    assert "chapter 05_boundary was executed in this build instead (not committed)" in table
    assert "99_other" not in table


def test_verdict_rules_are_stated_under_the_table():
    table = cl.claims_table(ROOT / "results", "quick")
    note = table.split("\n\n", 1)[1]
    for i, c in enumerate(cl.CLAIMS, 1):
        assert f"({i}) {c.rule[0].upper() + c.rule[1:]}." in note
        assert c.rule.count(". ") == 0, c.id            # one sentence each
    assert "below 5% of the random-pairing level" in note and "plateau_random_frac" in note
    assert "would have called the MNIST student remapping" in note


def test_paper_numbers_come_from_dmdlib_paper():
    assert CLAIM["remapping"].paper == PAPER["chessboard"]["delta_e"]
    assert CLAIM["mnist-copying"].paper == PAPER["mnist_uncond"]["delta_e"]
    assert CLAIM["teacher-trend"].paper == {k: v for k, v in PAPER["mnist_uncond_by_teacher"].items() if k != "where"}
    assert CLAIM["boundary"].paper is None and CLAIM["boundary"].paper_text().startswith("no number (")


def test_a_judge_written_for_one_run_still_fits():
    """A row added with a judge of the old kind (metrics in, three values out) renders with 'evaluation seeds only'."""
    c = cl.Claim("x", "A claim.", "09_exact_teacher", None, "nowhere", "a rule",
                 lambda m: ("ours", "converged", cl.INCONCLUSIVE))
    assert cl.claim_row(c, {"preset": "quick"}, seeds=_s02("copies")) == ("ours", "converged", I, "evaluation seeds only")


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
    m = {**ch01(), "preset": "quick"}
    (res / "metrics.json").write_text(json.dumps(m))
    _publish_seeds(r / "results", "quick", "01", stem, _s01("remaps"))
    monkeypatch.setattr(bb, "ROOT", r)

    assert bb.main(["--preset", "quick", "--build-dir", str(tmp_path / "build"), "--no-html"]) == 0
    staged = (tmp_path / "build" / "book-quick" / "book" / "intro.md").read_text()
    assert "<!-- claims-table -->" not in staged
    assert staged.startswith("# Intro\n\nThe table below.\n\n| claim | paper |") and staged.endswith("\n\n## The question\n")
    row = _row(staged, "remaps")
    assert _verdict(row) == R and "{doc}`01 <../notebooks/01_lowdim_remapping>`" in row
    assert "training seeds (5 seeds)" in row
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
    """The within-run rules of chapter 09 (one run's verdict, before training seeds are asked for)."""
    rule = {"exact-structure": cl.exact_structure_rule, "exact-ambient": cl.exact_ambient_rule,
            "exact-resolution": cl.exact_resolution_rule}[claim]
    ours, conv, v = rule(metrics)
    assert v == verdict, (ours, conv)
    assert text in ours + " " + conv
    assert v in cl.VERDICTS


def test_exact_teacher_rows_name_what_is_missing():
    ours, conv, v, _ = cl.claim_row(CLAIM["exact-ambient"], {"preset": "quick", "ambient": []})
    assert ours == "result key `ambient` holds no points" and v == "not run at this scale"
    bad = ch09()
    del bad["resolution"][0]["reading"]
    ours, _, v, _ = cl.claim_row(CLAIM["exact-resolution"], bad)
    assert ours == "result lacks key `resolution.0.reading`" and v == "not run at this scale"
    assert CLAIM["exact-resolution"].chapter == "09_exact_teacher" and CLAIM["exact-ambient"].paper is None


def _seeds09(*kinds):
    """Seed runs of chapter 09 whose rules say reproduced ('R'), contradicted ('C') or inconclusive ('I')."""
    made = {"R": ch09(), "I": ch09(structure=_sph("remaps", "unresolved"),
                                    ambient=_amb(("remaps", "copies", "measures disagree")),
                                    resolution=_res({4: ((0.2, 0.1), (0.8, 0.6))})),
            "C": ch09(structure=_sph("copies", "copies"), ambient=_amb(("copies", "remaps", "remaps")),
                      resolution=_res({4: ((0.2, 0.6), (0.8, 0.1)), 64: ((0.2, 0.6), (0.8, 0.1))}))}
    return [SeedRun(s, {**made[k], "seed": s}, f"seed-{s}") for s, k in enumerate(kinds)]


# chapter 09's claims compare separately trained students: judged over training seeds, unanimous or inconclusive
EXACT_CASES = [
    (c, ch09(), _seeds09("R", "R", "R"), R, "training seeds (3 seeds)", "over 3 training seeds: 3 reproduced")
    for c in ("exact-structure", "exact-ambient", "exact-resolution")] + [
    (c, ch09(), _seeds09("C", "C", "C"), C, "training seeds (3 seeds)", "3 contradicted")
    for c in ("exact-structure", "exact-ambient", "exact-resolution")] + [
    (c, ch09(), _seeds09("R", "R", "C"), I, "training seeds (3 seeds)", "2 reproduced, 1 contradicted")
    for c in ("exact-structure", "exact-ambient", "exact-resolution")] + [
    (c, ch09(), _seeds09("R", "R"), I, "evaluation seeds only (2 training seeds; 3 needed); within the run: "
     "reproduced", "") for c in ("exact-structure", "exact-ambient", "exact-resolution")] + [
    ("exact-structure", ch09(structure=_sph("remaps", "copies", conv1=False)), (), NR,
     "evaluation seeds only (no seed runs; 3 needed)", "1 of 2 are results"),
    ("exact-ambient", ch09(ambient=_amb(("remaps", "copies", "remaps"), conv=(False, True, False))), (), NR,
     "3 needed", "1 of 3"),
    ("exact-resolution", ch09(resolution=_res({4: ((0.8, 0.1), (0.2, 0.6))}, conv=False)), (), NR, "3 needed",
     "no result at"),
]


@pytest.mark.parametrize("claim, metrics, seeds, verdict, level, text", EXACT_CASES)
def test_exact_teacher_claims_over_training_seeds(claim, metrics, seeds, verdict, level, text):
    check_outcome(claim, metrics, seeds, verdict, level, text)
