"""The firmware bridge: serial link <-> bus, with the calibration and the one safety clamp in between.

Data flow (docs/serial-protocol.md, docs/bus.md):

- firmware SENSOR_STATE (raw ticks, mA, fixed-point IMU) -> `sensor_to_joint_state` (calibration) ->
  `JointState` on `obs/<robot>` (PUB bound at `Endpoints.obs`).
- latest `JointTarget` from the command link (CONFLATE SUB bound at `Endpoints.command`, single-part) ->
  `clamp_command` against the previous *sent* command (the measured positions for the first command after
  connecting, a firmware restart or a clear-fault) -> `rad_to_ticks` -> JOINT_COMMAND frame -> port; the
  command actually sent is published as `CommandSent` on `command_sent/<robot>`, kept in memory
  (`Bridge.sent_log`) and appended to a JSONL file when one is given.
- One JOINT_COMMAND per received target, never more: with no new target the bridge sends nothing, so the
  firmware watchdog trips (DAMPING, latched) when the policy stops. The bridge never resends a stale target
  to keep the watchdog fed.
- HEARTBEAT to the firmware every 100 ms; a bus `Heartbeat` every second on `heartbeat/<sender>` and a
  `Status` on `status` every second (telemetry PUB connected to `Endpoints.telemetry`) carrying the counters
  (frames dropped by reason, sequence gaps and restarts, watchdog trips, commands clipped and rejected, port
  losses).
- Control ROUTER at `Endpoints.control(control_index)`: `estop` (ESTOP frames every 20 ms until the firmware
  ACKs; the reply is sent only after the ACK, or `ok=false` after the timeout), `clear_fault`, `reset`
  (RESET_REQUEST every 200 ms until ACKed, same reply rule; the emulator puts the robot back in its start
  pose, real firmware answers UNSUPPORTED -> `ok=false`), `status`, `stop` (shut the bridge down).
- A lost port (OSError from read/write, end of file on a hung-up pseudo-terminal) is counted (`port/lost`),
  closed and reopened with back-off 0.1 s doubling to 3.2 s; every new connection repeats the HELLO handshake
  and forgets the previous sent command, so the first command after it is clamped against measured positions.

One thread, one loop (`step`): a poll on the port, the command link and the control socket; then only what
is ready is serviced, a new target first (its frame is on the wire before the states read meanwhile are
published), and the timers every 2 ms. The firmware answers each applied command with a SENSOR_STATE
(docs/serial-protocol.md section 6.3), so the first state that reports a command applied is on `obs/<robot>`
one link round trip after the command; the bridge publishes every SENSOR_STATE it receives, periodic or
reply.

The calibration is loaded and validated in `Bridge.__init__`, before any port or socket is opened. A
firmware HELLO for another robot, joint count or protocol version raises `HandshakeError`: the bridge refuses
to command a robot its calibration does not describe.

Imports: numpy, pyzmq, msgspec (via robot_rl.bus), google-crc32c (via the protocol), pyserial (lazily) and the
standard library; never torch.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO, Literal

import numpy as np
import numpy.typing as npt
import zmq

from firmware_bridge.calibration import (
    Calibration,
    gains_to_wire,
    load_calibration,
    rad_to_ticks,
    sensor_block_to_si,
)
from firmware_bridge.protocol import (
    PROTOCOL_VERSION,
    Ack,
    AckResult,
    Capability,
    ClearFault,
    ControlMode,
    Estop,
    EstopReason,
    Fault,
    FaultReport,
    FrameReader,
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
    Heartbeat,
)
from firmware_bridge.safety import SafetyResult, clamp_command
from firmware_bridge.serial_port import PortFactory, SerialPort, open_pyserial
from robot_rl.bus.messages import CommandSent, Envelope, JointState, JointTarget, Request, Status
from robot_rl.bus.sockets import (
    BusContext,
    Heartbeater,
    Receiver,
    Responder,
    Sender,
    make_conflate_sub,
    make_pub,
    make_router,
)
from robot_rl.bus.topics import STATUS, Endpoints, obs_topic

log = logging.getLogger("firmware_bridge.bridge")

FloatArray = npt.NDArray[np.float64]

FIRMWARE_HEARTBEAT_S = 0.1  # docs/serial-protocol.md section 8
ESTOP_RETRY_S = 0.02  # section 8: ESTOP every 20 ms until ACKed
# A reset makes the emulator run its settle physics at once (0.3 s simulated): retry slower than that work
# takes, so a slow emulator is not asked to reset again and again.
RESET_RETRY_S = 0.2
LINK_SILENT_S = 0.25  # section 8: no valid frame for 250 ms -> link lost
HELLO_RETRY_S = 0.5  # firmware may still be booting: repeat our HELLO until it answers
TIMER_TICK_S = 0.002  # timers (retries, heartbeats, status) are checked this often, not on every frame
N_FEET = 4  # FOOT_CONTACTS bits are FL, FR, RL, RR (section 6.3)
_U16_MAX = 0xFFFF
COMMAND_SENT_PREFIX = b"command_sent/"
DEFAULT_CONTROL_INDEX = 50
"""Control address index of the bridge (`Endpoints.control(50)`); 0 is the learner, 1.. sim workers."""

State = Literal["disconnected", "handshake", "running"]


class BridgeError(RuntimeError):
    """A condition under which the bridge refuses to run (it exits instead of commanding the robot)."""


class HandshakeError(BridgeError):
    """The firmware's HELLO does not match the calibration (robot, joint count or protocol version)."""


def command_sent_topic(robot: str) -> bytes:
    """`b"command_sent/<robot>"`: the commands the bridge actually wrote to the firmware."""
    return COMMAND_SENT_PREFIX + robot.encode()


_MODE_NAMES: dict[int, str] = {int(m): m.name for m in ControlMode}
_IMU_SCALE = np.array([GYRO_RAD_S_PER_LSB] * 3 + [ACCEL_M_S2_PER_LSB] * 3 + [QUAT_PER_LSB] * 4)
_BIT_MASKS = np.array([1 << i for i in range(32)], dtype=np.int64)  # foot i -> bit i


def sensor_to_joint_state(cal: Calibration, msg: SensorState, *, n_feet: int = N_FEET) -> JointState:
    """One SENSOR_STATE in raw firmware units -> `JointState` in SI units (rad, rad/s, N m, m/s^2).

    `n_feet`: number of foot-contact flags to report (0 for robots without FOOT_CONTACTS).
    Raises ValueError if the frame's joint count is not the calibration's.
    """
    if msg.n_joints != cal.n_joints:
        raise ValueError(
            f"SENSOR_STATE has {msg.n_joints} joints, calibration {cal.robot} has {cal.n_joints}"
        )
    # One array per group of fields (a few numpy calls per frame instead of one per field: 500+ frames/s).
    joints = sensor_block_to_si(
        cal, np.array((msg.position_ticks, msg.velocity_ticks_s, msg.current_ma), dtype=np.float64)
    )
    imu = np.array((*msg.gyro, *msg.accel, *msg.quat_wxyz), dtype=np.float64) * _IMU_SCALE
    return JointState(
        robot=cal.robot,
        joint_pos_rad=joints[0],
        joint_vel_radps=joints[1],
        joint_torque_nm=joints[2],
        gyro_radps=imu[0:3],
        accel_mps2=imu[3:6],
        quat_wxyz=imu[6:10],
        foot_contact=(msg.foot_contacts & _BIT_MASKS[:n_feet]) != 0,
        mode=_MODE_NAMES[msg.mode],
        faults=int(msg.faults),
        t_us=msg.firmware_time_us,
        last_cmd_seq=msg.last_cmd_seq,
    )


@dataclass
class BridgeConfig:
    """Everything the bridge needs besides the port factory. Times in seconds."""

    port: str
    robot: str
    calib: Path
    endpoints: Endpoints
    sender: str = ""  # default "bridge/<robot>"
    control_index: int = DEFAULT_CONTROL_INDEX
    log_path: Path | None = None
    handshake_timeout_s: float = 2.0
    ack_timeout_s: float = 1.0  # e-stop / clear-fault: give up (and reply ok=false) after this
    backoff_initial_s: float = 0.1
    backoff_max_s: float = 3.2
    status_interval_s: float = 1.0
    bus_heartbeat_interval_s: float = 1.0
    sent_log_len: int = 10_000


@dataclass
class _PendingAck:
    """An e-stop, clear-fault or reset request waiting for the firmware's ACK (the reply waits with it)."""

    kind: Literal["estop", "clear_fault", "reset"]
    identity: bytes
    request_env: Envelope
    frame_seqs: set[int]
    deadline: float
    next_send: float


@dataclass
class _Counters:
    values: dict[str, int] = field(default_factory=dict)

    def inc(self, key: str, by: int = 1) -> None:
        self.values[key] = self.values.get(key, 0) + by


class Bridge:
    """The bridge's state and loop: `start()`, then `run()` (or `step()` in tests), then `close()`.

    `port_factory` opens the device (default: pyserial); `ctx` shares a bus context (tests).
    """

    def __init__(
        self,
        config: BridgeConfig,
        *,
        port_factory: PortFactory = open_pyserial,
        ctx: BusContext | None = None,
    ) -> None:
        self.config = config
        # First, before anything is opened: a bad calibration must stop us before any motion command exists.
        self.cal: Calibration = load_calibration(config.calib, expected_robot=config.robot)
        self._kp_default, self._kd_default = gains_to_wire(self.cal)
        self.sender_id = config.sender or f"bridge/{config.robot}"
        self.port_factory = port_factory
        self.counters = _Counters()
        self.sent_log: deque[CommandSent] = deque(maxlen=config.sent_log_len)
        self.state: State = "disconnected"
        self.port: SerialPort | None = None
        self.hello: Hello | None = None
        self.reader = FrameReader()
        self._reader_totals: dict[str, int] = {}
        self._seqs = SequenceCounter()
        self.measured_q: FloatArray | None = None
        self.prev_sent: FloatArray | None = None
        self.faults = Fault.NONE
        self.estopped = False  # bridge-side latch: no motion command after an e-stop until clear_fault
        self._backoff_s = config.backoff_initial_s
        self._next_open = 0.0
        self._handshake_deadline = 0.0
        self._next_hello = 0.0
        self._next_fw_heartbeat = 0.0
        self._next_status = 0.0
        self._next_timer = 0.0
        self._next_bus_heartbeat = 0.0
        self._last_frame_t = 0.0
        self._silent = False
        self._pending: _PendingAck | None = None
        self._stop = threading.Event()
        self._log_file: IO[str] | None = None
        self._own_ctx = ctx is None
        self._ctx = ctx
        self._obs: Sender | None = None
        self._cmd: Receiver | None = None
        self._telemetry: Sender | None = None
        self._heartbeater: Heartbeater | None = None
        self._control: Responder | None = None
        self._poller: zmq.Poller | None = None
        self._polled_fd: int | None = None
        self._n_feet = 0  # foot-contact flags reported (from the firmware HELLO's capabilities)
        self._obs_topic = obs_topic(self.cal.robot)
        self._command_sent_topic = command_sent_topic(self.cal.robot)
        # The calibration's gains as sent (wire integers, a tuple for the frame) and as published (SI).
        self._kp_default_wire = tuple(self._kp_default.tolist())
        self._kd_default_wire = tuple(self._kd_default.tolist())
        self._kp_default_si = self._kp_default.astype(np.float64) * KP_NM_PER_RAD_PER_LSB
        self._kd_default_si = self._kd_default.astype(np.float64) * KD_NM_S_PER_RAD_PER_LSB
        self._kp_default_si.flags.writeable = False  # shared by every CommandSent that uses the defaults
        self._kd_default_si.flags.writeable = False
        self._zero_current = (0,) * self.cal.n_joints

    # ------------------------------------------------------------------------------------ life cycle

    def start(self) -> None:
        """Bind/connect the bus sockets and open the log file (the port is opened by the loop)."""
        ep = self.config.endpoints
        if self._ctx is None:
            self._ctx = BusContext()
        ctx = self._ctx
        self._obs = Sender(make_pub(ctx, ep.obs, sndhwm=100), self.sender_id)
        self._cmd = Receiver(make_conflate_sub(ctx, ep.command), single_part=True)
        self._telemetry = Sender(make_pub(ctx, ep.telemetry, bind=False), self.sender_id)
        self._heartbeater = Heartbeater(self._telemetry, interval_s=self.config.bus_heartbeat_interval_s)
        self._control = Responder(make_router(ctx, ep.control(self.config.control_index)), self.sender_id)
        self._poller = zmq.Poller()
        self._poller.register(self._cmd.sock, zmq.POLLIN)
        self._poller.register(self._control.receiver.sock, zmq.POLLIN)
        if self.config.log_path is not None:
            self.config.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log_file = self.config.log_path.open("a", encoding="utf-8", buffering=1)

    def close(self) -> None:
        """Close the port, the log file and (if the bridge made it) the bus context. Idempotent."""
        self._close_port()
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        if self._ctx is not None and self._own_ctx:
            self._ctx.close()
            self._ctx = None
        elif self._ctx is not None:
            for s in (self._obs, self._telemetry):
                if s is not None:
                    s.sock.close(linger=0)
            if self._cmd is not None:
                self._cmd.sock.close(linger=0)
            if self._control is not None:
                self._control.receiver.sock.close(linger=0)

    def request_stop(self) -> None:
        """Make `run` return after the current iteration (thread- and signal-safe)."""
        self._stop.set()

    def run(self) -> int:
        """Loop until `request_stop` or a `stop` request; 0 on a clean stop. HandshakeError propagates."""
        while not self._stop.is_set():
            self.step()
        self._publish_status("stopping")
        return 0

    # ----------------------------------------------------------------------------------- one iteration

    def step(self, max_wait_s: float = 0.005) -> None:
        """One loop iteration: wait up to `max_wait_s` for the port or a socket, then service what is ready.

        Only what the poll reported is read (the port, the command link, the control socket); timers run
        when one is due. A port without `fileno` (test fakes), or a bridge without sockets, is read each time.
        """
        now = time.monotonic()
        if self.state == "disconnected" and now >= self._next_open:
            self._try_open(now)
        ready: dict[object, int] | None = None
        if self._poller is not None:
            ready = dict(self._poller.poll(max(0, int(max_wait_s * 1000))))
        else:
            time.sleep(max_wait_s)
        now = time.monotonic()
        if ready is None:
            self._service_commands()
            self._read_port(now)
            self._service_control(now)
        elif ready:
            # A new target first: once its frame is written, the firmware works on it while the bridge
            # publishes what it read from the port.
            if self._cmd is not None and self._cmd.sock in ready:
                self._service_commands()
            # Any event on the device counts, not only POLLIN: a hung-up device reports POLLERR/POLLHUP,
            # and its read then raises, which is how a lost port is noticed.
            if self._polled_fd is None or self._polled_fd in ready:
                self._read_port(now)
            if self._control is not None and self._control.receiver.sock in ready:
                self._service_control(now)
        elif self._polled_fd is None:
            self._read_port(now)
        if now >= self._next_timer:
            self._service_timers(now)

    # -------------------------------------------------------------------------------------- the port

    def _try_open(self, now: float) -> None:
        try:
            port = self.port_factory(self.config.port)
        except OSError as exc:
            self.counters.inc("port/open_failed")
            log.warning("cannot open %s: %s; retrying in %.1f s", self.config.port, exc, self._backoff_s)
            self._schedule_reopen(now)
            return
        self.port = port
        self.counters.inc("port/opened")
        self._seqs = (
            SequenceCounter()
        )  # the host's sequence numbers start at 0 on every port open (section 7)
        self._retire_reader()
        self.hello = None
        self.measured_q = None
        self.prev_sent = None  # never clamp (or send) against a command from before the reconnect
        self.state = "handshake"
        self._handshake_deadline = now + self.config.handshake_timeout_s
        self._next_hello = now
        fd = getattr(port, "fileno", None)
        if self._poller is not None and callable(fd):
            self._polled_fd = int(fd())
            self._poller.register(self._polled_fd, zmq.POLLIN)
        log.info("opened %s; waiting for the firmware HELLO", self.config.port)

    def _schedule_reopen(self, now: float) -> None:
        self._next_open = now + self._backoff_s
        self._backoff_s = min(self._backoff_s * 2.0, self.config.backoff_max_s)

    def _retire_reader(self) -> None:
        """Fold the old reader's counters into the totals and start a fresh one (no half frame survives)."""
        for key, value in self._reader_stats(self.reader).items():
            self._reader_totals[key] = self._reader_totals.get(key, 0) + value
        self.reader = FrameReader()

    def _close_port(self) -> None:
        if self._polled_fd is not None and self._poller is not None:
            self._poller.unregister(self._polled_fd)
            self._polled_fd = None
        if self.port is not None:
            port, self.port = self.port, None
            port.close()

    def _port_lost(self, exc: BaseException, *, counter: str = "port/lost") -> None:
        self.counters.inc(counter)
        log.error("lost the firmware port %s: %s; reconnecting", self.config.port, exc)
        self._close_port()
        self.state = "disconnected"
        self.hello = None
        self.measured_q = None
        self.prev_sent = None
        self._backoff_s = self.config.backoff_initial_s
        self._schedule_reopen(time.monotonic())
        self._fail_pending("port lost")

    def _write(self, msg: Message, *, delimit: bool = False) -> int | None:
        """Frame and write `msg`; its sequence number, or None if the port is gone (then reported)."""
        if self.port is None:
            return None
        seq = self._seqs.next(msg.MSG_TYPE)
        data = encode_message(msg, seq)
        try:
            # A leading 0x00 ends any partial frame in the firmware's buffer so it cannot swallow this one.
            self.port.write(b"\x00" + data if delimit else data)
        except OSError as exc:
            self._port_lost(exc)
            return None
        return seq

    def _read_port(self, now: float) -> None:
        if self.port is None:
            return
        try:
            data = self.port.read(4096)
        except OSError as exc:
            self._port_lost(exc)
            return
        if not data:
            return
        for rec in self.reader.feed(data):
            self._last_frame_t = now
            self._silent = False
            self._on_frame(rec.msg_type, rec.seq, rec.message, now)
            if self.port is None:
                return

    # ------------------------------------------------------------------------------ firmware messages

    def _on_frame(self, msg_type: MessageType, seq: int, msg: Message, now: float) -> None:
        if isinstance(msg, SensorState):  # first: nearly every frame is one
            if self.state == "running":
                self._on_sensor_state(msg)
            if msg.faults != self.faults:
                self._update_faults(msg.faults)
        elif isinstance(msg, Hello):
            self._on_hello(msg)
        elif isinstance(msg, FaultReport):
            self._update_faults(msg.latched)
        elif isinstance(msg, Ack):
            self._on_ack(msg)
        elif isinstance(msg, Heartbeat):
            self._update_faults(msg.faults)

    def _on_hello(self, hello: Hello) -> None:
        problems = []
        if hello.protocol_version != PROTOCOL_VERSION:
            problems.append(f"protocol version {hello.protocol_version}, bridge speaks {PROTOCOL_VERSION}")
        if hello.robot_name != self.cal.robot:
            problems.append(
                f"robot {hello.robot_name!r}, calibration {self.cal.source} is for {self.cal.robot!r}"
            )
        if hello.n_joints != self.cal.n_joints:
            problems.append(f"{hello.n_joints} joints, calibration has {self.cal.n_joints}")
        if hello.role == Role.HOST:
            problems.append("the peer says it is a host, not firmware")
        if problems:
            raise HandshakeError(f"firmware on {self.config.port} does not match: " + "; ".join(problems))
        if self.state == "running":
            # A HELLO after the handshake means the firmware restarted: it is IDLE and forgot our commands.
            self.counters.inc("firmware/restarts")
            self.reader.reset_sequence()
            self.prev_sent = None
        self.hello = hello
        self._n_feet = N_FEET if hello.capabilities & Capability.FOOT_CONTACTS else 0
        self.state = "running"
        self._backoff_s = self.config.backoff_initial_s
        log.info("firmware %s (%s, %d joints) connected", hello.robot_name, hello.role.name, hello.n_joints)

    def _on_sensor_state(self, msg: SensorState) -> None:
        try:
            state = sensor_to_joint_state(self.cal, msg, n_feet=self._n_feet)
        except ValueError:
            self.counters.inc("sensor/bad_joint_count")
            return
        self.measured_q = state.joint_pos_rad
        if self._obs is not None:
            self._obs.send(self._obs_topic, state)

    def _update_faults(self, latched: Fault) -> None:
        new = latched & ~self.faults
        if new & Fault.WATCHDOG:
            self.counters.inc("watchdog/trips")
            log.warning(
                "firmware watchdog tripped (no valid command in time): robot in DAMPING until clear_fault"
            )
        if new & Fault.ESTOP:
            self.counters.inc("estop/latched")
        if self.faults and not latched:
            # Faults cleared (CLEAR_FAULT, firmware reset): the firmware is IDLE; clamp from measured.
            self.prev_sent = None
        self.faults = Fault(latched)

    def _on_ack(self, ack: Ack) -> None:
        if ack.acked_type == MessageType.JOINT_COMMAND:
            self.counters.inc(f"ack/command_{ack.result.name.lower()}")
            return
        p = self._pending
        if p is None or ack.acked_seq not in p.frame_seqs:
            return
        want = {
            "estop": MessageType.ESTOP,
            "clear_fault": MessageType.CLEAR_FAULT,
            "reset": MessageType.RESET_REQUEST,
        }[p.kind]
        if ack.acked_type != want:
            return
        self._pending = None
        if self._control is None:
            return
        if ack.result == AckResult.OK:
            if p.kind == "clear_fault":
                self.estopped = False
                self.prev_sent = None
            elif p.kind == "reset":
                # The firmware is IDLE at a new pose: clamp the next command against measured positions.
                self.prev_sent = None
            self.counters.inc(f"{p.kind}/ok")
            self._control.reply(p.identity, p.request_env, ok=True, payload={"ack": ack.result.name})
        else:
            self.counters.inc(f"{p.kind}/refused")
            self._control.reply(p.identity, p.request_env, ok=False, error=f"firmware ACK {ack.result.name}")

    def _fail_pending(self, why: str) -> None:
        p, self._pending = self._pending, None
        if p is not None and self._control is not None:
            self.counters.inc(f"{p.kind}/failed")
            self._control.reply(p.identity, p.request_env, ok=False, error=f"{p.kind}: {why}")

    # -------------------------------------------------------------------------------------- commands

    def _service_commands(self) -> None:
        if self._cmd is None:
            return
        # CONFLATE keeps at most one message, so one non-blocking receive is the latest target.
        decoded = self._cmd.recv(0)
        if decoded is None:
            return
        if not isinstance(decoded.msg, JointTarget):
            self.counters.inc("commands/wrong_kind")
            return
        self.apply_target(decoded.msg)

    def apply_target(self, target: JointTarget) -> CommandSent | None:
        """Clamp `target`, send it, publish and log what was sent. None if nothing was sent (counted why)."""
        n = self.cal.n_joints
        if target.robot != self.cal.robot:
            self.counters.inc("commands/wrong_robot")
            return None
        if target.q_target_rad.shape != (n,):
            self.counters.inc("commands/wrong_shape")
            return None
        if self.estopped or self._pending is not None:
            self.counters.inc("commands/dropped_estop")
            return None
        if self.state != "running" or self.measured_q is None:
            # Not connected, or no measured position yet to clamp the first step against.
            self.counters.inc("commands/dropped_not_ready")
            return None
        kp = self._gain_wire(target.kp, self._kp_default, KP_NM_PER_RAD_PER_LSB)
        kd = self._gain_wire(target.kd, self._kd_default, KD_NM_S_PER_RAD_PER_LSB)
        if kp is None or kd is None:
            self.counters.inc("commands/bad_gains")
            return None
        prev = self.prev_sent if self.prev_sent is not None else self.measured_q
        result = clamp_command(target.q_target_rad, prev, self.cal)
        return self._send_position(result, kp, kd, requested=target.q_target_rad)

    @staticmethod
    def _gain_wire(
        value: FloatArray, default: npt.NDArray[np.int64], scale: float
    ) -> npt.NDArray[np.int64] | None:
        if value.size == 0:
            return default
        wire = np.rint(np.asarray(value, dtype=np.float64) / scale)
        # Gains the wire cannot carry are refused, not clipped: clamping lives in safety.clamp_command only.
        if not np.all(np.isfinite(wire)) or np.any(wire < 0) or np.any(wire > _U16_MAX):
            return None
        return wire.astype(np.int64)

    def _send_position(
        self,
        result: SafetyResult,
        kp: npt.NDArray[np.int64],
        kd: npt.NDArray[np.int64],
        *,
        requested: FloatArray,
    ) -> CommandSent | None:
        ticks = rad_to_ticks(self.cal, result.command)
        # The calibration's gains (the usual case) are converted once, in __init__.
        default_kp, default_kd = kp is self._kp_default, kd is self._kd_default
        frame = JointCommand(
            mode=ControlMode.POSITION_PD,
            target_ticks=tuple(ticks.tolist()),
            kp=self._kp_default_wire if default_kp else tuple(kp.tolist()),
            kd=self._kd_default_wire if default_kd else tuple(kd.tolist()),
            current_ma=self._zero_current,
        )
        seq = self._write(frame)
        if seq is None:
            return None
        self.prev_sent = result.command
        self.counters.inc("commands/sent")
        if result.rejected:
            self.counters.inc("commands/rejected")
        if result.clipped_limit.any() or result.clipped_step.any():
            self.counters.inc("commands/clipped")
        sent = CommandSent(
            robot=self.cal.robot,
            q_rad=result.command,
            target_ticks=ticks,
            kp=self._kp_default_si if default_kp else kp.astype(np.float64) * KP_NM_PER_RAD_PER_LSB,
            kd=self._kd_default_si if default_kd else kd.astype(np.float64) * KD_NM_S_PER_RAD_PER_LSB,
            clipped_limit=result.clipped_limit,
            clipped_step=result.clipped_step,
            rejected=result.rejected,
            seq=seq,
        )
        self.sent_log.append(sent)
        if self._obs is not None:
            self._obs.send(self._command_sent_topic, sent)
        if self._log_file is not None:
            record = {
                "t_ns": time.time_ns(),
                "seq": seq,
                "requested_rad": [float(x) if np.isfinite(x) else str(x) for x in requested],
                "q_rad": result.command.tolist(),
                "target_ticks": ticks.tolist(),
                "kp": sent.kp.tolist(),
                "kd": sent.kd.tolist(),
                "clipped_limit": result.clipped_limit.tolist(),
                "clipped_step": result.clipped_step.tolist(),
                "rejected": result.rejected,
            }
            self._log_file.write(json.dumps(record) + "\n")
        return sent

    # --------------------------------------------------------------------------------------- control

    def _service_control(self, now: float) -> None:
        if self._control is None:
            return
        got = self._control.recv_request(0)
        if got is None:
            return
        identity, env, req = got
        self._on_request(identity, env, req, now)

    def _on_request(self, identity: bytes, env: Envelope, req: Request, now: float) -> None:
        assert self._control is not None
        if req.command in ("estop", "clear_fault", "reset"):
            if self.state != "running":
                # Never report "stopped" without the firmware's word for it.
                self._control.reply(identity, env, ok=False, error=f"{req.command}: firmware not connected")
                self.counters.inc(f"{req.command}/failed")
                return
            if self._pending is not None:
                self._fail_pending(f"superseded by {req.command}")
            if req.command == "estop":
                self.estopped = True  # stop forwarding motion commands at once, before the ACK
            kind: Literal["estop", "clear_fault", "reset"] = req.command
            self._pending = _PendingAck(
                kind=kind,
                identity=identity,
                request_env=env,
                frame_seqs=set(),
                deadline=now + self.config.ack_timeout_s,
                next_send=now,
            )
            self._service_pending(now)
        elif req.command == "status":
            self._control.reply(
                identity, env, ok=True, payload={"state": self.state, **self.status_counters()}
            )
        elif req.command == "stop":
            self._control.reply(identity, env, ok=True, payload={"state": "stopping"})
            self.request_stop()
        else:
            self._control.reply(identity, env, ok=False, error=f"unsupported command {req.command!r}")

    def _service_pending(self, now: float) -> None:
        p = self._pending
        if p is None:
            return
        if now >= p.deadline:
            self._fail_pending(f"no ACK from the firmware within {self.config.ack_timeout_s:g} s")
            return
        if now >= p.next_send:
            msg: Message
            if p.kind == "estop":
                msg = Estop(EstopReason.OPERATOR)
            elif p.kind == "clear_fault":
                msg = ClearFault()
            else:
                msg = ResetRequest()
            seq = self._write(msg, delimit=True)
            if seq is not None and self._pending is p:
                p.frame_seqs.add(seq)
                p.next_send = now + (RESET_RETRY_S if p.kind == "reset" else ESTOP_RETRY_S)

    # ---------------------------------------------------------------------------------------- timers

    def _service_timers(self, now: float) -> None:
        """Retries, heartbeats, status and link checks; run every `TIMER_TICK_S` (none needs finer timing)."""
        self._next_timer = now + TIMER_TICK_S
        self._service_pending(now)
        if self.state == "handshake":
            if now >= self._handshake_deadline:
                timeout = TimeoutError(f"no firmware HELLO within {self.config.handshake_timeout_s} s")
                self._port_lost(timeout, counter="handshake/timeout")
            elif now >= self._next_hello:
                self._next_hello = now + HELLO_RETRY_S
                hello = Hello(
                    robot_name=self.cal.robot,
                    n_joints=self.cal.n_joints,
                    role=Role.HOST,
                    watchdog_timeout_us=round(self.cal.watchdog_timeout_s * 1e6),
                )
                self._write(hello, delimit=True)
        if self.state in ("handshake", "running") and now >= self._next_fw_heartbeat:
            self._next_fw_heartbeat = now + FIRMWARE_HEARTBEAT_S
            self._write(Heartbeat(sender_time_us=int(now * 1e6) & 0xFFFFFFFF))
        if self.state == "running" and not self._silent and now - self._last_frame_t > LINK_SILENT_S:
            self._silent = True
            self.counters.inc("link/silent")
            log.warning("no valid frame from the firmware for %.0f ms", LINK_SILENT_S * 1000)
        if self._heartbeater is not None and now >= self._next_bus_heartbeat:
            # The counters are gathered only when a heartbeat is due, not on every loop iteration.
            self._next_bus_heartbeat = now + self._heartbeater.interval_s
            self._heartbeater.tick(self.state, self.status_counters(), now=now)
        if now >= self._next_status:
            self._next_status = now + self.config.status_interval_s
            self._publish_status(self.state)

    @staticmethod
    def _reader_stats(reader: FrameReader) -> dict[str, int]:
        s = reader.stats
        out = {f"serial/dropped/{reason}": count for reason, count in s.dropped.items()}
        out["serial/frames_ok"] = s.frames_ok
        out["serial/seq_gaps"] = sum(s.seq_gaps.values())
        out["serial/seq_restarts"] = sum(s.seq_restarts.values())
        return out

    def status_counters(self) -> dict[str, int]:
        """All counters: the bridge's own plus the serial reader's, summed over every connection."""
        out = dict(self._reader_totals)
        for key, value in self._reader_stats(self.reader).items():
            out[key] = out.get(key, 0) + value
        out.update(self.counters.values)
        out["faults"] = int(self.faults)
        return out

    def _publish_status(self, state: str) -> None:
        if self._telemetry is not None:
            self._telemetry.send(STATUS, Status(state=state, counters=self.status_counters()))


# ------------------------------------------------------------------------------------------ entry point


def run_bridge(config: BridgeConfig, *, port_factory: PortFactory = open_pyserial) -> int:
    """Run until SIGINT/SIGTERM or a `stop` request. Exit codes: 0 stopped, 2 bad calibration or handshake."""
    from firmware_bridge.calibration import CalibrationError

    try:
        bridge = Bridge(config, port_factory=port_factory)
    except CalibrationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    previous: dict[signal.Signals, Callable[[int, FrameType | None], object] | int | None] = {}

    def on_signal(signum: int, frame: FrameType | None) -> None:
        bridge.request_stop()

    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, on_signal)
    try:
        bridge.start()
        return bridge.run()
    except HandshakeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        bridge.close()
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def main(argv: list[str] | None = None) -> int:
    """`python -m firmware_bridge.bridge --port DEV --robot R --calib calib/R.toml [--bus B] [--log F]`."""
    import argparse

    from firmware_bridge.bridge_commands import Bridge as BridgeCommand

    p = argparse.ArgumentParser(prog="python -m firmware_bridge.bridge", description=BridgeCommand.__doc__)
    p.add_argument("--port", required=True, help="serial device (e.g. /dev/ttyUSB0 or the emulator's pty)")
    p.add_argument("--robot", required=True, help="robot name; must match the calibration and the firmware")
    p.add_argument("--calib", required=True, type=Path, help="calibration file calib/<robot>.toml")
    p.add_argument("--bus", default=None, help="bus base address (default ipc://<tmp>/rrl-<run>)")
    p.add_argument("--run", default="real", help="run name for the default bus address")
    p.add_argument("--log", default=None, type=Path, help="append every command sent to this JSONL file")
    p.add_argument("--control-index", default=DEFAULT_CONTROL_INDEX, type=int)
    a = p.parse_args(argv)
    cmd = BridgeCommand(
        port=a.port,
        robot=a.robot,
        calib=a.calib,
        bus=a.bus,
        run=a.run,
        log=a.log,
        control_index=a.control_index,
    )
    return cmd.execute()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    sys.exit(main())
