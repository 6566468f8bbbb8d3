"""`robot-rl record` bring-up options: per-episode action gains and stochastic actions (emulator)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from robot_rl.nets import random_init, save_npz

pytestmark = pytest.mark.integration


def _record(out: Path, policy: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "robot_rl.record", "--out", str(out), "--policy", str(policy)]
    cmd += ["--max-episode-steps", "25", "--reset-hold-s", "0.1", "--no-progress", *extra]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def test_gains_cycle_per_episode_and_bound_the_sent_action(tmp_path: Path) -> None:
    from robot_rl.data.reader import open_run

    policy = save_npz(tmp_path / "p.npz", random_init(34, 8, seed=3))
    out = tmp_path / "run"
    res = _record(
        out, policy, "--episodes", "3", "--stochastic", "--action-gains", "0.25", "1.0", "--seed", "5"
    )
    assert res.returncode == 0, res.stderr
    reader = open_run(out)
    assert reader.manifest.extra["action_gains"] == "0.25,1"
    episodes = reader.load_episodes()
    assert [ep.meta.extra["action_gain"] for ep in episodes] == ["0.25", "1", "0.25"]
    assert all(ep.meta.extra["policy"].endswith(":stochastic") for ep in episodes)
    for ep in episodes:
        gain = float(ep.meta.extra["action_gain"])
        # What is logged is what the bridge sent: gain x policy, clipped, then clamped (never larger).
        assert np.abs(ep.action).max() <= gain + 1e-6
    # The full-gain episode of a random stochastic policy does use actions beyond the small gain.
    assert np.abs(episodes[1].action).max() > 0.25


def test_bad_gain_is_refused_before_the_robot_moves(tmp_path: Path) -> None:
    policy = save_npz(tmp_path / "p.npz", random_init(34, 8, seed=3))
    res = _record(tmp_path / "run", policy, "--action-gains", "1.5")
    assert res.returncode == 2
    assert "--action-gains" in res.stderr and "1.5" in res.stderr
    assert not (tmp_path / "run").exists()
