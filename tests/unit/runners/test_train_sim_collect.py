"""The pieces under `robot-rl train`: exact env snapshots, the lockstep sim worker, replay checkpoints."""

from __future__ import annotations

import numpy as np
import pytest

import sim
from robot_rl.bus.messages import RolloutChunk
from robot_rl.bus.sockets import BusContext
from robot_rl.data.replay import ReplayBuffer, SourceMixer
from robot_rl.nets.numpy_policy import random_init
from robot_rl.runners.checkpoint import buffer_arrays, restore_buffer
from robot_rl.runners.sim_collect import (
    LockstepCollector,
    ReplayableEnv,
    ReturnTracker,
    capture_env_state,
    join_arrays,
    restore_env_state,
    split_arrays,
)
from robot_rl.schema import Source, TransitionBatch

CASES = [
    ("quadruped", "mujoco", "example_gap"),
    ("quadruped", "dmcontrol", "example_gap"),
    ("quadruped", "pybullet", "example_gap"),
    ("manipulator", "mujoco", "nominal"),
    ("manipulator", "pybullet", "nominal"),
]


@pytest.mark.parametrize(("robot", "backend", "profile"), CASES)
def test_a_restored_env_continues_bit_for_bit(robot: str, backend: str, profile: str) -> None:
    """Snapshot mid-episode (after a reset), restore into another env that was elsewhere, step both."""
    cap, snap_at, steps = 40, 55, 110
    env = ReplayableEnv(sim.make_env(robot, backend, profile, max_episode_steps=cap))
    env.reset(seed=3)
    n = len(env.robot.joints)
    actions = np.random.default_rng(0).uniform(-1, 1, (steps, n)).astype(np.float32)
    expected = []
    state = None
    for t, a in enumerate(actions):
        if t == snap_at:
            arrays: dict[str, np.ndarray] = {}
            tree = split_arrays(capture_env_state(env), "env/", arrays)
            state = join_arrays(tree, {k: v.copy() for k, v in arrays.items()})
        obs, reward, terminated, truncated, _ = env.step(a)
        expected.append((obs, reward, terminated, truncated))
        if terminated or truncated:
            env.reset()
    other = ReplayableEnv(sim.make_env(robot, backend, profile, max_episode_steps=cap))
    other.reset(seed=99)
    for a in actions[:7]:
        other.step(a[::-1].copy())
    assert state is not None
    restore_env_state(other, state)
    for t in range(snap_at, steps):
        obs, reward, terminated, truncated, _ = other.step(actions[t])
        e_obs, e_reward, e_term, e_trunc = expected[t]
        assert np.array_equal(obs, e_obs) and reward == e_reward, f"step {t}"
        assert (terminated, truncated) == (e_term, e_trunc)
        if terminated or truncated:
            other.reset()
    env.close()
    other.close()


def test_restore_refuses_another_backend() -> None:
    env = sim.make_env("quadruped", "mujoco")
    env.reset(seed=0)
    state = capture_env_state(env)
    other = sim.make_env("quadruped", "dmcontrol")
    with pytest.raises(ValueError, match="backend 'mujoco'"):
        restore_env_state(other, state)


def collect_rows(seed: int, steps: int) -> tuple[ReplayBuffer, LockstepCollector]:
    mixer = SourceMixer(34, 8, {Source.SIM: 1000})
    ctx = BusContext()
    collector = LockstepCollector(
        robot="quadruped",
        backend="mujoco",
        profile="nominal",
        seed=seed,
        mixer=mixer,
        ctx=ctx,
        max_episode_steps=30,
    )
    collector.publish(random_init(34, 8, (16,), seed=5), 1)
    assert collector.collect(steps) == steps
    collector.close()
    ctx.close()
    return mixer.buffer(Source.SIM), collector


def test_lockstep_collection_is_seeded_and_cuts_episodes_as_truncated() -> None:
    a, collector = collect_rows(seed=4, steps=70)
    b, _ = collect_rows(seed=4, steps=70)
    c, _ = collect_rows(seed=5, steps=70)
    assert len(a) == 70 and a.added == 70
    for name in ("obs", "action", "reward", "next_obs", "terminated", "truncated"):
        assert np.array_equal(getattr(a, name)[:70], getattr(b, name)[:70]), name
    assert not np.array_equal(a.action[:70], c.action[:70])
    # Each 30-step episode that did not fall ends truncated at its last step (never terminated there).
    ends = np.flatnonzero(a.terminated[:70] | a.truncated[:70])
    assert len(ends) >= 2
    assert all(a.truncated[i] != a.terminated[i] for i in ends)
    assert set(a.policy_version[:70].tolist()) == {1}
    assert collector.returns.counters["episodes/finished"] == len(ends)


def chunk(rows: list[tuple[int, float, bool]], worker: int = 1) -> RolloutChunk:
    n = len(rows)
    env_index = np.array([e for e, _, _ in rows], np.int64)
    done = np.array([d for _, _, d in rows], bool)
    return RolloutChunk(
        worker_id=worker,
        policy_version=1,
        robot="quadruped",
        backend="mujoco",
        task="ForwardVelocityTask",
        env_index=env_index,
        episode_index=np.zeros(n, np.int64),
        step=np.zeros(n, np.int64),
        obs=np.zeros((n, 2), np.float32),
        action=np.zeros((n, 1), np.float32),
        reward=np.array([r for _, r, _ in rows], np.float64),
        next_obs=np.zeros((n, 2), np.float32),
        terminated=np.zeros(n, bool),
        truncated=done,
        t_ns=np.zeros(n, np.int64),
        next_t_ns=np.zeros(n, np.int64),
    )


def test_return_tracker_sums_per_env_across_chunks_and_round_trips() -> None:
    tracker = ReturnTracker()
    tracker.feed(chunk([(0, 1.0, False), (1, 10.0, False), (0, 2.0, False)]))
    saved = tracker.state()
    tracker.feed(chunk([(1, 20.0, True), (0, 3.0, True)]))
    # env 1: 10 + 20 over 2 steps; env 0: 1 + 2 + 3 over 3 steps.
    assert tracker.finished == [(30.0, 2), (6.0, 3)]
    restored = ReturnTracker()
    restored.load_state(saved)
    restored.feed(chunk([(1, 20.0, True), (0, 3.0, True)]))
    assert restored.finished == [(30.0, 2), (6.0, 3)]


def test_replay_buffer_round_trip_keeps_the_physical_rows() -> None:
    rng = np.random.default_rng(0)
    buf = ReplayBuffer(3, 2, capacity=10)

    def batch(n: int) -> TransitionBatch[np.ndarray]:
        return TransitionBatch(
            obs=rng.standard_normal((n, 3)).astype(np.float32),
            action=rng.standard_normal((n, 2)).astype(np.float32),
            reward=rng.standard_normal(n),
            next_obs=rng.standard_normal((n, 3)).astype(np.float32),
            terminated=rng.random(n) < 0.5,
            truncated=np.zeros(n, bool),
        )

    buf.add_batch(batch(7), 1)
    buf.add_batch(batch(6), 2)  # wrapped: the cursor is at 3
    counters, arrays = buffer_arrays(buf, "sim/")
    copy = ReplayBuffer(3, 2, capacity=10)
    restore_buffer(copy, counters, arrays, "sim/")
    assert (len(copy), copy.cursor, copy.added) == (10, 3, 13)
    r1, r2 = np.random.default_rng(1), np.random.default_rng(1)
    a, b = buf.sample(32, r1), copy.sample(32, r2)
    for name in ("obs", "action", "reward", "next_obs", "terminated", "truncated"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    with pytest.raises(ValueError, match="capacity"):
        restore_buffer(ReplayBuffer(3, 2, capacity=11), counters, arrays, "sim/")
