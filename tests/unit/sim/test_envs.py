from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from functools import cache

import gymnasium as gym
import numpy as np
import pytest

import sim
from sim import ENV_IDS, make_env
from sim.backends import BACKENDS
from sim.env import RobotEnv
from sim.profile import DynamicsProfile, GapProfile
from sim.robots import ROBOTS, get_robot
from sim.robots.mjcf import to_mjcf


def _backend_param(name: str) -> object:
    return pytest.param(name, id=name)


ALL_BACKENDS = [_backend_param(b) for b in BACKENDS]
MJ_BACKENDS = ["mujoco", "dmcontrol"]


@cache
def _rendering_available() -> bool:
    try:
        env = make_env("manipulator", "mujoco", render_mode="rgb_array")
        env.reset(seed=0)
        ok = env.render() is not None
        env.close()
        return ok
    except Exception:
        return False


@pytest.fixture
def quiet() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*infinity.*")
        yield


@pytest.mark.parametrize("backend", ALL_BACKENDS)
@pytest.mark.parametrize("robot", list(ROBOTS))
def test_env_checkers_pass(robot: str, backend: str, quiet: None) -> None:
    from gymnasium.utils.env_checker import check_env
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    # Through gym.make so the env has a spec: check_env then also builds it with every render mode.
    env = gym.make(ENV_IDS[robot], backend=backend).unwrapped
    check_env(env, skip_render_check=not _rendering_available())
    sb3_check_env(env, warn=True)
    obs, _ = env.reset(seed=1)
    assert obs.dtype == np.float32 and obs.shape == env.observation_space.shape
    assert env.action_space.dtype == np.float32
    assert (env.action_space.low == -1).all() and (env.action_space.high == 1).all()
    env.close()


@pytest.mark.parametrize("backend", ALL_BACKENDS)
@pytest.mark.parametrize("robot", list(ROBOTS))
def test_sb3_trains_on_registered_env(robot: str, backend: str, quiet: None) -> None:
    import torch
    from stable_baselines3 import PPO

    torch.set_num_threads(1)
    env = gym.make(ENV_IDS[robot], backend=backend)
    model = PPO("MlpPolicy", env, n_steps=64, batch_size=64, n_epochs=2, seed=0, device="cpu")
    before = [p.detach().clone() for p in model.policy.parameters()]
    model.learn(total_timesteps=256)
    assert model.num_timesteps == 256
    changed = [not torch.equal(a, b) for a, b in zip(before, model.policy.parameters(), strict=True)]
    assert any(changed)
    action, _ = model.predict(env.reset(seed=0)[0], deterministic=True)
    assert env.action_space.contains(action.astype(np.float32))


def test_registered_ids_and_defaults() -> None:
    env = gym.make("robot_rl/Quadruped-v0")
    assert env.spec is not None and env.spec.kwargs == {"backend": "mujoco", "profile": "nominal"}
    assert isinstance(env.unwrapped, RobotEnv) and env.unwrapped.backend.name == "mujoco"
    env2 = gym.make("robot_rl/Manipulator-v0", backend="dmcontrol", profile="example_gap")
    assert env2.unwrapped.backend.name == "dmcontrol" and env2.unwrapped.profile.latency_steps == 1


def _settle(env: RobotEnv, steps: int) -> float:
    env.reset(seed=0)
    zero = np.zeros(env.action_space.shape, dtype=np.float32)
    for _ in range(steps):
        env.step(zero)
    return float(env.backend.state().base_pos_m[2])


@pytest.mark.parametrize("backend", MJ_BACKENDS)
def test_mujoco_handles_exposed_and_gravity_edit_changes_dynamics(backend: str) -> None:
    import mujoco

    env = make_env("quadruped", backend)
    u = gym.make(ENV_IDS["quadruped"], backend=backend).unwrapped
    assert isinstance(u.model, mujoco.MjModel) and isinstance(u.data, mujoco.MjData)
    assert u.n_substeps == 10 and u.model.opt.timestep == pytest.approx(0.002)
    z_nominal = _settle(env, 50)
    env.model.opt.gravity[:] = (0.0, 0.0, -30.0)  # in place, no rebuild
    z_heavy = _settle(env, 50)
    # 3x gravity sags the PD-held legs: the torso ends lower (measured: ~0.30 m vs ~0.25 m).
    assert z_heavy < z_nominal - 0.02


def test_model_handles_absent_on_pybullet() -> None:
    env = make_env("quadruped", "pybullet")
    assert env.n_substeps == 10
    with pytest.raises(AttributeError):
        _ = env.model


@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_heavier_base_sinks_more(backend: str) -> None:
    nominal = make_env("quadruped", backend)
    heavy = make_env(
        "quadruped",
        backend,
        profile=GapProfile(name="heavy", dynamics=DynamicsProfile(base_mass_offset_kg=5.0)),
    )
    z0, z1 = _settle(nominal, 50), _settle(heavy, 50)
    assert z1 < z0 - 0.005, (z0, z1)


@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_weaker_motors_track_worse(backend: str) -> None:
    """The shoulder carries the arm against gravity: halving motor strength doubles its static PD error."""

    def shoulder_error(strength: float) -> float:
        profile = GapProfile(dynamics=DynamicsProfile(motor_strength_scale=strength))
        env = make_env("manipulator", backend, profile=profile)
        _settle(env, 100)
        st = env.backend.state()
        return abs(float(st.joint_pos_rad[1]) - env.robot.default_joint_pos_rad[1])

    e_full, e_half = shoulder_error(1.0), shoulder_error(0.5)
    assert e_half > 1.5 * e_full > 0.0, (e_full, e_half)


@pytest.mark.parametrize("backend", ALL_BACKENDS)
@pytest.mark.parametrize("latency", [1, 3])
def test_latency_delays_response_by_exactly_latency_steps(backend: str, latency: int) -> None:
    env_nom = make_env("manipulator", backend)
    env_lat = make_env("manipulator", backend, profile=GapProfile(latency_steps=latency))
    obs_nom, _ = env_nom.reset(seed=3)
    obs_lat, _ = env_lat.reset(seed=3)
    np.testing.assert_array_equal(obs_nom, obs_lat)
    a = np.array([1.0, -0.5, 0.5, 1.0], dtype=np.float32)
    zero = np.zeros(4, dtype=np.float32)
    n = 12
    q_lat = []
    for _ in range(n):
        env_lat.step(a)
        q_lat.append(env_lat.backend.state().joint_pos_rad)
    # The nominal env sees the same action `latency` steps later.
    q_nom = []
    for t in range(n):
        env_nom.step(zero if t < latency else a)
        q_nom.append(env_nom.backend.state().joint_pos_rad)
    np.testing.assert_allclose(np.array(q_lat), np.array(q_nom), atol=1e-9)
    # ...and the delay is visible: without latency the first step already moves the arm.
    env_fast = make_env("manipulator", backend)
    env_fast.reset(seed=3)
    env_fast.step(a)
    assert np.abs(env_fast.backend.state().joint_pos_rad - q_lat[0]).max() > 1e-3


@pytest.mark.parametrize("backend", ["mujoco", "dmcontrol"])
def test_quadruped_stands_two_seconds_with_zero_action(backend: str) -> None:
    env = make_env("quadruped", backend)
    env.reset(seed=0)
    zero = np.zeros(8, dtype=np.float32)
    for _ in range(100):  # 100 control steps x 20 ms = 2 s
        obs, _, terminated, truncated, info = env.step(zero)
        assert not terminated and not truncated
    st = env.backend.state()
    assert 0.27 < st.base_pos_m[2] < 0.33
    # Upright: projected gravity is (0, 0, -1) to within 3 degrees, and the body is at rest.
    assert obs[8] < -math.cos(math.radians(3.0))
    assert np.abs(obs[0:3]).max() < 0.02 and st.foot_contact.all()
    assert abs(info["base_forward_vel_mps"]) < 0.02


def test_layouts_identical_across_backends() -> None:
    for robot in ROBOTS:
        envs = [make_env(robot, b) for b in BACKENDS]
        ref = envs[0]
        assert len(ref.obs_names) == ref.observation_space.shape[0] == len(set(ref.obs_names))
        for env in envs[1:]:
            assert env.obs_names == ref.obs_names and env.obs_units == ref.obs_units
            assert env.action_names == ref.action_names
            assert env.observation_space == ref.observation_space and env.action_space == ref.action_space
    q = make_env("quadruped")
    assert q.obs_names[0] == "base_linvel_x_mps" and q.obs_units[0] == "m/s"
    assert "joint_pos_FL_hip_rad" in q.obs_names and q.action_names[0] == "action_FL_hip"
    assert q.observation_space.shape == (34,) and make_env("manipulator").observation_space.shape == (21,)


def test_unknown_names_list_valid_choices() -> None:
    with pytest.raises(ValueError, match=r"unknown robot 'dog'.*manipulator.*quadruped"):
        make_env("dog")
    with pytest.raises(ValueError, match=r"unknown backend 'bullet'.*mujoco.*dmcontrol.*pybullet"):
        make_env("quadruped", backend="bullet")
    with pytest.raises(ValueError, match=r"unknown profile 'harsh'.*example_gap.*nominal"):
        make_env("quadruped", profile="harsh")
    with pytest.raises(ValueError, match="unknown robot"):
        get_robot("arm")
    with pytest.raises(ValueError, match="unknown backend"):
        gym.make("robot_rl/Quadruped-v0", backend="isaac")


def test_clean_action_reported_despite_action_noise_and_clipping() -> None:
    env = make_env("manipulator", profile=GapProfile(action_noise_std=0.3))
    env.reset(seed=0)
    a = np.array([0.5, 2.0, -3.0, 0.0], dtype=np.float32)
    _, _, _, _, info = env.step(a)
    np.testing.assert_array_equal(info["action_sent"], [0.5, 1.0, -1.0, 0.0])
    # The noise did reach the motors: the same action on a noiseless env lands elsewhere.
    clean = make_env("manipulator")
    clean.reset(seed=0)
    clean.step(a)
    assert np.abs(clean.backend.state().joint_pos_rad - env.backend.state().joint_pos_rad).max() > 1e-4


def test_sensor_noise_per_group() -> None:
    prof = GapProfile(joint_vel_noise_radps=1.0)  # only joint velocities are noisy
    noisy, clean = make_env("quadruped", profile=prof), make_env("quadruped")
    o_noisy, _ = noisy.reset(seed=0)
    o_clean, _ = clean.reset(seed=0)
    diff = np.abs(o_noisy - o_clean)
    vel = np.array([n.startswith("joint_vel_") for n in noisy.obs_names])
    assert diff[~vel].max() == 0.0
    assert 0.1 < diff[vel].mean() < 3.0  # |N(0, 1)| has mean 0.8


def test_reset_is_seeded_and_randomised() -> None:
    env = make_env("manipulator")
    o1, _ = env.reset(seed=5)
    o2, _ = env.reset(seed=5)
    o3, _ = env.reset(seed=6)
    np.testing.assert_array_equal(o1, o2)
    assert np.abs(o1 - o3).max() > 1e-3
    target = env.task.target_m  # type: ignore[attr-defined]
    assert target[2] >= 0.05 and np.linalg.norm(target) < 0.85  # reachable: arm reach is about 0.78 m
    env.reset(seed=0, options={"target_m": [0.3, 0.1, 0.2]})
    np.testing.assert_allclose(env.task.target_m, [0.3, 0.1, 0.2])  # type: ignore[attr-defined]
    q = make_env("quadruped")
    q.reset(seed=0, options={"command_mps": 0.7})
    assert q.step(np.zeros(8, dtype=np.float32))[0][9] == pytest.approx(0.7)


def test_reach_target_reachable_and_truncation() -> None:
    env = make_env("manipulator", max_episode_steps=5)
    env.reset(seed=0)
    flags = [env.step(np.zeros(4, dtype=np.float32))[2:4] for _ in range(5)]
    assert flags == [(False, False)] * 4 + [(False, True)]
    # Reward is -distance (m): FK target vs the ee site of the simulator agree.
    env.reset(seed=0, options={"target_m": [0.3, 0.0, 0.3]})
    obs, reward, *_ = env.step(np.zeros(4, dtype=np.float32))
    ee = obs[8:11]
    assert reward == pytest.approx(-np.linalg.norm(np.array([0.3, 0.0, 0.3]) - ee), abs=1e-5)


def test_forward_kinematics_matches_mujoco() -> None:
    from sim.tasks import forward_kinematics

    robot = get_robot("manipulator")
    env = make_env("manipulator")
    env.reset(seed=2)
    st = env.backend.state()
    ee_fk = forward_kinematics(robot, st.joint_pos_rad)["ee"]
    np.testing.assert_allclose(ee_fk, st.site_pos_world_m[0], atol=1e-9)


def test_mjcf_masses_match_model() -> None:
    import mujoco

    for robot in ROBOTS.values():
        m = mujoco.MjModel.from_xml_string(to_mjcf(robot))
        for body in robot.bodies:
            bid = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, body.name)
            assert m.body_mass[bid] == pytest.approx(sum(g.mass_kg for g in body.geoms), rel=1e-9)
            assert (m.body_inertia[bid] > 0).all()
        # A solid box of 5 kg, 0.5 x 0.25 x 0.1 m: Ixx = m (b^2 + c^2) / 12 = 5 (0.0625 + 0.01) / 12.
        if robot.name == "quadruped":
            torso = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, "torso")
            assert m.body_inertia[torso][0] == pytest.approx(5 * (0.25**2 + 0.1**2) / 12, rel=1e-6)
        assert m.nu == len(robot.joints) and m.opt.timestep == robot.physics_dt_s


def test_apply_dynamics_is_relative_to_nominal() -> None:
    from sim.backends.mujoco_backend import MujocoBackend

    be = MujocoBackend(get_robot("quadruped"))
    mass0 = be.model.body_mass.copy()
    d = DynamicsProfile(mass_scale=1.1, base_mass_offset_kg=1.0, motor_strength_scale=0.5, friction_scale=0.5)
    be.apply_dynamics(d)
    be.apply_dynamics(d)  # idempotent
    assert be.model.body_mass[1] == pytest.approx(mass0[1] * 1.1 + 1.0)
    assert be.model.body_mass[2] == pytest.approx(mass0[2] * 1.1)
    assert be.model.actuator_forcerange[0, 1] == pytest.approx(7.5)
    assert be.model.geom_friction[0, 0] == pytest.approx(0.5)
    be.apply_dynamics(DynamicsProfile())
    np.testing.assert_allclose(be.model.body_mass, mass0)
    assert sim.ENV_IDS["quadruped"] == "robot_rl/Quadruped-v0"


def test_fast_state_constructor_matches_dataclass() -> None:
    import dataclasses

    from sim.backends.base import RobotState
    from sim.backends.mujoco_backend import _robot_state

    values = [np.full(3, float(i)) for i in range(9)]
    fast, slow = _robot_state(*values), RobotState(*values)
    assert type(fast) is RobotState
    for f in dataclasses.fields(RobotState):
        assert getattr(fast, f.name) is getattr(slow, f.name)
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.base_pos_m = np.zeros(3)  # type: ignore[misc]


@pytest.mark.parametrize("robot", list(ROBOTS))
def test_mujoco_and_dmcontrol_produce_identical_trajectories(robot: str) -> None:
    """Same MJCF, same engine: observations, rewards and info agree to rounding on both backends."""
    env_mj, env_dm = make_env(robot, "mujoco"), make_env(robot, "dmcontrol")
    o_mj, _ = env_mj.reset(seed=4)
    o_dm, _ = env_dm.reset(seed=4)
    np.testing.assert_allclose(o_mj, o_dm, atol=1e-6)
    rng = np.random.default_rng(0)
    for _ in range(30):
        a = rng.uniform(-1, 1, env_mj.action_space.shape).astype(np.float32)
        o_mj, r_mj, *_ = env_mj.step(a)
        o_dm, r_dm, *_ = env_dm.step(a)
        np.testing.assert_allclose(o_mj, o_dm, atol=1e-5)
        assert r_mj == pytest.approx(r_dm, abs=1e-6)
