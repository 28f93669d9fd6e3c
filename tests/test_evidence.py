"""dmdlib.evidence (published seed runs read back, across-seed intervals, the seed-level reading with the mirror rules,
the seed tables of page 08) and scripts/seeds.py (the plan `make seeds` runs, its commands and estimate)."""
import json
import math

import pytest

from dmdlib import evaluation, evidence
from smoke_book import load_script


def student(d, agree, half=None, conv=True, second=None):
    half = d * 0.5 if half is None else half
    rec = {"delta_e": d, "ci_low": d - half, "ci_high": d + half, "n": 1000, "r": 10, "converged": conv}
    refs = {"random": {"delta_e": 3.0, "ci_low": 2.9, "ci_high": 3.1}}
    a = {"student": {"value": agree, "ci_low": agree - 0.01, "ci_high": agree + 0.01},
         "chance": {"value": 0.1, "ci_low": 0.09, "ci_high": 0.11}}
    if second is not None:
        a["second"] = {"value": second, "ci_low": second - 0.01, "ci_high": second + 0.01}
    measures = {"agreement": a}
    return {"delta_e": rec, "references": refs, "measures": measures, "reading": evaluation.reading(rec, refs, measures)}


def test_across_is_a_t_interval_in_the_layout_of_a_record():
    a = evidence.across([1.0, 2.0, 3.0])
    assert a["delta_e"] == a["value"] == 2.0 and a["n_seeds"] == 3
    assert a["ci_high"] - 2.0 == pytest.approx(4.302652729749464 / math.sqrt(3))
    assert evaluation.regime(a, {"random": {"delta_e": 100.0}}) == "copies"
    with pytest.raises(ValueError, match="at least 2"):
        evidence.across([1.0])


def test_seed_reading_uses_the_mirror_rules_on_across_seed_intervals():
    copies = [student(0.001 * (1 + 0.1 * s), 0.99) for s in range(5)]
    rd = evidence.seed_reading(copies)
    assert rd["reading"] == "copies" and rd["measure"] == "agreement" and rd["per_seed"] == ["copies"] * 5
    remaps = [student(2.0 + 0.1 * s, 0.12) for s in range(3)]
    assert evidence.seed_reading(remaps)["reading"] == "remaps"
    mixed = [student(0.001, 0.12), student(0.002, 0.13), student(0.0015, 0.11)]
    assert evidence.seed_reading(mixed)["reading"] == "measures disagree"
    # the second teacher's agreement sets the ceiling only when every seed has it
    with_second = [student(0.001, 0.93 + 0.001 * s, second=0.95) for s in range(3)]
    assert evidence.seed_reading(with_second)["reading"] == "copies"
    assert evidence.seed_reading(with_second[:2] + [student(0.001, 0.93)])["reading"] == "measures disagree"   # ceiling 1
    with pytest.raises(ValueError, match="at least 2 seeds"):
        evidence.seed_reading(copies[:1])


def test_seed_runs_reads_published_sweeps(tmp_path):
    sub = tmp_path / "seeds" / "02"
    for s in (1, 0):
        (sub / f"seed-{s}").mkdir(parents=True)
        (sub / f"seed-{s}" / "metrics.json").write_text(json.dumps({"seed": s, **student(0.001, 0.99)}))
        (sub / f"seed-{s}" / "done.json").write_text(json.dumps({"parameters": {"seed": s, "preset": "quick",
                                                                                 "teacher_kimg": 64}}))
    (sub / "broken").mkdir()
    (sub / "broken" / "metrics.json").write_text("{not json")
    (sub / "sweep.json").write_text(json.dumps({"notebook": "02_mnist_copying.ipynb"}))
    runs = evidence.seed_runs(tmp_path / "seeds")
    assert list(runs) == ["02_mnist_copying"] and [r.seed for r in runs["02_mnist_copying"]] == [0, 1]
    assert runs["02_mnist_copying"][0].grid == {"teacher_kimg": 64}
    assert evidence.seed_runs(tmp_path / "nowhere") == {}


def test_seed_table_of_chapter_02_and_old_runs():
    runs = [evidence.SeedRun(s, student(0.001 * (s + 1), 0.99)) for s in range(3)]
    t = evidence.seed_table("02_mnist_copying", runs)
    assert t["columns"] == ["Delta_E", "agreement", "reading", "converged"] and t["seeds"] == [0, 1, 2]
    assert t["summary"]["Delta_E"]["value"] == pytest.approx(0.002) and t["summary"]["reading"] == "3 copies"
    assert t["summary"]["converged"] == "3 of 3"
    md = evidence.seed_table_markdown("02_mnist_copying", runs)
    assert md.splitlines()[0] == "| seed | $\\Delta_E$ | agreement | reading | converged |"
    assert md.splitlines()[-1].startswith("| across seeds | 0.002 [") and "(3 seeds)" in md
    old = [evidence.SeedRun(0, {"delta_e": {"delta_e": 0.001, "converged": True}})]   # before the reading existed
    assert evidence.seed_table("02_mnist_copying", old)["summary"]["reading"] is None
    assert "no seed run" in evidence.seed_table_markdown("99_x", old)


def test_seed_table_of_chapter_09_reads_each_points_copying_index_and_the_runs_verdicts():
    def point(k, agree, conv=True, spread_ok=True):
        lv = lambda v: {"value": v, "ci_low": v - 0.01, "ci_high": v + 0.01}  # noqa: E731
        return {"structure_dim": k, "converged": conv, "spread": {"ok": spread_ok},
                "measures": {"agreement": {"student": lv(agree), "chance": lv(0.1), "second": lv(0.9)}}}

    def run(s):
        return {"structure": [point(8, 0.5 + 0.1 * s), point(2, 0.3, conv=False)],
                "ambient": [{**point(4, 0.5, spread_ok=False), "ambient_dim": 4}],
                "verdicts": {"structure_dim": {"verdict": "inconclusive"}, "ambient_dim": {"verdict": "not run at "
                             "this scale"}, "resolution": {"verdict": "reproduced" if s else "inconclusive"}}}

    runs = [evidence.SeedRun(s, run(s)) for s in range(3)]
    t = evidence.seed_table("09_exact_teacher", runs)
    assert t["columns"] == ["k = 2 index", "k = 8 index", "structure verdict", "d = 4 index", "ambient verdict",
                            "resolution verdict"]
    assert t["rows"][1]["k = 8 index"] == pytest.approx(0.625)         # (0.6 - 0.1) / (0.9 - 0.1)
    assert t["rows"][0]["k = 2 index"] is None and t["rows"][0]["d = 4 index"] is None   # not results: no index
    assert t["summary"]["k = 8 index"]["value"] == pytest.approx(0.625) and t["summary"]["k = 2 index"] is None
    assert t["summary"]["resolution verdict"] == "1 inconclusive, 2 reproduced"
    assert "09" in " ".join(evidence.CLAIMS_OF) and "no seed run" not in evidence.seed_table_markdown(
        "09_exact_teacher", runs)


def test_level_text():
    assert evidence.level_text(5, 5) == "training seeds (5 seeds)"
    assert evidence.level_text(0, 3) == "evaluation seeds only (no seed runs; 3 needed)"
    assert evidence.level_text(1, 3, "teachers") == "evaluation seeds only (1 training seed; 3 needed)"
    # seed runs that exist but cannot be used (unconverged) are counted as such, never as "no seed runs"
    assert evidence.level_text(4, 5, found=5) == "evaluation seeds only (4 usable of 5 seed runs; 5 needed)"
    assert evidence.level_text(0, 3, found=3) == "evaluation seeds only (0 usable of 3 seed runs; 3 needed)"
    assert evidence.level_text(3, 3, found=5) == "training seeds (3 seeds)"


# ----------------------------------------------------------------------------- the plan of `make seeds`

def test_the_plan_covers_every_claims_seed_need():
    cl, seeds = load_script("claims"), load_script("seeds")
    plan = seeds.plan()
    assert plan == {"01_lowdim_remapping": 5, "02_mnist_copying": 5, "03_ablations": 3, "04_teacher_convergence": 3,
                    "05_boundary": 3, "06_where_copying_begins": 3, "07_conditioning": 3, "09_exact_teacher": 3}
    for c in cl.CLAIMS:
        assert plan[c.sweep or c.chapter] >= c.min_seeds


def test_plan_commands_and_estimate(tmp_path):
    seeds = load_script("seeds")
    (cmd,) = seeds.commands("quick", "cpu", 2, 1, {"02_mnist_copying": 5})
    assert cmd[1:] == ["-m", "dmdlib", "sweep", "--notebook", "02", "--preset", "quick", "--seeds", "0", "1", "2", "3",
                       "4", "--executor", "local", "--device", "cpu", "--max-parallel", "2", "--threads-per-run", "1",
                       "--runs-per-seed", "_build/sweeps/quick/claims/mnist-runs", "--out", "_build/sweeps/quick/claims/02", "--publish", "results/quick/seeds/02"]
    res = tmp_path / "results"
    for stem, wall in (("02_mnist_copying", 500.0), ("05_boundary", 25.0)):
        (res / "quick" / stem).mkdir(parents=True)
        (res / "quick" / stem / "metrics.json").write_text(json.dumps({"wall_time_s": wall}))
    run = res / "quick" / "seeds" / "02" / "seed-0"
    run.mkdir(parents=True)
    (run.parent / "sweep.json").write_text(json.dumps({"notebook": "02_mnist_copying.ipynb"}))
    (run / "done.json").write_text(json.dumps({"wall_time_s": 600.0}))
    assert seeds.run_estimate(res, "quick", "02_mnist_copying") == (600.0, "median of its published seed runs")
    sec, where = seeds.run_estimate(res, "quick", "05_boundary")
    assert sec == 25.0 and where == "its chapter's wall time"   # 05 reloads 02's runs, in a sweep as in the book
    assert seeds.run_estimate(res, "quick", "06_where_copying_begins")[0] is None
    text = seeds.report("quick", "cpu", 2, 1, {"02_mnist_copying": 5, "05_boundary": 3}, res)
    assert "8 runs of 2 notebooks" in text and "side by side (2 runs, one thread each)" in text


def test_dry_run_prints_the_plan(capsys):
    seeds = load_script("seeds")
    assert seeds.main(["--preset", "quick", "--device", "cpu", "--only", "05", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "05_boundary: seeds 0-2 (3 runs)" in out and "--notebook 05" in out and "--notebook 01" not in out
    with pytest.raises(SystemExit):
        seeds.main(["--only", "99", "--dry-run"])


# ----------------------------------------------------------------------------- the queue of `make seeds`

class FakeRuns:
    """Fake processes on a virtual clock: a seed run takes ``durations[notebook key]`` ticks (default 1); a
    publication (a command with --publish) returns at once. Records what ran when."""

    def __init__(self, durations=None, fail=()):
        self.t, self.durations, self.fail = 0, durations or {}, set(fail)
        self.log, self.live = [], []

    def start(self, cmd):
        key = cmd[cmd.index("--notebook") + 1]
        fake = self

        class Proc:
            def __init__(self):
                self.publish = "--publish" in cmd
                self.seed = None if self.publish else int(cmd[cmd.index("--seeds") + 1])
                self.end = fake.t + (0 if self.publish else fake.durations.get(key, 1))
                self.rc = 1 if (key, self.seed) in fake.fail else 0

            def poll(self):
                return self.rc if fake.t >= self.end else None

            def wait(self):
                return self.rc

        p = Proc()
        self.log.append((self.t, key, "publish" if p.publish else p.seed))
        if not p.publish:
            self.live.append((key, p))
        return p

    def sleep(self, _):
        self.t += 1

    def clock(self):
        return float(self.t)

    def running_at(self, t):
        return [(k, p.seed) for k, p in self.live if p.end - self.durations.get(k, 1) <= t < p.end]


def test_the_queue_fills_every_slot_and_keeps_one_job_per_mnist_seed_folder():
    seeds = load_script("seeds")
    plan = {"01_lowdim_remapping": 5, "02_mnist_copying": 5, "03_ablations": 3, "05_boundary": 3}
    fake = FakeRuns({"02": 2})
    failed = seeds.run_queue("quick", "cpu", 2, 1, plan, start=fake.start, sleep=fake.sleep, clock=fake.clock,
                             echo=lambda *_: None)
    assert failed == []
    starts = {(k, s): t for t, k, s in fake.log if s != "publish"}
    assert len(starts) == 16                                              # every (notebook, seed) once
    for t in range(fake.t):
        now = fake.running_at(t)
        assert len(now) <= 2                                               # never more than the slots
        mnist = [s for k, s in now if k in ("02", "03", "05")]
        assert len(mnist) == len(set(mnist))                              # one job per seed folder at a time
    for s in range(3):                                                    # 02 trains what 03 and 05 reload
        assert starts[("03", s)] >= starts[("02", s)] + 2 and starts[("05", s)] >= starts[("03", s)] + 1
    # 5 + 10 + 3 + 3 = 21 slot-ticks on 2 slots: 11 ticks; notebook by notebook it would take 3 + 6 + 2 + 2 = 13
    assert fake.t <= 12
    publishes = [(t, k) for t, k, s in fake.log if s == "publish"]
    assert sorted(k for _, k in publishes) == ["01", "02", "03", "05"]
    for t, k in publishes:                                                 # published after its last seed ends
        assert t >= max(p.end for kk, p in fake.live if kk == k)


def test_the_queue_does_not_publish_a_notebook_with_a_failed_run():
    seeds = load_script("seeds")
    fake = FakeRuns(fail={("01", 1)})
    lines = []
    failed = seeds.run_queue("quick", "cpu", 2, 1, {"01_lowdim_remapping": 3, "05_boundary": 3}, start=fake.start,
                             sleep=fake.sleep, clock=fake.clock, echo=lines.append)
    assert failed == ["01_lowdim_remapping"]
    assert [k for _, k, s in fake.log if s == "publish"] == ["05"]
    assert any("01: not published" in line for line in lines)
    with pytest.raises(ValueError, match="parallel must be >= 1"):
        seeds.run_queue("quick", "cpu", 0, 1, {"05_boundary": 3}, start=fake.start)


def test_a_seed_command_is_its_notebooks_sweep_for_one_seed():
    seeds = load_script("seeds")
    cmd = seeds.seed_command("quick", "cpu", 1, seeds.Job("03_ablations", 2))
    assert cmd[1:] == ["-m", "dmdlib", "sweep", "--notebook", "03", "--preset", "quick", "--seeds", "2", "--executor",
                       "local", "--device", "cpu", "--max-parallel", "1", "--threads-per-run", "1", "--runs-per-seed",
                       "_build/sweeps/quick/claims/mnist-runs", "--out", "_build/sweeps/quick/claims/03"]
    assert [str(j) for j in seeds.jobs({"01_lowdim_remapping": 2, "05_boundary": 1})] == ["01 seed 0", "01 seed 1",
                                                                                          "05 seed 0"]
