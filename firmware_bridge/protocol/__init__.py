"""The robot serial protocol (docs/serial-protocol.md): COBS framing, CRC-32C, payloads, stream reader.

Pure functions and a pure state machine; no I/O, and nothing heavier than the standard library and the small
compiled `google_crc32c` (crc.py; without it the pure-Python table computes the same CRC).
"""

from __future__ import annotations

from firmware_bridge.protocol.frames import (
    FRAME_ERROR_REASONS,
    MAX_ENCODED_FRAME_LEN,
    MAX_PAYLOAD_LEN,
    PROTOCOL_VERSION,
    Frame,
    FrameError,
    MessageType,
    decode_frame,
    encode_frame,
)
from firmware_bridge.protocol.messages import (
    Ack,
    AckResult,
    Capability,
    ClearFault,
    ControlMode,
    Estop,
    EstopReason,
    Fault,
    FaultReport,
    GripperState,
    Heartbeat,
    Hello,
    JointCommand,
    Message,
    ResetRequest,
    Role,
    SensorState,
    SequenceCounter,
    encode_message,
    unpack_payload,
)
from firmware_bridge.protocol.stream import FrameReader, ReaderStats, Received

__all__ = [
    "FRAME_ERROR_REASONS",
    "MAX_ENCODED_FRAME_LEN",
    "MAX_PAYLOAD_LEN",
    "PROTOCOL_VERSION",
    "Ack",
    "AckResult",
    "Capability",
    "ClearFault",
    "ControlMode",
    "Estop",
    "EstopReason",
    "Fault",
    "FaultReport",
    "Frame",
    "FrameError",
    "FrameReader",
    "GripperState",
    "Heartbeat",
    "Hello",
    "JointCommand",
    "Message",
    "MessageType",
    "ReaderStats",
    "Received",
    "ResetRequest",
    "Role",
    "SensorState",
    "SequenceCounter",
    "decode_frame",
    "encode_frame",
    "encode_message",
    "unpack_payload",
]
