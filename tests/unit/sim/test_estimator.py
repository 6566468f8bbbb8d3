"""`sim.estimator.LegOdometry`: known kinematics, rest, pure translation, agreement with MuJoCo."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sim.env import RobotEnv
from sim.estimator import LegOdometry
from sim.robots import get_robot

QUAD = get_robot("quadruped")
IDENTITY = np.array([1.0, 0.0, 0.0, 0.0])


def test_default_pose_feet_match_the_model_docstring() -> None:
    # hip 0.8, knee -1.5, links 0.2 m: x = -0.2 sin(0.8) - 0.2 sin(-0.7) = -0.14347 + 0.12884 = -0.01463 m,
    # z = -0.2 cos(0.8) - 0.2 cos(-0.7) = -0.13934 - 0.15297 = -0.29231 m below each hip.
    p, dp = LegOdometry(QUAD).feet_body(np.array(QUAD.default_joint_pos_rad), np.zeros(8))
    np.testing.assert_allclose(
        p[:, 0], [0.2 - 0.01463, 0.2 - 0.01463, -0.2 - 0.01463, -0.2 - 0.01463], atol=1e-5
    )
    np.testing.assert_allclose(p[:, 1], [0.1, -0.1, 0.1, -0.1])
    np.testing.assert_allclose(p[:, 2], -0.29231, atol=1e-5)
    np.testing.assert_array_equal(dp, 0.0)


def test_still_legs_give_zero_and_no_contact_holds_the_estimate() -> None:
    odo = LegOdometry(QUAD)
    q0 = np.array(QUAD.default_joint_pos_rad)
    v = odo.update(IDENTITY, np.zeros(3), q0, np.zeros(8), np.ones(4, bool), 0.02)
    np.testing.assert_array_equal(v, 0.0)
    odo.reset(np.array([0.3, 0.0, 0.0]))
    v = odo.update(IDENTITY, np.zeros(3), q0, np.full(8, 5.0), np.zeros(4, bool), 0.02)  # flight
    np.testing.assert_array_equal(v, [0.3, 0.0, 0.0])


def test_hip_swing_back_reads_as_forward_motion() -> None:
    # Stance feet swinging backwards (hip velocity > 0, foot at z = -0.292 below the hip) at rate w move the
    # foot by dp_x = -(L1 cos(0.8) + L2 cos(-0.7)) w = -(0.13934 + 0.15297) w = -0.29231 w relative to the
    # torso, so the torso moves forward at +0.29231 w; the sphere foot rolls by +w r = 0.025 w on top.
    # After one filter step from rest: k = 1 - exp(-0.02 / 0.02) = 0.63212.
    odo = LegOdometry(QUAD, tau_s=0.02)
    qd = np.array([1.0, 0.0] * 4)
    v = odo.update(IDENTITY, np.zeros(3), np.array(QUAD.default_joint_pos_rad), qd, np.ones(4, bool), 0.02)
    k = 1.0 - math.exp(-1.0)
    assert v[0] == pytest.approx(k * (0.29231 + 0.025), abs=1e-4)
    assert v[1] == pytest.approx(0.0, abs=1e-12)


def test_estimate_tracks_mujoco_truth_while_walking() -> None:
    """A scripted trot in the nominal simulator: the estimate follows the true forward velocity."""
    env = RobotEnv("quadruped", "mujoco", "nominal", max_episode_steps=300)
    env.reset(seed=0)
    assert env.odometry is not None
    true_vx, est_vx = [], []
    for t in range(200):
        phase = 2 * math.pi * t * 0.02 * 2.0  # 2 Hz trot: diagonal pairs in antiphase
        s = math.sin(phase)
        a = np.array([0.6 * s, -0.5 * max(s, 0), -0.6 * s, -0.5 * max(-s, 0)] * 2, dtype=np.float32)
        a[4:] = a[[2, 3, 0, 1]]
        _, _, terminated, _, _ = env.step(a)
        true_vx.append(float(env.data.qvel[0]))
        est_vx.append(float(env.odometry.v_world[0]))
        if terminated:
            break
    assert len(true_vx) > 100
    assert np.corrcoef(true_vx, est_vx)[0, 1] > 0.7
    assert abs(np.mean(est_vx) - np.mean(true_vx)) < 0.5 * abs(np.mean(true_vx)) + 0.05


def test_non_planar_legs_are_refused() -> None:
    with pytest.raises(ValueError, match="floating-base"):
        LegOdometry(get_robot("manipulator"))
