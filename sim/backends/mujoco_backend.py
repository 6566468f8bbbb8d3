"""MuJoCo backend: the robot compiled with `sim.robots.mjcf.to_mjcf`, stepped with `mujoco.mj_step`.

The PD loop is MuJoCo's `<position>` actuator (ctrl = joint target), so one `mj_step(model, data, nstep=n)`
performs a whole control step with the PD closed at every physics substep. The step path is kept lean on
purpose (the env is benchmarked against raw `mj_step`): every index array is built once in `__init__`, the
state is read through preallocated buffers, and nothing loops over joints in Python.
"""

from __future__ import annotations

from typing import Any

import mujoco
import numpy as np

from sim.backends.base import RobotState
from sim.profile import DynamicsProfile
from sim.robots.mjcf import TARGET_BODY, TOUCH_SUFFIX, to_mjcf
from sim.robots.model import RobotModel

_new_object = object.__new__
_set_attr = object.__setattr__


def _robot_state(
    base_pos_m: np.ndarray,
    base_quat_wxyz: np.ndarray,
    base_linvel_world_mps: np.ndarray,
    base_angvel_body_radps: np.ndarray,
    joint_pos_rad: np.ndarray,
    joint_vel_radps: np.ndarray,
    joint_torque_nm: np.ndarray,
    foot_contact: np.ndarray,
    site_pos_world_m: np.ndarray,
) -> RobotState:
    """A `RobotState`, built without the frozen dataclass __init__ (nine object.__setattr__ calls).

    Same object as `RobotState(...)` (RobotState has no __post_init__ and no slots); it saves about 1 us per
    control step, which is measurable against a 100 us physics step. Tested against the real constructor.
    """
    st = _new_object(RobotState)
    _set_attr(
        st,
        "__dict__",
        {
            "base_pos_m": base_pos_m,
            "base_quat_wxyz": base_quat_wxyz,
            "base_linvel_world_mps": base_linvel_world_mps,
            "base_angvel_body_radps": base_angvel_body_radps,
            "joint_pos_rad": joint_pos_rad,
            "joint_vel_radps": joint_vel_radps,
            "joint_torque_nm": joint_torque_nm,
            "foot_contact": foot_contact,
            "site_pos_world_m": site_pos_world_m,
        },
    )
    return st


class MjcfBackendBase:
    """Everything shared by the MuJoCo and dm_control backends, given a compiled (model, data) pair."""

    name = "mjcf"

    def __init__(self, robot: RobotModel, model: mujoco.MjModel, data: mujoco.MjData) -> None:
        self.robot = robot
        self.n_substeps = robot.n_substeps
        self.model = model
        self.data = data
        obj = mujoco.mjtObj
        joint_ids = np.array([mujoco.mj_name2id(model, obj.mjOBJ_JOINT, n) for n in robot.joint_names])
        if (joint_ids < 0).any():
            raise ValueError(f"{robot.name}: joints missing from the compiled model: {robot.joint_names}")
        self._qpos_idx = model.jnt_qposadr[joint_ids].copy()
        self._dof_idx = model.jnt_dofadr[joint_ids].copy()
        # Contiguous joint blocks are read as slices (views, no fancy-index copies) on the hot path.
        self._qpos_sl = self._as_slice(self._qpos_idx)
        self._dof_sl = self._as_slice(self._dof_idx)
        self._act_ids = np.array([mujoco.mj_name2id(model, obj.mjOBJ_ACTUATOR, n) for n in robot.joint_names])
        if not np.array_equal(self._act_ids, np.arange(model.nu)):
            raise ValueError(f"{robot.name}: actuators must be in RobotModel joint order")
        root_name = next(b.name for b in robot.bodies if b.parent is None)
        self._root_body = mujoco.mj_name2id(model, obj.mjOBJ_BODY, root_name)
        self._site_ids = np.array(
            [mujoco.mj_name2id(model, obj.mjOBJ_SITE, s.name) for s in robot.sites], dtype=np.int64
        )
        self._has_sites = len(self._site_ids) > 0
        self._no_sites = np.zeros((0, 3))
        self._no_sites.flags.writeable = False
        touch_ids = [mujoco.mj_name2id(model, obj.mjOBJ_SENSOR, g + TOUCH_SUFFIX) for g in robot.foot_geoms]
        if any(i < 0 for i in touch_ids):
            raise ValueError(f"{robot.name}: foot touch sensors missing for {robot.foot_geoms}")
        self._touch_sl = self._as_slice(np.array([model.sensor_adr[i] for i in touch_ids], dtype=np.int64))
        self._sensordata = data.sensordata
        target = mujoco.mj_name2id(model, obj.mjOBJ_BODY, TARGET_BODY)
        self._mocap_id = int(model.body_mocapid[target]) if target >= 0 else -1
        self._free = robot.floating_base
        self._root_pos_fixed = np.array(robot.base_init_pos, dtype=np.float64)
        self._quat_identity = np.array([1.0, 0.0, 0.0, 0.0])
        # Nominal copies: apply_dynamics is always relative to these, so it is idempotent.
        self._nom = {
            "geom_friction": model.geom_friction.copy(),
            "body_mass": model.body_mass.copy(),
            "body_inertia": model.body_inertia.copy(),
            "actuator_gainprm": model.actuator_gainprm.copy(),
            "actuator_biasprm": model.actuator_biasprm.copy(),
            "actuator_forcerange": model.actuator_forcerange.copy(),
            "dof_damping": model.dof_damping.copy(),
            "gravity": model.opt.gravity.copy(),
        }
        self._renderer: Any = None
        # Cached numpy views of MjData buffers (they are never reallocated, mj_resetData included): avoids a
        # pybind11 attribute lookup per field per step, which is costly once mj_step has evicted the caches.
        self._qpos, self._qvel = data.qpos, data.qvel
        self._ctrl, self._actuator_force = data.ctrl, data.actuator_force
        self._site_xpos = data.site_xpos
        self._nq, self._nv = model.nq, model.nv
        self._qvel_in_snap = self._as_slice(self._dof_idx + model.nq)

    @staticmethod
    def _as_slice(idx: np.ndarray) -> slice | np.ndarray:
        if len(idx) and np.array_equal(idx, np.arange(idx[0], idx[0] + len(idx))):
            return slice(int(idx[0]), int(idx[0]) + len(idx))
        return idx

    # --- PhysicsBackend -------------------------------------------------------------------------------
    def reset(
        self,
        base_pos_m: np.ndarray,
        base_quat_wxyz: np.ndarray,
        joint_pos_rad: np.ndarray,
        joint_vel_radps: np.ndarray,
        base_linvel_world_mps: np.ndarray | None = None,
        base_angvel_body_radps: np.ndarray | None = None,
    ) -> None:
        """Teleport to this state; base velocities default to zero (extension of the Protocol, used by
        `sim.gap` to restart a predictor from a moving reference state). Base terms are ignored for fixed
        bases."""
        m, d = self.model, self.data
        mujoco.mj_resetData(m, d)
        if self._free:
            d.qpos[0:3] = base_pos_m
            q = np.asarray(base_quat_wxyz, dtype=np.float64)
            d.qpos[3:7] = q / np.linalg.norm(q)
            if base_linvel_world_mps is not None:
                d.qvel[0:3] = base_linvel_world_mps
            if base_angvel_body_radps is not None:
                d.qvel[3:6] = base_angvel_body_radps
        d.qpos[self._qpos_sl] = joint_pos_rad
        d.qvel[self._dof_sl] = joint_vel_radps
        d.ctrl[:] = joint_pos_rad  # hold the pose until the first step sets a target
        mujoco.mj_forward(m, d)

    def step(self, joint_target_rad: np.ndarray) -> None:
        self._ctrl[:] = joint_target_rad
        mujoco.mj_step(self.model, self.data, self.n_substeps)
        if self._has_sites:
            # mj_step leaves site_xpos at the kinematics of the last substep's start (2 ms stale); refresh it
            # from the final qpos so site positions agree with the joint state (and with dm_control).
            mujoco.mj_kinematics(self.model, self.data)

    def state(self) -> RobotState:
        # One copy of (qpos, qvel, actuator_force); every field is a view into that private copy, so the
        # returned state is a snapshot later steps do not modify, at the cost of a single allocation.
        snap = np.concatenate((self._qpos, self._qvel, self._actuator_force))
        nq, nv = self._nq, self._nv
        # Foot contact = positive normal force on the foot's touch sensor (computed by MuJoCo in the step).
        contact = self._sensordata[self._touch_sl] > 0.0
        if self._free:
            # MuJoCo free joint: qvel[0:3] is the world-frame linear velocity of the body origin,
            # qvel[3:6] the angular velocity in the body frame (exactly what a gyro reads).
            return _robot_state(
                snap[0:3],
                snap[3:7],
                snap[nq : nq + 3],
                snap[nq + 3 : nq + 6],
                snap[self._qpos_sl],
                snap[self._qvel_in_snap],
                snap[nq + nv :],
                contact,
                self._site_xpos[self._site_ids] if self._has_sites else self._no_sites,
            )
        return _robot_state(
            self._root_pos_fixed.copy(),
            self._quat_identity.copy(),
            np.zeros(3),
            np.zeros(3),
            snap[self._qpos_sl],
            snap[self._qvel_in_snap],
            snap[nq + nv :],
            contact,
            self._site_xpos[self._site_ids] if self._has_sites else self._no_sites,
        )

    def apply_dynamics(self, profile: DynamicsProfile) -> None:
        m, nom = self.model, self._nom
        m.geom_friction[:, 0] = nom["geom_friction"][:, 0] * profile.friction_scale
        m.body_mass[:] = nom["body_mass"] * profile.mass_scale
        m.body_inertia[:] = nom["body_inertia"] * profile.mass_scale
        if profile.base_mass_offset_kg:
            root = self._root_body
            new_mass = m.body_mass[root] + profile.base_mass_offset_kg
            if new_mass <= 0:
                raise ValueError(
                    f"base_mass_offset_kg={profile.base_mass_offset_kg} makes the root mass {new_mass} <= 0"
                )
            # The payload is modelled as spread like the root body itself: inertia scales with the mass.
            m.body_inertia[root] *= new_mass / m.body_mass[root]
            m.body_mass[root] = new_mass
        # Position actuator: force = gain*ctrl + bias1*q + bias2*qdot with gain=kp, bias=(0, -kp, -kv);
        # scaling all three and the force limit gives tau = s * clip(kp e - kd qdot, +-limit).
        s = profile.motor_strength_scale
        m.actuator_gainprm[:, 0] = nom["actuator_gainprm"][:, 0] * s
        m.actuator_biasprm[:, 1:3] = nom["actuator_biasprm"][:, 1:3] * s
        m.actuator_forcerange[:] = nom["actuator_forcerange"] * s
        m.dof_damping[self._dof_idx] = (
            nom["dof_damping"][self._dof_idx] * profile.joint_damping_scale
            + profile.joint_damping_offset_nm_s_per_rad
        )
        m.opt.gravity[:] = profile.gravity_mps2
        # Masses changed: refresh the derived constants (subtree masses, inverse weights used by contacts).
        mujoco.mj_setConst(m, self.data)

    def set_marker(self, pos_world_m: np.ndarray) -> None:
        if self._mocap_id >= 0:
            self.data.mocap_pos[self._mocap_id] = pos_world_m

    def render_rgb(self, width: int, height: int) -> np.ndarray:
        if self._renderer is None or (self._renderer.width, self._renderer.height) != (width, height):
            self._renderer = mujoco.Renderer(self.model, height=height, width=width)
        cam = "track" if self._free else -1
        self._renderer.update_scene(self.data, camera=cam)
        return np.array(self._renderer.render(), dtype=np.uint8)

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None


class MujocoBackend(MjcfBackendBase):
    """`PhysicsBackend` on the MuJoCo Python bindings; `model`/`data` are the live MjModel/MjData."""

    name = "mujoco"

    def __init__(self, robot: RobotModel) -> None:
        model = mujoco.MjModel.from_xml_string(to_mjcf(robot))
        super().__init__(robot, model, mujoco.MjData(model))
