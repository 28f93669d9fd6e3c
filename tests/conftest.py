"""Shared test set-up: import dmdlib from the repository root, keep torch to two threads."""
import os
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

torch.set_num_threads(2)


@pytest.fixture
def gen():
    """A freshly seeded CPU torch.Generator."""
    return torch.Generator().manual_seed(1234)
