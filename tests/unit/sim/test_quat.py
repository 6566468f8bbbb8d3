"""sim.quat: the numpy twins give MuJoCo's answers, and the tasks import without MuJoCo or Gymnasium."""

from __future__ import annotations

import subprocess
import sys

import mujoco
import numpy as np

from sim import quat


def _unit_quats(n: int, seed: int) -> np.ndarray:
    q = np.random.default_rng(seed).normal(size=(n, 4))
    return q / np.linalg.norm(q, axis=1, keepdims=True)


def test_numpy_twins_match_mujoco() -> None:
    rng = np.random.default_rng(1)
    for q in _unit_quats(50, 0):
        v = rng.normal(size=3)
        a, b = np.zeros(4), np.zeros(4)
        quat.np_neg_quat(a, q)
        mujoco.mju_negQuat(b, q)
        np.testing.assert_allclose(a, b, atol=1e-15)
        a3, b3 = np.zeros(3), np.zeros(3)
        quat.np_rot_vec_quat(a3, v, q)
        mujoco.mju_rotVecQuat(b3, v, q)
        np.testing.assert_allclose(a3, b3, atol=1e-12)
        m1, m2 = np.zeros(9), np.zeros(9)
        quat.np_quat_to_mat(m1, q)
        mujoco.mju_quat2Mat(m2, q)
        np.testing.assert_allclose(m1, m2, atol=1e-12)
        axis = v / np.linalg.norm(v)
        angle = float(rng.uniform(-3, 3))
        quat.np_axis_angle_to_quat(a, axis, angle)
        mujoco.mju_axisAngle2Quat(b, axis, angle)
        np.testing.assert_allclose(a, b, atol=1e-12)
        assert abs(quat.np_dot(v, v) - mujoco.mju_dot(v, v)) < 1e-12


def test_rotation_known_answer() -> None:
    # 90 deg about z takes x to y.
    q, out = np.zeros(4), np.zeros(3)
    quat.np_axis_angle_to_quat(q, np.array([0.0, 0.0, 1.0]), np.pi / 2)
    quat.np_rot_vec_quat(out, np.array([1.0, 0.0, 0.0]), q)
    np.testing.assert_allclose(out, [0.0, 1.0, 0.0], atol=1e-12)


def test_tasks_and_estimator_run_without_mujoco_or_gymnasium() -> None:
    """What an onboard computer runs (robot-rl deploy) must not need a simulator or Gymnasium installed."""
    code = """
import sys
for name in ("mujoco", "gymnasium", "torch"):
    sys.modules[name] = None  # any import of these now raises ImportError
import numpy as np
from sim import quat
from sim.backends.base import RobotState
from sim.estimator import LegOdometry
from sim.robots import get_robot
from sim.tasks import default_task
assert not quat.HAVE_MUJOCO
robot = get_robot("quadruped")
task = default_task(robot)
n = len(robot.joints)
st = RobotState(
    base_pos_m=np.zeros(3), base_quat_wxyz=np.array([1.0, 0, 0, 0]),
    base_linvel_world_mps=np.array([0.5, 0, 0]),
    base_angvel_body_radps=np.zeros(3), joint_pos_rad=np.asarray(robot.default_joint_pos_rad),
    joint_vel_radps=np.zeros(n), joint_torque_nm=np.zeros(n), foot_contact=np.ones(4, bool),
    site_pos_world_m=np.zeros((0, 3)),
)
obs = task.observe(st, np.zeros(n, np.float32))
print(obs[:3].tolist(), obs.shape)
LegOdometry(robot)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "[0.5, 0.0, 0.0] (34,)" in out.stdout
