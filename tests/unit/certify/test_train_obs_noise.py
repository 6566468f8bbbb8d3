"""`robot-rl train --obs-noise-sigma`: the training batches' obs and next_obs are noised (nothing else), the
value is recorded in config.json and decides what is trained (resume must keep it); 0 changes nothing."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from robot_rl.algos import make_algo
from robot_rl.algos.base import TorchBatch
from robot_rl.data.reader import open_run
from robot_rl.runners.train import EXIT_OK, Train, TrainInputError, merge_resume_config, run_train


@pytest.fixture(scope="module")
def small_logs(run1_head: Callable[[int], Path]) -> Path:
    """The first 6 episodes of calib/run1 under the same manifest."""
    return run1_head(6)


class Recorder:
    """make_algo's algorithm, remembering the batches its update() got."""

    def __init__(self, **kw: Any) -> None:
        self.algo = make_algo(**kw)
        self.batches: list[dict[str, TorchBatch]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.algo, name)

    def update(self, batches: Mapping[str, TorchBatch]) -> dict[str, float]:
        self.batches.append({k: v for k, v in batches.items()})
        out: dict[str, float] = self.algo.update(batches)
        return out


def _train(logs: Path, out: Path, sigma: float) -> Recorder:
    made: list[Recorder] = []

    def factory(name: str, **kw: Any) -> Recorder:
        made.append(Recorder(name=name, **kw))
        return made[-1]

    cfg = Train(
        sim="mujoco",
        real_logs=logs,
        out=out,
        algo="cql",
        updates=3,
        real_eval=False,
        baseline=False,
        hidden=(16, 16),
        eval_every=3,
        eval_episodes_sim=1,
        eval_max_episode_steps=5,
        log_every=1,
        quiet=True,
        obs_noise_sigma=sigma,
    )
    assert run_train(cfg, factory) == EXIT_OK
    return made[0]


def test_batches_are_noised_by_sigma(small_logs: Path, tmp_path: Path) -> None:
    clean = _train(small_logs, tmp_path / "clean", 0.0)
    noisy = _train(small_logs, tmp_path / "noisy", 0.5)
    # The first batch's rows are drawn before any noise, from the same seed: the same transitions.
    (name,) = clean.batches[0]
    a, b = clean.batches[0][name], noisy.batches[0][name]
    d_obs = (b.obs - a.obs).numpy()
    d_next = (b.next_obs - a.next_obs).numpy()
    assert d_obs.std() == pytest.approx(0.5, rel=0.05) and abs(d_obs.mean()) < 0.03
    assert d_next.std() == pytest.approx(0.5, rel=0.05)
    assert abs(np.corrcoef(d_obs.ravel(), d_next.ravel())[0, 1]) < 0.05  # independent noise
    for field in ("action", "reward", "terminated", "truncated"):
        assert torch.equal(getattr(a, field), getattr(b, field))
    config = json.loads((tmp_path / "noisy" / "config.json").read_text())
    assert config["obs_noise_sigma"] == 0.5
    assert json.loads((tmp_path / "clean" / "config.json").read_text())["obs_noise_sigma"] == 0.0


def test_sigma_zero_leaves_the_batches_as_they_were(small_logs: Path, tmp_path: Path) -> None:
    clean = _train(small_logs, tmp_path / "clean", 0.0)
    # Without noise every row of every batch is a logged transition, unchanged.
    reader = open_run(small_logs)
    logged = {row.tobytes() for ep in reader.iter_episodes() for row in np.asarray(ep.obs[:-1], np.float32)}
    for batches in clean.batches:
        for batch in batches.values():
            assert all(row.tobytes() in logged for row in batch.obs.numpy())


def test_sigma_is_checked_and_kept_on_resume(tmp_path: Path) -> None:
    with pytest.raises(TrainInputError, match="obs_noise_sigma"):
        Train(sim="mujoco", real_logs=tmp_path, obs_noise_sigma=-0.1)
    with pytest.raises(TrainInputError, match="obs_noise_sigma"):
        Train(sim="mujoco", real_logs=tmp_path, obs_noise_sigma=float("nan"))
    saved = Train(sim="mujoco", real_logs=tmp_path, out=tmp_path, obs_noise_sigma=0.2)
    with pytest.raises(TrainInputError, match="obs_noise_sigma"):
        merge_resume_config(Train(resume=True, out=tmp_path, obs_noise_sigma=0.3), saved)
    assert merge_resume_config(Train(resume=True, out=tmp_path), saved).obs_noise_sigma == 0.2
