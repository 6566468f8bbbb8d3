"""The contract every physics backend (MuJoCo, dm_control, PyBullet) implements.

A backend owns one compiled robot and the ground, closes the PD loop at the physics rate, applies the
*dynamics* part of a gap profile (friction, masses, motor strength, damping, gravity), and reports the robot's
state in SI units. Everything above it (observations, rewards, latency, sensor and action noise) lives in
`sim.env.RobotEnv` and is therefore identical across backends.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from sim.profile import DynamicsProfile
from sim.robots.model import RobotModel


@dataclass(frozen=True)
class RobotState:
    """The robot's physical state after a control step (SI units).

    base_pos_m:            (3,) world position of the root body origin
    base_quat_wxyz:        (4,) world orientation of the root body, unit quaternion (w, x, y, z)
    base_linvel_world_mps: (3,) linear velocity of the root origin in the world frame
    base_angvel_body_radps:(3,) angular velocity of the root in its own frame (what a gyro reads)
    joint_pos_rad:         (n_joints,) actuated joints, RobotModel order
    joint_vel_radps:       (n_joints,)
    joint_torque_nm:       (n_joints,) PD torque applied during the last substep (after clipping)
    foot_contact:          (n_feet,) bool, RobotModel.foot_geoms order ((0,) for a robot without feet)
    site_pos_world_m:      (n_sites, 3) RobotModel.sites order ((0, 3) when there are none)
    """

    base_pos_m: np.ndarray
    base_quat_wxyz: np.ndarray
    base_linvel_world_mps: np.ndarray
    base_angvel_body_radps: np.ndarray
    joint_pos_rad: np.ndarray
    joint_vel_radps: np.ndarray
    joint_torque_nm: np.ndarray
    foot_contact: np.ndarray
    site_pos_world_m: np.ndarray


class PhysicsBackend(Protocol):
    """What `sim.env.RobotEnv` needs from a simulator."""

    name: str  # "mujoco" | "dmcontrol" | "pybullet"
    robot: RobotModel
    n_substeps: int  # physics steps per control step (PD closed at every one of them)

    def reset(
        self,
        base_pos_m: np.ndarray,
        base_quat_wxyz: np.ndarray,
        joint_pos_rad: np.ndarray,
        joint_vel_radps: np.ndarray,
        base_linvel_world_mps: np.ndarray | None = None,
        base_angvel_body_radps: np.ndarray | None = None,
    ) -> None:
        """Teleport the robot to this state; base velocities (origin, world frame / body-frame rates) default
        to zero and are ignored for a fixed base. Clears contacts and warm starts."""
        ...

    def step(self, joint_target_rad: np.ndarray) -> None:
        """Hold `joint_target_rad` (n_joints,) for `n_substeps` physics steps, PD at every substep."""
        ...

    def state(self) -> RobotState: ...

    def apply_dynamics(self, profile: DynamicsProfile) -> None:
        """Set the dynamics to nominal-then-`profile` (relative to the nominal model, so idempotent)."""
        ...

    def set_marker(self, pos_world_m: np.ndarray) -> None:
        """Move the visual target marker (manipulator reach target); a no-op where there is none."""
        ...

    def render_rgb(self, width: int, height: int) -> np.ndarray:
        """An (height, width, 3) uint8 image of the scene."""
        ...

    def close(self) -> None: ...
