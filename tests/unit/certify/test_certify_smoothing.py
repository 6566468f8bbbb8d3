"""The smoothing wrapper (robot_rl.certify.smoothing): noise statistics, fresh noise every step, frames
noised once as they enter the stack, the training augmentation, the torch candidate windows."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from robot_rl.certify.smoothing import (
    BasePolicy,
    SmoothedPolicy,
    add_obs_noise,
    add_obs_noise_torch,
    augment_transitions,
    candidate_windows,
)
from robot_rl.schema import TransitionBatch


def test_noise_has_the_stated_scale_and_is_fresh() -> None:
    rng = np.random.default_rng(0)
    obs = np.tile(np.array([1.0, -2.0, 0.5], np.float32), (100_000, 1))
    a = add_obs_noise(obs, 0.3, rng)
    b = add_obs_noise(obs, 0.3, rng)
    assert a.dtype == np.float32 and a.shape == obs.shape
    noise = a - obs
    # Mean 0 and std 0.3 per element (standard error of the mean 0.3 / sqrt(1e5) ~ 0.001).
    assert np.abs(noise.mean(axis=0)).max() < 0.005
    assert noise.std(axis=0) == pytest.approx([0.3] * 3, rel=0.01)
    # Independent coordinates and independent calls.
    assert abs(np.corrcoef(noise[:, 0], noise[:, 1])[0, 1]) < 0.02
    assert abs(np.corrcoef(noise[:, 0], (b - obs)[:, 0])[0, 1]) < 0.02


def test_zero_sigma_draws_nothing() -> None:
    rng = np.random.default_rng(1)
    state = rng.bit_generator.state
    obs = np.ones((4, 2), np.float32)
    assert np.array_equal(add_obs_noise(obs, 0.0, rng), obs)
    assert rng.bit_generator.state == state


def test_torch_noise_statistics() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.zeros(200_000, 2)
    y = add_obs_noise_torch(x, 0.5, g)
    assert float(y.std()) == pytest.approx(0.5, rel=0.01)
    assert float(y.mean().abs()) < 0.005
    assert torch.equal(add_obs_noise_torch(x, 0.0, g), x)


def _recording_policy(obs_dim: int, frames: int) -> tuple[BasePolicy, list[np.ndarray]]:
    seen: list[np.ndarray] = []

    def act(window: np.ndarray) -> np.ndarray:
        seen.append(window.copy())
        return np.zeros(window.shape[0], np.int64)

    return BasePolicy("recorder", obs_dim, act, frames=frames, n_actions=2), seen


def test_one_fresh_sample_per_step() -> None:
    base, seen = _recording_policy(2, 1)
    policy = SmoothedPolicy(base, 0.1, np.random.default_rng(2))
    policy.reset(3)
    obs = np.zeros((3, 2), np.float32)
    for _ in range(500):
        policy.act(obs)
    noise = np.stack(seen)  # (steps, envs, 2): the policy saw the observation plus one noise sample
    assert noise.std() == pytest.approx(0.1, rel=0.05)
    # Fresh every step (no reuse across steps) and different across envs.
    assert abs(np.corrcoef(noise[:-1, 0, 0], noise[1:, 0, 0])[0, 1]) < 0.1
    assert not np.array_equal(noise[:, 0], noise[:, 1])


def test_frames_are_noised_once_as_they_enter_the_stack() -> None:
    base, seen = _recording_policy(2, 3)
    policy = SmoothedPolicy(base, 1.0, np.random.default_rng(3))
    policy.reset(2)
    rows = np.array([0, 1])
    for t in range(4):
        policy.act(np.full((2, 2), float(t), np.float32), rows)
    w = [s.reshape(2, 3, 2) for s in seen]
    # Step 0: the first noisy frame fills the whole stack.
    assert np.array_equal(w[0][:, 0], w[0][:, 1]) and np.array_equal(w[0][:, 1], w[0][:, 2])
    # Later steps shift: the noisy frame that entered at step t is the same array at steps t+1 and t+2.
    for t in range(1, 4):
        assert np.array_equal(w[t][:, :2], w[t - 1][:, 1:])
    # The newest frame is the observation t plus fresh noise.
    assert not np.array_equal(w[3][:, 2], w[2][:, 2] + 1.0)


def test_only_the_given_rows_advance() -> None:
    base, seen = _recording_policy(1, 2)
    policy = SmoothedPolicy(base, 0.0, np.random.default_rng(4))
    policy.reset(3)
    policy.act(np.array([[1.0], [2.0], [3.0]], np.float32))
    policy.act(np.array([[10.0]], np.float32), np.array([1]))
    hist, fresh = policy.history(np.arange(3))
    # Row 1 saw [2, 10]; rows 0 and 2 still hold their first frame twice.
    assert hist[:, 0, 0].tolist() == [1.0, 10.0, 3.0]
    assert not fresh.any()
    assert seen[-1].tolist() == [[2.0, 10.0]]


def test_candidate_windows_match_push() -> None:
    base, _ = _recording_policy(2, 3)
    policy = SmoothedPolicy(base, 0.0, np.random.default_rng(5))
    policy.reset(2)
    policy.act(np.array([[1.0, 1.0]], np.float32), np.array([0]))  # row 1 stays fresh
    rows = np.array([0, 1])
    hist, fresh = policy.history(rows)
    cand = np.array([[[5.0, 6.0]], [[7.0, 8.0]]], np.float32)  # (n, M=1, D)
    got = candidate_windows(torch.from_numpy(hist), torch.from_numpy(fresh), torch.from_numpy(cand))
    want = policy.push(cand[:, 0], rows)
    assert np.array_equal(got[:, 0].numpy(), want)
    assert want[1].tolist() == [7.0, 8.0] * 3  # the fresh row: the candidate fills the stack


def test_augment_transitions() -> None:
    n = 50_000
    batch = TransitionBatch(
        obs=np.zeros((n, 3), np.float32),
        action=np.ones((n, 2), np.float32),
        reward=np.arange(n, dtype=np.float64),
        next_obs=np.zeros((n, 3), np.float32),
        terminated=np.zeros(n, bool),
        truncated=np.ones(n, bool),
    )
    rng = np.random.default_rng(6)
    assert augment_transitions(batch, 0.0, rng) is batch
    out = augment_transitions(batch, 0.2, rng)
    assert out.obs.std() == pytest.approx(0.2, rel=0.02)
    assert out.next_obs.std() == pytest.approx(0.2, rel=0.02)
    # obs and next_obs get independent noise; actions, rewards and flags are untouched.
    assert abs(np.corrcoef(out.obs[:, 0], out.next_obs[:, 0])[0, 1]) < 0.02
    assert out.action is batch.action and out.reward is batch.reward
    assert out.terminated is batch.terminated and out.truncated is batch.truncated


def test_bad_sigma_and_policy() -> None:
    base, _ = _recording_policy(2, 1)
    with pytest.raises(ValueError, match="sigma"):
        SmoothedPolicy(base, -0.1, np.random.default_rng(0))
    with pytest.raises(ValueError, match="discrete"):
        BasePolicy("both", 2, base.act, n_actions=2, act_dim=2)
