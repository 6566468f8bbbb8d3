"""Tasks: what an episode asks of the robot (commands, observation, reward, termination).

A task is backend-neutral: it reads only `RobotState` (SI units) and the clean last action. Each task
publishes its observation layout as (name, unit) per element and a noise group per element, which
`sim.env.RobotEnv` uses to apply the profile's sensor noise ("" = noiseless, e.g. commands and the last
action).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from sim import quat
from sim.backends.base import RobotState
from sim.robots.model import RobotModel

Layout = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class InitialState:
    """Where an episode starts: root pose (world) and joint state, RobotModel joint order."""

    base_pos_m: np.ndarray  # (3,)
    base_quat_wxyz: np.ndarray  # (4,)
    joint_pos_rad: np.ndarray  # (n_joints,)
    joint_vel_radps: np.ndarray  # (n_joints,)


class Task(Protocol):
    obs_layout: Layout  # (name, unit) per observation element
    obs_groups: tuple[str, ...]  # sensor-noise group per element ("" = no noise)
    max_episode_steps: int

    def reset(self, rng: np.random.Generator, options: dict[str, Any] | None) -> InitialState:
        """Sample the episode (command / target) and the initial state."""
        ...

    def observe(self, st: RobotState, action: np.ndarray) -> np.ndarray:
        """(obs_dim,) float32 clean observation; `action` (n_joints,) is the last clean action."""
        ...

    def reward(
        self, st: RobotState, action: np.ndarray, prev_action: np.ndarray
    ) -> tuple[float, bool, dict[str, float]]:
        """(reward, terminated, physical quantities for `info`) after a step with `action`."""
        ...

    def marker(self) -> np.ndarray | None:
        """World position (3,) of the visual target marker, if the task has one."""
        ...


def _joint_layout(robot: RobotModel, what: str, unit: str, suffix: str) -> Layout:
    return tuple((f"{what}_{n}_{suffix}", unit) for n in robot.joint_names)


def action_layout(robot: RobotModel) -> Layout:
    """One element per actuated joint: normalised offset from the default pose (x action_scale_rad -> rad)."""
    return tuple((f"action_{n}", "1") for n in robot.joint_names)


def _jitter_joints(robot: RobotModel, rng: np.random.Generator, amp_rad: float) -> np.ndarray:
    q0 = np.asarray(robot.default_joint_pos_rad, dtype=np.float64)
    lo = np.array([j.range_rad[0] for j in robot.joints])
    hi = np.array([j.range_rad[1] for j in robot.joints])
    return np.clip(q0 + rng.uniform(-amp_rad, amp_rad, size=q0.shape), lo, hi)


class ForwardVelocityTask:
    """Quadruped: track a forward velocity command (m/s, body x) while staying upright.

    Observation (34,) for 8 joints: base linear velocity in the body frame (3, m/s), gyro (3, rad/s),
    projected gravity unit vector in the body frame (3), command (1, m/s), joint_pos - default (8, rad),
    joint_vel (8, rad/s), last action (8).

    Reward per control step (legged_gym style, unscaled by dt):
        exp(-(vx - cmd)^2 / 0.25) + 0.5 exp(-wz^2 / 0.25)
        - 0.5 vy^2 - 1.0 vz^2 - 0.05 (wx^2 + wy^2) - 1.0 (gx^2 + gy^2) - 2e-4 |tau|^2 - 0.01 |a - a_prev|^2
    where g is the projected gravity unit vector (gx^2 + gy^2 = sin^2 of the tilt).
    Standing still at cmd = 0.65 m/s earns about 0.18 + 0.5 = 0.68; tracking perfectly about 1.5.
    Terminated when the torso tilts past 60 deg or its origin drops below 0.15 m.
    """

    def __init__(
        self,
        robot: RobotModel,
        command_range_mps: tuple[float, float] = (0.3, 1.0),
        command_mps: float | None = None,
        max_episode_steps: int = 1000,
        min_base_height_m: float = 0.15,
        max_tilt_rad: float = math.radians(60.0),
    ) -> None:
        if not robot.floating_base:
            raise ValueError(f"ForwardVelocityTask needs a floating-base robot, got {robot.name!r}")
        lo, hi = command_range_mps
        if not lo <= hi:
            raise ValueError(f"command_range_mps: expected lo <= hi, got {command_range_mps}")
        if max_episode_steps < 1:
            raise ValueError(f"max_episode_steps: expected >= 1, got {max_episode_steps}")
        self.robot = robot
        self.command_range_mps = (float(lo), float(hi))
        self.fixed_command_mps = command_mps
        self.max_episode_steps = max_episode_steps
        self.min_base_height_m = min_base_height_m
        self._min_up = -math.cos(max_tilt_rad)  # projected gravity z must stay below this
        self.command_mps = float(lo)
        n = len(robot.joints)
        self.obs_layout: Layout = (
            ("base_linvel_x_mps", "m/s"),
            ("base_linvel_y_mps", "m/s"),
            ("base_linvel_z_mps", "m/s"),
            ("gyro_x_radps", "rad/s"),
            ("gyro_y_radps", "rad/s"),
            ("gyro_z_radps", "rad/s"),
            ("projected_gravity_x", "1"),
            ("projected_gravity_y", "1"),
            ("projected_gravity_z", "1"),
            ("command_vx_mps", "m/s"),
            *_joint_layout(robot, "joint_pos", "rad", "rad"),
            *_joint_layout(robot, "joint_vel", "rad/s", "radps"),
            *tuple((f"last_{name}", unit) for name, unit in action_layout(robot)),
        )
        self.obs_groups = (
            ("linvel",) * 3
            + ("gyro",) * 3
            + ("gravity",) * 3
            + ("",)
            + (("joint_pos",) * n + ("joint_vel",) * n + ("",) * n)
        )
        self._q0 = np.asarray(robot.default_joint_pos_rad, dtype=np.float64)
        self._n = n
        self._quat_inv = np.zeros(4)
        self._down = np.array([0.0, 0.0, -1.0])
        # The observation is assembled in one float64 buffer through persistent views (mju_* write straight
        # into it) and cast to float32 once: fewer numpy calls than a concatenate on the env's hot path.
        self._buf = np.zeros(len(self.obs_layout))
        self._v_body = self._buf[0:3]
        self._gyro = self._buf[3:6]
        self._g_body = self._buf[6:9]
        self._q_rel = self._buf[10 : 10 + n]
        self._qd = self._buf[10 + n : 10 + 2 * n]
        self._last_action = self._buf[10 + 2 * n :]

    def set_command(self, command_mps: float) -> None:
        """Set the episode's forward-velocity command (m/s), also in the observation (restoring a state)."""
        self.command_mps = float(command_mps)
        self._buf[9] = self.command_mps

    def reset(self, rng: np.random.Generator, options: dict[str, Any] | None) -> InitialState:
        cmd = (options or {}).get("command_mps", self.fixed_command_mps)
        if cmd is None:
            cmd = rng.uniform(*self.command_range_mps)
        self.command_mps = float(cmd)
        self._buf[9] = self.command_mps
        return InitialState(
            base_pos_m=np.array(self.robot.base_init_pos, dtype=np.float64),
            base_quat_wxyz=np.array([1.0, 0.0, 0.0, 0.0]),
            joint_pos_rad=_jitter_joints(self.robot, rng, 0.05),
            joint_vel_radps=np.zeros(self._n),
        )

    def observe(self, st: RobotState, action: np.ndarray) -> np.ndarray:
        # Body-frame quantities are the world ones rotated by the inverse base orientation.
        quat.neg_quat(self._quat_inv, st.base_quat_wxyz)
        quat.rot_vec_quat(self._v_body, st.base_linvel_world_mps, self._quat_inv)
        quat.rot_vec_quat(self._g_body, self._down, self._quat_inv)
        self._gyro[:] = st.base_angvel_body_radps
        np.subtract(st.joint_pos_rad, self._q0, out=self._q_rel)
        self._qd[:] = st.joint_vel_radps
        self._last_action[:] = action
        return self._buf.astype(np.float32)

    def reward(
        self, st: RobotState, action: np.ndarray, prev_action: np.ndarray
    ) -> tuple[float, bool, dict[str, float]]:
        # Uses the body-frame velocity and gravity computed by the observe() call of the same step.
        vx, vy, vz = self._v_body.tolist()
        wx, wy, wz = st.base_angvel_body_radps.tolist()
        gx, gy, gz = self._g_body.tolist()
        tau = st.joint_torque_nm
        da = action - prev_action
        r_track = math.exp(-((vx - self.command_mps) ** 2) / 0.25)
        reward = (
            r_track
            + 0.5 * math.exp(-(wz**2) / 0.25)
            - 0.5 * vy * vy
            - 1.0 * vz * vz
            - 0.05 * (wx * wx + wy * wy)
            - 1.0 * (gx * gx + gy * gy)  # sin^2(tilt): dense "stay level" signal, falls are rare in 30k steps
            - 2e-4 * quat.dot(tau, tau)  # C dot product: a third of numpy's call overhead
            - 0.01 * float(np.dot(da, da))
        )
        height = st.base_pos_m.item(2)
        terminated = height < self.min_base_height_m or gz > self._min_up
        return (
            reward,
            terminated,
            {
                "base_forward_vel_mps": vx,
                "command_mps": self.command_mps,
                "base_height_m": height,
                "reward_tracking": r_track,
            },
        )

    def marker(self) -> np.ndarray | None:
        return None


def forward_kinematics(robot: RobotModel, joint_pos_rad: np.ndarray) -> dict[str, np.ndarray]:
    """World positions (3,) of every site for a fixed-base robot at `joint_pos_rad` (RobotModel order).

    Pure numpy on the backend-neutral model (bodies carry no rotation; hinges about `axis` at the body
    origin), so targets can be sampled without a simulator.
    """
    q = dict(zip(robot.joint_names, np.asarray(joint_pos_rad, dtype=np.float64), strict=True))
    rot: dict[str, np.ndarray] = {}
    pos: dict[str, np.ndarray] = {}
    for b in robot.bodies:
        if b.parent is None:
            r_parent, p = np.eye(3), np.asarray(robot.base_init_pos, dtype=np.float64)
        else:
            r_parent = rot[b.parent]
            p = pos[b.parent] + r_parent @ np.asarray(b.pos)
        r = r_parent
        if b.joint is not None:
            mat = np.zeros(9)
            q_joint = np.zeros(4)  # not `quat`: that name is the sim.quat module
            quat.axis_angle_to_quat(q_joint, np.asarray(b.joint.axis, dtype=np.float64), q[b.joint.name])
            quat.quat_to_mat(mat, q_joint)
            r = r_parent @ mat.reshape(3, 3)
        rot[b.name], pos[b.name] = r, p
    return {s.name: pos[s.body] + rot[s.body] @ np.asarray(s.pos) for s in robot.sites}


class ReachTask:
    """Manipulator: bring the "ee" site to a target sampled in the reachable workspace each episode.

    Targets are the FK of joint angles drawn uniformly from a sub-box of the joint ranges (so every target is
    reachable), rejected below 5 cm height. Observation (21,) for 4 joints: joint_pos - default (4, rad),
    joint_vel (4, rad/s), ee position (3, m), target (3, m), target - ee (3, m), last action (4).
    Reward: -|target - ee| (m) + 1 within 2 cm - 0.01 |a - a_prev|^2. Never terminates; truncated at
    `max_episode_steps` (200 by default).
    """

    TARGET_JOINT_BOX_RAD = ((-1.5, 1.5), (-0.3, 1.2), (0.2, 1.8), (-0.5, 1.0))

    def __init__(
        self, robot: RobotModel, max_episode_steps: int = 200, success_radius_m: float = 0.02
    ) -> None:
        if robot.floating_base or not any(s.name == "ee" for s in robot.sites):
            raise ValueError(f"ReachTask needs a fixed-base robot with an 'ee' site, got {robot.name!r}")
        if len(robot.joints) != len(self.TARGET_JOINT_BOX_RAD):
            raise ValueError(f"ReachTask target box is for 4 joints, {robot.name!r} has {len(robot.joints)}")
        if max_episode_steps < 1:
            raise ValueError(f"max_episode_steps: expected >= 1, got {max_episode_steps}")
        self.robot = robot
        self.max_episode_steps = max_episode_steps
        self.success_radius_m = success_radius_m
        self._ee = [s.name for s in robot.sites].index("ee")
        n = len(robot.joints)
        self._n = n
        self.target_m = np.array([0.3, 0.0, 0.3])
        self.obs_layout: Layout = (
            *_joint_layout(robot, "joint_pos", "rad", "rad"),
            *_joint_layout(robot, "joint_vel", "rad/s", "radps"),
            ("ee_pos_x_m", "m"),
            ("ee_pos_y_m", "m"),
            ("ee_pos_z_m", "m"),
            ("target_pos_x_m", "m"),
            ("target_pos_y_m", "m"),
            ("target_pos_z_m", "m"),
            ("target_minus_ee_x_m", "m"),
            ("target_minus_ee_y_m", "m"),
            ("target_minus_ee_z_m", "m"),
            *tuple((f"last_{name}", unit) for name, unit in action_layout(robot)),
        )
        # target - ee is a difference of a known target and a measured ee position: it carries the ee noise.
        self.obs_groups = (
            ("joint_pos",) * n
            + ("joint_vel",) * n
            + ("ee_pos",) * 3
            + ("",) * 3
            + (("ee_pos",) * 3 + ("",) * n)
        )
        self._q0 = np.asarray(robot.default_joint_pos_rad, dtype=np.float64)
        self._err = np.zeros(3)

    def sample_target(self, rng: np.random.Generator) -> np.ndarray:
        box = np.array(self.TARGET_JOINT_BOX_RAD)
        for _ in range(100):
            q = rng.uniform(box[:, 0], box[:, 1])
            p = forward_kinematics(self.robot, q)["ee"]
            if p[2] >= 0.05:
                return p
        raise RuntimeError("could not sample a reach target above 5 cm in 100 tries")

    def reset(self, rng: np.random.Generator, options: dict[str, Any] | None) -> InitialState:
        target = (options or {}).get("target_m")
        self.target_m = (
            self.sample_target(rng) if target is None else np.asarray(target, dtype=np.float64).reshape(3)
        )
        return InitialState(
            base_pos_m=np.array(self.robot.base_init_pos, dtype=np.float64),
            base_quat_wxyz=np.array([1.0, 0.0, 0.0, 0.0]),
            joint_pos_rad=_jitter_joints(self.robot, rng, 0.05),
            joint_vel_radps=np.zeros(self._n),
        )

    def observe(self, st: RobotState, action: np.ndarray) -> np.ndarray:
        ee = st.site_pos_world_m[self._ee]
        np.subtract(self.target_m, ee, out=self._err)
        return np.concatenate(
            (st.joint_pos_rad - self._q0, st.joint_vel_radps, ee, self.target_m, self._err, action),
            dtype=np.float32,
        )

    def reward(
        self, st: RobotState, action: np.ndarray, prev_action: np.ndarray
    ) -> tuple[float, bool, dict[str, float]]:
        # Uses the target - ee error computed by the observe() call of the same step.
        dist = float(np.sqrt(self._err @ self._err))
        da = action - prev_action
        reward = -dist + (1.0 if dist < self.success_radius_m else 0.0) - 0.01 * float(da @ da)
        return reward, False, {"ee_distance_m": dist}

    def marker(self) -> np.ndarray | None:
        return self.target_m


def default_task(robot: RobotModel, **kwargs: Any) -> Task:
    """ForwardVelocityTask for floating-base robots, ReachTask for fixed-base arms."""
    if robot.floating_base:
        return ForwardVelocityTask(robot, **kwargs)
    return ReachTask(robot, **kwargs)
