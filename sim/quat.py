"""Quaternion helpers for the tasks, with MuJoCo's C functions when MuJoCo is installed.

`sim.tasks` builds the observation from these on every control step. In training MuJoCo is always there and
its ``mju_*`` functions are the cheapest calls; the onboard computer that runs ``robot-rl deploy`` needs the
same observation without installing a simulator, so each function has a numpy twin with the same signature
(``out`` first, written in place) and the same arithmetic (tests/unit/sim/test_quat.py compares them).
Quaternions are (w, x, y, z), unit norm.
"""

from __future__ import annotations

import math

import numpy as np


def np_neg_quat(out: np.ndarray, q: np.ndarray) -> None:
    """out = conjugate of q (the inverse rotation of a unit quaternion)."""
    out[0] = q[0]
    out[1:4] = -np.asarray(q[1:4])


def np_rot_vec_quat(out: np.ndarray, v: np.ndarray, q: np.ndarray) -> None:
    """out = v rotated by q (v + 2 w (u x v) + 2 u x (u x v), u the vector part)."""
    w = float(q[0])
    u = np.asarray(q[1:4], dtype=np.float64)
    vv = np.asarray(v, dtype=np.float64)
    t = 2.0 * np.cross(u, vv)
    out[:] = vv + w * t + np.cross(u, t)


def np_dot(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b))


def np_axis_angle_to_quat(out: np.ndarray, axis: np.ndarray, angle: float) -> None:
    """out = rotation by ``angle`` (rad) about the unit vector ``axis``."""
    half = 0.5 * float(angle)
    out[0] = math.cos(half)
    out[1:4] = math.sin(half) * np.asarray(axis, dtype=np.float64)


def np_quat_to_mat(out: np.ndarray, q: np.ndarray) -> None:
    """out (9,) = the row-major 3x3 rotation matrix of q."""
    w, x, y, z = (float(c) for c in q)
    out[:] = (
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    )  # fmt: skip


try:
    import mujoco
except ImportError:  # onboard: numpy only
    HAVE_MUJOCO = False
    neg_quat, rot_vec_quat, dot = np_neg_quat, np_rot_vec_quat, np_dot
    axis_angle_to_quat, quat_to_mat = np_axis_angle_to_quat, np_quat_to_mat
else:
    HAVE_MUJOCO = True
    neg_quat, rot_vec_quat, dot = mujoco.mju_negQuat, mujoco.mju_rotVecQuat, mujoco.mju_dot
    axis_angle_to_quat, quat_to_mat = mujoco.mju_axisAngle2Quat, mujoco.mju_quat2Mat
