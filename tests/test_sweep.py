"""Seed grids through submitit (issue #11): the grid, the summary of metrics.json files, skipping finished runs,
listing failed ones, the Slurm parameters, the seed spread the book shows, and one real sweep of notebook 01."""
import csv
import json
import math
import os
from pathlib import Path

import pytest

import sweep_jobs
from dmdlib import cli
from dmdlib import across_seeds as acs
from dmdlib import sweep as sw

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent


# ----------------------------------------------------------------------------- the grid

def test_plan_names_and_parameters():
    runs = sw.plan([0, 2], {"teacher_kimg": [16, 128.0], "variants": [["gan"]]})
    assert [r.name for r in runs] == ["seed-0_teacher_kimg-16_variants-gan", "seed-0_teacher_kimg-128.0_variants-gan",
                                      "seed-2_teacher_kimg-16_variants-gan", "seed-2_teacher_kimg-128.0_variants-gan"]
    assert runs[1].parameters("smoke", "cpu", "/o/x") == {"preset": "smoke", "device": "cpu", "seed": 0,
                                                          "output_dir": "/o/x", "teacher_kimg": 128.0,
                                                          "variants": ["gan"]}
    assert [r.name for r in sw.plan([3])] == ["seed-3"]
    for bad in ([], [0, 0], [-1], [True]):
        with pytest.raises(ValueError, match="--seeds"):
            sw.plan(bad)


def test_grid_values_and_errors():
    assert [sw.parse_value(v) for v in ("64", "0.5", "true", "None", "null", '["gan", "regression"]', "runs/x")] == \
        [64, 0.5, True, None, None, ["gan", "regression"], "runs/x"]
    allowed = {"preset", "device", "seed", "output_dir", "teacher_kimg", "runs_dir"}
    assert sw.parse_grid([["teacher_kimg", "16", "128"]], allowed) == {"teacher_kimg": [16, 128]}
    with pytest.raises(ValueError, match=r"-p seed: set by the sweep itself; use --seeds"):
        sw.parse_grid([["seed", "1"]], allowed)
    with pytest.raises(ValueError, match=r"-p lr: not a parameter of the notebook; allowed: runs_dir, teacher_kimg"):
        sw.parse_grid([["lr", "1"]], allowed)
    with pytest.raises(ValueError, match="at least one value"):
        sw.parse_grid([["teacher_kimg"]], allowed)
    with pytest.raises(ValueError, match="given twice"):
        sw.parse_grid([["teacher_kimg", "16"], ["teacher_kimg", "128"]], allowed)
    assert sw.find_notebook("01").name == "01_lowdim_remapping.ipynb"
    with pytest.raises(ValueError, match=r"--notebook '99' matches no notebook .* allowed: (00, )?01, 02, 03, 04, 05"):
        sw.find_notebook("99")


# ----------------------------------------------------------------------------- summary, skipping, failures

def write_run(out, run, params, metrics, done=True):
    d = Path(out) / run.name
    d.mkdir(parents=True)
    (d / "metrics.json").write_text(json.dumps(metrics))
    if done:
        (d / "done.json").write_text(json.dumps({"parameters": params}))


def test_headline_records_are_the_students():
    m = sweep_jobs.metrics(0)
    m["variants"] = {"gan": {"delta_e": sweep_jobs.record(0.3)}}
    m["students"] = [{"teacher_kimg": 4, "delta_e": sweep_jobs.record(0.2)}]
    labels = [label for label, _ in acs.headline_records(m)]
    assert labels == ["chessboard", "moons", "gan", "students.0"]
    (label, rec, student), = acs.headline_students({"datasets": {"x": {"delta_e": sweep_jobs.record(1.0),
                                                                        "reading": {"reading": "copies"}}}})
    assert label == "x" and rec["delta_e"] == 1.0 and student["reading"]["reading"] == "copies"
    flat = {"records": [{"dataset": "mnist", **sweep_jobs.record(0.1), "reading": {"reading": "remaps"}}]}
    assert acs.headline_students(flat)[0][2]["reading"]["reading"] == "remaps"   # flat records: the record itself
    assert [label for label, _ in acs.headline_records({"delta_e": sweep_jobs.record(0.04)})] == ["student"]


def test_summary_of_synthetic_runs_and_skip_logic(tmp_path):
    runs = sw.plan([0, 1, 2], {"scale": [1, 10]})
    params = lambda r: r.parameters("smoke", "cpu", tmp_path / r.name)  # noqa: E731
    for r in runs[:4]:                                      # seeds 0 and 1 finished
        write_run(tmp_path, r, params(r), sweep_jobs.metrics(r.seed, dict(r.grid)["scale"]))
    write_run(tmp_path, runs[4], params(runs[4]), sweep_jobs.metrics(2), done=False)   # killed before the end
    other = {**params(runs[5]), "preset": "quick"}           # done, but with other parameters
    write_run(tmp_path, runs[5], other, sweep_jobs.metrics(2))
    assert [sw.is_finished(tmp_path / r.name, params(r)) for r in runs] == [True] * 4 + [False, False]
    (tmp_path / runs[0].name / "metrics.json").unlink()
    assert not sw.is_finished(tmp_path / runs[0].name, params(runs[0]))
    (tmp_path / runs[0].name / "metrics.json").write_text(json.dumps(sweep_jobs.metrics(0)))

    rows = sw.summary_rows(tmp_path, runs, params)
    acs.write_csv(tmp_path / "summary.csv", rows, acs.summary_columns(["scale"]))
    with open(tmp_path / "summary.csv", newline="") as f:
        raw = list(csv.reader(f))
    assert raw[0] == ["run", "seed", "scale", "record", "delta_e", "ci_low", "ci_high", "n", "r", "converged",
                      "reading", "measure", "undiluted", "undiluted_ci_low", "undiluted_ci_high"]
    assert raw[1] == ["seed-0_scale-1", "0", "1", "chessboard", "8.0", "7.5", "8.5", "100", "3", "true",
                      "remaps", "agreement", "0.1", "0.05", "0.15"]
    assert raw[4] == ["seed-0_scale-10", "0", "10", "moons", "20", "19.5", "20.5", "100", "3", "false"] + [""] * 5
    assert len(raw) == 1 + 4 * 2                            # 4 finished runs x 2 students; references left out
    back = acs.read_summary(tmp_path / "summary.csv")
    assert back[2] == {"run": "seed-0_scale-10", "seed": 0, "scale": "10", "record": "chessboard", "delta_e": 80.0,
                       "ci_low": 79.5, "ci_high": 80.5, "n": 100, "r": 3, "converged": True, "reading": "remaps",
                       "measure": "agreement", "undiluted": 0.1, "undiluted_ci_low": 0.05, "undiluted_ci_high": 0.15}
    assert back[3]["reading"] is None and back[3]["undiluted"] is None
    assert acs.grid_columns(back) == ["scale"]
    # a summary written before the reading columns existed stays readable
    (tmp_path / "old.csv").write_text("run,seed,record,delta_e,ci_low,ci_high,n,r,converged\n"
                                      "seed-0,0,student,0.001,0.0,0.002,1000,10,true\n")
    (old,) = acs.read_summary(tmp_path / "old.csv")
    assert old["reading"] is None and old["undiluted"] is None and old["converged"] is True
    assert acs.seed_spread([old])["student"]["readings"] == [None]


def test_seed_spread(tmp_path):
    rows = [{"run": f"seed-{s}", "seed": s, "record": "chessboard", "delta_e": v, "ci_low": v - 0.2,
             "ci_high": v + 0.4, "n": 1000, "r": 10, "converged": s != 2} for s, v in ((2, 9.0), (0, 8.0), (1, 10.0))]
    rows.append({**rows[0], "record": "moons", "delta_e": float("inf"), "ci_low": float("inf"), "ci_high": float("inf")})
    spread = acs.seed_spread(rows)
    c = spread["chessboard"]
    assert c["seeds"] == [0, 1, 2] and c["delta_e"] == [8.0, 10.0, 9.0] and c["converged"] == [True, True, False]
    assert c["mean"] == 9.0 and c["sd"] == 1.0 and c["within_half_width"] == pytest.approx(0.3)
    assert c["across_half_width"] == pytest.approx(4.302652729749464 / math.sqrt(3))   # t_{0.975, 2} sd / sqrt(3)
    m = spread["moons"]
    assert m["n_seeds"] == 1 and m["mean"] is None and m["sd"] is None and m["across_half_width"] is None
    assert acs.command_for("results/quick/seeds/summary.csv") == \
        "python -m dmdlib sweep --notebook 01 --preset quick --seeds 0 1 2 --executor local --out results/quick/seeds"
    assert "--preset paper " in acs.command_for("x/summary.csv", preset="paper")


def test_failed_runs_are_listed_and_a_rerun_skips_finished_ones(tmp_path, monkeypatch):
    """submitit's local executor with a stand-in job: seed 1 fails, seed 0 is still summarised; the rerun launches
    only seed 1."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(TESTS), str(ROOT)]))
    seen = []
    kw = dict(device="cpu", executor="local", max_parallel=2, poll_s=0.1, fn=sweep_jobs.fake_notebook,
              echo=seen.append, timeout_min=5, gpus_per_node=0)
    res = sw.sweep("01", "smoke", [0, 1], tmp_path, **kw)
    assert [o.run.name for o in res.outcomes] == ["seed-0", "seed-1"] and res.skipped == []
    (failed,) = res.failed
    assert failed.run.name == "seed-1" and failed.error == "ValueError: seed 1 fails on purpose"
    assert Path(failed.log).parent == tmp_path / "logs" and "seed 1 fails on purpose" in Path(failed.log).read_text()
    assert failed.notebook == str(tmp_path / "seed-1" / "01_lowdim_remapping.ipynb")
    with open(tmp_path / "failed.csv", newline="") as f:
        (row,) = list(csv.DictReader(f))
    assert row["run"] == "seed-1" and row["log"] == failed.log and row["error"] == failed.error
    assert [(r["run"], r["record"]) for r in acs.read_summary(tmp_path / "summary.csv")] == \
        [("seed-0", "chessboard"), ("seed-0", "moons")]

    (tmp_path / "seed-1" / "fixed").touch()
    seen.clear()
    res = sw.sweep("01", "smoke", [0, 1], tmp_path, **kw)
    assert [r.name for r in res.skipped] == ["seed-0"] and [o.run.name for o in res.outcomes] == ["seed-1"]
    assert res.failed == [] and "[sweep] seed-0: finished earlier, skipped" in seen
    assert [r["seed"] for r in acs.read_summary(tmp_path / "summary.csv")] == [0, 0, 1, 1]
    with open(tmp_path / "failed.csv") as f:
        assert f.read().strip() == "run,seed,error,log,notebook"
    with pytest.raises(ValueError, match="holds a sweep with other settings .*preset: 'smoke'"):
        sw.sweep("01", "quick", [0], tmp_path, **kw)


def test_auto_device_resumes_a_sweep_made_with_the_device_it_resolves_to(tmp_path, monkeypatch):
    """The local executor runs on this machine, so device 'auto' is recorded (sweep.json, each run's parameters) as
    the device it resolves to: a sweep started with --device cpu resumes under 'auto' on a CPU machine, finished
    runs are skipped; a device it does not resolve to is still refused."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(TESTS), str(ROOT)]))
    seen = []
    kw = dict(executor="local", max_parallel=1, poll_s=0.1, fn=sweep_jobs.fake_notebook, echo=seen.append,
              timeout_min=5, gpus_per_node=0)
    assert sw.sweep("01", "smoke", [0], tmp_path, device="cpu", **kw).failed == []
    res = sw.sweep("01", "smoke", [0, 2], tmp_path, device="auto", **kw)
    assert [r.name for r in res.skipped] == ["seed-0"] and [o.run.name for o in res.outcomes] == ["seed-2"]
    assert json.loads((tmp_path / "sweep.json").read_text())["device"] == "cpu"
    assert json.loads((tmp_path / "seed-2" / "done.json").read_text())["parameters"]["device"] == "cpu"
    with pytest.raises(ValueError, match="holds a sweep with other settings .*device: 'cpu'.*rerun with its settings"):
        sw.sweep("01", "smoke", [0], tmp_path, device="cuda", **kw)
    # a folder recorded with 'auto' (sweep.json and done.json, as before the local executor resolved it) resumes
    old = tmp_path / "old"
    assert sw.sweep("01", "smoke", [0], old, device="cpu", **kw).failed == []
    for f in (old / "sweep.json", old / "seed-0" / "done.json"):
        f.write_text(f.read_text().replace('"device": "cpu"', '"device": "auto"'))
    assert '"auto"' in (old / "seed-0" / "done.json").read_text()
    res = sw.sweep("01", "smoke", [0], old, device="cpu", **kw)
    assert [r.name for r in res.skipped] == ["seed-0"] and res.outcomes == []


def test_threads_per_run_reach_the_jobs(tmp_path, monkeypatch):
    """--threads-per-run: each job of the local executor runs with OMP_NUM_THREADS set; sweep.json records it."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(TESTS), str(ROOT)]))
    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    kw = dict(device="cpu", executor="local", max_parallel=2, poll_s=0.1, fn=sweep_jobs.fake_notebook,
              echo=lambda *_: None, timeout_min=5, gpus_per_node=0)
    res = sw.sweep("01", "smoke", [0, 2], tmp_path, threads=1, **kw)
    assert res.failed == []
    for s in (0, 2):
        assert json.loads((tmp_path / f"seed-{s}" / "done.json").read_text())["omp_num_threads"] == "1"
    assert json.loads((tmp_path / "sweep.json").read_text())["threads"] == 1
    with pytest.raises(ValueError, match="holds a sweep with other settings .*threads"):
        sw.sweep("01", "smoke", [0], tmp_path, **kw)          # another thread count computes other numbers


def test_slurm_parameters(tmp_path, monkeypatch):
    assert sw.executor_parameters("slurm", 30, "gpu", 2) == {"time": 30, "gpus_per_node": 2, "nodes": 1,
                                                             "ntasks_per_node": 1, "job_name": "dmdlib-sweep",
                                                             "partition": "gpu"}
    assert sw.executor_parameters("local", 30, None, 0) == {"timeout_min": 30, "gpus_per_node": 0, "nodes": 1,
                                                            "tasks_per_node": 1}
    one = ["export OMP_NUM_THREADS=1", "export MKL_NUM_THREADS=1"]
    assert sw.executor_parameters("local", 30, None, 0, threads=1)["setup"] == one
    slurm = sw.executor_parameters("slurm", 30, None, 0, threads=1)
    assert slurm["cpus_per_task"] == 1 and slurm["setup"] == one
    with pytest.raises(ValueError, match="--threads-per-run must be an integer >= 1"):
        sw.executor_parameters("local", threads=0)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(ValueError, match='--executor slurm: Could not detect "srun"'):
        sw.make_executor("slurm", tmp_path / "logs")
    # with an srun on the PATH the executor is built and its sbatch script carries the options
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "srun").write_text("#!/bin/sh\nexit 0\n")
    (tmp_path / "bin" / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    from submitit.slurm.slurm import _make_sbatch_string

    ex = sw.make_executor("slurm", tmp_path / "logs", timeout_min=30, partition="gpu", gpus_per_node=2)
    script = _make_sbatch_string(command="true", folder=str(tmp_path / "logs"), **ex.parameters)
    for line in ("#SBATCH --partition=gpu", "#SBATCH --gpus-per-node=2", "#SBATCH --time=30", "#SBATCH --nodes=1"):
        assert line in script


# ----------------------------------------------------------------------------- one real sweep

def test_sweep_notebook_01_at_smoke_through_the_local_executor(tmp_path, capsys):
    argv = ["sweep", "--notebook", "01", "--preset", "smoke", "--seeds", "0", "1", "--executor", "local",
            "--device", "cpu", "--out", str(tmp_path)]
    assert cli.main(argv) == 0
    rows = acs.read_summary(tmp_path / "summary.csv")
    assert [(r["seed"], r["record"]) for r in rows] == [(s, d) for s in (0, 1)
                                                        for d in ("chessboard", "moons", "gaussian_mixture")]
    for r in rows:
        m = json.loads((tmp_path / r["run"] / "metrics.json").read_text())
        assert m["seed"] == r["seed"] and m["preset"] == "smoke" and m["device"] == "cpu"
        rec = m["datasets"][r["record"]]["delta_e"]
        assert (r["delta_e"], r["ci_low"], r["ci_high"], r["n"], r["r"], r["converged"]) == \
            (rec["delta_e"], rec["ci_low"], rec["ci_high"], rec["n"], rec["r"], rec["converged"])
        assert (tmp_path / r["run"] / "01_lowdim_remapping.ipynb").exists()
    assert rows[0]["delta_e"] != rows[3]["delta_e"]         # another seed, another student
    capsys.readouterr()
    pub = tmp_path.parent / (tmp_path.name + "-published") / "01"
    assert cli.main(argv + ["--publish", str(pub)]) == 0     # the rerun launches nothing
    text = capsys.readouterr().out
    assert "seed-0: finished earlier, skipped" in text and "seed-1: finished earlier, skipped" in text
    assert "submitted" not in text
    published = sorted(str(p.relative_to(pub)) for p in pub.rglob("*") if p.is_file())
    assert published == ["failed.csv", "seed-0/done.json", "seed-0/metrics.json", "seed-1/done.json",
                         "seed-1/metrics.json", "summary.csv", "sweep.json"]       # no runs, no checkpoints
    both, sweeps = acs.read_summaries(pub.parent)
    assert [r["record"] for r in both] == [f"01_lowdim_remapping: {r['record']}" for r in rows]
    assert [r["delta_e"] for r in both] == [r["delta_e"] for r in rows] and sweeps["01"]["preset"] == "smoke"


# ----------------------------------------------------------------------------- the book page

def test_across_seeds_page_reads_a_summary(tmp_path):
    """notebooks/08_across_seeds at smoke on a synthetic summary: per-record spread in its metrics.json."""
    import papermill as pm

    rows = [{"run": f"seed-{s}", "seed": s, "record": rec, "delta_e": v, "ci_low": v - 0.1, "ci_high": v + 0.1,
             "n": 1000, "r": 10, "converged": True}
            for s, (a, b) in enumerate([(8.0, 0.03), (10.0, 0.05), (9.0, 0.04)])
            for rec, v in (("chessboard", a), ("moons", b))]
    acs.write_csv(tmp_path / "sweep" / "summary.csv", rows, acs.summary_columns([]))
    out = tmp_path / "page"
    pm.execute_notebook(str(ROOT / "notebooks" / "08_across_seeds.ipynb"), str(tmp_path / "out.ipynb"),
                        cwd=str(ROOT), kernel_name="python3", progress_bar=False,
                        parameters={"preset": "smoke", "device": "cpu", "seed": 0, "output_dir": str(out),
                                    "summary": str(tmp_path / "sweep" / "summary.csv")})
    m = json.loads((out / "metrics.json").read_text())
    assert m["found"] is True and m["preset"] == "smoke" and set(m["records"]) == {"chessboard", "moons"}
    c = m["records"]["chessboard"]
    assert c["seeds"] == [0, 1, 2] and c["mean"] == 9.0 and c["sd"] == 1.0
    assert c["within_half_width"] == pytest.approx(0.1)
    assert (out / "across_seeds.png").exists()


def test_across_seeds_page_reads_published_sweeps_of_two_notebooks(tmp_path):
    """The page's default: a folder with one published sweep per notebook; records keep their notebook."""
    import papermill as pm

    for sub, nb, recs in (("01", "01_lowdim_remapping.ipynb", ("chessboard", "moons")),
                          ("02", "02_mnist_copying.ipynb", ("student",))):
        rows = [{"run": f"seed-{s}", "seed": s, "record": rec, "delta_e": v + k, "ci_low": v + k - 0.1,
                 "ci_high": v + k + 0.1, "n": 1000, "r": 10, "converged": s != 2}
                for s, v in enumerate((8.0, 10.0, 9.0)) for k, rec in enumerate(recs)]
        acs.write_csv(tmp_path / "seeds" / sub / "summary.csv", rows, acs.summary_columns([]))
        (tmp_path / "seeds" / sub / "sweep.json").write_text(json.dumps({"notebook": nb, "preset": "quick"}))
    out = tmp_path / "page"
    pm.execute_notebook(str(ROOT / "notebooks" / "08_across_seeds.ipynb"), str(tmp_path / "out.ipynb"),
                        cwd=str(ROOT), kernel_name="python3", progress_bar=False,
                        parameters={"preset": "smoke", "device": "cpu", "seed": 0, "output_dir": str(out),
                                    "summary": str(tmp_path / "seeds")})
    m = json.loads((out / "metrics.json").read_text())
    assert set(m["records"]) == {"01_lowdim_remapping: chessboard", "01_lowdim_remapping: moons",
                                 "02_mnist_copying: student"}
    s = m["records"]["02_mnist_copying: student"]
    assert s["mean"] == 9.0 and s["converged"] == [True, True, False] and m["command"] == "make seeds PRESET=smoke"
    with pytest.raises(ValueError, match="no summary.csv"):
        sw.publish(tmp_path / "empty", tmp_path / "x")


def test_runs_per_seed_share_a_seeds_runs_across_notebooks(tmp_path, monkeypatch):
    """--runs-per-seed DIR: each run of a notebook with a runs_dir parameter gets runs_dir = DIR/seed-<seed> (the
    sweeps of 02-05 share each seed's teachers and students; seeds side by side never share a folder); a notebook
    without that parameter is refused."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(TESTS), str(ROOT)]))
    kw = dict(device="cpu", executor="local", max_parallel=2, poll_s=0.1, fn=sweep_jobs.fake_notebook,
              echo=lambda *_: None, timeout_min=5, gpus_per_node=0)
    res = sw.sweep("02", "smoke", [0, 2], tmp_path / "s", runs_per_seed=tmp_path / "runs", **kw)
    assert res.failed == []
    for s in (0, 2):
        params = json.loads((tmp_path / "s" / f"seed-{s}" / "done.json").read_text())["parameters"]
        assert params["runs_dir"] == str((tmp_path / "runs" / f"seed-{s}").resolve())
    assert sw.Run(3).parameters("smoke", "cpu", "/o", "/r") == {"preset": "smoke", "device": "cpu", "seed": 3,
                                                                 "output_dir": "/o", "runs_dir": "/r/seed-3"}
    with pytest.raises(ValueError, match="runs_dir parameter"):
        sw.sweep("01", "smoke", [0], tmp_path / "t", runs_per_seed=tmp_path / "runs", **kw)
