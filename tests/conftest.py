"""Shared test set-up: import dmdlib from the repository root, keep torch to two threads."""
import os
import sys

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

# two threads (the CI machine has two cores); DMDLIB_TEST_THREADS overrides, e.g. 1 on a loaded machine
torch.set_num_threads(int(os.environ.get("DMDLIB_TEST_THREADS", "2")))
