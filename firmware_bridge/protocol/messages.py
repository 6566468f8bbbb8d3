"""Message payloads: one frozen dataclass per message type, packed with `struct`, all little-endian.

Every value on the wire is in raw firmware units (integers); the scales below turn them into SI units and
are the single source of truth for docs/serial-protocol.md section 5. Joint quantities are per motor, in the
firmware's own encoder/current units; `firmware_bridge.calibration` converts them to joint SI units.

| quantity | wire type | unit on the wire | SI = wire * scale |
|---|---|---|---|
| joint position | i32 | encoder ticks (motor side) | via calibration |
| joint velocity | i32 | encoder ticks / s | via calibration |
| motor current | i16 | mA | via calibration (torque constant, gear) |
| motor temperature | i8 | deg C | 1 |
| IMU gyro | i16 | 1e-3 rad/s | `GYRO_RAD_S_PER_LSB` = 0.001 |
| IMU accelerometer | i16 | 1e-2 m/s^2 | `ACCEL_M_S2_PER_LSB` = 0.01 |
| orientation quaternion | i16 | 1/16384 | `QUAT_PER_LSB` = 1/16384 |
| gripper opening | u16 | 1e-4 m (0.1 mm) | `GRIPPER_M_PER_LSB` = 0.0001 |
| kp | u16 | 1e-2 N m/rad (joint side) | `KP_NM_PER_RAD_PER_LSB` = 0.01 |
| kd | u16 | 1e-3 N m s/rad (joint side) | `KD_NM_S_PER_RAD_PER_LSB` = 0.001 |
| time | u32 | microseconds (wraps after 71.6 min) | 1e-6 |

The accelerometer uses 1e-2 m/s^2 rather than mm/s^2 because i16 mm/s^2 saturates at 3.3 g, below the foot
impact peaks of a trotting quadruped; 1e-2 m/s^2 reaches 33 g.

`unpack_payload` raises only `FrameError("payload", ...)`: a payload that passed the CRC but does not fit its
type (wrong size, unknown enum value, reserved bits set) is dropped like any other bad frame.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import IntEnum, IntFlag
from functools import lru_cache
from typing import Any, ClassVar, Self, TypeVar

from firmware_bridge.protocol.frames import (
    PROTOCOL_VERSION,
    FrameError,
    MessageType,
    encode_frame,
)

GYRO_RAD_S_PER_LSB = 1e-3
ACCEL_M_S2_PER_LSB = 1e-2
QUAT_PER_LSB = 1.0 / 16384.0
GRIPPER_M_PER_LSB = 1e-4
KP_NM_PER_RAD_PER_LSB = 1e-2
KD_NM_S_PER_RAD_PER_LSB = 1e-3
MAX_JOINTS = 32
ROBOT_NAME_LEN = 16  # bytes, ASCII, NUL-padded
NO_JOINT = 0xFF  # FaultReport.joint when the fault is not tied to one joint

_E = TypeVar("_E", bound=IntEnum)
_F = TypeVar("_F", bound=IntFlag)

_I8 = (-(1 << 7), (1 << 7) - 1)
_I16 = (-(1 << 15), (1 << 15) - 1)
_I32 = (-(1 << 31), (1 << 31) - 1)
_U8 = (0, (1 << 8) - 1)
_U16 = (0, (1 << 16) - 1)
_U32 = (0, (1 << 32) - 1)


class Role(IntEnum):
    """Who sent a HELLO."""

    HOST = 0
    FIRMWARE = 1
    EMULATOR = 2


class Capability(IntFlag):
    """HELLO capability bits: which optional sensor fields carry data (the others are sent as zeros)."""

    NONE = 0
    IMU = 1
    FOOT_CONTACTS = 2
    GRIPPER = 4


class ControlMode(IntEnum):
    """Firmware control mode (SENSOR_STATE, HEARTBEAT) and JOINT_COMMAND mode (1-3 only)."""

    IDLE = 0  # no command since boot / clear-fault / reset: motors passive (light damping)
    POSITION_PD = 1  # tau = kp (q_target - q) - kd qdot + tau_ff, clipped to the firmware torque limit
    TORQUE = 2  # motor current = the command's current_ma
    DAMPING = 3  # tau = -kd qdot; also the watchdog / e-stop fallback (with the firmware's own kd)


class Fault(IntFlag):
    """Fault bitfield (SENSOR_STATE, HEARTBEAT, FAULT_REPORT, CLEAR_FAULT mask). Bits 5-7 are reserved (0)."""

    NONE = 0
    WATCHDOG = 1
    ESTOP = 2
    OVER_CURRENT = 4
    OVER_TEMPERATURE = 8
    BAD_COMMAND = 16


ALL_FAULTS = Fault.WATCHDOG | Fault.ESTOP | Fault.OVER_CURRENT | Fault.OVER_TEMPERATURE | Fault.BAD_COMMAND


class EstopReason(IntEnum):
    OPERATOR = 0  # a person pressed a (software) stop button
    HOST_SOFTWARE = 1  # the host stack decided to stop (e.g. a policy error)
    SAFETY_LIMIT = 2  # the bridge saw a limit violation in the sensor stream
    LINK_LOSS = 3  # the host lost the sensor stream and stops what it can still reach
    TEST = 4


class AckResult(IntEnum):
    OK = 0
    REJECTED_FAULT_LATCHED = 1  # a command arrived while a fault is latched; it was not applied
    BAD_COMMAND = 2  # malformed for this robot (e.g. wrong n_joints); not applied, BAD_COMMAND latched
    FAULT_PERSISTS = 3  # CLEAR_FAULT: the cause of a requested fault is still present; it stays latched
    UNSUPPORTED = 4  # e.g. RESET_REQUEST on real hardware


class GripperState(IntEnum):
    NONE = 0  # robot has no gripper
    OPEN = 1
    CLOSED = 2
    MOVING = 3
    HOLDING = 4  # closed on an object


_INT_ONLY = frozenset({int})


def _check(owner: str, name: str, values: Sequence[int] | int, lo_hi: tuple[int, int]) -> None:
    """ValueError naming the field if a value does not fit its wire type (a sender bug, caught before I/O)."""
    lo, hi = lo_hi
    seq = (values,) if isinstance(values, int) else values
    # Fast path (every frame the bridge and the emulator send): plain ints in range, tested in C.
    if seq and set(map(type, seq)) <= _INT_ONLY and lo <= min(seq) and max(seq) <= hi:
        return
    for v in seq:
        if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
            raise ValueError(f"{owner}.{name}: {v!r} is not an integer in [{lo}, {hi}]")


# Members by value: a dict lookup is ~10x cheaper than calling the enum class (every frame received).
_ENUM_MEMBERS: dict[type[IntEnum], dict[int, Any]] = {}
_FLAG_MEMBERS: dict[tuple[type[IntFlag], int], dict[int, Any]] = {}


def _enum(enum: type[_E], value: int, what: str) -> _E:
    members = _ENUM_MEMBERS.get(enum)
    if members is None:
        members = _ENUM_MEMBERS[enum] = {int(m): m for m in enum}
    member: _E | None = members.get(value)
    if member is None:
        raise FrameError("payload", f"{what}: {value} is not a valid {enum.__name__}")
    return member


def _flags(flag: type[_F], value: int, valid: int, what: str) -> _F:
    if value & ~valid:
        raise FrameError("payload", f"{what}: reserved bits set in {value:#04x}")
    members = _FLAG_MEMBERS.get((flag, valid))
    if members is None:
        # Every combination of the valid bits (5 bits at most here: 32 values).
        combos = (v for v in range(valid + 1) if not v & ~valid)
        members = _FLAG_MEMBERS[(flag, valid)] = {v: flag(v) for v in combos}
    member: _F = members[value]
    return member


def _expect_len(what: str, payload: bytes, n: int) -> None:
    if len(payload) != n:
        raise FrameError("payload", f"{what}: {len(payload)} bytes, expected {n}")


def _n_joints(owner: str, n: int) -> None:
    if not 1 <= n <= MAX_JOINTS:
        raise ValueError(f"{owner}: n_joints must be in [1, {MAX_JOINTS}], got {n}")


# --- HELLO --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Hello:
    """Identity and link parameters; 28 bytes. Firmware sends it at boot and in reply to the host's HELLO.

    offset 0 u8 protocol_version, 1 u8 role, 2 u8 n_joints, 3 u8 capabilities, 4 u32 sensor_period_us,
    8 u32 watchdog_timeout_us, 12 char[16] robot_name (ASCII, NUL-padded).
    """

    MSG_TYPE: ClassVar[MessageType] = MessageType.HELLO
    STRUCT: ClassVar[struct.Struct] = struct.Struct("<BBBBII16s")

    robot_name: str
    n_joints: int
    role: Role
    capabilities: Capability = Capability.NONE
    sensor_period_us: int = 0  # firmware: period of SENSOR_STATE; host: 0
    watchdog_timeout_us: int = 0  # firmware: its watchdog timeout; host: the timeout it expects
    protocol_version: int = PROTOCOL_VERSION

    def pack(self) -> bytes:
        name = self.robot_name.encode("ascii", errors="strict") if self.robot_name.isascii() else b""
        if not name or len(name) > ROBOT_NAME_LEN or b"\x00" in name:
            raise ValueError(f"Hello.robot_name: {self.robot_name!r} must be 1-{ROBOT_NAME_LEN} ASCII chars")
        _n_joints("Hello", self.n_joints)
        _check("Hello", "protocol_version", self.protocol_version, _U8)
        _check("Hello", "sensor_period_us", self.sensor_period_us, _U32)
        _check("Hello", "watchdog_timeout_us", self.watchdog_timeout_us, _U32)
        return self.STRUCT.pack(
            self.protocol_version,
            int(self.role),
            self.n_joints,
            int(self.capabilities),
            self.sensor_period_us,
            self.watchdog_timeout_us,
            name,
        )

    @classmethod
    def unpack(cls, payload: bytes) -> Self:
        _expect_len("HELLO", payload, cls.STRUCT.size)
        version, role, n, caps, period, watchdog, raw_name = cls.STRUCT.unpack(payload)
        name = raw_name.rstrip(b"\x00")
        if not name or b"\x00" in name or not name.isascii():
            raise FrameError("payload", f"HELLO: bad robot name {raw_name!r}")
        if not 1 <= n <= MAX_JOINTS:
            raise FrameError("payload", f"HELLO: n_joints {n} outside [1, {MAX_JOINTS}]")
        return cls(
            robot_name=name.decode("ascii"),
            n_joints=n,
            role=_enum(Role, role, "HELLO.role"),
            capabilities=_flags(Capability, caps, 0x07, "HELLO.capabilities"),
            sensor_period_us=period,
            watchdog_timeout_us=watchdog,
            protocol_version=version,
        )


# --- HEARTBEAT ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Heartbeat:
    """Liveness, both directions; 6 bytes: 0 u32 sender_time_us, 4 u8 mode, 5 u8 faults (host sends 0, 0).

    A heartbeat does NOT feed the firmware watchdog: only a valid JOINT_COMMAND does.
    """

    MSG_TYPE: ClassVar[MessageType] = MessageType.HEARTBEAT
    STRUCT: ClassVar[struct.Struct] = struct.Struct("<IBB")

    sender_time_us: int
    mode: ControlMode = ControlMode.IDLE
    faults: Fault = Fault.NONE

    def pack(self) -> bytes:
        _check("Heartbeat", "sender_time_us", self.sender_time_us, _U32)
        return self.STRUCT.pack(self.sender_time_us, int(self.mode), int(self.faults))

    @classmethod
    def unpack(cls, payload: bytes) -> Self:
        _expect_len("HEARTBEAT", payload, cls.STRUCT.size)
        t, mode, faults = cls.STRUCT.unpack(payload)
        return cls(
            sender_time_us=t,
            mode=_enum(ControlMode, mode, "HEARTBEAT.mode"),
            faults=_flags(Fault, faults, int(ALL_FAULTS), "HEARTBEAT.faults"),
        )


# --- SENSOR_STATE -------------------------------------------------------------------------------------


@lru_cache(maxsize=MAX_JOINTS)
def _sensor_joints_struct(n: int) -> struct.Struct:
    return struct.Struct(f"<{n}i{n}i{n}h{n}b")


@dataclass(frozen=True)
class SensorState:
    """Firmware -> host, every `Hello.sensor_period_us`; 34 + 11 n bytes (n = number of joints).

    Fixed part: 0 u32 firmware_time_us, 4 u16 last_cmd_seq, 6 u8 mode, 7 u8 faults (latched), 8 u8 n_joints,
    9 u8 foot_contacts (bit i = foot i in the robot's foot order), 10 u8 gripper_state, 11 u8 reserved (0),
    12 u16 gripper_opening (1e-4 m), 14 i16[3] gyro (1e-3 rad/s, body frame), 20 i16[3] accel (1e-2 m/s^2,
    specific force, body frame: +9.81 on z at rest), 26 i16[4] quat_wxyz (1/16384, body -> world).
    Per joint, in the robot's joint order: 34 i32[n] position_ticks, 34+4n i32[n] velocity_ticks_s,
    34+8n i16[n] current_ma, 34+10n i8[n] motor_temp_c.
    """

    MSG_TYPE: ClassVar[MessageType] = MessageType.SENSOR_STATE
    HEAD: ClassVar[struct.Struct] = struct.Struct("<IHBBBBBBH3h3h4h")

    firmware_time_us: int
    position_ticks: tuple[int, ...]
    velocity_ticks_s: tuple[int, ...]
    current_ma: tuple[int, ...]
    motor_temp_c: tuple[int, ...]
    last_cmd_seq: int = 0  # seq of the last JOINT_COMMAND applied (0 before the first)
    mode: ControlMode = ControlMode.IDLE
    faults: Fault = Fault.NONE
    foot_contacts: int = 0  # bitfield
    gripper_state: GripperState = GripperState.NONE
    gripper_opening: int = 0  # 1e-4 m
    gyro: tuple[int, int, int] = (0, 0, 0)
    accel: tuple[int, int, int] = (0, 0, 0)
    quat_wxyz: tuple[int, int, int, int] = (16384, 0, 0, 0)

    @property
    def n_joints(self) -> int:
        return len(self.position_ticks)

    def pack(self) -> bytes:
        n = self.n_joints
        _n_joints("SensorState", n)
        for name in ("velocity_ticks_s", "current_ma", "motor_temp_c"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"SensorState.{name}: {len(getattr(self, name))} values, expected {n}")
        if len(self.gyro) != 3 or len(self.accel) != 3 or len(self.quat_wxyz) != 4:
            raise ValueError("SensorState: gyro and accel need 3 values, quat_wxyz 4")
        _check("SensorState", "firmware_time_us", self.firmware_time_us, _U32)
        _check("SensorState", "last_cmd_seq", self.last_cmd_seq, _U16)
        _check("SensorState", "foot_contacts", self.foot_contacts, _U8)
        _check("SensorState", "gripper_opening", self.gripper_opening, _U16)
        _check("SensorState", "gyro", self.gyro, _I16)
        _check("SensorState", "accel", self.accel, _I16)
        _check("SensorState", "quat_wxyz", self.quat_wxyz, _I16)
        _check("SensorState", "position_ticks", self.position_ticks, _I32)
        _check("SensorState", "velocity_ticks_s", self.velocity_ticks_s, _I32)
        _check("SensorState", "current_ma", self.current_ma, _I16)
        _check("SensorState", "motor_temp_c", self.motor_temp_c, _I8)
        head = self.HEAD.pack(
            self.firmware_time_us,
            self.last_cmd_seq,
            int(self.mode),
            int(self.faults),
            n,
            self.foot_contacts,
            int(self.gripper_state),
            0,
            self.gripper_opening,
            *self.gyro,
            *self.accel,
            *self.quat_wxyz,
        )
        return head + _sensor_joints_struct(n).pack(
            *self.position_ticks, *self.velocity_ticks_s, *self.current_ma, *self.motor_temp_c
        )

    @classmethod
    def unpack(cls, payload: bytes) -> Self:
        if len(payload) < cls.HEAD.size:
            raise FrameError("payload", f"SENSOR_STATE: {len(payload)} bytes < {cls.HEAD.size}")
        h = cls.HEAD.unpack_from(payload)
        n = h[4]
        if not 1 <= n <= MAX_JOINTS:
            raise FrameError("payload", f"SENSOR_STATE: n_joints {n} outside [1, {MAX_JOINTS}]")
        joints = _sensor_joints_struct(n)
        _expect_len("SENSOR_STATE", payload, cls.HEAD.size + joints.size)
        if h[7] != 0:
            raise FrameError("payload", f"SENSOR_STATE: reserved byte is {h[7]}, must be 0")
        j = joints.unpack_from(payload, cls.HEAD.size)
        return cls(
            firmware_time_us=h[0],
            last_cmd_seq=h[1],
            mode=_enum(ControlMode, h[2], "SENSOR_STATE.mode"),
            faults=_flags(Fault, h[3], int(ALL_FAULTS), "SENSOR_STATE.faults"),
            foot_contacts=h[5],
            gripper_state=_enum(GripperState, h[6], "SENSOR_STATE.gripper_state"),
            gripper_opening=h[8],
            gyro=(h[9], h[10], h[11]),
            accel=(h[12], h[13], h[14]),
            quat_wxyz=(h[15], h[16], h[17], h[18]),
            position_ticks=j[0:n],
            velocity_ticks_s=j[n : 2 * n],
            current_ma=j[2 * n : 3 * n],
            motor_temp_c=j[3 * n : 4 * n],
        )


# --- JOINT_COMMAND ------------------------------------------------------------------------------------


@lru_cache(maxsize=MAX_JOINTS)
def _command_joints_struct(n: int) -> struct.Struct:
    return struct.Struct(f"<{n}i{n}H{n}H{n}h")


@dataclass(frozen=True)
class JointCommand:
    """Host -> firmware, once per control period; 2 + 10 n bytes. Each valid one feeds the watchdog.

    0 u8 mode (ControlMode 1-3), 1 u8 n_joints, then per joint in the robot's joint order:
    2 i32[n] target_ticks, 2+4n u16[n] kp (1e-2 N m/rad), 2+6n u16[n] kd (1e-3 N m s/rad),
    2+8n i16[n] current_ma (POSITION_PD: feed-forward; TORQUE: the target; DAMPING: ignored, send 0).
    DAMPING ignores target_ticks and kp (send the last targets or 0).
    """

    MSG_TYPE: ClassVar[MessageType] = MessageType.JOINT_COMMAND
    HEAD: ClassVar[struct.Struct] = struct.Struct("<BB")

    mode: ControlMode
    target_ticks: tuple[int, ...]
    kp: tuple[int, ...]
    kd: tuple[int, ...]
    current_ma: tuple[int, ...]

    @property
    def n_joints(self) -> int:
        return len(self.target_ticks)

    def pack(self) -> bytes:
        n = self.n_joints
        _n_joints("JointCommand", n)
        if self.mode == ControlMode.IDLE:
            raise ValueError("JointCommand.mode: IDLE is a firmware state, not a command mode")
        for name in ("kp", "kd", "current_ma"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"JointCommand.{name}: {len(getattr(self, name))} values, expected {n}")
        _check("JointCommand", "target_ticks", self.target_ticks, _I32)
        _check("JointCommand", "kp", self.kp, _U16)
        _check("JointCommand", "kd", self.kd, _U16)
        _check("JointCommand", "current_ma", self.current_ma, _I16)
        return self.HEAD.pack(int(self.mode), n) + _command_joints_struct(n).pack(
            *self.target_ticks, *self.kp, *self.kd, *self.current_ma
        )

    @classmethod
    def unpack(cls, payload: bytes) -> Self:
        if len(payload) < cls.HEAD.size:
            raise FrameError("payload", f"JOINT_COMMAND: {len(payload)} bytes < {cls.HEAD.size}")
        mode, n = cls.HEAD.unpack_from(payload)
        if not 1 <= n <= MAX_JOINTS:
            raise FrameError("payload", f"JOINT_COMMAND: n_joints {n} outside [1, {MAX_JOINTS}]")
        joints = _command_joints_struct(n)
        _expect_len("JOINT_COMMAND", payload, cls.HEAD.size + joints.size)
        m = _enum(ControlMode, mode, "JOINT_COMMAND.mode")
        if m == ControlMode.IDLE:
            raise FrameError("payload", "JOINT_COMMAND: mode IDLE is not a command mode")
        j = joints.unpack_from(payload, cls.HEAD.size)
        return cls(
            mode=m,
            target_ticks=j[0:n],
            kp=j[n : 2 * n],
            kd=j[2 * n : 3 * n],
            current_ma=j[3 * n : 4 * n],
        )


# --- ESTOP / CLEAR_FAULT / RESET_REQUEST --------------------------------------------------------------


@dataclass(frozen=True)
class Estop:
    """Host -> firmware; 1 byte: 0 u8 reason. Idempotent, always acknowledged, latches Fault.ESTOP."""

    MSG_TYPE: ClassVar[MessageType] = MessageType.ESTOP
    STRUCT: ClassVar[struct.Struct] = struct.Struct("<B")

    reason: EstopReason = EstopReason.OPERATOR

    def pack(self) -> bytes:
        return self.STRUCT.pack(int(self.reason))

    @classmethod
    def unpack(cls, payload: bytes) -> Self:
        _expect_len("ESTOP", payload, cls.STRUCT.size)
        return cls(reason=_enum(EstopReason, payload[0], "ESTOP.reason"))


@dataclass(frozen=True)
class ClearFault:
    """Host -> firmware; 1 byte: 0 u8 mask of the faults to clear (Fault bits). Always acknowledged."""

    MSG_TYPE: ClassVar[MessageType] = MessageType.CLEAR_FAULT
    STRUCT: ClassVar[struct.Struct] = struct.Struct("<B")

    mask: Fault = ALL_FAULTS

    def pack(self) -> bytes:
        return self.STRUCT.pack(int(self.mask))

    @classmethod
    def unpack(cls, payload: bytes) -> Self:
        _expect_len("CLEAR_FAULT", payload, cls.STRUCT.size)
        return cls(mask=_flags(Fault, payload[0], int(ALL_FAULTS), "CLEAR_FAULT.mask"))


@dataclass(frozen=True)
class ResetRequest:
    """Host -> firmware; empty payload. Emulator: put the robot back in its start pose, ack OK.

    Real firmware answers UNSUPPORTED: on hardware, resetting the robot is the operator's job.
    """

    MSG_TYPE: ClassVar[MessageType] = MessageType.RESET_REQUEST

    def pack(self) -> bytes:
        return b""

    @classmethod
    def unpack(cls, payload: bytes) -> Self:
        _expect_len("RESET_REQUEST", payload, 0)
        return cls()


# --- ACK / FAULT_REPORT -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ack:
    """Firmware -> host; 4 bytes: 0 u8 acked_type, 1 u8 result (AckResult), 2 u16 acked_seq."""

    MSG_TYPE: ClassVar[MessageType] = MessageType.ACK
    STRUCT: ClassVar[struct.Struct] = struct.Struct("<BBH")

    acked_type: MessageType
    acked_seq: int
    result: AckResult = AckResult.OK

    def pack(self) -> bytes:
        _check("Ack", "acked_seq", self.acked_seq, _U16)
        return self.STRUCT.pack(int(self.acked_type), int(self.result), self.acked_seq)

    @classmethod
    def unpack(cls, payload: bytes) -> Self:
        _expect_len("ACK", payload, cls.STRUCT.size)
        t, result, seq = cls.STRUCT.unpack(payload)
        return cls(
            acked_type=_enum(MessageType, t, "ACK.acked_type"),
            acked_seq=seq,
            result=_enum(AckResult, result, "ACK.result"),
        )


@dataclass(frozen=True)
class FaultReport:
    """Firmware -> host, on every change of the fault state and at 1 Hz while any fault is latched; 8 bytes.

    0 u8 active (faults whose cause is present now), 1 u8 latched (faults latched until CLEAR_FAULT),
    2 u8 joint (index of the joint that raised it, 0xFF = none), 3 u8 reserved (0), 4 u32 firmware_time_us.
    """

    MSG_TYPE: ClassVar[MessageType] = MessageType.FAULT_REPORT
    STRUCT: ClassVar[struct.Struct] = struct.Struct("<BBBBI")

    active: Fault
    latched: Fault
    firmware_time_us: int
    joint: int = NO_JOINT

    def pack(self) -> bytes:
        _check("FaultReport", "joint", self.joint, _U8)
        _check("FaultReport", "firmware_time_us", self.firmware_time_us, _U32)
        return self.STRUCT.pack(int(self.active), int(self.latched), self.joint, 0, self.firmware_time_us)

    @classmethod
    def unpack(cls, payload: bytes) -> Self:
        _expect_len("FAULT_REPORT", payload, cls.STRUCT.size)
        active, latched, joint, reserved, t = cls.STRUCT.unpack(payload)
        if reserved != 0:
            raise FrameError("payload", f"FAULT_REPORT: reserved byte is {reserved}, must be 0")
        return cls(
            active=_flags(Fault, active, int(ALL_FAULTS), "FAULT_REPORT.active"),
            latched=_flags(Fault, latched, int(ALL_FAULTS), "FAULT_REPORT.latched"),
            joint=joint,
            firmware_time_us=t,
        )


# --- dispatch -----------------------------------------------------------------------------------------

Message = (
    Hello | Heartbeat | SensorState | JointCommand | Estop | ClearFault | ResetRequest | Ack | FaultReport
)

_ALL_CLASSES: tuple[type[Message], ...] = (
    Hello,
    Heartbeat,
    SensorState,
    JointCommand,
    Estop,
    ClearFault,
    ResetRequest,
    Ack,
    FaultReport,
)
MESSAGE_CLASSES: dict[MessageType, type[Message]] = {cls.MSG_TYPE: cls for cls in _ALL_CLASSES}


def unpack_payload(msg_type: MessageType, payload: bytes) -> Message:
    """The message a CRC-checked payload holds; `FrameError("payload")` if it does not fit `msg_type`.

    Never raises anything else: struct never sees a buffer of the wrong size, enums are checked here.
    """
    cls = MESSAGE_CLASSES.get(msg_type)
    if cls is None:
        raise FrameError("type", f"no payload layout for {msg_type!r}")
    return cls.unpack(payload)


def encode_message(msg: Message, seq: int) -> bytes:
    """Pack and frame `msg` with sequence number `seq`: the bytes to write, delimiter included."""
    return encode_frame(msg.MSG_TYPE, seq, msg.pack())


@dataclass
class SequenceCounter:
    """Sender-side sequence numbers: one u16 counter per message type, starting at 0, wrapping at 65536."""

    _next: dict[MessageType, int] = field(default_factory=dict)

    def next(self, msg_type: MessageType) -> int:
        seq = self._next.get(msg_type, 0)
        self._next[msg_type] = (seq + 1) & 0xFFFF
        return seq
