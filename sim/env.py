"""`RobotEnv`: one robot + one physics backend + a gap profile + a task, as a Gymnasium environment.

Per control step (50 Hz for the shipped robots):
    a_clean   = clip(action, -1, 1)                                 reported as info["action_sent"]
    a_noisy   = clip(a_clean + N(0, action_noise_std), -1, 1)       profile [actuation]
    q_target  = q_default + action_scale_rad * a_noisy              (n_joints,) rad
    q_applied = q_target from `latency_steps` control steps ago     FIFO, primed with q_default at reset
    backend.step(q_applied)                                         PD closed at every physics substep
    state.base_linvel_world_mps = LegOdometry estimate               floating base (sim/estimator.py)
    obs       = task.observe(state, a_clean) + N(0, std_group)      profile [sensors], per element group
The torso's linear velocity is not a sensor reading on a robot: observation and reward use the same
leg-kinematics estimate as `robot_rl.envs.real_robot.RealRobotEnv`, never the simulator's true velocity.
Spaces: action Box([-1, 1]^n_joints, float32); observation Box(-inf, inf, (obs_dim,), float32).
Episodes are truncated (never terminated) at the task's `max_episode_steps`; terminated only by the task's
failure condition (the quadruped falling).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, replace
from typing import Any

import gymnasium as gym
import numpy as np

from sim.backends import make_backend
from sim.backends.base import PhysicsBackend, RobotState
from sim.estimator import LegOdometry
from sim.profile import GapProfile, load_profile
from sim.robots import get_robot
from sim.robots.model import RobotModel
from sim.tasks import Task, action_layout, default_task


@dataclass(frozen=True)
class EnvLayout:
    """Spaces and named layouts of a robot doing a task; simulated and real environments both take theirs from
    `env_layout`, so they cannot drift apart.

    obs_names, obs_units:       (obs_dim,) per observation element
    action_names, action_units: (n_joints,) per action element
    action_space:               float32 Box([-1, 1]^n_joints)
    observation_space:          float32 Box, unbounded, (obs_dim,)
    """

    obs_names: tuple[str, ...]
    obs_units: tuple[str, ...]
    action_names: tuple[str, ...]
    action_units: tuple[str, ...]
    action_space: gym.spaces.Box
    observation_space: gym.spaces.Box


def env_layout(robot: RobotModel, task: Task) -> EnvLayout:
    actions = action_layout(robot)
    return EnvLayout(
        obs_names=tuple(name for name, _ in task.obs_layout),
        obs_units=tuple(unit for _, unit in task.obs_layout),
        action_names=tuple(name for name, _ in actions),
        action_units=tuple(unit for _, unit in actions),
        action_space=gym.spaces.Box(-1.0, 1.0, shape=(len(robot.joints),), dtype=np.float32),
        observation_space=gym.spaces.Box(-np.inf, np.inf, shape=(len(task.obs_layout),), dtype=np.float32),
    )


class RobotEnv(gym.Env[np.ndarray, np.ndarray]):
    """Gymnasium environment: `robot` simulated by `backend` under gap `profile` (see the module docstring).

    robot:   a RobotModel or a name in `sim.robots.ROBOTS`
    backend: "mujoco" | "dmcontrol" | "pybullet"
    profile: a GapProfile, a shipped profile name ("nominal", "example_gap") or a path to a TOML file
    task:    a Task; by default ForwardVelocityTask (floating base) or ReachTask (fixed base), built with
             `task_kwargs` (e.g. command_mps=0.5, max_episode_steps=500)
    """

    # gymnasium.Env declares `metadata` as an instance-level annotation, hence no ClassVar here.
    metadata: dict[str, Any] = {"render_modes": ["rgb_array"], "render_fps": 50}  # noqa: RUF012

    def __init__(
        self,
        robot: RobotModel | str = "quadruped",
        backend: str = "mujoco",
        profile: GapProfile | str = "nominal",
        task: Task | None = None,
        render_mode: str | None = None,
        render_size: tuple[int, int] = (480, 640),
        **task_kwargs: Any,
    ) -> None:
        super().__init__()
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode {render_mode!r}; valid choices: {self.metadata['render_modes']}")
        self.robot = get_robot(robot) if isinstance(robot, str) else robot
        self.profile = load_profile(profile) if isinstance(profile, str) else profile
        self.backend: PhysicsBackend = make_backend(backend, self.robot)
        self.backend.apply_dynamics(self.profile.dynamics)
        self.task: Task = task if task is not None else default_task(self.robot, **task_kwargs)
        self.render_mode = render_mode
        self.render_size = render_size

        n = len(self.robot.joints)
        lay = env_layout(self.robot, self.task)
        self.obs_names, self.obs_units = lay.obs_names, lay.obs_units
        self.action_names, self.action_units = lay.action_names, lay.action_units
        self.action_space, self.observation_space = lay.action_space, lay.observation_space
        self.max_episode_steps = self.task.max_episode_steps

        self._q_default = np.asarray(self.robot.default_joint_pos_rad, dtype=np.float64)
        self._action_scale = float(self.robot.action_scale_rad)
        self._action_noise_std = float(self.profile.action_noise_std)
        self._latency = int(self.profile.latency_steps)
        self._fifo: deque[np.ndarray] = deque()
        noise = self.profile.sensor_noise()
        unknown = sorted({g for g in self.task.obs_groups if g and g not in noise})
        if unknown or len(self.task.obs_groups) != len(self.obs_names):
            raise ValueError(f"task obs_groups invalid: unknown groups {unknown}; valid: {sorted(noise)}")
        self._obs_noise_std = np.array(
            [noise[g] if g else 0.0 for g in self.task.obs_groups], dtype=np.float32
        )
        self._has_obs_noise = bool(self._obs_noise_std.any())
        self._prev_action = np.zeros(n, dtype=np.float32)
        self._t = 0
        self._dt = float(self.robot.control_dt_s)
        self.odometry: LegOdometry | None = (
            LegOdometry(self.robot) if self.robot.floating_base and self.robot.foot_geoms else None
        )
        """The base-velocity estimator behind the observation and reward (None for a fixed base)."""
        # Bound methods looked up once: the step path runs ~10k times/s and each lookup shows at that rate.
        self._backend_step = self.backend.step
        self._backend_state = self.backend.state
        self._observe = self.task.observe
        self._reward = self.task.reward

    # --- live simulator handles (MuJoCo / dm_control backends) --------------------------------------------
    @property
    def model(self) -> Any:
        """The backend's compiled `mujoco.MjModel` (in-place edits change the dynamics)."""
        return self.backend.model  # type: ignore[attr-defined]

    @property
    def data(self) -> Any:
        """The backend's `mujoco.MjData`."""
        return self.backend.data  # type: ignore[attr-defined]

    @property
    def n_substeps(self) -> int:
        """Physics steps per control step."""
        return self.backend.n_substeps

    # --- Gymnasium API -------------------------------------------------------------------------------------
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        init = self.task.reset(self.np_random, options)
        self.backend.reset(init.base_pos_m, init.base_quat_wxyz, init.joint_pos_rad, init.joint_vel_radps)
        marker = self.task.marker()
        if marker is not None:
            self.backend.set_marker(marker)
        self._fifo = deque(self._q_default.copy() for _ in range(self._latency))
        self._prev_action = np.zeros(len(self._q_default), dtype=np.float32)
        self._t = 0
        st = self.backend.state()
        if self.odometry is not None:
            self.odometry.reset()  # an episode starts at rest
            st = replace(st, base_linvel_world_mps=self.odometry.v_world.copy())
        obs = self._noisy(self.task.observe(st, self._prev_action))
        return obs, {"action_sent": self._prev_action.copy()}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        # minimum/maximum rather than np.clip: same result, a third of np.clip's call overhead on 8 floats.
        a_clean = np.minimum(np.maximum(np.asarray(action, dtype=np.float32), -1.0), 1.0)
        if self._action_noise_std > 0.0:
            noise = self._action_noise_std * self.np_random.standard_normal(a_clean.shape, dtype=np.float32)
            a_cmd = np.minimum(np.maximum(a_clean + noise, -1.0), 1.0)
        else:
            a_cmd = a_clean
        q_target = self._q_default + self._action_scale * a_cmd
        if self._latency:
            self._fifo.append(q_target)
            q_target = self._fifo.popleft()
        self._backend_step(q_target)
        st = self._backend_state()
        if self.odometry is not None:
            st = self._estimated(st)
        obs = self._observe(st, a_clean)  # before reward(): tasks reuse frame transforms from observe()
        reward, terminated, quantities = self._reward(st, a_clean, self._prev_action)
        if self._has_obs_noise:
            obs = self._noisy(obs)
        self._prev_action = a_clean
        self._t += 1
        truncated = self._t >= self.max_episode_steps and not terminated
        info: dict[str, Any] = {"action_sent": a_clean.copy(), **quantities}
        return obs, reward, terminated, truncated, info

    # --- state above the physics (checkpoints) -------------------------------------------------------------
    def get_state(self) -> dict[str, Any]:
        """Everything this env carries between two steps apart from the physics engine's own state: the random
        generator (action and sensor noise, the next episode's sample), the latency FIFO, the last action, the
        step count, the velocity estimate and the task's episode sample (command or reach target). Plain
        numbers and arrays. With the backend's state (e.g. MuJoCo's mj_getState) a restored env continues
        bit for bit (robot_rl/runners/sim_collect.py)."""
        task: Any = self.task
        kind = type(task).__name__
        if kind == "ForwardVelocityTask":
            task_state: dict[str, Any] = {"kind": kind, "command_mps": float(task.command_mps)}
        elif kind == "ReachTask":
            task_state = {"kind": kind, "target_m": np.array(task.target_m, dtype=np.float64)}
        else:
            raise NotImplementedError(f"get_state: task {kind} has no state accessor")
        n = len(self.robot.joints)
        return {
            "np_random": self.np_random.bit_generator.state,
            "fifo": np.array(list(self._fifo), dtype=np.float64).reshape(len(self._fifo), n),
            "prev_action": np.array(self._prev_action, dtype=np.float32),
            "t": int(self._t),
            "odometry_v_world": (
                np.zeros(3) if self.odometry is None else np.array(self.odometry.v_world, dtype=np.float64)
            ),
            "task": task_state,
        }

    def set_state(self, state: dict[str, Any]) -> None:
        """Restore `get_state()` of an env with the same robot, profile and task (else ValueError)."""
        task: Any = self.task
        saved = state["task"]
        if saved["kind"] != type(task).__name__:
            raise ValueError(f"env state is for task {saved['kind']}, this env runs {type(task).__name__}")
        self.np_random.bit_generator.state = state["np_random"]
        self._fifo = deque(np.array(row, dtype=np.float64) for row in np.asarray(state["fifo"]))
        self._prev_action = np.array(state["prev_action"], dtype=np.float32)
        self._t = int(state["t"])
        if self.odometry is not None:
            self.odometry.reset(np.asarray(state["odometry_v_world"], dtype=np.float64))
        if saved["kind"] == "ForwardVelocityTask":
            task.set_command(float(saved["command_mps"]))
        else:
            task.target_m = np.array(saved["target_m"], dtype=np.float64)
            marker = task.marker()
            if marker is not None:
                self.backend.set_marker(marker)

    def _estimated(self, st: RobotState) -> RobotState:
        assert self.odometry is not None
        v = self.odometry.update(
            st.base_quat_wxyz,
            st.base_angvel_body_radps,
            st.joint_pos_rad,
            st.joint_vel_radps,
            st.foot_contact,
            self._dt,
        )
        return replace(st, base_linvel_world_mps=v.copy())

    def _noisy(self, obs: np.ndarray) -> np.ndarray:
        if not self._has_obs_noise:
            return obs
        noise = self.np_random.standard_normal(obs.shape, dtype=np.float32)
        noisy: np.ndarray = obs + noise * self._obs_noise_std
        return noisy

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        height, width = self.render_size
        return self.backend.render_rgb(width, height)

    def close(self) -> None:
        self.backend.close()


def _make(robot: str, backend: str, profile: GapProfile | str, **kwargs: Any) -> RobotEnv:
    return RobotEnv(robot=robot, backend=backend, profile=profile, **kwargs)


def make_quadruped(backend: str = "mujoco", profile: GapProfile | str = "nominal", **kwargs: Any) -> RobotEnv:
    """Gymnasium entry point of `robot_rl/Quadruped-v0`."""
    return _make("quadruped", backend, profile, **kwargs)


def make_manipulator(
    backend: str = "mujoco", profile: GapProfile | str = "nominal", **kwargs: Any
) -> RobotEnv:
    """Gymnasium entry point of `robot_rl/Manipulator-v0`."""
    return _make("manipulator", backend, profile, **kwargs)
