"""FrameReader fuzz: >= 100k intact, bit-flipped, truncated, garbage, oversized, foreign, concatenated frames.

Each frame carries a (message type, sequence number) pair used once in the whole stream, and a payload tag
unique to the frame, so "accepted" can be checked exactly: every message the reader returns must equal the one
sent *intact* under that (type, seq), and every intact frame that starts right after a delimiter (whatever
garbage came before it) must come back. The stream is fed in random chunk sizes so frames straddle feeds.
"""

from __future__ import annotations

import dataclasses
import random
import struct
from collections import defaultdict

import pytest
from firmware_bridge_examples import random_message

from firmware_bridge.protocol import cobs
from firmware_bridge.protocol.crc import crc32c
from firmware_bridge.protocol.frames import MAX_ENCODED_FRAME_LEN, MessageType, encode_frame
from firmware_bridge.protocol.messages import (
    FaultReport,
    Heartbeat,
    JointCommand,
    Message,
    SensorState,
    SequenceCounter,
    encode_message,
)
from firmware_bridge.protocol.stream import FrameReader, Received

FRAMES_PER_SEED = 26_000  # x 4 seeds = 104k frames
SEEDS = (11, 22, 33, 44)
Key = tuple[MessageType, int]


def tagged(base: Message, tag: int) -> Message:
    """`base` with the frame's unique tag written into a field its type has (firmware time or a target)."""
    if isinstance(base, SensorState | Heartbeat | FaultReport):
        field = "firmware_time_us" if not isinstance(base, Heartbeat) else "sender_time_us"
        return dataclasses.replace(base, **{field: tag})
    assert isinstance(base, JointCommand)
    return dataclasses.replace(base, target_ticks=(tag, *base.target_ticks[1:]))


def foreign_frame(rng: random.Random) -> bytes:
    """A frame with a correct CRC that must still be dropped: other version, unknown type, or bad payload."""
    kind = rng.randrange(3)
    if kind == 2:  # ACK whose acked_type byte is not a message type -> reason "payload"
        return encode_frame(MessageType.ACK, rng.randrange(65536), b"\x77\x00\x00\x00")
    version, msg_type = (2, 0x02) if kind == 0 else (1, 0x7E)
    body = struct.pack("<BBHH", version, msg_type, rng.randrange(65536), 6) + rng.randbytes(6)
    return cobs.encode(body + struct.pack("<I", crc32c(body))) + b"\x00"


def build_stream(seed: int, n_frames: int) -> tuple[bytes, dict[Key, tuple[Message, int]], dict[str, int]]:
    """(stream bytes, {(type, seq): (message, offset)} of the intact frames, count per kind)."""
    rng = random.Random(seed)
    pool = [random_message(rng, 0) for _ in range(128)]
    seqs = SequenceCounter()
    parts: list[bytes] = []
    intact: dict[Key, tuple[Message, int]] = {}
    kinds: dict[str, int] = defaultdict(int)
    pos = 0
    for tag in range(n_frames):
        msg = tagged(rng.choice(pool), tag)
        seq = seqs.next(msg.MSG_TYPE)
        wire = encode_message(msg, seq)
        r = rng.random()
        if r < 0.45:
            kind, out = "intact", wire
            intact[(msg.MSG_TYPE, seq)] = (msg, pos)
        elif r < 0.60:  # 1-8 distinct flipped bits anywhere, the delimiter included
            kind, flipped = "bitflip", bytearray(wire)
            for bit in rng.sample(
                range(8 * len(wire)), rng.randint(1, 8)
            ):  # distinct: two flips never cancel
                flipped[bit // 8] ^= 1 << (bit % 8)
            out = bytes(flipped)
        elif r < 0.70:  # bytes lost from the middle, delimiter survives
            kind, cut = "truncated", rng.randrange(len(wire) - 1)
            out = wire[:cut] + wire[rng.randint(cut + 1, len(wire) - 1) :]
        elif r < 0.76:  # the tail is lost with its delimiter: this frame merges with the next item
            kind, out = "truncated_no_delimiter", wire[: rng.randrange(1, len(wire) - 1)]
        elif r < 0.84:
            kind, out = (
                "garbage",
                rng.randbytes(rng.randint(1, 300)) + (b"\x00" if rng.random() < 0.5 else b""),
            )
        elif r < 0.88:  # longer than any legal frame, no delimiter inside
            junk = rng.randbytes(rng.randint(MAX_ENCODED_FRAME_LEN + 1, 3000)).replace(b"\x00", b"\x5a")
            kind, out = "oversized", junk + (b"\x00" if rng.random() < 0.7 else b"")
        elif r < 0.93:
            kind, out = "foreign", foreign_frame(rng)
        elif r < 0.96:  # padding delimiters between frames, which receivers must ignore
            kind, out = "padding", b"\x00" * rng.randint(1, 3) + wire
            intact[(msg.MSG_TYPE, seq)] = (msg, pos + len(out) - len(wire))
        else:  # two intact frames back to back in one write
            msg2 = tagged(rng.choice(pool), tag + (1 << 30))
            seq2 = seqs.next(msg2.MSG_TYPE)
            wire2 = encode_message(msg2, seq2)
            kind, out = "concatenated", wire + wire2
            intact[(msg.MSG_TYPE, seq)] = (msg, pos)
            intact[(msg2.MSG_TYPE, seq2)] = (msg2, pos + len(wire))
        kinds[kind] += 1
        parts.append(out)
        pos += len(out)
    return b"".join(parts), intact, dict(kinds)


def feed_in_random_chunks(reader: FrameReader, stream: bytes, rng: random.Random) -> list[Received]:
    received: list[Received] = []
    i = 0
    while i < len(stream):
        n = rng.choice((1, 2, 7, 64, 300, 1024, 4096))
        received += reader.feed(stream[i : i + n])
        assert reader.buffered <= MAX_ENCODED_FRAME_LEN  # the buffer stays bounded between calls
        i += n
    return received


@pytest.mark.parametrize("seed", SEEDS)
def test_fuzzed_stream(seed: int) -> None:
    stream, intact, kinds = build_stream(seed, FRAMES_PER_SEED)
    reader = FrameReader()
    received = feed_in_random_chunks(reader, stream, random.Random(seed + 1))

    # No corrupted frame accepted: everything returned was sent intact, under that very (type, seq).
    keys = [(r.msg_type, r.seq) for r in received]
    for r, key in zip(received, keys, strict=True):
        assert key in intact, f"accepted a frame that was never sent intact: {r}"
        assert r.message == intact[key][0]
    assert len(set(keys)) == len(keys)

    # Resynchronisation: every intact frame that begins right after a delimiter comes back, garbage or not
    # before it; the only ones lost are those glued to a preceding item that lost its delimiter.
    recoverable = {k for k, (_, start) in intact.items() if start == 0 or stream[start - 1] == 0}
    assert set(keys) == recoverable
    assert len(recoverable) > 0.85 * len(intact)

    # Counters: what was returned, what was dropped and why, and the sequence gaps it implies.
    stats = reader.stats
    assert stats.frames_ok == len(received)
    assert stats.bytes_in == len(stream)
    for reason in ("crc", "cobs", "length", "oversized", "version", "type", "payload"):
        assert stats.dropped[reason] > 0, (reason, stats.dropped)
    by_type: dict[MessageType, list[int]] = defaultdict(list)
    for t, s in keys:
        by_type[t].append(s)
    expected_gaps = {t: s[-1] - s[0] + 1 - len(s) for t, s in by_type.items() if s[-1] - s[0] + 1 > len(s)}
    assert stats.seq_gaps == expected_gaps
    assert stats.seq_restarts == {}
    assert sum(kinds.values()) == FRAMES_PER_SEED and min(kinds.values()) > 100, kinds


def test_pure_random_bytes_never_raise_and_yield_nothing() -> None:
    rng = random.Random(5)
    reader = FrameReader()
    for _ in range(200):
        assert reader.feed(rng.randbytes(rng.randint(1, 5000))) == []
        assert reader.buffered <= MAX_ENCODED_FRAME_LEN
    assert reader.stats.dropped_total > 0 and reader.stats.frames_ok == 0


def test_resync_cases_by_hand() -> None:
    hb = encode_message(Heartbeat(sender_time_us=42), 5)
    cases = {
        "garbage then delimiter": b"\x13\x37\xff" + b"\x00" + hb,
        "truncated frame with its delimiter": hb[:4] + b"\x00" + hb,
        "oversized run then delimiter": b"\x01" * 5000 + b"\x00" + hb,
        "lone delimiters": b"\x00\x00\x00" + hb,
    }
    for name, data in cases.items():
        reader = FrameReader()
        got = reader.feed(data)
        assert [(r.seq, r.message) for r in got] == [(5, Heartbeat(sender_time_us=42))], name
    # a partial frame without delimiter swallows the next frame: both lost, the one after is back
    reader = FrameReader()
    got = reader.feed(hb[:5] + hb + encode_message(Heartbeat(sender_time_us=43), 6))
    assert [r.seq for r in got] == [6]
    assert reader.stats.dropped["cobs"] + reader.stats.dropped["crc"] + reader.stats.dropped["length"] == 1


def test_oversized_run_is_counted_once_and_memory_is_bounded() -> None:
    reader = FrameReader()
    for _ in range(20):
        reader.feed(b"\x01" * 1000)
        assert reader.buffered <= MAX_ENCODED_FRAME_LEN
    assert reader.stats.dropped["oversized"] == 1
    assert reader.feed(b"\x00" + encode_message(Heartbeat(1), 0))[0].message == Heartbeat(1)


def test_sequence_gaps_and_restarts() -> None:
    reader = FrameReader()
    frames = [encode_message(Heartbeat(s), s) for s in (0, 1, 4, 65535 - 1)]
    reader.feed(b"".join(frames[:3]))
    assert reader.stats.seq_gaps == {MessageType.HEARTBEAT: 2}  # 2 and 3 missing
    reader.feed(encode_message(Heartbeat(9), 0))  # 4 -> 0 went back: a restart, not 65531 lost frames
    assert reader.stats.seq_restarts == {MessageType.HEARTBEAT: 1}
    reader.feed(encode_message(Heartbeat(9), 1) + encode_message(Heartbeat(9), 1))  # a duplicate
    assert reader.stats.seq_restarts == {MessageType.HEARTBEAT: 2}
    reader.feed(encode_message(Heartbeat(9), 65534) + encode_message(Heartbeat(9), 1))
    # 1 -> 65534 is more than half the space ahead: read as a restart; 65534 -> 1 wraps over 65535 and 0,
    # so 2 frames are missing, on top of the 2 from before
    assert reader.stats.seq_restarts == {MessageType.HEARTBEAT: 3}
    assert reader.stats.seq_gaps == {MessageType.HEARTBEAT: 4}
