"""The command line (issue #11): options and their errors, outputs, reloading the notebooks' run folders, and
data-parallel training under torchrun."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from dmdlib import cli
from dmdlib import pairing, presets, specs
from dmdlib.data.mnist import mnist_data_dir
from dmdlib.runs import _jsonable

ROOT = Path(__file__).resolve().parents[1]


def run(capsys, *argv):
    """``python -m dmdlib *argv`` in this process: (exit status, stdout, stderr)."""
    try:
        code = cli.main([str(a) for a in argv])
    except SystemExit as e:      # argparse errors
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def toy(command, out, *extra):
    return (command, "--experiment", "toy", "--dataset", "chessboard", "--preset", "smoke", "--device", "cpu",
            "--out", out, *extra)


# ----------------------------------------------------------------------------- options

def test_help_explains_every_option():
    ap = cli.build_parser()
    sub = next(a for a in ap._actions if a.dest == "command").choices
    assert set(sub) == {"train-teacher", "distill", "evaluate", "sweep"}
    for name, parser in sub.items():
        text = parser.format_help()
        for action in parser._actions:
            assert action.help, f"{name}: {action.option_strings} has no help"
            for opt in action.option_strings:
                assert opt in text
    common = sub["distill"].format_help()
    for words in ("toy", "mnist", "manifold", "chessboard", "gaussian_mixture", "moons", "smoke", "quick", "paper",
                  "'auto', 'cpu', 'cuda' or 'cuda:N'", "student.safetensors", "torchrun"):
        assert words in common
    assert "teacher.safetensors" in sub["train-teacher"].format_help()
    sweep = sub["sweep"].format_help()
    for words in ("--notebook", "--seeds", "--executor", "local", "slurm", "--partition", "--gpus-per-node",
                  "--timeout-min", "-p NAME [VALUE ...]", "summary.csv"):
        assert words in sweep


@pytest.mark.parametrize("argv, message", [
    (("distill", "--experiment", "manifold", "--out", "x"), "argument --experiment: 'manifold' does not exist yet; "
                                                              "allowed: toy, mnist"),
    (("distill", "--experiment", "cifar", "--out", "x"), "argument --experiment: invalid choice 'cifar'; allowed: "
                                                           "toy, mnist"),
    (("distill", "--preset", "huge", "--out", "x"), "argument --preset: invalid choice: 'huge' (choose from 'smoke', "
                                                      "'quick', 'paper')"),
    (("train-teacher", "--dataset", "spiral", "--out", "x"), "argument --dataset: invalid choice: 'spiral' (choose "
                                                               "from 'chessboard', 'gaussian_mixture', 'moons')"),
    (("evaluate", "--experiment", "mnist", "--dataset", "moons", "--out", "x"), "argument --dataset: applies to "
                                                                                 "--experiment toy only"),
    (("distill", "--teacher-kimg", "64", "--out", "x"), "argument --teacher-kimg: applies to --experiment mnist"),
    (("distill", "--device", "tpu", "--out", "x"), "argument --device: unknown device 'tpu'; allowed: 'auto', "
                                                     "'cpu', 'cuda' or 'cuda:N'"),
    (("distill", "--seed", "-1", "--out", "x"), "argument --seed: must be a non-negative integer"),
    (("distill",), "the following arguments are required: --out"),
    (("sweep", "--notebook", "01", "--seeds", "0", "--executor", "pbs", "--out", "x"),
     "argument --executor: invalid choice: 'pbs' (choose from 'local', 'slurm')"),
    (("sweep", "--notebook", "01", "--seeds", "0", "--partition", "gpu", "--out", "x"),
     "argument --partition: applies to --executor slurm only"),
    (("sweep", "--notebook", "01", "--seeds", "0", "--device", "gpu0", "--out", "x"),
     "argument --device: unknown device 'gpu0'; allowed: 'auto', 'cpu', 'cuda' or 'cuda:N'"),
    (("sweep", "--notebook", "01", "--seeds", "0", "x", "--out", "x"), "argument --seeds: must be a non-negative integer"),
])
def test_bad_options_name_the_option_and_the_allowed_values(capsys, argv, message):
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert message in " ".join(err.split())


def test_teacher_kimg_must_be_a_snapshot(tmp_path, capsys):
    code, _, err = run(capsys, "distill", "--experiment", "mnist", "--preset", "smoke", "--device", "cpu",
                       "--teacher-kimg", "3", "--out", tmp_path)
    assert code == 1 and "teacher_kimg=3.0 is not a snapshot of preset 'smoke'; allowed: [0.128, 0.256]" in err


def test_evaluate_needs_a_finished_student(tmp_path, capsys):
    code, _, err = run(capsys, *toy("evaluate", tmp_path))
    assert code == 1
    assert "no finished student for these options" in err and "run `python -m dmdlib distill`" in err
    assert not (tmp_path / "runs").exists()             # nothing was trained


# ----------------------------------------------------------------------------- the toy commands

@pytest.fixture(scope="module")
def toy_dir(tmp_path_factory):
    """train-teacher then distill at the smoke preset, in one process (shared by the tests below)."""
    out = tmp_path_factory.mktemp("cli") / "chess"
    assert cli.main([str(a) for a in toy("train-teacher", out)]) == 0
    teacher_metrics = json.loads((out / "metrics.json").read_text())
    assert cli.main([str(a) for a in toy("distill", out)]) == 0
    return out, teacher_metrics


def test_train_teacher_and_distill_write_weights_and_metrics(toy_dir):
    out, tm = toy_dir
    p = presets.get_preset("toy", "smoke")
    spec, root = specs.toy_spec("chessboard", p), out / "runs" / "chessboard"
    t_dir = pairing.spec_teacher_dir(spec, p, root, 0, "cpu")
    s_dir = pairing.spec_student_dir(spec, p, root, 0, "cpu")
    ema = torch.load(t_dir / "result.pt", weights_only=True)["ema"]
    w = load_file(out / "teacher.safetensors")
    assert w.keys() == ema.keys() and all(torch.equal(w[k], ema[k]) for k in w)
    gen = torch.load(s_dir / "result.pt", weights_only=True)["generator"]
    g = load_file(out / "student.safetensors")
    assert g.keys() == gen.keys() and all(torch.equal(g[k], gen[k]) for k in g)
    assert tm["command"] == "train-teacher" and tm["teacher"]["iterations"] == p.teacher.iterations
    assert tm["teacher"]["provenance"].startswith("trained now") and tm["world_size"] == 1
    m = json.loads((out / "metrics.json").read_text())
    assert m["command"] == "distill" and m["preset"] == "smoke" and m["dataset"] == "chessboard"
    assert m["teacher"]["provenance"].startswith("loaded from the run folder")     # distill reused the teacher
    assert m["student"]["iterations"] == p.dmd.iterations and m["student"]["run_dir"] == str(s_dir)
    assert m["student"]["delta_e_along"]["iteration"] == list(range(0, p.dmd.iterations + 1, p.dmd.eval_every))


def test_rerun_reloads(toy_dir, capsys):
    out, _ = toy_dir
    before = {f: f.stat().st_mtime_ns for f in (out / "runs").rglob("result.pt")}
    code, text, _ = run(capsys, *toy("distill", out))
    assert code == 0
    assert "teacher: loaded from the run folder" in text and "student: loaded from the run folder" in text
    assert {f: f.stat().st_mtime_ns for f in (out / "runs").rglob("result.pt")} == before


def test_evaluate_writes_the_notebooks_record(toy_dir, capsys):
    out, _ = toy_dir
    code, text, _ = run(capsys, *toy("evaluate", out))
    assert code == 0 and "chessboard: Delta_E = " in text
    m = json.loads((out / "metrics.json").read_text())
    assert m["command"] == "evaluate" and set(m["datasets"]) == {"chessboard"}
    d = m["datasets"]["chessboard"]
    # what the pairing path reports for notebook 01, from the same run folders
    p = presets.get_preset("toy", "smoke")
    ref = pairing.run_pairing(specs.toy_spec("chessboard", p), p, out / "runs" / "chessboard", seed=0, device="cpu",
                              progress_bar=False).metrics
    assert d["delta_e"] == json.loads(json.dumps(_jsonable(ref["delta_e"])))
    assert set(d["references"]) == {"start", "random", "reproducibility"}
    rec = d["delta_e"]
    assert {"delta_e", "ci_low", "ci_high", "n", "r", "converged", "gates"} <= set(rec)
    assert rec["ci_low"] <= rec["delta_e"] <= rec["ci_high"] and (rec["n"], rec["r"]) == (100, 3)
    assert d["paper_delta_e"] == 8.55


def test_distill_under_torchrun_matches_one_process(toy_dir, tmp_path):
    """torchrun --nproc_per_node=2 -m dmdlib distill: the same run folders, rank 0's outputs, the same weights."""
    out1, _ = toy_dir
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           "-m", "dmdlib", *map(str, toy("distill", tmp_path / "chess"))],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stdout.count("wrote ") == 1                      # rank 0 alone reports and writes
    m = json.loads((tmp_path / "chess" / "metrics.json").read_text())
    assert m["world_size"] == 2 and m["student"]["provenance"].startswith("trained now")
    p = presets.get_preset("toy", "smoke")
    spec = specs.toy_spec("chessboard", p)
    names = {pairing.spec_teacher_dir(spec, p, out1, 0, "cpu").name, pairing.spec_student_dir(spec, p, out1, 0, "cpu").name}
    # the run folders and the cache of the teacher's outputs on the evaluation seeds
    assert {f.name for f in (tmp_path / "chess" / "runs" / "chessboard").iterdir()} == names | {"samples"}
    assert names <= {f.name for f in (out1 / "runs" / "chessboard").iterdir()}
    a, b = load_file(out1 / "student.safetensors"), load_file(tmp_path / "chess" / "student.safetensors")
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-4


# ----------------------------------------------------------------------------- MNIST

MNIST_CACHED = (mnist_data_dir() / "mnist" / "mnist32_uint8.npz").exists() and \
    (mnist_data_dir() / "mnist" / "classifier.safetensors").exists()


@pytest.mark.skipif(not MNIST_CACHED, reason="needs MNIST and the feature classifier in the data cache")
def test_mnist_distill_and_evaluate(tmp_path, capsys):
    mn = ("--experiment", "mnist", "--preset", "smoke", "--device", "cpu", "--teacher-kimg", "0.128",
          "--out", tmp_path)
    code, text, err = run(capsys, "distill", *mn)
    assert code == 0, err
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["teacher_snapshot"] == 0.128 and m["teacher"]["snapshots"] == [0.128, 0.256]
    g = load_file(tmp_path / "student.safetensors")
    assert all(k.startswith("denoiser.model.") for k in g)
    code, text, err = run(capsys, "evaluate", *mn)
    assert code == 0, err
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert {"delta_e", "references", "fit", "delta_e_along", "delta_e_vs_n", "teacher_snapshot"} <= set(m)
    assert m["teacher_snapshot"] == 0.128 and m["delta_e"]["n"] == 64 and "converged" in m["delta_e"]
    assert set(m["references"]) == {"start", "random", "reproducibility"}
    assert m["delta_e_along"]["delta_e"][0] == pytest.approx(m["delta_e_start_set0"], rel=1e-6, abs=1e-9)


def test_sweep_errors_name_the_option(tmp_path, capsys):
    base = ("sweep", "--preset", "smoke", "--seeds", "0", "--device", "cpu", "--out", tmp_path / "s")
    code, _, err = run(capsys, *base, "--notebook", "99")
    assert code == 1 and "--notebook '99' matches no notebook" in err and "01, 02, 03, 04, 05" in err
    code, _, err = run(capsys, *base, "--notebook", "01", "-p", "lr", "0.1")
    assert code == 1 and "-p lr: not a parameter of the notebook; allowed: (none)" in err
    code, _, err = run(capsys, *base, "--notebook", "02", "-p", "output_dir", "x")
    assert code == 1 and "-p output_dir: set by the sweep itself; use --out" in err
    code, _, err = run(capsys, *base, "--notebook", "01", "--threads-per-run", "0")
    assert code == 2 and "argument --threads-per-run: must be an integer >= 1, got '0'" in err
    if not any((Path(d) / "srun").exists() for d in os.environ.get("PATH", "").split(os.pathsep)):
        code, _, err = run(capsys, *base, "--notebook", "01", "--executor", "slurm")
        assert code == 1 and "--executor slurm: Could not detect \"srun\"" in err
