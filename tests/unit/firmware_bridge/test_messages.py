"""Every message type: round trip, hand-computed byte layouts, payload errors, sender-side range errors."""

from __future__ import annotations

import random
import struct

import numpy as np
import pytest
from firmware_bridge_examples import example_messages, random_message
from hypothesis import given
from hypothesis import strategies as st

from firmware_bridge.protocol import (
    Ack,
    AckResult,
    ClearFault,
    ControlMode,
    Estop,
    EstopReason,
    Fault,
    FaultReport,
    FrameError,
    Heartbeat,
    Hello,
    JointCommand,
    MessageType,
    ResetRequest,
    Role,
    SensorState,
    decode_frame,
    encode_message,
    unpack_payload,
)
from firmware_bridge.protocol.messages import MESSAGE_CLASSES, SequenceCounter


def test_every_message_type_has_a_class_and_an_example() -> None:
    assert set(MESSAGE_CLASSES) == set(MessageType)
    assert {type(m).MSG_TYPE for m in example_messages()} == set(MessageType)


@pytest.mark.parametrize("msg", example_messages(), ids=lambda m: type(m).__name__)
def test_round_trip_through_payload_and_frame(msg: object) -> None:
    payload = msg.pack()  # type: ignore[attr-defined]
    assert unpack_payload(type(msg).MSG_TYPE, payload) == msg  # type: ignore[attr-defined]
    frame = decode_frame(encode_message(msg, 321)[:-1])  # type: ignore[arg-type]
    assert frame.seq == 321 and unpack_payload(frame.msg_type, frame.payload) == msg


def test_random_messages_round_trip() -> None:
    rng = random.Random(1)
    for tag in range(2000):
        msg = random_message(rng, tag)
        assert unpack_payload(msg.MSG_TYPE, msg.pack()) == msg


def test_hand_computed_layouts() -> None:
    # ACK: acked_type 0x30, result 0, acked_seq 0x1234 little-endian
    assert Ack(MessageType.ESTOP, 0x1234, AckResult.OK).pack() == bytes.fromhex("30 00 34 12")
    assert Estop(EstopReason.LINK_LOSS).pack() == b"\x03"
    assert ClearFault(Fault.ESTOP | Fault.WATCHDOG).pack() == b"\x03"
    assert ResetRequest().pack() == b""
    # HEARTBEAT: u32 1_000_000 = 0x000F4240 -> 40 42 0f 00, mode 3 (damping), faults 0x01 (watchdog)
    assert Heartbeat(1_000_000, ControlMode.DAMPING, Fault.WATCHDOG).pack() == bytes.fromhex("40420f00 03 01")
    # FAULT_REPORT: active 0x04, latched 0x06, joint 2, reserved 0, time 5
    assert FaultReport(
        Fault.OVER_CURRENT, Fault.OVER_CURRENT | Fault.ESTOP, 5, joint=2
    ).pack() == bytes.fromhex("04 06 02 00 05000000")
    hello = Hello("arm", 4, Role.HOST, sensor_period_us=0, watchdog_timeout_us=60_000).pack()
    # version 1, role 0, n 4, caps 0, period 0, watchdog 60000 = 0x0000EA60, "arm" + 13 NULs
    assert hello == bytes.fromhex("01 00 04 00 00000000 60ea0000") + b"arm" + bytes(13)
    # JOINT_COMMAND, 1 joint: mode 1, n 1, target -2 = fe ff ff ff, kp 4000 = a0 0f, kd 1000 = e8 03, ff -1
    cmd = JointCommand(ControlMode.POSITION_PD, (-2,), (4000,), (1000,), (-1,))
    assert cmd.pack() == bytes.fromhex("01 01 feffffff a00f e803 ffff")


@given(st.integers(1, 32))
def test_variable_sizes(n: int) -> None:
    state = SensorState(0, (0,) * n, (0,) * n, (0,) * n, (0,) * n)
    assert len(state.pack()) == 34 + 11 * n
    cmd = JointCommand(ControlMode.TORQUE, (0,) * n, (0,) * n, (0,) * n, (0,) * n)
    assert len(cmd.pack()) == 2 + 10 * n


def test_sensor_state_field_offsets() -> None:
    state = SensorState(
        firmware_time_us=0x11223344,
        position_ticks=(-1, 2),
        velocity_ticks_s=(3, -4),
        current_ma=(5, -6),
        motor_temp_c=(7, -8),
        last_cmd_seq=0xBEEF,
        gyro=(1, 2, 3),
        accel=(4, 5, 6),
        quat_wxyz=(7, 8, 9, 10),
    )
    p = state.pack()
    assert struct.unpack_from("<I", p, 0)[0] == 0x11223344
    assert struct.unpack_from("<H", p, 4)[0] == 0xBEEF
    assert p[8] == 2  # n_joints
    assert struct.unpack_from("<3h3h4h", p, 14) == (1, 2, 3, 4, 5, 6, 7, 8, 9, 10)
    assert struct.unpack_from("<2i2i2h2b", p, 34) == (-1, 2, 3, -4, 5, -6, 7, -8)


@pytest.mark.parametrize(
    ("msg_type", "payload", "match"),
    [
        (MessageType.ACK, b"\x30\x00\x34", "3 bytes, expected 4"),
        (MessageType.ACK, b"\x77\x00\x34\x12", "ACK.acked_type"),
        (MessageType.ACK, b"\x30\x09\x34\x12", "ACK.result"),
        (MessageType.ESTOP, b"\x09", "ESTOP.reason"),
        (MessageType.CLEAR_FAULT, b"\x20", "reserved bits"),
        (MessageType.RESET_REQUEST, b"\x00", "1 bytes, expected 0"),
        (MessageType.HEARTBEAT, bytes(4) + b"\x04\x00", "HEARTBEAT.mode"),
        (MessageType.HELLO, bytes(28), "bad robot name"),
        (MessageType.JOINT_COMMAND, b"\x01\x02" + bytes(10), "12 bytes, expected 22"),
        (MessageType.JOINT_COMMAND, b"\x00\x01" + bytes(10), "IDLE is not a command mode"),
        (MessageType.JOINT_COMMAND, b"\x01\x00", "n_joints 0"),
        (MessageType.SENSOR_STATE, bytes(33), "33 bytes < 34"),
        (MessageType.SENSOR_STATE, bytes(8) + b"\x01" + bytes(25 + 10), "expected 45"),
        (MessageType.FAULT_REPORT, b"\x00\x00\xff\x01" + bytes(4), "reserved byte"),
    ],
)
def test_payload_errors_are_frame_errors(msg_type: MessageType, payload: bytes, match: str) -> None:
    with pytest.raises(FrameError, match=match) as info:
        unpack_payload(msg_type, payload)
    assert info.value.reason == "payload"


@pytest.mark.parametrize(
    ("msg", "match"),
    [
        (SensorState(0, (0, 0), (0, 0), (0, 40000), (0, 0)), r"SensorState\.current_ma: 40000"),
        (
            SensorState(0, (0, 0), (0,), (0, 0), (0, 0)),
            r"SensorState\.velocity_ticks_s: 1 values, expected 2",
        ),
        (SensorState(-1, (0,), (0,), (0,), (0,)), r"SensorState\.firmware_time_us"),
        (JointCommand(ControlMode.POSITION_PD, (2**31,), (0,), (0,), (0,)), r"JointCommand\.target_ticks"),
        (JointCommand(ControlMode.POSITION_PD, (0,), (-1,), (0,), (0,)), r"JointCommand\.kp"),
        (JointCommand(ControlMode.IDLE, (0,), (0,), (0,), (0,)), "IDLE is a firmware state"),
        (JointCommand(ControlMode.TORQUE, (), (), (), ()), r"n_joints must be in \[1, 32\]"),
        (Hello("a-very-long-robot-name", 4, Role.HOST), "1-16 ASCII chars"),
        (Hello("robot", 0, Role.HOST), "n_joints"),
        (Ack(MessageType.ESTOP, 70000), r"Ack\.acked_seq"),
        # Only plain ints go on the wire: a bool, a float or a numpy integer is a sender bug too.
        (JointCommand(ControlMode.POSITION_PD, (True,), (0,), (0,), (0,)), r"JointCommand\.target_ticks"),
        (JointCommand(ControlMode.POSITION_PD, (0,), (1.0,), (0,), (0,)), r"JointCommand\.kp: 1\.0"),  # type: ignore[arg-type]
        (
            JointCommand(ControlMode.POSITION_PD, (0, np.int64(5)), (0, 0), (0, 0), (0, 0)),  # type: ignore[arg-type]
            r"target_ticks: np.int64\(5\)",
        ),
        (SensorState(0, (0,), (0,), (0,), (0,), last_cmd_seq=65536), r"SensorState\.last_cmd_seq"),
    ],
)
def test_sender_bugs_name_the_field(msg: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        msg.pack()  # type: ignore[attr-defined]


def test_sequence_counter_is_per_type_and_wraps() -> None:
    seqs = SequenceCounter()
    assert [seqs.next(MessageType.HEARTBEAT) for _ in range(3)] == [0, 1, 2]
    assert seqs.next(MessageType.JOINT_COMMAND) == 0
    seqs._next[MessageType.ACK] = 65535
    assert seqs.next(MessageType.ACK) == 65535 and seqs.next(MessageType.ACK) == 0
