"""Shared test set-up: import dmdlib from the repository root, keep torch to two threads, build the smoke book
once per session (test_notebooks.py checks it, test_browser.py renders it), skip the tests marked ``cuda``
without a GPU."""
import os
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

# two threads (the CI machine has two cores); DMDLIB_TEST_THREADS overrides, e.g. 1 on a loaded machine
torch.set_num_threads(int(os.environ.get("DMDLIB_TEST_THREADS", "2")))


@pytest.fixture(scope="session")
def smoke_book(tmp_path_factory):
    """The build folder of the book executed at `smoke` (HTML in ``_build/html``), built once per session."""
    from smoke_book import build_smoke_book

    build = tmp_path_factory.mktemp("book") / "build"
    build_smoke_book(build)
    return build


def pytest_collection_modifyitems(config, items):
    """Tests marked ``cuda`` need a CUDA GPU: skipped (with the reason) where none is visible."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (bench/gpu_check.sh runs these on one)")
    for item in items:
        if item.get_closest_marker("cuda") is not None:
            item.add_marker(skip)
