"""One torch thread for every unit-test module that uses torch, as the learners run (ALGORITHMS.md 0, CPU
budgeting): on the 2-core machine a second intra-op thread contends with other processes and can make a
test 10x slower. Modules that never import torch do not pay for importing it here."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread() -> Iterator[None]:
    torch = sys.modules.get("torch")
    if torch is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
