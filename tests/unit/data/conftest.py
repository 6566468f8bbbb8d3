"""The make_run fixture for the data-store tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from robot_rl_data_builders import random_episode, small_manifest, write_episodes

from robot_rl.data.store import EpisodeWriter
from robot_rl.schema import Episode, Source


@pytest.fixture
def make_run(tmp_path: Path) -> Callable[..., tuple[Path, list[Episode]]]:
    """make_run(n_episodes, steps, chunk_steps, name, sources) -> (run_dir, episodes written)."""

    def make(
        n_episodes: int = 4,
        steps: int = 5,
        chunk_steps: int = 20_000,
        name: str = "run",
        sources: tuple[Source, ...] = (Source.SIM,),
    ) -> tuple[Path, list[Episode]]:
        rng = np.random.default_rng(len(name) + n_episodes)
        eps = [
            random_episode(rng, steps + i, terminated=i % 2 == 1, source=sources[i % len(sources)])
            for i in range(n_episodes)
        ]
        run_dir = tmp_path / name
        with EpisodeWriter(run_dir, small_manifest(), chunk_steps=chunk_steps) as w:
            write_episodes(w, eps)
        return run_dir, eps

    return make
