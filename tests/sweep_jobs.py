"""Stand-ins for dmdlib.sweep.run_notebook in tests/test_sweep.py: jobs that write a notebook-01-like metrics.json
in a fraction of a second, run by submitit's local executor (this module is importable from its job processes
through PYTHONPATH). They import nothing heavy."""
import json
import os
from pathlib import Path


def record(delta_e, converged=True):
    """A student's Delta_E record as the notebooks write it."""
    return {"delta_e": delta_e, "ci_low": delta_e - 0.5, "ci_high": delta_e + 0.5, "sd": 0.2, "n": 100, "r": 3,
            "level": 0.95, "e_dt": 2.0, "e_ot": 1.0, "converged": converged,
            "gates": {"failed": [] if converged else ["fit"]}}


def metrics(seed, scale=1.0):
    """notebook 01's structure: datasets.<name>.delta_e (students) beside reference levels (no verdict)."""
    ref = {k: v for k, v in record(0.1).items() if k not in ("converged", "gates")}
    return {"preset": "smoke", "seed": seed,
            "datasets": {"chessboard": {"delta_e": record(scale * (8 + seed)), "references": {"start": ref},
                                        "reading": {"reading": "remaps", "delta_e": "remaps", "undiluted": "remaps",
                                                    "measure": "agreement"},
                                        "measures": {"agreement": {"student": {"value": 0.1, "ci_low": 0.05,
                                                                               "ci_high": 0.15}}}},
                         "moons": {"delta_e": record(scale * (2 + seed), converged=False), "references": {}}}}


def fake_notebook(notebook, run_dir, parameters, cwd):
    """Writes metrics.json and done.json like run_notebook; fails for seed 1 until run_dir/fixed exists."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    seed = parameters["seed"]
    if seed == 1 and not (run_dir / "fixed").exists():
        raise ValueError(f"seed {seed} fails on purpose")
    (run_dir / "metrics.json").write_text(json.dumps(metrics(seed, parameters.get("scale", 1.0))))
    (run_dir / "done.json").write_text(json.dumps({"notebook": notebook, "parameters": parameters,
                                                   "omp_num_threads": os.environ.get("OMP_NUM_THREADS")}))
    return {"ok": seed}
