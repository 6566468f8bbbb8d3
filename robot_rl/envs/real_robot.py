"""`RealRobotEnv`: the robot behind the firmware bridge, as a Gymnasium environment over the bus.

Same observation and action layout, and the same reward, as the simulated `sim.env.RobotEnv` with its default
task (`sim.tasks.ForwardVelocityTask` for the quadruped): the task object itself computes the observation,
the reward and the fall termination, from a `RobotState` rebuilt out of each `JointState` by
`robot_rl.deploy.observation.ObservationBuilder`, the same code the onboard deploy runner uses.

Links (docs/bus.md, bridge section): SUB on the obs link (`obs/<robot>` JointState at the firmware's sensor
rate, 100 Hz plus one reply per applied command; `command_sent/<robot>` CommandSent), PUB on the CONFLATE
command link (JointTarget, single-part), DEALER to the bridge's control ROUTER (`reset`, `clear_fault`).

Per control step (the robot's control_dt_s, 20 ms for the quadruped):
    a        = clip(action, -1, 1)
    q_target = q_default + action_scale_rad * a          sent as one JointTarget (rad)
    wait for the first JointState whose firmware time is >= control_dt_s - sensor_period/2 after the one
    behind the previous observation (paced by the sensor stream: no sleep, no busy wait), then take the
    newest one queued
    obs, reward, terminated = task.observe / task.reward on that state (same code as the simulator)
    info["action_sent"] = (CommandSent.q_rad - q_default) / action_scale_rad, clipped to [-1, 1]: what the
    bridge actually sent after its safety clamp (the clean action if no CommandSent arrived in time)

What the real robot cannot measure:
- Base linear velocity: no sensor. Estimated from leg kinematics (`sim.estimator.LegOdometry`: stance feet
  taken as still, joint angles and velocities, gyro, IMU orientation, foot contacts) once per control step,
  from the state behind each observation; reset to 0 at each reset, when the robot is at rest. The
  simulated env runs the same estimator on its own readings, so both sides observe (and are rewarded on)
  the same estimate, never a true velocity.
- Base height: unknown, reported as NaN (`info["base_height_m"]`); so the fall termination is the tilt
  only (projected gravity past 60 deg), not the task's 0.15 m height floor.

Episodes end: terminated on a fall (tilt), truncated at `max_episode_steps`, and truncated early when the
firmware latches a fault (watchdog, e-stop, bad command: `info["faults"]` != 0), since no further
command reaches the motors.

Reset: `reset` request to the bridge (RESET_REQUEST; the emulator puts the robot back in its start pose, real
firmware answers UNSUPPORTED and the operator is expected to have set the robot down: logged, not an
error), then `clear_fault` if a fault is latched (the watchdog always has tripped between episodes), then
the default pose is commanded at the control rate for `reset_hold_s` (keeping the firmware watchdog fed),
then the first observation. The forward-velocity command is sampled per episode by the task, as in sim.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import gymnasium as gym
import numpy as np

from robot_rl.deploy.observation import US_WRAP, ObservationBuilder
from sim.env import env_layout
from sim.estimator import LegOdometry
from sim.robots import get_robot
from sim.robots.model import RobotModel
from sim.tasks import Task, default_task

log = logging.getLogger(__name__)

RESET_ATTEMPTS = 3
"""Holds of the default pose a reset tries before it reports a fault that keeps latching."""

SENSOR_PERIOD_S = 0.01  # the firmware's SENSOR_STATE period (docs/serial-protocol.md); pacing tolerance only
COMMAND_SENT_PREFIX = b"command_sent/"  # firmware_bridge.bridge.command_sent_topic, without importing it


class BridgeUnavailable(RuntimeError):
    """No state from the bridge in time, or a control request it could not carry out."""


def default_bus() -> str:
    """The bridge's default bus base address (run "real"): ipc://<tmp>/rrl-real."""
    import tempfile
    from pathlib import Path

    return f"ipc://{Path(tempfile.gettempdir())}/rrl-real"


class RealRobotEnv(gym.Env[np.ndarray, np.ndarray]):
    """Gymnasium environment for `robot` behind a firmware bridge on bus base address `bus`.

    robot:             robot name in `sim.robots.ROBOTS` (layouts, default pose, action scale, control period)
    bus:               bus base address of the bridge (default: the bridge's run "real" address)
    control_index:     the bridge's control address index (firmware_bridge.bridge.DEFAULT_CONTROL_INDEX)
    reset_hold_s:      time the default pose is held after a reset before the first observation (s)
    state_timeout_s:   longest wait for a JointState before BridgeUnavailable is raised (s)
    task_kwargs:       passed to the task, as for the simulated env (command_mps, max_episode_steps, ...)
    """

    # gymnasium.Env declares `metadata` as an instance-level annotation, hence no ClassVar here.
    metadata: dict[str, Any] = {"render_modes": []}  # noqa: RUF012

    def __init__(
        self,
        robot: str = "quadruped",
        bus: str | None = None,
        *,
        control_index: int = 50,
        reset_hold_s: float = 0.5,
        state_timeout_s: float = 2.0,
        **task_kwargs: Any,
    ) -> None:
        super().__init__()
        from robot_rl.bus.sockets import BusContext, Receiver, Requester, Sender, make_pub, make_sub
        from robot_rl.bus.topics import endpoints_from_base, obs_topic

        self.robot: RobotModel = get_robot(robot)
        if not self.robot.floating_base:
            raise ValueError(f"RealRobotEnv supports floating-base robots (quadruped), got {robot!r}")
        self.task: Task = default_task(self.robot, **task_kwargs)
        self.bus = bus if bus is not None else default_bus()
        n = len(self.robot.joints)
        lay = env_layout(self.robot, self.task)
        self.obs_names, self.obs_units = lay.obs_names, lay.obs_units
        self.action_names, self.action_units = lay.action_names, lay.action_units
        self.action_space, self.observation_space = lay.action_space, lay.observation_space
        self.max_episode_steps = self.task.max_episode_steps
        self.control_dt_s = float(self.robot.control_dt_s)
        self.reset_hold_s = reset_hold_s
        self.state_timeout_s = state_timeout_s
        self.obs_builder = ObservationBuilder(self.robot, self.task)
        """Observation, reward and action conversions (shared with the deploy runner)."""
        self._q_default = self.obs_builder.q_default
        self._action_scale = self.obs_builder.action_scale_rad
        # A state "at the control period" is one at least this long after the previous one: half a sensor
        # period of slack absorbs the firmware clock's jitter without ever skipping to the next-but-one.
        self._min_step_us = int((self.control_dt_s - SENSOR_PERIOD_S / 2) * 1e6)

        ep = endpoints_from_base(self.bus)
        self._state_topic = obs_topic(self.robot.name)
        self._sent_topic = COMMAND_SENT_PREFIX + self.robot.name.encode()
        self._ctx: BusContext | None = BusContext()
        self._obs_rx = Receiver(make_sub(self._ctx, ep.obs, topics=(self._state_topic, self._sent_topic)))
        self._cmd_tx = Sender(make_pub(self._ctx, ep.command, bind=False), "real_env", single_part=True)
        self._control = Requester(self._ctx, ep.control(control_index), "real_env", timeout_s=2.0, attempts=2)

        self._js: Any = None  # the JointState behind the current observation
        self._last_sent: Any = None  # the newest CommandSent seen
        self._prev_action = np.zeros(n, dtype=np.float32)
        self._t = 0
        self.reset_retries = 0  # holds repeated because a fault latched during one (see reset())
        self._needs_reset = True

    # --- bus helpers ---------------------------------------------------------------------------------------
    def _recv(self, timeout_s: float) -> Any:
        """The next JointState (CommandSent ones are kept in `_last_sent` on the way); None on timeout."""
        from robot_rl.bus.messages import CommandSent, JointState

        deadline = time.monotonic() + timeout_s
        while True:
            remaining_ms = max(0, int((deadline - time.monotonic()) * 1000.0))
            decoded = self._obs_rx.recv(remaining_ms)
            if decoded is None:
                return None
            msg = decoded.msg
            if isinstance(msg, CommandSent):
                self._last_sent = msg
            elif isinstance(msg, JointState) and msg.robot == self.robot.name:
                return msg

    def _integrate(self, js: Any) -> None:
        """Take `js` as the newest JointState."""
        self._js = js

    @property
    def odometry(self) -> LegOdometry:
        """The base-velocity estimator (the simulated env's, on the firmware's readings)."""
        return self.obs_builder.odometry

    def _wait_control_period(self) -> Any:
        """The newest JointState at least one control period after the current one (paced by the stream)."""
        ref = self._js
        deadline = time.monotonic() + self.state_timeout_s
        while True:
            js = self._recv(max(0.0, deadline - time.monotonic()))
            if js is None:
                raise BridgeUnavailable(
                    f"no JointState from the bridge on {self.bus} within {self.state_timeout_s:g} s"
                )
            self._integrate(js)
            if ref is None or (js.t_us - ref.t_us) % US_WRAP >= self._min_step_us:
                break
        # Behind the stream (slow policy, scheduler hiccup): catch up to the newest state queued.
        while (newer := self._recv(0.0)) is not None:
            self._integrate(newer)
        return self._js

    def _drain(self) -> None:
        """Drop every queued message: states from before a reset must not feed the estimator."""
        while self._obs_rx.recv(0) is not None:
            pass

    def _send_target(self, q_target: np.ndarray) -> None:
        from robot_rl.bus.messages import JointTarget

        self._cmd_tx.send(
            b"command", JointTarget(robot=self.robot.name, q_target_rad=np.asarray(q_target, np.float64))
        )

    def _request(self, command: str) -> Any:
        reply = self._control.request(command)  # type: ignore[arg-type]
        return reply

    def _sent_action(self, fallback: np.ndarray) -> np.ndarray:
        sent = self._last_sent
        if sent is None:
            return fallback.copy()
        return self.obs_builder.action_from_target(sent.q_rad)

    def _hold_default_pose(self) -> Any:
        """Clear a latched fault, then command the default pose at the control rate for `reset_hold_s`.

        The first command arms the firmware watchdog, so every period until the first step carries one too.
        Returns the last JointState of the hold."""
        self._drain()
        self._js = None
        js = self._wait_control_period()
        if js.faults:
            reply = self._request("clear_fault")
            if not reply.ok:
                raise BridgeUnavailable(f"clear_fault request to the bridge failed: {reply.error}")
            self._drain()
            self._js = None
            self._wait_control_period()
        for _ in range(max(1, round(self.reset_hold_s / self.control_dt_s))):
            self._send_target(self._q_default)
            js = self._wait_control_period()
        return js

    # --- Gymnasium API -------------------------------------------------------------------------------------
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self.task.reset(self.np_random, options)  # samples the episode's command; the start pose is physical
        reply = self._request("reset")
        if not reply.ok:
            if "UNSUPPORTED" in reply.error:
                log.warning("firmware cannot reset itself (real robot): the operator must set it down")
            else:
                raise BridgeUnavailable(f"reset request to the bridge on {self.bus} failed: {reply.error}")
        js = self._hold_default_pose()
        for _ in range(RESET_ATTEMPTS - 1):
            if not js.faults:
                break
            # A command gap longer than the watchdog during the hold (a loaded host) latches damping; the
            # robot is only being set down, so clear it and hold again rather than give up.
            log.warning("fault 0x%02x latched during the reset hold: clearing, holding again", js.faults)
            self.reset_retries += 1
            js = self._hold_default_pose()
        if js.faults:
            raise BridgeUnavailable(
                f"firmware fault 0x{js.faults:02x} latched during the reset hold {RESET_ATTEMPTS} times"
            )
        self.obs_builder.reset(js)  # at rest after the hold: start the velocity estimate from zero
        self._last_sent = None
        self._prev_action = np.zeros(len(self._q_default), dtype=np.float32)
        self._t = 0
        self._needs_reset = False
        obs = self.obs_builder.observe(js, self._prev_action)
        return obs, {"action_sent": self._prev_action.copy(), "faults": int(js.faults)}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self._needs_reset:
            raise RuntimeError("call reset() before step()")
        a_clean = np.clip(np.asarray(action, dtype=np.float32), -1.0, 1.0)
        self._last_sent = None
        self._send_target(self.obs_builder.target_from_action(a_clean))
        js = self._wait_control_period()
        self.obs_builder.update(js)
        obs = self.obs_builder.observe(js, a_clean)  # before reward(): it is the reward's state
        reward, terminated, quantities = self.obs_builder.reward(a_clean, self._prev_action)
        self._prev_action = a_clean
        self._t += 1
        fault = int(js.faults) != 0
        truncated = (self._t >= self.max_episode_steps or fault) and not terminated
        if terminated or truncated:
            self._needs_reset = True
        info: dict[str, Any] = {
            "action_sent": self._sent_action(a_clean),
            "faults": int(js.faults),
            "firmware_mode": js.mode,
            "t_us": int(js.t_us),
            **quantities,
        }
        return obs, float(reward), bool(terminated), bool(truncated), info

    def close(self) -> None:
        """Close the sockets (idempotent). Commands stop, so the firmware watchdog damps the robot."""
        if self._ctx is None:
            return
        self._control.close()
        self._ctx.close()
        self._ctx = None
