"""`Firmware`: the robot's motor-controller firmware as a state machine over a MuJoCo "real" robot.

No I/O and no clock of its own: the caller passes the time (`now`, seconds since boot) and the received bytes,
and writes the bytes it gets back. That keeps it testable without a pseudo-terminal (tests feed it frames and
advance `now` by hand) and lets `main.run_emulator` pace it in real time.

Behaviour (docs/serial-protocol.md sections 6 and 9):

- Physics: MuJoCo stepped one physics step (robot.physics_dt_s = 2 ms, i.e. 500 Hz) at a time with the control
  law currently in force, so the firmware's PD is closed at 500 Hz, faster than the 50 Hz command rate. The PD
  runs in MuJoCo's position actuators, whose gains are rewritten per joint from the commanded kp/kd:
  `tau = s * clip(kp (q_target - q) - kd qdot, +-torque_limit)` with s the profile's motor strength. A
  feed-forward / TORQUE-mode torque is applied as a generalised force `s * clip(tau_ff, +-torque_limit)`
  (clipped on its own, not together with the PD term: a simplification of the firmware's single clip).
- Dynamics gap: the profile's `[dynamics]` section is applied to the model (friction, masses, motor strength,
  damping, gravity). `[actuation] latency_steps` delays every accepted JOINT_COMMAND by that many control
  periods before it reaches the motors (bus + driver latency); `action_noise_std` (normalised action units,
  times the robot's action scale) perturbs each commanded target. Safety reactions (watchdog, e-stop,
  BAD_COMMAND) are the firmware's own and act at once, never delayed.
- Sensors: SENSOR_STATE every `sensor_period_s` (10 ms), and one more as the reply to each accepted
  JOINT_COMMAND as soon as it takes effect (`reply_to_commands`; docs/serial-protocol.md section 6.3): in
  the same `feed` call that received it, or at the physics step that applies it when the profile delays
  commands. A reply carries the newest sample, the state of the last physics step, with that step's time
  (1 us later if a state of that step was already sent: firmware times of SENSOR_STATE increase strictly).
  In raw units: encoder ticks and ticks/s through the
  calibration file (per-joint zero offsets and directions that the bridge's calibration must undo), motor
  current from the applied torque (torque constant, gear, and the motor strength: a weak motor draws more
  current for the same torque), IMU (gyro = base angular velocity in the body frame, accelerometer = specific
  force in the body frame, orientation quaternion), foot-contact bits. The profile's `[sensors]` noise stds
  are added (joint position, joint velocity, gyro; `gravity_noise` times g on the accelerometer).
- Modes: IDLE (boot, clear-fault, reset: passive with light damping) until the first valid JOINT_COMMAND,
  then the commanded mode. Watchdog: armed by the first accepted command; no valid command for the
  calibration's `watchdog_timeout_s` -> DAMPING (the calibration's kd), WATCHDOG latched. ESTOP -> DAMPING,
  ESTOP latched, ACK OK in the same `feed` call (before any physics); idempotent. While a fault is latched
  every JOINT_COMMAND is rejected (ACK REJECTED_FAULT_LATCHED); CLEAR_FAULT is the only way out and leaves
  the firmware IDLE, never resuming an old target. FAULT_REPORT on every change and at 1 Hz while latched.
- RESET_REQUEST (emulator only; real firmware answers UNSUPPORTED because on hardware putting the robot back
  is the operator's job): the robot is teleported to its start pose (base at `robot.base_init_pos`, default
  joint angles) and the physics runs `settle_s` of simulated time at once, with the joints held at the
  default pose by the calibration's PD (the emulated operator setting the robot down), so the robot is at
  rest on the ground when the ACK OK goes out. The firmware is then IDLE (watchdog disarmed); latched faults
  stay latched.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import mujoco
import numpy as np

from firmware_bridge.calibration import (
    Calibration,
    rad_s_to_ticks_per_s,
    rad_to_ticks,
    ticks_to_rad,
)
from firmware_bridge.protocol import (
    Ack,
    AckResult,
    Capability,
    ClearFault,
    ControlMode,
    Estop,
    Fault,
    FaultReport,
    FrameReader,
    Heartbeat,
    Hello,
    JointCommand,
    Message,
    MessageType,
    ResetRequest,
    Role,
    SensorState,
    SequenceCounter,
    encode_message,
)
from firmware_bridge.protocol.messages import (
    ACCEL_M_S2_PER_LSB,
    GYRO_RAD_S_PER_LSB,
    KD_NM_S_PER_RAD_PER_LSB,
    KP_NM_PER_RAD_PER_LSB,
    QUAT_PER_LSB,
)
from sim.backends.mujoco_backend import MujocoBackend
from sim.profile import GapProfile
from sim.robots.model import RobotModel

_I16 = 32767
_G_MPS2 = 9.81


@dataclass(frozen=True)
class FirmwareConfig:
    """Firmware constants that are not in the calibration file.

    sensor_period_s:    SENSOR_STATE period (s); announced in HELLO
    heartbeat_period_s: HEARTBEAT period (s)
    fault_report_period_s: FAULT_REPORT repeat period while a fault is latched (s)
    idle_kd_fraction:   IDLE damping as a fraction of the calibration's kd ("passive, light damping")
    settle_s:           simulated time the robot is held at the start pose after a reset (s)
    motor_temp_c:       reported motor temperature (deg C); the emulator has no thermal model
    max_lag_s:          if the physics falls this far behind real time (CPU starvation), it skips ahead
                        instead of running faster than real time to catch up
    reply_to_commands:  send one SENSOR_STATE as soon as an accepted JOINT_COMMAND takes effect (its reply,
                        with last_cmd_seq = that command), besides the periodic stream
    """

    sensor_period_s: float = 0.01
    heartbeat_period_s: float = 0.1
    fault_report_period_s: float = 1.0
    idle_kd_fraction: float = 0.1
    settle_s: float = 0.3
    motor_temp_c: int = 35
    max_lag_s: float = 0.1
    reply_to_commands: bool = True


@dataclass(frozen=True)
class _Law:
    """The control law in force, joint side: tau = kp (target - q) - kd qdot + tau_ff (then clipped)."""

    mode: ControlMode
    target_rad: np.ndarray
    kp: np.ndarray  # N m/rad
    kd: np.ndarray  # N m s/rad
    tau_ff_nm: np.ndarray
    seq: int  # JOINT_COMMAND seq that set it (reported as last_cmd_seq once applied)


class Firmware:
    """The emulated firmware. `boot`, `feed` received bytes, `tick` the clock; each returns bytes to send.

    `now` is in seconds on any monotonic clock that starts near 0 at boot (the firmware's own time, reported
    in microseconds modulo 2^32). Calls must use non-decreasing `now`.
    """

    def __init__(
        self,
        robot: RobotModel,
        cal: Calibration,
        profile: GapProfile,
        *,
        seed: int = 0,
        config: FirmwareConfig | None = None,
    ) -> None:
        if cal.joint_names != robot.joint_names:
            raise ValueError(
                f"calibration {cal.source} joints {cal.joint_names} do not match robot {robot.name} "
                f"joints {robot.joint_names}"
            )
        self.robot = robot
        self.cal = cal
        self.profile = profile
        self.config = config or FirmwareConfig()
        self._rng = np.random.default_rng(seed)
        self._backend = MujocoBackend(robot)
        self._backend.apply_dynamics(profile.dynamics)
        self._model, self._data = self._backend.model, self._backend.data
        self._dof_idx = self._backend._dof_idx  # joint dof addresses, built once by the backend
        self._nom_forcerange = self._model.actuator_forcerange.copy()  # already scaled by motor strength
        self._strength = profile.dynamics.motor_strength_scale
        self._dt = robot.physics_dt_s
        a = cal.arrays
        self._n = cal.n_joints
        self._default = np.array(a.default_pos_rad, dtype=np.float64)
        self._torque_limit = np.array(a.torque_limit_nm, dtype=np.float64)
        self._kd_damping = np.array(a.kd_nm_s_per_rad, dtype=np.float64)
        # A target may sit up to 2 ticks outside the limits: rounding to ticks on the host side.
        self._pos_tol = 2.0 * np.array(a.rad_per_tick)
        self._pos_min = np.array(a.position_min_rad) - self._pos_tol
        self._pos_max = np.array(a.position_max_rad) + self._pos_tol
        self._latency_s = profile.latency_steps * cal.control_dt_s
        self._action_noise_rad = profile.action_noise_std * robot.action_scale_rad
        self._caps = Capability.IMU | Capability.FOOT_CONTACTS if robot.floating_base else Capability.NONE

        self._reader = FrameReader()
        self._seq = SequenceCounter()
        self._out = bytearray()
        self._t_phys = 0.0  # physics time (s), trails `now` by less than one physics step
        self._next_sensor = 0.0
        self._next_heartbeat = 0.0
        self._next_fault_report = 0.0
        self._faults = Fault.NONE
        self._watchdog_armed = False
        self._last_cmd_t = 0.0
        self._last_cmd_seq = 0
        self._last_sensor_us = -1  # firmware_time_us of the last SENSOR_STATE
        self._pending: deque[tuple[float, _Law]] = deque()  # accepted commands on their way to the motors
        self._law = self._idle_law()
        self.overruns = 0  # times the physics skipped ahead because it fell behind real time
        self._reset_physics()

    # --- public API -----------------------------------------------------------------------------------------
    @property
    def mode(self) -> ControlMode:
        return self._law.mode

    @property
    def faults(self) -> Fault:
        return self._faults

    @property
    def joint_pos_rad(self) -> np.ndarray:
        """True (noise-free) joint angles (rad), for tests."""
        return self._backend.state().joint_pos_rad.copy()

    @property
    def next_step_s(self) -> float:
        """Firmware time (s) at which the next physics step is due (`tick` runs it once `now` reaches it)."""
        return self._t_phys + self._dt

    def boot(self, now: float = 0.0) -> bytes:
        """The HELLO sent at power-up."""
        self._t_phys = now
        self._next_sensor = self._next_heartbeat = now
        self._send(self._hello())
        return self._take()

    def feed(self, data: bytes, now: float) -> bytes:
        """Handle every message completed by `data` (received at `now`); return the immediate replies."""
        for rx in self._reader.feed(data):
            self._handle(rx.msg_type, rx.seq, rx.message, now)
        return self._take()

    def tick(self, now: float) -> bytes:
        """Run the physics up to `now` one physics step at a time; return sensor/heartbeat/fault frames."""
        if now - self._t_phys > self.config.max_lag_s:
            # Starved of CPU: jump rather than replay the backlog faster than real time.
            self.overruns += 1
            self._t_phys = now - self._dt
        while self._t_phys + self._dt <= now + 1e-9:
            self._t_phys += self._dt
            t = self._t_phys
            self._check_watchdog(t)
            applied = False
            while self._pending and self._pending[0][0] <= t + 1e-9:
                self._set_law(self._pending.popleft()[1])
                applied = True
            mujoco.mj_step(self._model, self._data)
            if t + 1e-9 >= self._next_sensor:
                self._send(self._sensor_state(t))  # also the reply to a command applied at this step
                self._next_sensor = max(self._next_sensor + self.config.sensor_period_s, t)
            elif applied and self.config.reply_to_commands:
                self._send(self._sensor_state(t))  # a delayed command took effect: its reply
            if t + 1e-9 >= self._next_heartbeat:
                self._send(Heartbeat(self._time_us(t), self._law.mode, self._faults))
                self._next_heartbeat = max(self._next_heartbeat + self.config.heartbeat_period_s, t)
            if self._faults and t + 1e-9 >= self._next_fault_report:
                self._report_faults(t)
        return self._take()

    # --- message handling -----------------------------------------------------------------------------------
    def _handle(self, msg_type: MessageType, seq: int, msg: Message, now: float) -> None:
        if isinstance(msg, Hello):
            if msg.role == Role.HOST:
                self._send(self._hello())
        elif isinstance(msg, JointCommand):
            self._on_command(msg, seq, now)
        elif isinstance(msg, Estop):
            # Latch and react before the ACK goes out, in this same call: no physics step runs in between.
            self._latch(Fault.ESTOP, now)
            self._send(Ack(msg_type, seq, AckResult.OK))
        elif isinstance(msg, ClearFault):
            self._faults &= ~msg.mask
            if not self._faults:
                self._go_idle()
            self._report_faults(now)
            self._send(Ack(msg_type, seq, AckResult.OK))
        elif isinstance(msg, ResetRequest):
            self._reset_physics()
            if not self._faults:
                self._go_idle()
            self._send(Ack(msg_type, seq, AckResult.OK))
        # HEARTBEAT from the host and firmware->host types are ignored (heartbeats never feed the watchdog).

    def _on_command(self, cmd: JointCommand, seq: int, now: float) -> None:
        if self._faults:
            self._send(Ack(MessageType.JOINT_COMMAND, seq, AckResult.REJECTED_FAULT_LATCHED))
            return
        if cmd.n_joints != self._n:
            self._bad_command(seq, now)
            return
        target = ticks_to_rad(self.cal, cmd.target_ticks)
        if cmd.mode == ControlMode.POSITION_PD and (
            np.any(target < self._pos_min) or np.any(target > self._pos_max)
        ):
            self._bad_command(seq, now)
            return
        kp = np.asarray(cmd.kp, dtype=np.float64) * KP_NM_PER_RAD_PER_LSB
        kd = np.asarray(cmd.kd, dtype=np.float64) * KD_NM_S_PER_RAD_PER_LSB
        a = self.cal.arrays
        tau_ff = a.direction * np.asarray(cmd.current_ma, dtype=np.float64) * a.nm_per_ma
        zeros = np.zeros(self._n)
        if cmd.mode == ControlMode.POSITION_PD:
            if self._action_noise_rad > 0:
                target = target + self._rng.normal(0.0, self._action_noise_rad, self._n)
            law = _Law(ControlMode.POSITION_PD, target, kp, kd, tau_ff, seq)
        elif cmd.mode == ControlMode.TORQUE:
            law = _Law(ControlMode.TORQUE, zeros, zeros, zeros, tau_ff, seq)
        else:
            law = _Law(ControlMode.DAMPING, zeros, zeros, kd, zeros, seq)
        self._watchdog_armed = True
        self._last_cmd_t = now
        if self._latency_s > 0:
            self._pending.append((now + self._latency_s, law))  # replied to when it takes effect
        else:
            self._set_law(law)
            if self.config.reply_to_commands:
                # The reply is the newest sensor sample: the state of the last physics step, at its time.
                self._send(self._sensor_state(self._t_phys))

    def _bad_command(self, seq: int, now: float) -> None:
        self._latch(Fault.BAD_COMMAND, now)
        self._send(Ack(MessageType.JOINT_COMMAND, seq, AckResult.BAD_COMMAND))

    def _check_watchdog(self, t: float) -> None:
        if self._watchdog_armed and not self._faults and t - self._last_cmd_t > self.cal.watchdog_timeout_s:
            self._latch(Fault.WATCHDOG, t)

    def _latch(self, fault: Fault, now: float) -> None:
        """Latch `fault`, switch to DAMPING at once (dropping commands still in the delay line)."""
        self._pending.clear()
        self._watchdog_armed = False
        if self._law.mode != ControlMode.DAMPING or not np.array_equal(self._law.kd, self._kd_damping):
            self._set_law(self._damping_law())
        if not self._faults & fault:
            self._faults |= fault
            self._report_faults(now)

    def _go_idle(self) -> None:
        self._pending.clear()
        self._watchdog_armed = False
        self._set_law(self._idle_law())

    def _report_faults(self, now: float) -> None:
        # The emulator has no persisting fault causes: "active" is what was raised, equal to "latched".
        self._send(FaultReport(self._faults, self._faults, self._time_us(now)))
        self._next_fault_report = now + self.config.fault_report_period_s

    # --- control laws and physics ---------------------------------------------------------------------------
    def _idle_law(self) -> _Law:
        z = np.zeros(self._n)
        return _Law(
            ControlMode.IDLE, z, z, self._kd_damping * self.config.idle_kd_fraction, z, self._last_cmd_seq
        )

    def _damping_law(self) -> _Law:
        z = np.zeros(self._n)
        return _Law(ControlMode.DAMPING, z, z, self._kd_damping.copy(), z, self._law.seq)

    def _set_law(self, law: _Law) -> None:
        """Write the law into the model: position-actuator gains per joint, target in ctrl, tau_ff a force."""
        m, d, s = self._model, self._data, self._strength
        # Position actuator: force = gain*ctrl + bias1*q + bias2*qdot; gain = kp, bias = (0, -kp, -kd), all
        # times the motor strength, clipped by forcerange (torque limit times strength, from apply_dynamics).
        m.actuator_gainprm[:, 0] = s * law.kp
        m.actuator_biasprm[:, 1] = -s * law.kp
        m.actuator_biasprm[:, 2] = -s * law.kd
        d.ctrl[:] = law.target_rad
        d.qfrc_applied[self._dof_idx] = s * np.clip(law.tau_ff_nm, -self._torque_limit, self._torque_limit)
        self._law = law
        self._last_cmd_seq = law.seq

    def _reset_physics(self) -> None:
        """Teleport to the start pose and let it settle for `settle_s`, held at the default pose by the PD."""
        r = self.robot
        n = self._n
        self._backend.reset(
            np.array(r.base_init_pos, dtype=np.float64),
            np.array([1.0, 0.0, 0.0, 0.0]),
            self._default,
            np.zeros(n),
        )
        a = self.cal.arrays
        hold = _Law(
            ControlMode.IDLE,
            self._default.copy(),
            np.array(a.kp_nm_per_rad),
            np.array(a.kd_nm_s_per_rad),
            np.zeros(n),
            self._last_cmd_seq,
        )
        law = self._law
        self._set_law(hold)
        mujoco.mj_step(self._model, self._data, round(self.config.settle_s / self._dt))
        self._set_law(law)

    def _sensor_state(self, t: float) -> SensorState:
        st = self._backend.state()
        p = self.profile
        rng = self._rng
        q = (
            st.joint_pos_rad + rng.normal(0.0, p.joint_pos_noise_rad, self._n)
            if p.joint_pos_noise_rad
            else (st.joint_pos_rad)
        )
        qd = st.joint_vel_radps
        if p.joint_vel_noise_radps:
            qd = qd + rng.normal(0.0, p.joint_vel_noise_radps, self._n)
        # A weaker motor (strength s < 1) needs more current for the torque it delivers.
        a = self.cal.arrays
        current = a.direction * st.joint_torque_nm / (self._strength * a.nm_per_ma)
        current_ma = np.minimum(np.maximum(np.rint(current), -_I16), _I16).astype(np.int64)
        gyro = st.base_angvel_body_radps
        if p.gyro_noise_radps:
            gyro = gyro + rng.normal(0.0, p.gyro_noise_radps, 3)
        rot = np.empty(9)
        mujoco.mju_quat2Mat(rot, st.base_quat_wxyz)
        lin_acc = self._data.qacc[0:3] if self.robot.floating_base else np.zeros(3)
        # Accelerometer: specific force (acceleration minus gravity) in the body frame: +g on z at rest.
        accel = rot.reshape(3, 3).T @ (lin_acc - self._model.opt.gravity)
        if p.gravity_noise:
            accel = accel + rng.normal(0.0, p.gravity_noise * _G_MPS2, 3)
        contacts = sum(1 << i for i, c in enumerate(st.foot_contact) if c) if self.robot.foot_geoms else 0
        imu = _i16_tuple(
            np.concatenate(
                (gyro / GYRO_RAD_S_PER_LSB, accel / ACCEL_M_S2_PER_LSB, st.base_quat_wxyz / QUAT_PER_LSB)
            )
        )
        t_us = self._time_us(t)
        if self._last_sensor_us >= 0 and not 0 < (t_us - self._last_sensor_us) & 0xFFFFFFFF < 1 << 31:
            # A reply to a command sampled at the same physics step as the state before it: 1 us later, so
            # the firmware times of SENSOR_STATE increase strictly (receivers differentiate by them).
            t_us = (self._last_sensor_us + 1) & 0xFFFFFFFF
        self._last_sensor_us = t_us
        return SensorState(
            firmware_time_us=t_us,
            position_ticks=tuple(rad_to_ticks(self.cal, q).tolist()),
            velocity_ticks_s=tuple(rad_s_to_ticks_per_s(self.cal, qd).tolist()),
            current_ma=tuple(current_ma.tolist()),
            motor_temp_c=(self.config.motor_temp_c,) * self._n,
            last_cmd_seq=self._last_cmd_seq,
            mode=self._law.mode,
            faults=self._faults,
            foot_contacts=contacts,
            gyro=(imu[0], imu[1], imu[2]),
            accel=(imu[3], imu[4], imu[5]),
            quat_wxyz=(imu[6], imu[7], imu[8], imu[9]),
        )

    # --- output ---------------------------------------------------------------------------------------------
    def _hello(self) -> Hello:
        return Hello(
            robot_name=self.cal.robot,
            n_joints=self._n,
            role=Role.EMULATOR,
            capabilities=self._caps,
            sensor_period_us=round(self.config.sensor_period_s * 1e6),
            watchdog_timeout_us=round(self.cal.watchdog_timeout_s * 1e6),
        )

    def _send(self, msg: Message) -> None:
        self._out += encode_message(msg, self._seq.next(msg.MSG_TYPE))

    def _take(self) -> bytes:
        out = bytes(self._out)
        self._out.clear()
        return out

    @staticmethod
    def _time_us(t: float) -> int:
        return round(t * 1e6) & 0xFFFFFFFF


def _i16_tuple(x: np.ndarray) -> tuple[int, ...]:
    return tuple(np.minimum(np.maximum(np.rint(x), -_I16), _I16).astype(np.int64).tolist())
