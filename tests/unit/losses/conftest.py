"""One torch thread for these tests, as the learners run (ALGORITHMS.md 0, CPU budgeting): on the
2-core machine a second intra-op thread contends with other processes and can make a test 10x slower."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread() -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
