"""ObservationBuilder: the real robot's observation, reward and actions (shared with RealRobotEnv)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from robot_rl.bus.messages import JointState
from robot_rl.deploy.observation import US_WRAP, ObservationBuilder
from sim.robots import get_robot
from sim.tasks import ForwardVelocityTask, default_task

Q0 = np.array([0.8, -1.5] * 4)


def _js(
    t_us: int, q: np.ndarray | None = None, *, quat: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0)
) -> JointState:
    return JointState(
        robot="quadruped",
        joint_pos_rad=Q0.copy() if q is None else q,
        joint_vel_radps=np.full(8, 0.5),
        joint_torque_nm=np.full(8, 2.0),
        gyro_radps=np.array([0.1, -0.2, 0.3]),
        accel_mps2=np.array([0.0, 0.0, 9.81]),
        quat_wxyz=np.asarray(quat, dtype=np.float64),
        foot_contact=np.ones(4, dtype=np.bool_),
        mode="POSITION_PD",
        faults=0,
        t_us=t_us,
        last_cmd_seq=0,
    )


def _builder(command_mps: float = 0.5) -> ObservationBuilder:
    robot = get_robot("quadruped")
    task = default_task(robot)
    assert isinstance(task, ForwardVelocityTask)
    task.set_command(command_mps)
    return ObservationBuilder(robot, task)


def test_layout_and_observation_blocks() -> None:
    b = _builder(0.5)
    assert b.obs_dim == 34 and b.n_joints == 8
    assert b.obs_names[9] == "command_vx_mps" and b.action_names[0] == "action_FL_hip"
    q = Q0 + 0.1
    b.reset(_js(1000, q))
    last = np.full(8, 0.25, dtype=np.float32)
    obs = b.observe(_js(1000, q), last)
    assert obs.dtype == np.float32 and obs.shape == (34,)
    assert np.allclose(obs[0:3], 0.0)  # the velocity estimate starts from rest
    assert np.allclose(obs[3:6], [0.1, -0.2, 0.3])  # gyro
    assert np.allclose(obs[6:9], [0.0, 0.0, -1.0])  # upright: gravity straight down in the body frame
    assert obs[9] == pytest.approx(0.5)  # the command
    assert np.allclose(obs[10:18], 0.1)  # joint_pos - default
    assert np.allclose(obs[18:26], 0.5)  # joint_vel
    assert np.allclose(obs[26:34], 0.25)  # last action


def test_reward_is_the_tasks_on_the_observed_state() -> None:
    b = _builder(0.5)
    with pytest.raises(RuntimeError, match="observe"):
        b.reward(np.zeros(8), np.zeros(8))
    b.reset(_js(0))
    b.observe(_js(0), np.zeros(8, dtype=np.float32))
    a = np.full(8, 0.1, dtype=np.float32)
    reward, terminated, q = b.reward(a, np.zeros(8, dtype=np.float32))
    # At rest, upright: exp(-(0 - 0.5)^2 / 0.25) + 0.5 exp(-0.3^2 / 0.25) - 0.05 (0.1^2 + 0.2^2)
    #   - 2e-4 * 8 * 2^2 - 0.01 * 8 * 0.1^2
    expected = math.exp(-0.25 / 0.25) + 0.5 * math.exp(-0.09 / 0.25) - 0.05 * 0.05 - 2e-4 * 32 - 0.01 * 0.08
    assert reward == pytest.approx(expected, rel=1e-6)
    assert terminated is False and math.isnan(q["base_height_m"])  # height not measured: tilt only


def test_a_tilt_past_60_degrees_terminates() -> None:
    b = _builder()
    tilt = math.radians(70.0)
    quat = (math.cos(tilt / 2), math.sin(tilt / 2), 0.0, 0.0)  # about body x
    b.reset(_js(0, quat=quat))
    b.observe(_js(0, quat=quat), np.zeros(8, dtype=np.float32))
    assert b.reward(np.zeros(8), np.zeros(8))[1] is True


def test_odometry_dt_comes_from_the_firmware_clock_and_wraps() -> None:
    b = _builder()
    b.reset(_js(US_WRAP - 10_000))
    seen: list[float] = []
    original = b.odometry.update

    def spy(*args: object) -> None:
        seen.append(float(args[-1]))  # type: ignore[arg-type]
        original(*args)  # type: ignore[arg-type]

    b.odometry.update = spy  # type: ignore[method-assign]
    b.update(_js(10_000))  # 20 ms later, across the 2^32 us wrap
    assert seen == [pytest.approx(0.02)]
    b.update(_js(10_000 + 600_000))  # a 0.6 s gap: the estimate restarts from rest, no update
    assert len(seen) == 1 and np.allclose(b.odometry.v_world, 0.0)


def test_action_conversions_are_inverse_and_clipped() -> None:
    b = _builder()
    a = np.array([-1.0, -0.5, 0.0, 0.25, 0.5, 0.75, 1.0, 0.1], dtype=np.float32)
    q = b.target_from_action(a)
    assert np.allclose(q, Q0 + 0.4 * a)
    assert np.allclose(b.action_from_target(q), a, atol=1e-7)
    # beyond the action range: clipped, as the simulated env clips its action
    assert np.allclose(b.action_from_target(Q0 + 1.0), 1.0)
    assert np.allclose(b.target_from_action(np.full(8, 3.0)), Q0 + 0.4)


def test_real_robot_env_uses_the_shared_builder() -> None:
    from robot_rl.envs.real_robot import RealRobotEnv

    env = RealRobotEnv("quadruped", bus="ipc:///tmp/rrl-test-deploy-nobody")  # sockets connect lazily
    try:
        assert isinstance(env.obs_builder, ObservationBuilder)
        assert env.obs_builder.task is env.task
        assert env.odometry is env.obs_builder.odometry
        assert env.obs_names == env.obs_builder.obs_names
    finally:
        env.close()


def test_the_manipulator_is_refused_with_a_clear_message() -> None:
    robot = get_robot("manipulator")
    with pytest.raises(ValueError, match="floating-base"):
        ObservationBuilder(robot, default_task(robot))
