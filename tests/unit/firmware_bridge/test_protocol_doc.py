"""docs/serial-protocol.md's worked example is the code's output byte for byte (so the spec cannot drift)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from firmware_bridge.calibration import gains_to_wire, load_calibration, rad_to_ticks
from firmware_bridge.protocol import (
    Ack,
    AckResult,
    ControlMode,
    Estop,
    EstopReason,
    Heartbeat,
    JointCommand,
    Message,
    MessageType,
    cobs,
    decode_frame,
    encode_message,
    unpack_payload,
)
from firmware_bridge.protocol.crc import crc32c

ROOT = Path(__file__).resolve().parents[3]
DOC = ROOT / "docs" / "serial-protocol.md"


def hex_lines(label: str, data: bytes) -> list[str]:
    """`label` then the bytes as hex, 16 per line, continuation lines indented to the first."""
    rows = [" ".join(f"{b:02x}" for b in data[i : i + 16]) for i in range(0, len(data), 16)] or [""]
    return [f"{label:<9}{rows[0]}".rstrip()] + [" " * 9 + r for r in rows[1:]]


def example_messages() -> list[tuple[str, Message, int]]:
    cal = load_calibration(ROOT / "calib" / "manipulator.toml")
    kp, kd = gains_to_wire(cal)
    ticks = rad_to_ticks(cal, np.array([0.0, 0.5, 1.0, 0.5]))  # the default pose
    command = JointCommand(
        mode=ControlMode.POSITION_PD,
        target_ticks=tuple(int(t) for t in ticks),
        kp=tuple(int(k) for k in kp),
        kd=tuple(int(k) for k in kd),
        current_ma=(0, 0, 0, 0),
    )
    return [
        ("HEARTBEAT, host -> firmware, seq 7, sender_time_us 1000000", Heartbeat(1_000_000), 7),
        ("ESTOP, host -> firmware, seq 0, reason OPERATOR", Estop(EstopReason.OPERATOR), 0),
        ("ACK of that ESTOP, firmware -> host, seq 3", Ack(MessageType.ESTOP, 0, AckResult.OK), 3),
        ("JOINT_COMMAND, manipulator default pose (0, 0.5, 1.0, 0.5) rad, seq 42", command, 42),
    ]


def example_dump() -> list[str]:
    out: list[str] = []
    for title, msg, seq in example_messages():
        wire = encode_message(msg, seq)
        raw = cobs.decode(wire[:-1])
        body = raw[:-4]
        assert raw[-4:] == crc32c(body).to_bytes(4, "little")
        frame = decode_frame(wire[:-1])
        assert unpack_payload(frame.msg_type, frame.payload) == msg and frame.seq == seq
        out += [title]
        out += hex_lines("header", body[:6])
        out += hex_lines("payload", body[6:])
        out += hex_lines("crc", raw[-4:])
        out += hex_lines("wire", wire)
        out += [""]
    return out[:-1]


def test_worked_example_matches_the_code() -> None:
    text = DOC.read_text()
    block = text.split("<!-- example:begin -->")[1].split("<!-- example:end -->")[0]
    lines = [line.rstrip() for line in block.strip().strip("`").strip("\n").splitlines()]
    assert lines == [line.rstrip() for line in example_dump()]


def test_documented_check_value_and_constants() -> None:
    text = DOC.read_text()
    for needle in (
        "0xE3069283",
        "0x82F63B78",
        "0x1EDC6F41",
        "MAX_PAYLOAD_LEN = 512",
        "34 + 11 n",
        "2 + 10 n",
    ):
        assert needle in text, needle


if __name__ == "__main__":
    print("\n".join(example_dump()))
