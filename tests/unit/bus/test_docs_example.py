"""docs/bus.md's worked example is the code's output byte for byte (so the spec cannot drift)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from robot_rl.bus.codec import decode, decode_single, encode, encode_single
from robot_rl.bus.messages import Envelope, Observation

DOC = Path(__file__).resolve().parents[3] / "docs" / "bus.md"


def hexdump(data: bytes) -> list[str]:
    """``offset  hex bytes  ascii`` lines, 16 bytes per line."""
    lines = []
    for i in range(0, len(data), 16):
        chunk = data[i : i + 16]
        hex_part = " ".join(f"{b:02x}" for b in chunk).ljust(48)
        text = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
        lines.append(f"{i:04x}  {hex_part}  {text}")
    return lines


def example_dump() -> list[str]:
    env = Envelope(
        schema_version=1,
        seq=42,
        t_src_ns=1_700_000_000_000_000_000,
        t_pub_ns=1_700_000_000_000_250_000,
        sender="bridge/a1",
    )
    msg = Observation(robot="a1", obs=np.array([0.5, -1.0, 2.0], np.float32))
    out: list[str] = []
    frames = [bytes(f) for f in encode(b"obs/a1", env, msg)]
    for i, frame in enumerate(frames):
        out += [f"multipart frame {i} ({len(frame)} bytes)", *hexdump(frame)]
    single = encode_single(b"obs/a1", env, msg)
    out += [f"single-part frame ({len(single)} bytes)", *hexdump(single)]
    assert decode(frames).env == env and decode_single(single).env == env
    return out


def test_worked_example_matches_the_code() -> None:
    text = DOC.read_text()
    block = text.split("<!-- example:begin -->")[1].split("<!-- example:end -->")[0]
    lines = [line.rstrip() for line in block.strip().strip("`").strip().splitlines()]
    assert lines == [line.rstrip() for line in example_dump()]
