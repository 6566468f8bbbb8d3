"""PyBullet implementation of `sim.backends.base.PhysicsBackend`.

The robot is compiled with `sim.robots.urdf.to_urdf` and loaded into a private DIRECT (headless) client, so
several backends coexist in one process. The PD law of `sim.robots.model` is closed in numpy at every physics
substep and applied with TORQUE_CONTROL after PyBullet's default velocity motors are switched off.

Deliberate choices that keep PyBullet close to the MuJoCo backend:
- Contact friction. Bullet combines two bodies' friction as the product, MuJoCo as the max. The ground's
  lateral friction is therefore 1.0 and each link gets
  friction_scale * max(link geom friction, robot.ground_friction), which makes the Bullet product equal
  MuJoCo's max rule for every robot-ground contact. PyBullet has one friction per link: a link with several
  contact geoms uses the largest of their frictions.
- linearDamping and angularDamping (Bullet's default 0.04 velocity decay) are set to 0.
- Passive joint damping is PyBullet's `jointDamping` (an explicit -d * qdot torque).
- Joint armature has no PyBullet equivalent and is ignored.
- Self-collision is off (PyBullet's loadURDF default).
- PyBullet reports the base pose and velocity at the root's centre of mass in its principal-axes frame; this
  backend converts both ways so that `RobotState` and `reset` refer to the root body's origin and axes.
"""

from __future__ import annotations

import math
import os
import tempfile

import numpy as np
import pybullet as p

from sim.backends.base import RobotState
from sim.profile import DynamicsProfile, validate_dynamics
from sim.robots.model import RobotModel
from sim.robots.urdf import to_urdf

_MARKER_RADIUS_M = 0.02
_MARKER_RGBA = (1.0, 0.1, 0.1, 0.8)
_ROOT = -1  # PyBullet's link index of the base


class PyBulletBackend:
    """One `RobotModel` on a private PyBullet DIRECT client.

    Attributes: `name` = "pybullet", `robot`, `n_substeps`, `client_id` (the PyBullet physics client),
    `robot_id` (the robot's body unique id), `ground_id`, `joint_indices` ((n_joints,) PyBullet joint indices
    in RobotModel order).
    """

    name = "pybullet"

    def __init__(self, robot: RobotModel) -> None:
        self.robot = robot
        self.n_substeps = robot.n_substeps
        self._closed = True
        cid = p.connect(p.DIRECT)
        if cid < 0:
            raise RuntimeError("pybullet: could not start a DIRECT physics client")
        self.client_id = cid
        self._closed = False
        try:
            self._build()
        except BaseException:
            self.close()
            raise

    # ---------------------------------------------------------------- construction
    def _build(self) -> None:
        robot, cid = self.robot, self.client_id
        p.setTimeStep(robot.physics_dt_s, physicsClientId=cid)

        plane_shape = p.createCollisionShape(p.GEOM_PLANE, physicsClientId=cid)
        self.ground_id = p.createMultiBody(0.0, plane_shape, physicsClientId=cid)
        p.changeDynamics(self.ground_id, _ROOT, lateralFriction=1.0, physicsClientId=cid)

        fd, path = tempfile.mkstemp(suffix=".urdf", prefix=f"{robot.name}_")
        try:
            with os.fdopen(fd, "w") as f:
                f.write(to_urdf(robot))
            self.robot_id = p.loadURDF(
                path,
                basePosition=robot.base_init_pos,
                useFixedBase=not robot.floating_base,
                flags=p.URDF_USE_INERTIA_FROM_FILE,
                physicsClientId=cid,
            )
        finally:
            os.unlink(path)
        if self.robot_id < 0:
            raise RuntimeError(f"pybullet could not load the URDF of {robot.name}")
        rid = self.robot_id

        # PyBullet orders links by its own tree traversal, so map everything by name.
        link_of_body = {robot.bodies[0].name: _ROOT}
        joint_of_name: dict[str, int] = {}
        n_pb_joints = p.getNumJoints(rid, physicsClientId=cid)
        for i in range(n_pb_joints):
            info = p.getJointInfo(rid, i, physicsClientId=cid)
            joint_of_name[info[1].decode()] = i
            link_of_body[info[12].decode()] = i
        self._link_of_body = link_of_body
        self.joint_indices = [joint_of_name[n] for n in robot.joint_names]
        self._all_links = [_ROOT, *range(n_pb_joints)]
        n = len(self.joint_indices)

        joints = robot.joints
        self._kp = np.array([j.kp_nm_per_rad for j in joints], dtype=np.float64)
        self._kd = np.array([j.kd_nm_s_per_rad for j in joints], dtype=np.float64)
        self._limit_nominal = np.array([j.torque_limit_nm for j in joints], dtype=np.float64)
        self._damping_nominal = np.array([j.damping_nm_s_per_rad for j in joints], dtype=np.float64)
        self._kp_list = self._kp.tolist()
        self._kd_list = self._kd.tolist()
        self._lim_list = self._limit_nominal.tolist()
        self._strength = 1.0
        self._limit = self._limit_nominal.copy()
        self._tau = np.zeros(n)

        # Switch off the default velocity motors, otherwise they fight the PD torques.
        p.setJointMotorControlArray(
            rid, self.joint_indices, p.VELOCITY_CONTROL, forces=[0.0] * n, physicsClientId=cid
        )

        # Per-link nominal friction, mass and inertia, kept so that apply_dynamics is relative to nominal.
        geom_link = {g.name: link_of_body[b.name] for b in robot.bodies for g in b.geoms}
        contact_friction: dict[int, float] = {}
        for b in robot.bodies:
            fr = [g.friction for g in b.geoms if g.contact]
            if fr:
                contact_friction[link_of_body[b.name]] = max(max(fr), robot.ground_friction)
        self._friction_nominal = {
            link: contact_friction.get(link, robot.ground_friction) for link in self._all_links
        }
        self._mass_nominal: dict[int, float] = {}
        self._inertia_nominal: dict[int, tuple[float, ...]] = {}
        for link in self._all_links:
            info = p.getDynamicsInfo(rid, link, physicsClientId=cid)
            self._mass_nominal[link] = float(info[0])
            self._inertia_nominal[link] = tuple(float(x) for x in info[2])
            p.changeDynamics(rid, link, linearDamping=0.0, angularDamping=0.0, physicsClientId=cid)
        base_info = p.getDynamicsInfo(rid, _ROOT, physicsClientId=cid)
        # Root origin <-> root inertial frame, for converting PyBullet's base pose (see module docstring).
        self._root_inertial_pos = tuple(base_info[3])
        self._root_inertial_orn = tuple(base_info[4])
        self._root_inertial_inv = p.invertTransform(self._root_inertial_pos, self._root_inertial_orn)

        self._foot_links = np.array([geom_link[_known(robot, geom_link, g)] for g in robot.foot_geoms])
        site_links = [link_of_body[_known_body(robot, s.body)] for s in robot.sites]
        self._site_links = site_links
        self._site_nonroot = [i for i, link in enumerate(site_links) if link != _ROOT]
        self._site_offsets = np.array([s.pos for s in robot.sites], dtype=np.float64).reshape(-1, 3)

        self.marker_id: int | None = None
        if any(s.name == "ee" for s in robot.sites):
            vis = p.createVisualShape(
                p.GEOM_SPHERE, radius=_MARKER_RADIUS_M, rgbaColor=_MARKER_RGBA, physicsClientId=cid
            )
            self.marker_id = p.createMultiBody(
                baseMass=0.0,
                baseCollisionShapeIndex=-1,
                baseVisualShapeIndex=vis,
                basePosition=(0.0, 0.0, -1.0),
                physicsClientId=cid,
            )

        self.apply_dynamics(DynamicsProfile())
        self.reset(
            np.asarray(robot.base_init_pos, dtype=np.float64),
            np.array([1.0, 0.0, 0.0, 0.0]),
            np.asarray(robot.default_joint_pos_rad, dtype=np.float64),
            np.zeros(n),
        )

    # ---------------------------------------------------------------- PhysicsBackend
    def reset(
        self,
        base_pos_m: np.ndarray,
        base_quat_wxyz: np.ndarray,
        joint_pos_rad: np.ndarray,
        joint_vel_radps: np.ndarray,
        base_linvel_world_mps: np.ndarray | None = None,
        base_angvel_body_radps: np.ndarray | None = None,
    ) -> None:
        """Teleport to this state (root origin pose, (n_joints,) joints); base velocities default to zero.

        PyBullet's base velocity is that of the root's centre of mass, so the origin velocity given here is
        moved there: v_com = v_origin + w x (R com_offset)."""
        n = len(self.joint_indices)
        joint_pos_rad = np.asarray(joint_pos_rad, dtype=np.float64)
        joint_vel_radps = np.asarray(joint_vel_radps, dtype=np.float64)
        if joint_pos_rad.shape != (n,) or joint_vel_radps.shape != (n,):
            raise ValueError(
                f"reset: joint_pos_rad {joint_pos_rad.shape} and joint_vel_radps {joint_vel_radps.shape} "
                f"must both be ({n},)"
            )
        w, x, y, z = (float(c) for c in base_quat_wxyz)
        norm = math.sqrt(w * w + x * x + y * y + z * z)
        if not norm > 0.0:
            raise ValueError(f"reset: base_quat_wxyz {base_quat_wxyz} is not a rotation")
        orn = (x / norm, y / norm, z / norm, w / norm)
        pos_i, orn_i = p.multiplyTransforms(
            [float(c) for c in base_pos_m], orn, self._root_inertial_pos, self._root_inertial_orn
        )
        cid, rid = self.client_id, self.robot_id
        p.resetBasePositionAndOrientation(rid, pos_i, orn_i, physicsClientId=cid)
        if base_linvel_world_mps is None and base_angvel_body_radps is None:
            p.resetBaseVelocity(rid, (0.0, 0.0, 0.0), (0.0, 0.0, 0.0), physicsClientId=cid)
        else:
            rot = np.asarray(p.getMatrixFromQuaternion(orn), dtype=np.float64).reshape(3, 3)
            v_origin = np.zeros(3) if base_linvel_world_mps is None else np.asarray(base_linvel_world_mps)
            w_body = np.zeros(3) if base_angvel_body_radps is None else np.asarray(base_angvel_body_radps)
            w_world = rot @ w_body
            v_com = v_origin + np.cross(w_world, rot @ np.asarray(self._root_inertial_pos, dtype=np.float64))
            p.resetBaseVelocity(rid, v_com.tolist(), w_world.tolist(), physicsClientId=cid)
        for j, q, qd in zip(
            self.joint_indices, joint_pos_rad.tolist(), joint_vel_radps.tolist(), strict=True
        ):
            p.resetJointState(rid, j, q, qd, physicsClientId=cid)
        self._tau = np.zeros(n)

    def step(self, joint_target_rad: np.ndarray) -> None:
        """Hold `joint_target_rad` (n_joints,) rad for n_substeps physics steps, PD closed at every one."""
        target = np.asarray(joint_target_rad, dtype=np.float64)
        if target.shape != self._kp.shape:
            raise ValueError(f"step: joint_target_rad has shape {target.shape}, expected {self._kp.shape}")
        cid, rid, idx = self.client_id, self.robot_id, self.joint_indices
        strength = self._strength
        # Plain Python floats: for ~10 joints this is about twice as fast as numpy per substep, and the step
        # loop is what the throughput bench compares with raw stepSimulation.
        gains = [
            (kp * t, kp, kd, lim)
            for t, kp, kd, lim in zip(
                target.tolist(), self._kp_list, self._kd_list, self._lim_list, strict=True
            )
        ]
        get_states, set_control, step_sim = p.getJointStates, p.setJointMotorControlArray, p.stepSimulation
        torque_mode = p.TORQUE_CONTROL
        tau: list[float] = []
        for _ in range(self.n_substeps):
            states = get_states(rid, idx, physicsClientId=cid)
            tau = [
                strength * min(max(kpt - kp * s[0] - kd * s[1], -lim), lim)
                for (kpt, kp, kd, lim), s in zip(gains, states, strict=True)
            ]
            set_control(rid, idx, torque_mode, forces=tau, physicsClientId=cid)
            step_sim(physicsClientId=cid)
        self._tau = np.array(tau, dtype=np.float64)

    def state(self) -> RobotState:
        """The robot's state after the last step/reset (see `RobotState`; root origin, not centre of mass)."""
        cid, rid = self.client_id, self.robot_id
        pos_i, orn_i = p.getBasePositionAndOrientation(rid, physicsClientId=cid)
        lin_i, ang_w = p.getBaseVelocity(rid, physicsClientId=cid)
        pos, orn = p.multiplyTransforms(pos_i, orn_i, *self._root_inertial_inv)
        rot = np.array(p.getMatrixFromQuaternion(orn), dtype=np.float64).reshape(3, 3)
        base_pos = np.array(pos, dtype=np.float64)
        omega = np.array(ang_w, dtype=np.float64)
        # Rigid-body transport from the centre of mass to the root origin.
        linvel = np.array(lin_i, dtype=np.float64) + np.cross(omega, base_pos - np.array(pos_i))

        n = len(self.joint_indices)
        states = p.getJointStates(rid, self.joint_indices, physicsClientId=cid)
        q = np.fromiter((s[0] for s in states), np.float64, n)
        qd = np.fromiter((s[1] for s in states), np.float64, n)

        if len(self._foot_links):
            contacts = p.getContactPoints(bodyA=rid, bodyB=self.ground_id, physicsClientId=cid)
            # Bullet keeps manifold points up to its breaking threshold; count only touching or pushing ones.
            touching = {c[3] for c in contacts if c[8] <= 0.0 or c[9] > 0.0}
            feet = np.array([link in touching for link in self._foot_links.tolist()], dtype=bool)
        else:
            feet = np.zeros(0, dtype=bool)

        sites = np.zeros((len(self._site_links), 3))
        if len(self._site_links):
            frames_pos = np.tile(base_pos, (len(self._site_links), 1))
            frames_rot = np.tile(rot, (len(self._site_links), 1, 1))
            if self._site_nonroot:
                links = [self._site_links[i] for i in self._site_nonroot]
                link_states = p.getLinkStates(rid, links, computeForwardKinematics=1, physicsClientId=cid)
                for i, ls in zip(self._site_nonroot, link_states, strict=True):
                    frames_pos[i] = ls[4]  # URDF link frame (= body frame), not the link's centre of mass
                    frames_rot[i] = np.array(p.getMatrixFromQuaternion(ls[5])).reshape(3, 3)
            sites = frames_pos + np.einsum("nij,nj->ni", frames_rot, self._site_offsets)

        return RobotState(
            base_pos_m=base_pos,
            base_quat_wxyz=np.array([orn[3], orn[0], orn[1], orn[2]], dtype=np.float64),
            base_linvel_world_mps=linvel,
            base_angvel_body_radps=rot.T @ omega,
            joint_pos_rad=q,
            joint_vel_radps=qd,
            joint_torque_nm=self._tau.copy(),
            foot_contact=feet,
            site_pos_world_m=sites,
        )

    def apply_dynamics(self, profile: DynamicsProfile) -> None:
        """Friction, masses, motor strength, damping and gravity := nominal-then-`profile` (idempotent)."""
        validate_dynamics(profile)
        cid, rid = self.client_id, self.robot_id
        for link in self._all_links:
            p.changeDynamics(
                rid,
                link,
                lateralFriction=profile.friction_scale * self._friction_nominal[link],
                physicsClientId=cid,
            )
            mass0 = self._mass_nominal[link]
            if mass0 <= 0.0:
                continue  # the massless root of a fixed-base robot: mass 0 means "static" in Bullet
            mass = profile.mass_scale * mass0
            inertia_scale = profile.mass_scale
            if link == _ROOT and profile.base_mass_offset_kg != 0.0:
                mass += profile.base_mass_offset_kg
                if mass <= 0.0:
                    raise ValueError(
                        f"apply_dynamics: base_mass_offset_kg={profile.base_mass_offset_kg} leaves the root "
                        f"mass {mass} kg <= 0"
                    )
                # The payload is spread like the root's own mass: inertia grows with mass, the CoM stays.
                inertia_scale = mass / mass0
            inertia = [inertia_scale * i for i in self._inertia_nominal[link]]
            p.changeDynamics(rid, link, mass=mass, localInertiaDiagonal=inertia, physicsClientId=cid)
        damping = (
            self._damping_nominal * profile.joint_damping_scale + profile.joint_damping_offset_nm_s_per_rad
        )
        if np.any(damping < 0.0):
            raise ValueError(f"apply_dynamics: joint damping {damping} must stay >= 0 after the offset")
        for j, d in zip(self.joint_indices, damping.tolist(), strict=True):
            p.changeDynamics(rid, j, jointDamping=d, physicsClientId=cid)
        self._strength = float(profile.motor_strength_scale)
        self._limit = self._strength * self._limit_nominal
        p.setGravity(*profile.gravity_mps2, physicsClientId=cid)

    @property
    def torque_limit_nm(self) -> np.ndarray:
        """(n_joints,) N m: the effective torque limit, motor_strength_scale * nominal limit."""
        return self._limit.copy()

    def set_marker(self, pos_world_m: np.ndarray) -> None:
        """Move the visual-only target sphere (robots with an "ee" site); a no-op otherwise."""
        if self.marker_id is None:
            return
        p.resetBasePositionAndOrientation(
            self.marker_id,
            [float(c) for c in pos_world_m],
            (0.0, 0.0, 0.0, 1.0),
            physicsClientId=self.client_id,
        )

    def render_rgb(self, width: int, height: int) -> np.ndarray:
        """An (height, width, 3) uint8 image from a camera orbiting the root (CPU tiny renderer, headless)."""
        cid = self.client_id
        target, _ = p.getBasePositionAndOrientation(self.robot_id, physicsClientId=cid)
        view = p.computeViewMatrixFromYawPitchRoll(
            cameraTargetPosition=target,
            distance=1.5,
            yaw=45.0,
            pitch=-25.0,
            roll=0.0,
            upAxisIndex=2,
            physicsClientId=cid,
        )
        proj = p.computeProjectionMatrixFOV(
            fov=60.0, aspect=width / height, nearVal=0.05, farVal=20.0, physicsClientId=cid
        )
        _, _, rgba, _, _ = p.getCameraImage(
            width, height, view, proj, renderer=p.ER_TINY_RENDERER, physicsClientId=cid
        )
        return np.asarray(rgba, dtype=np.uint8).reshape(height, width, 4)[:, :, :3].copy()

    def close(self) -> None:
        """Disconnect the private client (safe to call twice)."""
        if not self._closed:
            self._closed = True
            p.disconnect(physicsClientId=self.client_id)


def _known(robot: RobotModel, geom_link: dict[str, int], geom: str) -> str:
    if geom not in geom_link:
        raise ValueError(f"{robot.name}: foot geom {geom!r} is not a geom of any body")
    return geom


def _known_body(robot: RobotModel, body: str) -> str:
    robot.body(body)  # raises KeyError naming the bodies
    return body
