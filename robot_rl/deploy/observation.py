"""`ObservationBuilder`: the policy's observation and the task's reward from the bridge's `JointState`.

One piece of code for both consumers of the real robot's state: `robot_rl.envs.real_robot.RealRobotEnv`
(training-time evaluation and recording, a Gymnasium env) and `robot_rl.deploy.runner.DeployRunner` (the
onboard runner). The simulated env (`sim.env.RobotEnv`) uses the same task and estimator on its own
readings, so a policy sees one observation pipeline on every side.

Per control step, on the JointState behind the new observation:

    update(js)                      LegOdometry advanced by the firmware-clock time since the previous one
    obs = observe(js, last_action)  task.observe on the RobotState rebuilt from js   (obs_dim,) float32
    r, fell, q = reward(a, a_prev)  task.reward on that same state (call observe first: the task reuses the
                                    body-frame transforms of its observe call)

What the real robot cannot measure (see RealRobotEnv's docstring): the base linear velocity is the
leg-odometry estimate (reset to 0 at `reset`, when the robot is at rest); the base height is NaN, so the
fall termination is the tilt only.

Actions: the policy's normalised action `a` in [-1, 1] maps to joint targets `q_default + action_scale * a`
(rad); `action_from_target` is the inverse, clipped to [-1, 1] (what the observation's last-action block and
the logs hold).

Imports numpy and the numpy-only parts of `sim` (robots, tasks, estimator, quat); no MuJoCo, no Gymnasium.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from sim.backends.base import RobotState
from sim.estimator import LegOdometry
from sim.robots.model import RobotModel
from sim.tasks import Task, action_layout

if TYPE_CHECKING:
    from robot_rl.bus.messages import JointState

US_WRAP = 1 << 32
"""JointState.t_us is the firmware clock modulo 2^32 microseconds."""
ODOMETRY_RESTART_S = 0.5
"""A gap between two observed states longer than this (firmware restart, stall) restarts the estimate."""


class ObservationBuilder:
    """Observation, reward and action conversions of `task` for a floating-base `robot` on the real robot.

    robot: a floating-base RobotModel (the quadruped); ValueError otherwise (no estimator for arms yet).
    task:  the task whose `obs_layout`, `observe` and `reward` define the policy's interface.
    """

    def __init__(self, robot: RobotModel, task: Task) -> None:
        if not robot.floating_base:
            raise ValueError(f"the real-robot observation supports floating-base robots, got {robot.name!r}")
        self.robot = robot
        self.task = task
        self.obs_names: tuple[str, ...] = tuple(name for name, _ in task.obs_layout)
        self.obs_units: tuple[str, ...] = tuple(unit for _, unit in task.obs_layout)
        actions = action_layout(robot)
        self.action_names: tuple[str, ...] = tuple(name for name, _ in actions)
        self.action_units: tuple[str, ...] = tuple(unit for _, unit in actions)
        self.q_default = np.asarray(robot.default_joint_pos_rad, dtype=np.float64)
        """(n_joints,) default pose, rad."""
        self.action_scale_rad = float(robot.action_scale_rad)
        self.odometry = LegOdometry(robot)
        """The base-velocity estimator (the simulated env's, on the firmware's readings)."""
        self._t_us = 0  # firmware time of the state behind the current observation
        self._state: RobotState | None = None

    @property
    def n_joints(self) -> int:
        return len(self.q_default)

    @property
    def obs_dim(self) -> int:
        return len(self.obs_names)

    # --- state ---------------------------------------------------------------------------------------------
    def reset(self, js: JointState) -> None:
        """Start the velocity estimate from rest at the state `js` (the robot stands still)."""
        self.odometry.reset()
        self._t_us = int(js.t_us)
        self._state = None

    def update(self, js: JointState) -> None:
        """Advance the velocity estimate to `js`, the state behind a new observation (once a control step)."""
        dt = ((js.t_us - self._t_us) % US_WRAP) * 1e-6
        self._t_us = int(js.t_us)
        if dt > ODOMETRY_RESTART_S:  # firmware restart or a long gap: start over from rest
            self.odometry.reset()
            return
        self.odometry.update(
            np.asarray(js.quat_wxyz, dtype=np.float64),
            np.asarray(js.gyro_radps, dtype=np.float64),
            np.asarray(js.joint_pos_rad, dtype=np.float64),
            np.asarray(js.joint_vel_radps, dtype=np.float64),
            np.asarray(js.foot_contact, dtype=np.bool_),
            dt,
        )

    def robot_state(self, js: JointState) -> RobotState:
        """The task's `RobotState` of `js`, with the current velocity estimate and an unknown (NaN) height."""
        return RobotState(
            # Height is not measured on the real robot: NaN keeps the task's height check from firing.
            base_pos_m=np.array([0.0, 0.0, math.nan]),
            base_quat_wxyz=np.asarray(js.quat_wxyz, dtype=np.float64),
            base_linvel_world_mps=self.odometry.v_world.copy(),
            base_angvel_body_radps=np.asarray(js.gyro_radps, dtype=np.float64),
            joint_pos_rad=np.asarray(js.joint_pos_rad, dtype=np.float64),
            joint_vel_radps=np.asarray(js.joint_vel_radps, dtype=np.float64),
            joint_torque_nm=np.asarray(js.joint_torque_nm, dtype=np.float64),
            foot_contact=np.asarray(js.foot_contact, dtype=np.bool_),
            site_pos_world_m=np.zeros((0, 3)),
        )

    def observe(self, js: JointState, last_action: np.ndarray) -> np.ndarray:
        """(obs_dim,) float32 observation of `js`; `last_action` (n_joints,) is the previous clean action."""
        self._state = self.robot_state(js)
        return self.task.observe(self._state, last_action)

    def reward(self, action: np.ndarray, prev_action: np.ndarray) -> tuple[float, bool, dict[str, float]]:
        """(reward, terminated, quantities) of the step that led to the last `observe`d state.

        `action` is the clean action of that step, `prev_action` the one before it (both (n_joints,)).
        """
        if self._state is None:
            raise RuntimeError("reward() needs the state of an observe() call first")
        reward, terminated, quantities = self.task.reward(self._state, action, prev_action)
        return float(reward), bool(terminated), quantities

    # --- actions -------------------------------------------------------------------------------------------
    def target_from_action(self, action: np.ndarray) -> np.ndarray:
        """(n_joints,) float64 joint targets, rad, for a normalised action (clipped to [-1, 1] first)."""
        a = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
        target: np.ndarray = self.q_default + self.action_scale_rad * a
        return target

    def action_from_target(self, q_target_rad: np.ndarray) -> np.ndarray:
        """(n_joints,) float32 normalised action in [-1, 1] of joint targets `q_target_rad` (rad)."""
        a = (np.asarray(q_target_rad, dtype=np.float64) - self.q_default) / self.action_scale_rad
        out: np.ndarray = np.clip(a, -1.0, 1.0).astype(np.float32)
        return out
