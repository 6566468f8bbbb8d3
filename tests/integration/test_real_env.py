"""RealRobotEnv against the firmware emulator through the real bridge (two subprocesses, private ipc bus)."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from robot_rl.envs.rig import RealRig

pytestmark = pytest.mark.integration

ENV_ID = "robot_rl/RealQuadruped-v0"


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealRig]:
    with RealRig("quadruped", log_dir=Path(tmp_path_factory.mktemp("rig"))) as r:
        yield r


def _make(bus: str) -> gym.Env[np.ndarray, np.ndarray]:
    import robot_rl.envs  # noqa: F401  (registers the id)

    return gym.make(ENV_ID, bus=bus, reset_hold_s=0.1)


def test_registered_nondeterministic() -> None:
    import robot_rl.envs  # noqa: F401

    spec = gym.spec(ENV_ID)
    assert spec.nondeterministic is True
    assert spec.entry_point == "robot_rl.envs.real_robot:RealRobotEnv"


def test_layout_matches_sim_and_steps(rig: RealRig) -> None:
    from robot_rl.envs.real_robot import RealRobotEnv
    from sim import make_env

    sim_env = make_env("quadruped")

    # Built directly: gym.make(max_episode_steps=) would add a TimeLimit wrapper, and the episode limit
    # belongs to the task here, as in the simulated env.
    env = RealRobotEnv("quadruped", bus=rig.bus, reset_hold_s=0.1, max_episode_steps=20)
    try:
        assert env.obs_names == sim_env.obs_names
        assert env.obs_units == sim_env.obs_units
        assert env.action_names == sim_env.action_names
        assert env.observation_space == sim_env.observation_space
        assert env.action_space == sim_env.action_space
        obs, info = env.reset(seed=3)
        assert obs.shape == (34,) and obs.dtype == np.float32 and np.isfinite(obs).all()
        assert 0.3 <= obs[9] <= 1.0  # the forward-velocity command, sampled per episode as in sim
        rng = np.random.default_rng(0)
        for t in range(20):
            a = rng.uniform(-0.3, 0.3, size=8).astype(np.float32)
            obs, reward, terminated, truncated, info = env.step(a)
            assert np.isfinite(obs).all() and np.isfinite(float(reward))
            assert info["faults"] == 0, f"firmware fault at step {t}"
            sent = info["action_sent"]
            assert sent.shape == (8,) and np.all(np.abs(sent) <= 1.0)
            # The bridge's clamp only acts on big jumps: a small action is sent (nearly) as asked.
            assert np.allclose(sent, a, atol=2e-3)
            assert not terminated
            if truncated:
                break
        assert truncated and t == 19
    finally:
        env.close()
        sim_env.close()


def test_action_sent_is_the_clamped_command(rig: RealRig) -> None:
    from robot_rl.envs.real_robot import RealRobotEnv

    env = RealRobotEnv("quadruped", bus=rig.bus, reset_hold_s=0.1)
    try:
        env.reset(seed=0)
        # 0 -> 1 asks for 0.4 rad in one step; the bridge's per-step limit is 0.3 rad (calib max_step_rad).
        _, _, _, _, info = env.step(np.ones(8, dtype=np.float32))
        assert np.allclose(info["action_sent"], 0.3 / 0.4, atol=0.05), info["action_sent"]
    finally:
        env.close()


def test_bridge_reset_request(rig: RealRig) -> None:
    from robot_rl.bus.sockets import BusContext, Requester
    from robot_rl.bus.topics import endpoints_from_base

    with BusContext() as ctx:
        req = Requester(ctx, endpoints_from_base(rig.bus).control(50), "test", timeout_s=2.0, attempts=1)
        reply = req.request("reset")
        assert reply.ok, reply.error
        assert reply.payload.get("ack") == "OK"


def test_gymnasium_and_sb3_check_env(rig: RealRig) -> None:
    from gymnasium.utils.env_checker import check_env
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    env = _make(rig.bus)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # unbounded Box warnings: same spaces as the simulated env
            check_env(env.unwrapped, skip_render_check=True)
            sb3_check_env(env.unwrapped, warn=False)
    finally:
        env.close()
