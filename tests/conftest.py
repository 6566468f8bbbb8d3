"""Fixtures shared by every test folder."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

RUN1 = Path(__file__).resolve().parents[1] / "calib" / "run1"


@pytest.fixture(scope="session")
def run1_head(tmp_path_factory: pytest.TempPathFactory) -> Callable[[int], Path]:
    """``run1_head(n)``: a run folder with the first ``n`` episodes of calib/run1 under its manifest
    (written once per ``n`` and session; tests only read it)."""
    from robot_rl.data.reader import open_run
    from robot_rl.data.writer import EpisodeWriter

    made: dict[int, Path] = {}

    def head(n: int) -> Path:
        if n not in made:
            reader = open_run(RUN1)
            out = tmp_path_factory.mktemp("logs") / f"run1-head-{n}"
            with EpisodeWriter(out, reader.manifest) as writer:
                for i, ep in enumerate(reader.iter_episodes()):
                    if i == n:
                        break
                    writer.write_episode(ep)
            made[n] = out
        return made[n]

    return head
