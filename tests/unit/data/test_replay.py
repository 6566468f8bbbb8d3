"""ReplayBuffer and SourceMixer with hand-checked contents."""

from __future__ import annotations

import numpy as np
import pytest

from robot_rl.data.replay import ReplayBuffer, SourceMixer
from robot_rl.schema import Source, TransitionBatch


def rows(start: int, n: int, obs_dim: int = 2, act_dim: int = 1) -> TransitionBatch[np.ndarray]:
    """Transitions whose every value encodes its row id k = start..start+n-1:
    obs = [k, k], action = [-k], reward = 10 k, next_obs = obs + 0.5, terminated = k % 3 == 0,
    truncated = k % 5 == 0 and not terminated."""
    k = np.arange(start, start + n)
    term = k % 3 == 0
    return TransitionBatch(
        obs=np.repeat(k[:, None], obs_dim, axis=1).astype(np.float32),
        action=-np.repeat(k[:, None], act_dim, axis=1).astype(np.float32),
        reward=10.0 * k.astype(np.float64),
        next_obs=np.repeat(k[:, None], obs_dim, axis=1).astype(np.float32) + 0.5,
        terminated=term,
        truncated=(k % 5 == 0) & ~term,
    )


def test_add_and_wrap_around() -> None:
    buf = ReplayBuffer(2, 1, capacity=5)
    assert len(buf) == 0
    buf.add_batch(rows(0, 3), policy_version=1)  # rows 0 1 2 at slots 0 1 2
    assert len(buf) == 3 and buf.cursor == 3
    buf.add_batch(rows(3, 4), policy_version=np.array([2, 2, 3, 3]))  # 3 4 -> slots 3 4; 5 6 -> slots 0 1
    assert len(buf) == 5 and buf.cursor == 2 and buf.added == 7
    # slot:          0  1  2  3  4
    # row id k:      5  6  2  3  4
    assert buf.obs[:, 0].tolist() == [5, 6, 2, 3, 4]
    assert buf.reward.tolist() == [50.0, 60.0, 20.0, 30.0, 40.0]
    assert buf.next_obs[:, 1].tolist() == [5.5, 6.5, 2.5, 3.5, 4.5]
    assert buf.action[:, 0].tolist() == [-5, -6, -2, -3, -4]
    assert buf.terminated.tolist() == [False, True, False, True, False]  # 6 and 3 are multiples of 3
    assert buf.truncated.tolist() == [True, False, False, False, False]  # 5 only
    assert buf.policy_version.tolist() == [3, 3, 1, 2, 2]


def test_batch_longer_than_capacity_keeps_its_tail() -> None:
    buf = ReplayBuffer(2, 1, capacity=4)
    buf.add_batch(rows(0, 1), 0)  # slot 0 = row 0, cursor 1
    buf.add_batch(rows(1, 10), 1)  # rows 1..10; only 7..10 survive, written as a row-by-row add would
    # Row-by-row: row j goes to slot j % 4 -> 8 at 0, 9 at 1, 10 at 2, 7 at 3; cursor (1 + 10) % 4 = 3.
    assert buf.obs[:, 0].tolist() == [8, 9, 10, 7]
    assert buf.cursor == 3 and len(buf) == 4


def test_sample_draws_only_filled_rows() -> None:
    buf = ReplayBuffer(2, 1, capacity=100)
    buf.add_batch(rows(0, 3), 4)
    rng = np.random.default_rng(0)
    batch = buf.sample(1000, rng)
    assert batch.obs.shape == (1000, 2) and batch.obs.dtype == np.float32
    assert batch.reward.dtype == np.float64 and batch.terminated.dtype == np.bool_
    assert set(batch.obs[:, 0].tolist()) == {0.0, 1.0, 2.0}  # the 97 empty slots are never drawn
    # Each sampled row is internally consistent (same k across fields).
    np.testing.assert_array_equal(batch.reward, 10.0 * batch.obs[:, 0])
    np.testing.assert_array_equal(batch.next_obs, batch.obs + 0.5)
    with pytest.raises(ValueError, match="empty"):
        ReplayBuffer(2, 1, 4).sample(1, rng)


def test_memory_and_shape_checks() -> None:
    buf = ReplayBuffer(3, 2, capacity=10)
    # per row: obs 12 + action 8 + reward 8 + next_obs 12 + 2 flags + version 4 = 46 bytes
    assert buf.nbytes == 460
    with pytest.raises(ValueError, match="obs"):
        buf.add_batch(rows(0, 2, obs_dim=2, act_dim=2), 0)
    with pytest.raises(ValueError, match="action"):
        buf.add_batch(rows(0, 2, obs_dim=3, act_dim=1), 0)


def test_mixer_keeps_sources_apart() -> None:
    mixer = SourceMixer(2, 1, {Source.REAL: 10, Source.SIM: 10})
    mixer.add(Source.REAL, rows(0, 4), 1)  # k = 0..3
    mixer.add(Source.SIM, rows(100, 6), 2)  # k = 100..105
    assert mixer.sizes() == {Source.REAL: 4, Source.SIM: 6}
    out = mixer.sample({Source.REAL: 50, Source.SIM: 30}, np.random.default_rng(1))
    assert set(out) == {Source.REAL, Source.SIM}
    assert out[Source.REAL].obs.shape == (50, 2) and out[Source.SIM].obs.shape == (30, 2)
    assert set(out[Source.REAL].obs[:, 0].tolist()) <= {0.0, 1.0, 2.0, 3.0}
    assert set(out[Source.SIM].obs[:, 0].tolist()) <= {100.0 + i for i in range(6)}
    assert mixer.buffer(Source.SIM).policy_version[:6].tolist() == [2] * 6
    with pytest.raises(ValueError, match="demo"):
        mixer.add(Source.DEMO, rows(0, 1), 0)
    assert mixer.nbytes == 2 * ReplayBuffer(2, 1, 10).nbytes
