"""Frames: `COBS(header + payload + CRC-32C) + 0x00`, the unit the serial link carries.

Raw (unstuffed) frame layout, all little-endian (docs/serial-protocol.md section 3):

    offset  size  field
    0       1     protocol version (u8, `PROTOCOL_VERSION`)
    1       1     message type (u8, `MessageType`)
    2       2     sequence number (u16, per sender and per message type, wraps 65535 -> 0)
    4       2     payload length in bytes (u16, <= `MAX_PAYLOAD_LEN`)
    6       n     payload (layout per message type, `firmware_bridge.protocol.messages`)
    6+n     4     CRC-32C over bytes [0, 6+n) (u32)

Pure functions, no I/O. `decode_frame` raises exactly one exception type, `FrameError`, whose `reason` is one
of `FRAME_ERROR_REASONS`; callers (the stream reader) count drops by that reason.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import Literal, get_args

from firmware_bridge.protocol import cobs
from firmware_bridge.protocol.crc import crc32c

PROTOCOL_VERSION = 1
HEADER = struct.Struct("<BBHH")
HEADER_LEN = HEADER.size  # 6
CRC = struct.Struct("<I")
CRC_LEN = CRC.size  # 4
MAX_PAYLOAD_LEN = 512  # bytes; the largest v1 message (SENSOR_STATE, 32 joints) is 34 + 11 * 32 = 386
MIN_RAW_FRAME_LEN = HEADER_LEN + CRC_LEN  # 10: a message with an empty payload
MAX_RAW_FRAME_LEN = HEADER_LEN + MAX_PAYLOAD_LEN + CRC_LEN  # 522
MAX_ENCODED_FRAME_LEN = cobs.max_encoded_len(MAX_RAW_FRAME_LEN)  # 525, delimiter excluded
DELIMITER = b"\x00"
SEQ_MODULUS = 1 << 16


class MessageType(IntEnum):
    """Message type byte (header offset 1). Values are grouped by role; gaps are reserved."""

    HELLO = 0x01  # both directions: identity and link parameters
    HEARTBEAT = 0x02  # both directions: liveness
    SENSOR_STATE = 0x10  # firmware -> host
    JOINT_COMMAND = 0x20  # host -> firmware
    ESTOP = 0x30  # host -> firmware
    CLEAR_FAULT = 0x31  # host -> firmware
    RESET_REQUEST = 0x32  # host -> firmware
    ACK = 0x40  # firmware -> host
    FAULT_REPORT = 0x41  # firmware -> host


_KNOWN_TYPES = frozenset(int(t) for t in MessageType)
_TYPES: dict[int, MessageType] = {int(t): t for t in MessageType}  # a dict lookup, not an enum call

FrameErrorReason = Literal["oversized", "cobs", "length", "crc", "version", "type", "payload"]
FRAME_ERROR_REASONS: tuple[FrameErrorReason, ...] = get_args(FrameErrorReason)


class FrameError(ValueError):
    """A frame that must be dropped. `reason` is one of `FRAME_ERROR_REASONS`; `detail` is for humans.

    - oversized: longer than `MAX_ENCODED_FRAME_LEN` (stuffed) or `MAX_RAW_FRAME_LEN` (unstuffed)
    - cobs:      not a valid COBS encoding
    - length:    shorter than header + CRC, or the header's length field disagrees with the frame
    - crc:       CRC-32C mismatch (checked before version and type: a bad CRC says nothing about them)
    - version:   intact frame of another protocol version
    - type:      intact frame with an unknown message type
    - payload:   intact frame whose payload does not unpack as its message type (raised by `messages`)
    """

    def __init__(self, reason: FrameErrorReason, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason: FrameErrorReason = reason
        self.detail = detail


@dataclass(frozen=True)
class Frame:
    """A decoded, CRC-checked frame. `payload` is still packed (see `messages.unpack_payload`)."""

    msg_type: MessageType
    seq: int  # u16
    payload: bytes
    version: int = PROTOCOL_VERSION


def encode_frame(msg_type: MessageType | int, seq: int, payload: bytes) -> bytes:
    """The bytes to write to the link for one frame, trailing 0x00 delimiter included.

    Raises ValueError for an unknown type, a sequence number outside [0, 65535] or an oversized payload:
    those are sender bugs, not link errors.
    """
    if int(msg_type) not in _KNOWN_TYPES:
        raise ValueError(f"unknown message type {int(msg_type):#04x}")
    if not 0 <= seq < SEQ_MODULUS:
        raise ValueError(f"seq must be in [0, 65535], got {seq}")
    if len(payload) > MAX_PAYLOAD_LEN:
        raise ValueError(f"payload is {len(payload)} bytes; the maximum is {MAX_PAYLOAD_LEN}")
    body = HEADER.pack(PROTOCOL_VERSION, int(msg_type), seq, len(payload)) + bytes(payload)
    return cobs.encode(body + CRC.pack(crc32c(body))) + DELIMITER


def decode_frame(encoded: bytes) -> Frame:
    """Decode one stuffed frame (the bytes between two delimiters, delimiter excluded).

    Never raises anything but `FrameError`. Check order: size, COBS, minimum length, CRC, version, length
    field, type: the CRC comes before any header field is trusted.
    """
    msg_type, seq, payload = decode_frame_fields(encoded)
    return Frame(msg_type=msg_type, seq=seq, payload=payload)


def decode_frame_fields(encoded: bytes) -> tuple[MessageType, int, bytes]:
    """`decode_frame` without the `Frame` object: (message type, sequence number, payload).

    The stream reader's hot path; same checks, same order, same errors.
    """
    if len(encoded) > MAX_ENCODED_FRAME_LEN:
        raise FrameError("oversized", f"{len(encoded)} stuffed bytes > {MAX_ENCODED_FRAME_LEN}")
    try:
        raw = cobs.decode(encoded)
    except cobs.CobsError as exc:
        raise FrameError("cobs", str(exc)) from None
    n = len(raw)
    if n < MIN_RAW_FRAME_LEN:
        raise FrameError("length", f"{n} bytes < header + CRC ({MIN_RAW_FRAME_LEN})")
    if n > MAX_RAW_FRAME_LEN:
        raise FrameError("oversized", f"{n} bytes > {MAX_RAW_FRAME_LEN}")
    body = raw[:-CRC_LEN]
    (crc_sent,) = CRC.unpack_from(raw, n - CRC_LEN)
    crc_calc = crc32c(body)
    if crc_sent != crc_calc:
        raise FrameError("crc", f"sent {crc_sent:#010x}, computed {crc_calc:#010x}")
    version, type_byte, seq, length = HEADER.unpack_from(body)
    if version != PROTOCOL_VERSION:
        raise FrameError("version", f"protocol version {version}, this reader speaks {PROTOCOL_VERSION}")
    if length != n - CRC_LEN - HEADER_LEN:
        raise FrameError("length", f"length field {length}, payload is {n - CRC_LEN - HEADER_LEN} bytes")
    msg_type = _TYPES.get(type_byte)
    if msg_type is None:
        raise FrameError("type", f"unknown message type {type_byte:#04x}")
    return msg_type, seq, body[HEADER_LEN:]
