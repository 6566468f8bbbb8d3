"""Frame layout, round trips, and one constructed frame per drop reason."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from firmware_bridge.protocol import cobs
from firmware_bridge.protocol.crc import crc32c
from firmware_bridge.protocol.frames import (
    MAX_ENCODED_FRAME_LEN,
    MAX_PAYLOAD_LEN,
    MAX_RAW_FRAME_LEN,
    PROTOCOL_VERSION,
    Frame,
    FrameError,
    MessageType,
    decode_frame,
    encode_frame,
)


def raw_frame(version: int, msg_type: int, seq: int, payload: bytes, length: int | None = None) -> bytes:
    """A frame built by hand from the spec (not by encode_frame): correct CRC, stuffed, no delimiter."""
    body = struct.pack("<BBHH", version, msg_type, seq, len(payload) if length is None else length) + payload
    return cobs.encode(body + struct.pack("<I", crc32c(body)))


def test_layout_matches_the_spec_byte_for_byte() -> None:
    wire = encode_frame(MessageType.ACK, 0x0102, b"\x30\x00\x34\x12")
    assert wire.endswith(b"\x00") and wire.count(0) == 1
    raw = cobs.decode(wire[:-1])
    # version 01, type 40, seq 0x0102 little-endian = 02 01, length 4 = 04 00, then the payload
    assert raw[:10] == bytes.fromhex("01 40 02 01 04 00 30 00 34 12")
    assert raw[10:] == struct.pack("<I", crc32c(raw[:10]))
    assert len(raw) == 14


@given(st.sampled_from(list(MessageType)), st.integers(0, 65535), st.binary(max_size=MAX_PAYLOAD_LEN))
def test_round_trip(msg_type: MessageType, seq: int, payload: bytes) -> None:
    wire = encode_frame(msg_type, seq, payload)
    assert 0 not in wire[:-1] and wire[-1] == 0
    assert len(wire) - 1 <= MAX_ENCODED_FRAME_LEN
    assert decode_frame(wire[:-1]) == Frame(msg_type=msg_type, seq=seq, payload=payload)


def test_hand_built_frame_decodes_like_an_encoded_one() -> None:
    assert raw_frame(1, 0x02, 7, b"abcdef") + b"\x00" == encode_frame(MessageType.HEARTBEAT, 7, b"abcdef")


def _reason(encoded: bytes) -> str:
    with pytest.raises(FrameError) as info:
        decode_frame(encoded)
    return info.value.reason


def test_each_drop_reason() -> None:
    good = encode_frame(MessageType.HEARTBEAT, 9, b"\x01\x02\x03\x04\x05\x06")[:-1]
    assert _reason(b"\x01" * (MAX_ENCODED_FRAME_LEN + 1)) == "oversized"
    # 523 zero bytes stuff to 524 bytes (under the stuffed limit) but unstuff past MAX_RAW_FRAME_LEN
    assert _reason(cobs.encode(bytes(MAX_RAW_FRAME_LEN + 1))) == "oversized"
    assert _reason(b"\x05\x11") == "cobs"
    assert _reason(cobs.encode(b"\x01\x02\x03")) == "length"  # shorter than header + CRC
    assert _reason(raw_frame(1, 0x02, 9, b"abcdef", length=5)) == "length"  # length field disagrees
    flipped = bytearray(cobs.decode(good))
    flipped[7] ^= 0x10  # one payload bit
    assert _reason(cobs.encode(bytes(flipped))) == "crc"
    assert _reason(raw_frame(2, 0x02, 9, b"abcdef")) == "version"
    assert _reason(raw_frame(1, 0x99, 9, b"abcdef")) == "type"
    assert decode_frame(good).seq == 9  # and the untouched frame is fine


def test_crc_is_checked_before_version_and_type() -> None:
    body = bytearray(cobs.decode(raw_frame(2, 0x99, 1, b"xyz")))
    body[-1] ^= 0xFF  # break the CRC of a frame that also has a bad version and type
    assert _reason(cobs.encode(bytes(body))) == "crc"


def test_largest_payload_fits_and_one_more_byte_is_refused() -> None:
    payload = bytes(range(256)) * 2
    assert decode_frame(encode_frame(MessageType.SENSOR_STATE, 1, payload)[:-1]).payload == payload
    with pytest.raises(ValueError, match="maximum is 512"):
        encode_frame(MessageType.SENSOR_STATE, 1, payload + b"x")


@pytest.mark.parametrize(("msg_type", "seq"), [(0x99, 0), (MessageType.ACK, 65536), (MessageType.ACK, -1)])
def test_sender_bugs_raise_value_error(msg_type: int, seq: int) -> None:
    with pytest.raises(ValueError):
        encode_frame(msg_type, seq, b"")


def test_frame_error_is_a_value_error_with_a_reason() -> None:
    err = FrameError("crc", "sent 1, computed 2")
    assert isinstance(err, ValueError) and err.reason == "crc" and str(err) == "crc: sent 1, computed 2"
    assert PROTOCOL_VERSION == 1
