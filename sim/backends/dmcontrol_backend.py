"""dm_control backend: the same MJCF loaded into a `dm_control.mujoco.Physics`, stepped with `physics.step`.

dm_control wraps the same MuJoCo engine, so dynamics match the MuJoCo backend; what differs is the stepping
path (`Physics.step(nstep)`, which by default uses dm_control's "legacy" mj_step2 / mj_step / mj_step1
sequence so position-dependent fields are up to date after a step) and the state access (`physics.data`,
`physics.named`). `model` and `data` are the underlying `mujoco.MjModel` / `mujoco.MjData`, so in-place model
edits (`model.opt.gravity`, ...) and `apply_dynamics` act on the live physics.
"""

from __future__ import annotations

import numpy as np
from dm_control import mujoco as dm_mujoco

from sim.backends.mujoco_backend import MjcfBackendBase
from sim.robots.mjcf import to_mjcf
from sim.robots.model import RobotModel


class DmControlBackend(MjcfBackendBase):
    """`PhysicsBackend` on dm_control's `Physics`; `physics` is the dm_control object."""

    name = "dmcontrol"

    def __init__(self, robot: RobotModel) -> None:
        self.physics = dm_mujoco.Physics.from_xml_string(to_mjcf(robot))
        super().__init__(robot, self.physics.model.ptr, self.physics.data.ptr)
        self._joint_names = list(robot.joint_names)

    def reset(
        self,
        base_pos_m: np.ndarray,
        base_quat_wxyz: np.ndarray,
        joint_pos_rad: np.ndarray,
        joint_vel_radps: np.ndarray,
        base_linvel_world_mps: np.ndarray | None = None,
        base_angvel_body_radps: np.ndarray | None = None,
    ) -> None:
        """As `MujocoBackend.reset`, through dm_control's `reset_context` (mj_resetData ... mj_forward)."""
        physics = self.physics
        with physics.reset_context():
            named = physics.named.data
            if self._free:
                q = np.asarray(base_quat_wxyz, dtype=np.float64)
                named.qpos["root"] = np.concatenate([base_pos_m, q / np.linalg.norm(q)])
                zero = np.zeros(3)
                named.qvel["root"] = np.concatenate(
                    [
                        zero if base_linvel_world_mps is None else base_linvel_world_mps,
                        zero if base_angvel_body_radps is None else base_angvel_body_radps,
                    ]
                )
            named.qpos[self._joint_names] = joint_pos_rad
            named.qvel[self._joint_names] = joint_vel_radps
            physics.data.ctrl[:] = joint_pos_rad
        # reset_context ends with a forward pass with actuation disabled, and dm_control's legacy step reuses
        # that pass for the first substep; with implicit PD damping (kv) and a moving robot that first substep
        # would then differ from MuJoCo's. A forward pass with actuation on makes both backends agree exactly.
        physics.forward()

    def step(self, joint_target_rad: np.ndarray) -> None:
        self.physics.data.ctrl[:] = joint_target_rad
        self.physics.step(self.n_substeps)

    def render_rgb(self, width: int, height: int) -> np.ndarray:
        return np.asarray(self.physics.render(height=height, width=width, camera_id=0 if self._free else -1))
