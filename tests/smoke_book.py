"""Build the book at the `smoke` preset into a folder (the build that tests/test_notebooks.py checks and
tests/test_browser.py renders); conftest.py builds it once per test session."""
import importlib.util
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def build_smoke_book(build: Path) -> None:
    """Execute every notebook at smoke on the CPU (``--fresh``: never rendered from a local results/smoke) into `build` and build the HTML (warnings as errors);
    the HTML lands in ``build/_build/html``."""
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "build_book.py"), "--preset", "smoke",
                           "--device", "cpu", "--build-dir", str(build), "--warnings-as-errors", "--fresh"],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-5000:]


def load_script(name: str):
    """scripts/<name>.py as a module (scripts are not part of the package)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod   # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def load_build_book():
    """scripts/build_book.py as a module (it is a script, not part of the package)."""
    return load_script("build_book")
