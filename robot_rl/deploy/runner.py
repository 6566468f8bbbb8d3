"""`DeployRunner`: a policy on the robot through the firmware bridge, with the onboard start sequence.

    runner = DeployRunner(policy, manifest, ObservationBuilder(robot, task), bus, RunnerConfig(steps=500))
    report = runner.run()          # DeployReport: reason, overruns, timing, returns

`policy` is any callable `obs (obs_dim,) float32 -> q_target (n_joints,) rad`: an `OnnxPolicy`, or a
NumpyPolicy / torch policy wrapped as `q_default + action_scale * act(obs)`, so a reference runs through
exactly this loop.

States (per episode; CONVENTIONS.md "ONNX policies", the Unitree start sequence):

    WAIT   zero torque: nothing is sent, the firmware stays IDLE (passive). Waits for the bridge's first
           JointState; with `reset` (default: when there are several episodes) asks the bridge to reset the
           robot to its start pose (the emulator does; real firmware answers UNSUPPORTED and the run is
           refused); clears the WATCHDOG fault the previous session's damping left (any other latched fault
           stops the run unless `clear_faults`); then ramps at once (`start="auto"`) or when the operator
           confirms (`confirm`).
    RAMP   position targets interpolated linearly from the measured joint angles to the default pose over
           `ramp_s`, one JointTarget per control period (calibration gains).
    HOLD   the default pose, for `hold_s` (auto) or until the operator confirms.
    RUN    the policy at the manifest's control period. Each tick: newest JointState -> odometry ->
           observation -> policy -> NaN check -> JointTarget. Timed with time.monotonic (sleep to just before
           the tick, then spin); every period and step time recorded; overruns counted (a tick that starts
           late, or work that ends after the next tick); the episode is logged (source real).
    DAMP   kp = 0 with the manifest's kd for `damp_s`, then nothing more is sent, so the firmware watchdog
           latches DAMPING; the runner waits to see it latched. Skipped when a fault already latched DAMPING
           (e-stop, watchdog): the firmware is damping and refuses commands.
    DONE   the report.

Why a run ends (`Reason`): completed (steps or duration reached; the next episode follows if any), fell (the
task's fall termination; next episode likewise), operator (`request_stop`: SIGINT/SIGTERM in the command),
deadline (more than `max_overruns` consecutive overruns), nan (a non-finite action: never sent), estop
(a JointState with the ESTOP fault bit: an e-stop request to the bridge or the robot's button), fault
(another firmware fault latched: watchdog, over-current, bad command), lost (no JointState for
`lost_after_s`: port lost, bridge gone). Every reason ends in DAMP where a link remains.

The episode log (RUN only) follows `robot_rl.record`: obs0 at the first RUN tick, then per step the action
actually sent (the bridge's CommandSent, normalised; the clean action if none arrived), the task's reward,
the next observation; terminated on a fall, truncated otherwise (`EpisodeWriter.end_episode`).

Imports: numpy, pyzmq/msgspec (robot_rl.bus), the numpy-only `sim` parts, pyarrow (log store, lazily by
the caller's writer) and the standard library; never torch, Gymnasium or MuJoCo.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from array import array
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Literal, NoReturn

import numpy as np

from robot_rl.bus.messages import CommandSent, JointState, JointTarget
from robot_rl.bus.sockets import BusContext, Receiver, Requester, Sender, make_pub, make_sub
from robot_rl.bus.topics import endpoints_from_base, obs_topic
from robot_rl.deploy.checks import DeployRefused
from robot_rl.deploy.exit_codes import EXIT_OK, EXIT_SAFETY_STOP
from robot_rl.deploy.observation import ObservationBuilder
from robot_rl.deploy.report import DeployReport, EpisodeReport, is_overrun, timing_stats
from robot_rl.export.manifest import DeployManifest

if TYPE_CHECKING:
    from robot_rl.data.writer import EpisodeWriter
    from robot_rl.schema import EpisodeMeta

log = logging.getLogger(__name__)

Policy = Callable[[np.ndarray], np.ndarray]
"""obs (obs_dim,) float32 -> absolute joint position targets (n_joints,), rad."""

COMMAND_SENT_PREFIX = b"command_sent/"  # firmware_bridge.bridge.command_sent_topic, without the bridge
FAULT_WATCHDOG = 1 << 0
FAULT_ESTOP = 1 << 1
DEFAULT_CONTROL_INDEX = 50  # firmware_bridge.bridge.DEFAULT_CONTROL_INDEX
SENT_MEMORY = 10_000  # JointTargets kept in DeployRunner.sent (200 s at 50 Hz)


class Phase(StrEnum):
    WAIT = "wait"
    RAMP = "ramp"
    HOLD = "hold"
    RUN = "run"
    DAMP = "damp"
    DONE = "done"


class Reason(StrEnum):
    COMPLETED = "completed"
    FELL = "fell"
    OPERATOR = "operator"
    DEADLINE = "deadline"
    NAN = "nan"
    ESTOP = "estop"
    FAULT = "fault"
    LOST = "lost"


EPISODE_REASONS = frozenset({Reason.COMPLETED, Reason.FELL})
"""Reasons that end one episode only: the next one follows (after a reset) when more are asked for."""
SAFETY_REASONS = frozenset({Reason.DEADLINE, Reason.NAN, Reason.ESTOP, Reason.FAULT, Reason.LOST})


class BridgeUnavailable(RuntimeError):
    """No state from the bridge in time, or a control request it could not carry out (nothing commanded)."""


def ramp_target(q_start: np.ndarray, q_goal: np.ndarray, t_s: float, ramp_s: float) -> np.ndarray:
    """Linear interpolation from `q_start` (t = 0) to `q_goal` (t >= ramp_s), (n,) rad; `q_goal` at once if
    `ramp_s` <= 0."""
    s = 1.0 if ramp_s <= 0.0 else min(max(t_s / ramp_s, 0.0), 1.0)
    out: np.ndarray = np.asarray(q_start, np.float64) + s * (
        np.asarray(q_goal, np.float64) - np.asarray(q_start, np.float64)
    )
    return out


@dataclass(frozen=True)
class RunnerConfig:
    """Runner settings; times in seconds. `steps` / `duration_s`: per episode (None: until stopped)."""

    steps: int | None = None
    duration_s: float | None = None
    episodes: int = 1
    reset: bool | None = None
    """Ask the bridge to reset the robot before each episode (None: when episodes > 1). The emulator puts
    the robot back in its start pose; real firmware answers UNSUPPORTED and the run is refused."""
    ramp_s: float = 2.0
    hold_s: float = 1.0
    damp_s: float = 0.5
    max_overruns: int = 5
    late_tolerance_s: float | None = None
    """A tick that starts later than this after its scheduled time is an overrun (default control_dt / 4)."""
    lost_after_s: float = 0.1
    start_timeout_s: float = 10.0
    """WAIT: longest wait for the bridge's first JointState (it may still be connecting to the firmware)."""
    spin_s: float = 0.001
    """The loop sleeps until this long before a tick, then spins on the clock."""
    start: Literal["auto", "prompt"] = "auto"
    clear_faults: bool = False
    """Clear latched faults other than the watchdog's (an e-stop included) in WAIT instead of stopping."""
    commands_mps: tuple[float, ...] = ()
    """Task command per episode, cycled (the quadruped's forward velocity); () keeps the task's."""
    control_index: int = DEFAULT_CONTROL_INDEX
    request_timeout_s: float = 2.0

    def __post_init__(self) -> None:
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"steps: expected >= 1 or None, got {self.steps}")
        if self.duration_s is not None and not self.duration_s > 0:
            raise ValueError(f"duration_s: expected > 0 or None, got {self.duration_s}")
        if self.episodes < 1:
            raise ValueError(f"episodes: expected >= 1, got {self.episodes}")
        if self.episodes > 1 and self.steps is None and self.duration_s is None:
            raise ValueError("episodes > 1 needs steps or duration_s (each episode must end by itself)")
        for name in ("ramp_s", "hold_s", "damp_s", "spin_s"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name}: expected >= 0, got {getattr(self, name)}")
        if self.max_overruns < 0:
            raise ValueError(f"max_overruns: expected >= 0, got {self.max_overruns}")
        if not self.lost_after_s > 0 or not self.start_timeout_s > 0:
            raise ValueError("lost_after_s and start_timeout_s must be > 0")


@dataclass
class EpisodeLog:
    """Where RUN phases are logged: an open `EpisodeWriter` and the metadata of each episode."""

    writer: EpisodeWriter
    make_meta: Callable[[int, float | None], EpisodeMeta]
    """(episode index, command m/s or None) -> the episode's metadata (source real)."""


class _Stop(Exception):
    """Control flow inside the runner (never escapes it): why the current phase ends."""

    def __init__(self, reason: Reason, detail: str = "") -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def _floats() -> array[float]:
    return array("d")


@dataclass
class _RunStats:
    """Per-tick times of RUN phases (8 bytes a value: an hour at 50 Hz is 1.4 MB per series)."""

    periods: array[float] = field(default_factory=_floats)
    compute: array[float] = field(default_factory=_floats)
    infer: array[float] = field(default_factory=_floats)
    overruns: int = 0
    consecutive: int = 0
    max_consecutive: int = 0


class DeployRunner:
    """The state machine of the module docstring for `policy` on the bridge at bus base address `bus`.

    builder:    observation/reward code of the robot's task (its robot's default pose and action scale are
                the manifest's: `robot_rl.deploy.checks` verified that)
    log:        where the RUN phases are logged (None: not logged)
    confirm:    polled in WAIT and HOLD when `config.start == "prompt"`: True once the operator confirms
    link_alive: polled every tick; False (the bridge process this run started has died) -> reason lost
    say:        one line per state change for the operator (default: this module's logger)
    """

    def __init__(
        self,
        policy: Policy,
        manifest: DeployManifest,
        builder: ObservationBuilder,
        bus: str,
        config: RunnerConfig,
        *,
        log: EpisodeLog | None = None,
        confirm: Callable[[Phase], bool] | None = None,
        link_alive: Callable[[], bool] | None = None,
        say: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if config.start == "prompt" and confirm is None:
            raise ValueError("start='prompt' needs a confirm callable")
        if config.commands_mps and not callable(getattr(builder.task, "set_command", None)):
            raise ValueError(f"task {type(builder.task).__name__} takes no command (commands_mps given)")
        self.policy = policy
        self.manifest = manifest
        self.builder = builder
        self.bus = bus
        self.config = config
        self.log = log
        self.confirm = confirm
        self.link_alive = link_alive
        self.say = say if say is not None else log_info
        self.clock = clock
        self.dt = float(manifest.control_dt_s)
        self.late_tol_s = config.late_tolerance_s if config.late_tolerance_s is not None else self.dt / 4
        self.robot = builder.robot.name
        self.n = builder.n_joints
        self.q_default = builder.q_default.copy()
        self.kd_damp = np.asarray(manifest.kd_nm_s_per_rad, dtype=np.float64)
        self.phase = Phase.WAIT
        self.phases: list[tuple[Phase, float]] = []
        """(phase, monotonic time entered), in order: what a test or a log reads back."""
        self.sent: deque[tuple[Phase, np.ndarray]] = deque(maxlen=SENT_MEMORY)
        """The latest JointTargets' q_target_rad with the phase that sent each (for tests and reports)."""
        self._stop = threading.Event()
        self._js: JointState | None = None
        self._js_t = 0.0  # monotonic receive time of the newest JointState
        self._last_sent: CommandSent | None = None
        self._next_tick = 0.0
        self._skipped = 0
        self._stamp_ns = 0
        self._episode: EpisodeReport | None = None  # the RUN phase in progress
        self._stats: _RunStats | None = None
        ep = endpoints_from_base(bus)
        self._ctx: BusContext | None = BusContext()
        self._sent_topic = COMMAND_SENT_PREFIX + self.robot.encode()
        self._rx = Receiver(make_sub(self._ctx, ep.obs, topics=(obs_topic(self.robot), self._sent_topic)))
        self._tx = Sender(make_pub(self._ctx, ep.command, bind=False), "deploy", single_part=True)
        self._control = Requester(
            self._ctx,
            ep.control(config.control_index),
            "deploy",
            timeout_s=config.request_timeout_s,
            attempts=2,
        )

    # --- public -------------------------------------------------------------------------------------------
    def request_stop(self) -> None:
        """Stop as the operator would (reason operator): thread- and signal-safe."""
        self._stop.set()

    def close(self) -> None:
        """Close the bus sockets (idempotent)."""
        if self._ctx is None:
            return
        self._control.close()
        self._ctx.close()
        self._ctx = None

    def __enter__(self) -> DeployRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def run(self) -> DeployReport:
        """Run every episode; the report. DeployRefused / BridgeUnavailable before anything is commanded."""
        cfg = self.config
        report = DeployReport(reason=Reason.COMPLETED.value, exit_code=EXIT_OK, control_dt_s=self.dt)
        stats_all = _RunStats()
        reason = Reason.COMPLETED
        for i in range(cfg.episodes):
            command = cfg.commands_mps[i % len(cfg.commands_mps)] if cfg.commands_mps else None
            stats = _RunStats()
            episode: EpisodeReport | None = None
            commanded = False
            try:
                self._wait(reset=cfg.reset if cfg.reset is not None else cfg.episodes > 1)
                commanded = True
                self._ramp()
                self._hold()
                self._run_policy(i, command, stats)  # ends with _Stop, completed included
            except _Stop as stop:
                reason = stop.reason
                report.detail = stop.detail
                episode = self._episode_end(stop.reason, stop.detail)
            except BaseException:
                # A bug, a policy that raised, KeyboardInterrupt: still close the log and damp, then re-raise.
                self._episode_end(Reason.OPERATOR)
                if commanded:
                    try:
                        self._damp(Reason.OPERATOR)
                    except Exception:  # the original error matters more than a failed damping
                        log.exception("damping after an error failed")
                raise
            if episode is not None:
                report.episodes.append(episode)
                stats_all.periods += stats.periods
                stats_all.compute += stats.compute
                stats_all.infer += stats.infer
                stats_all.overruns += stats.overruns
                stats_all.max_consecutive = max(stats_all.max_consecutive, stats.max_consecutive)
            if commanded:
                report.damping = self._damp(reason)
            if reason not in EPISODE_REASONS:
                break
        self._enter(Phase.DONE)
        report.reason = reason.value
        report.exit_code = EXIT_SAFETY_STOP if reason in SAFETY_REASONS else EXIT_OK
        report.steps = sum(e.steps for e in report.episodes)
        report.overruns = stats_all.overruns
        report.max_consecutive_overruns = stats_all.max_consecutive
        report.skipped_ticks = self._skipped
        report.timing = timing_stats(stats_all.periods, stats_all.compute, stats_all.infer, self.dt)
        return report

    # --- bus ----------------------------------------------------------------------------------------------
    def _drain(self) -> None:
        """Take every queued message: the newest JointState and the newest CommandSent."""
        while (decoded := self._rx.recv(0)) is not None:
            msg = decoded.msg
            if isinstance(msg, JointState):
                if msg.robot == self.robot:
                    self._js = msg
                    self._js_t = self.clock()
            elif isinstance(msg, CommandSent):
                self._last_sent = msg

    def _send(self, q_target: np.ndarray, *, damping: bool = False) -> None:
        q = np.asarray(q_target, dtype=np.float64)
        if damping:
            target = JointTarget(robot=self.robot, q_target_rad=q, kp=np.zeros(self.n), kd=self.kd_damp)
        else:
            target = JointTarget(robot=self.robot, q_target_rad=q)  # the calibration's gains
        self._last_sent = None
        self._tx.send(b"command", target)
        self.sent.append((self.phase, q.copy()))

    def _request(self, command: Literal["reset", "clear_fault"]) -> tuple[bool, str]:
        reply = self._control.request(command)
        return reply.ok, reply.error

    def _enter(self, phase: Phase) -> None:
        self.phase = phase
        self.phases.append((phase, self.clock()))

    def _stamp(self) -> int:
        self._stamp_ns = max(time.time_ns(), self._stamp_ns + 1)  # strictly increasing, as the log wants
        return self._stamp_ns

    # --- checks -------------------------------------------------------------------------------------------
    def _check(self, now: float) -> JointState:
        """The newest JointState, or _Stop for the operator, a lost link, an e-stop or a fault."""
        if self._stop.is_set():
            raise _Stop(Reason.OPERATOR, "stop requested")
        if self.link_alive is not None and not self.link_alive():
            raise _Stop(Reason.LOST, "the bridge process exited")
        js = self._js
        if js is None or now - self._js_t > self.config.lost_after_s:
            raise _Stop(Reason.LOST, f"no JointState for {now - self._js_t:.3f} s (port lost or bridge gone)")
        if js.faults & FAULT_ESTOP:
            raise _Stop(Reason.ESTOP, f"firmware e-stop latched (faults 0x{js.faults:02x}, mode {js.mode})")
        if js.faults:
            raise _Stop(Reason.FAULT, f"firmware fault 0x{js.faults:02x} latched (mode {js.mode})")
        return js

    # --- timing -------------------------------------------------------------------------------------------
    def _start_ticks(self) -> None:
        self._next_tick = self.clock()

    def _wait_tick(self) -> tuple[float, float]:
        """Sleep to just before the next tick, spin to it; (start, scheduled) times. Schedules the next."""
        scheduled = self._next_tick
        now = self.clock()
        if scheduled - now > self.config.spin_s:
            time.sleep(scheduled - now - self.config.spin_s)
        while (now := self.clock()) < scheduled:
            pass
        self._next_tick = scheduled + self.dt
        behind = int((now - self._next_tick) // self.dt)
        if behind > 0:  # more than a whole period late: drop the missed ticks instead of bursting
            self._next_tick += behind * self.dt
            self._skipped += behind
        return now, scheduled

    # --- phases -------------------------------------------------------------------------------------------
    def _wait(self, *, reset: bool) -> None:
        """WAIT: nothing is sent. Fresh state, optional reset, latched watchdog cleared, operator gate."""
        self._enter(Phase.WAIT)
        cfg = self.config
        deadline = self.clock() + cfg.start_timeout_s
        self._js = None
        while self._js is None:
            if self._stop.is_set():
                raise _Stop(Reason.OPERATOR, "stop requested while waiting for the bridge")
            if self.link_alive is not None and not self.link_alive():
                raise BridgeUnavailable("the bridge process exited before publishing a JointState")
            self._drain()
            if self._js is None:
                if self.clock() > deadline:
                    raise BridgeUnavailable(
                        f"no JointState from the bridge on {self.bus} within {cfg.start_timeout_s:g} s"
                    )
                time.sleep(0.005)
        if reset:
            ok, error = self._request("reset")
            if not ok:
                if "UNSUPPORTED" in error:
                    raise DeployRefused(
                        "the firmware cannot reset the robot (real hardware answers UNSUPPORTED): "
                        "--episodes > 1 is for the emulator; on the robot deploy one episode at a time"
                    )
                raise BridgeUnavailable(f"reset request to the bridge on {self.bus} failed: {error}")
        self._settle_faults()
        self.say(
            f"WAIT: firmware {self._js.mode if self._js else '?'}, zero torque (nothing sent)"
            + ("; press Enter to ramp to the default pose" if cfg.start == "prompt" else "")
        )
        if cfg.start == "prompt":
            assert self.confirm is not None
            while not self.confirm(Phase.WAIT):
                self._drain()
                self._check(self.clock())
                time.sleep(self.dt)

    def _settle_faults(self) -> None:
        """Clear a latched WATCHDOG (what the last damping exit leaves); other faults stop the run unless
        `clear_faults`. Then wait for a fault-free JointState."""
        js = self._fresh_state()
        if not js.faults:
            return
        if js.faults & ~FAULT_WATCHDOG and not self.config.clear_faults:
            reason = Reason.ESTOP if js.faults & FAULT_ESTOP else Reason.FAULT
            raise _Stop(
                reason,
                f"firmware fault 0x{js.faults:02x} latched before the start; clear it deliberately "
                "(--clear-faults) once the robot is safe",
            )
        self.say(f"WAIT: clearing latched firmware fault 0x{js.faults:02x}")
        ok, error = self._request("clear_fault")
        if not ok:
            raise BridgeUnavailable(f"clear_fault request to the bridge on {self.bus} failed: {error}")
        deadline = self.clock() + 1.0
        while True:
            js = self._fresh_state()
            if not js.faults:
                return
            if self.clock() > deadline:
                raise _Stop(Reason.FAULT, f"firmware fault 0x{js.faults:02x} still latched after clear_fault")

    def _fresh_state(self) -> JointState:
        """The first JointState received from now on (lost if none within the start timeout)."""
        self._drain()
        self._js = None
        deadline = self.clock() + self.config.start_timeout_s
        while self._js is None:
            if self._stop.is_set():
                raise _Stop(Reason.OPERATOR, "stop requested")
            if self.clock() > deadline:
                raise _Stop(Reason.LOST, f"no JointState within {self.config.start_timeout_s:g} s")
            time.sleep(0.002)
            self._drain()
        return self._js

    def _ramp(self) -> None:
        """RAMP: measured pose -> default pose over ramp_s, linearly, one target per control period."""
        self._enter(Phase.RAMP)
        self._drain()
        js = self._check(self.clock())
        q_start = np.asarray(js.joint_pos_rad, dtype=np.float64).copy()
        n_ticks = max(1, math.ceil(self.config.ramp_s / self.dt - 1e-9))
        self.say(
            f"RAMP: to the default pose over {n_ticks * self.dt:.2f} s "
            f"(max offset {np.max(np.abs(self.q_default - q_start)):.3f} rad)"
        )
        self._start_ticks()
        for k in range(1, n_ticks + 1):
            now, _ = self._wait_tick()
            self._drain()
            self._check(now)
            self._send(ramp_target(q_start, self.q_default, k * self.dt, n_ticks * self.dt))

    def _hold(self) -> None:
        """HOLD: the default pose until hold_s passed (auto) or the operator confirms (prompt)."""
        self._enter(Phase.HOLD)
        prompt = self.config.start == "prompt"
        self.say(
            "HOLD: default pose; press Enter to start the policy, Ctrl-C to stop"
            if prompt
            else f"HOLD: default pose for {self.config.hold_s:g} s"
        )
        t0 = self.clock()
        while True:
            now, _ = self._wait_tick()
            self._drain()
            self._check(now)
            self._send(self.q_default)
            if prompt:
                assert self.confirm is not None
                if self.confirm(Phase.HOLD):
                    return
            elif now - t0 >= self.config.hold_s - 1e-9:
                return

    def _run_policy(self, index: int, command: float | None, stats: _RunStats) -> NoReturn:
        """RUN: the policy loop of one episode (module docstring); ends with _Stop (completed included)."""
        cfg = self.config
        b = self.builder
        if command is not None:
            b.task.set_command(command)  # type: ignore[attr-defined]  # checked in __init__
        max_steps = cfg.steps
        if cfg.duration_s is not None:
            by_time = max(1, round(cfg.duration_s / self.dt))
            max_steps = by_time if max_steps is None else min(max_steps, by_time)
        self._enter(Phase.RUN)
        self.say(
            f"RUN: policy at {1.0 / self.dt:g} Hz"
            + (f", command {command:g} m/s" if command is not None else "")
            + (f", {max_steps} steps" if max_steps is not None else ", until stopped (Ctrl-C)")
        )
        meta = self.log.make_meta(index, command) if self.log is not None else None
        self._episode = EpisodeReport(
            index=index,
            episode_id=meta.episode_id if meta is not None else f"episode-{index}",
            reason=Reason.COMPLETED.value,
            steps=0,
            episode_return=0.0,
            terminated=False,
            command_mps=command,
            overruns=0,
            max_consecutive_overruns=0,
            timing=timing_stats([], [], [], self.dt),
        )
        self._stats = stats
        ep = self._episode
        a_prev = np.zeros(self.n, dtype=np.float32)  # the clean action of the previous step
        a_prev2 = np.zeros(self.n, dtype=np.float32)
        last_start: float | None = None
        self._start_ticks()
        k = 0
        while True:
            t_start, scheduled = self._wait_tick()
            if last_start is not None:
                stats.periods.append(t_start - last_start)
            last_start = t_start
            self._drain()
            js = self._check(t_start)
            if k == 0:
                b.reset(js)  # at rest after the hold: the velocity estimate starts from zero
                obs = b.observe(js, a_prev)
                if self.log is not None and meta is not None:
                    self.log.writer.begin_episode(meta, obs, self._stamp())
            else:
                b.update(js)
                obs = b.observe(js, a_prev)
                reward, fell, _ = b.reward(a_prev, a_prev2)
                sent = self._last_sent
                a_sent = b.action_from_target(sent.q_rad) if sent is not None else a_prev.copy()
                done = max_steps is not None and k >= max_steps
                ep.steps = k
                ep.episode_return += reward
                if self.log is not None:
                    self.log.writer.add_step(
                        a_sent, reward, obs, self._stamp(), terminated=fell, truncated=done and not fell
                    )
                if fell:
                    ep.terminated = True
                    raise _Stop(Reason.FELL, f"the robot fell (tilt) at step {k}")
                if done:
                    raise _Stop(Reason.COMPLETED, f"{k} steps")
            t_infer = self.clock()
            q_target = np.asarray(self.policy(obs), dtype=np.float64).reshape(-1)
            t_infer = self.clock() - t_infer
            if q_target.shape != (self.n,):
                raise ValueError(f"the policy returned shape {q_target.shape}, expected ({self.n},)")
            if not np.all(np.isfinite(q_target)):
                raise _Stop(Reason.NAN, f"non-finite action at step {k} (not sent): {q_target.tolist()}")
            a = b.action_from_target(q_target)
            self._send(b.target_from_action(a))
            t_done = self.clock()
            stats.compute.append(t_done - t_start)
            stats.infer.append(t_infer)
            a_prev2, a_prev = a_prev, a
            k += 1
            if is_overrun(t_start, t_done, scheduled, self.dt, self.late_tol_s):
                stats.overruns += 1
                stats.consecutive += 1
                stats.max_consecutive = max(stats.max_consecutive, stats.consecutive)
                if stats.consecutive > cfg.max_overruns:
                    raise _Stop(
                        Reason.DEADLINE,
                        f"{stats.consecutive} consecutive overruns at step {k} (limit {cfg.max_overruns})",
                    )
            else:
                stats.consecutive = 0

    def _episode_end(self, reason: Reason, detail: str = "") -> EpisodeReport | None:
        """Close the episode in progress (log and report), if any."""
        ep, self._episode = self._episode, None
        if ep is None:
            return None
        if self.log is not None and self.log.writer.in_episode:
            self.log.writer.end_episode()  # an episode cut short: its last step is marked truncated
        ep.reason = reason.value
        ep.detail = detail
        st = self._stats
        if st is not None:
            ep.overruns = st.overruns
            ep.max_consecutive_overruns = st.max_consecutive
            ep.timing = timing_stats(st.periods, st.compute, st.infer, self.dt)
        return ep

    def _damp(self, reason: Reason) -> str:
        """DAMP: kp = 0, kd = the manifest's for damp_s, then silence until the watchdog latches DAMPING."""
        self._enter(Phase.DAMP)
        self._drain()
        js = self._js
        if js is not None and js.faults and js.mode == "DAMPING":
            self.say(f"DAMP: firmware already DAMPING (fault 0x{js.faults:02x} latched); nothing to send")
            return f"firmware DAMPING (fault 0x{js.faults:02x} latched before the damping phase)"
        q_hold = np.asarray(js.joint_pos_rad if js is not None else self.q_default, dtype=np.float64).copy()
        self.say(
            f"DAMP ({reason.value}): kp=0, kd={float(np.max(self.kd_damp)):g} N m s/rad for "
            f"{self.config.damp_s:g} s, then the firmware watchdog latches DAMPING"
        )
        n_ticks = max(1, math.ceil(self.config.damp_s / self.dt - 1e-9))
        self._start_ticks()
        for _ in range(n_ticks):
            self._wait_tick()
            self._drain()
            if self._js is not None:
                q_hold = np.asarray(self._js.joint_pos_rad, dtype=np.float64)
            self._send(q_hold, damping=True)
        # Silence: the firmware's watchdog latches DAMPING (its calibration kd) within its timeout.
        deadline = self.clock() + 0.5
        while self.clock() < deadline:
            time.sleep(0.005)
            self._drain()
            js = self._js
            if js is not None and js.mode == "DAMPING" and js.faults:
                return (
                    f"commanded {n_ticks * self.dt:g} s, then firmware DAMPING latched "
                    f"(faults 0x{js.faults:02x})"
                )
        return f"commanded {n_ticks * self.dt:g} s; firmware DAMPING latch not seen (link lost?)"


def log_info(line: str) -> None:
    log.info("%s", line)
