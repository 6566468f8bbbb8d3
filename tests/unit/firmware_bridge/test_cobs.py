"""COBS: published vectors (Wikipedia's "Consistent Overhead Byte Stuffing" examples), round trips, errors."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from firmware_bridge.protocol import cobs

B = bytes.fromhex
R01_FE = bytes(range(1, 255))  # 01 .. FE, 254 bytes
R01_FF = bytes(range(1, 256))  # 01 .. FF, 255 bytes
R02_FF = bytes(range(2, 256))  # 02 .. FF, 254 bytes
R03_FF = bytes(range(3, 256))  # 03 .. FF, 253 bytes

VECTORS = [
    (b"", B("01")),
    (B("00"), B("0101")),
    (B("0000"), B("010101")),
    (B("001100"), B("01021101")),
    (B("11220033"), B("0311220233")),
    (B("11223344"), B("0511223344")),
    (B("11000000"), B("0211010101")),
    (R01_FE, B("ff") + R01_FE),  # exactly one full block at the end: no trailing 01
    (B("00") + R01_FE, B("01ff") + R01_FE),
    (R01_FF, B("ff") + R01_FE + B("02ff")),
    (R02_FF + B("00"), B("ff") + R02_FF + B("0101")),  # full block followed by a zero: ff ... 01 01
    (R03_FF + B("0001"), B("fe") + R03_FF + B("0201")),
]


@pytest.mark.parametrize(("raw", "encoded"), VECTORS)
def test_published_vectors(raw: bytes, encoded: bytes) -> None:
    assert cobs.encode(raw) == encoded
    assert cobs.decode(encoded) == raw


@given(st.binary(max_size=2000))
def test_round_trip_without_zeros_and_within_the_size_bound(raw: bytes) -> None:
    enc = cobs.encode(raw)
    assert 0 not in enc
    assert len(enc) <= cobs.max_encoded_len(len(raw))
    assert cobs.decode(enc) == raw


def test_max_encoded_len_is_reached_by_zero_free_data() -> None:
    # 522 non-zero bytes = blocks of 254, 254, 14 -> 3 code bytes -> 525 = 522 + 522 // 254 + 1
    raw = bytes([7]) * 522
    assert len(cobs.encode(raw)) == cobs.max_encoded_len(522) == 525


@pytest.mark.parametrize(
    ("encoded", "message"),
    [
        (b"", "empty"),
        (B("0311002233"), "zero byte inside"),  # a 00 inside the first block
        (B("00"), "zero code byte"),
        (B("0511"), r"runs 3 byte\(s\) past the end"),  # code 05 promises 4 bytes, 1 present
        (B("0211ff"), "runs"),  # ff promises 254 bytes after the second block
    ],
)
def test_malformed_input_raises_cobs_error(encoded: bytes, message: str) -> None:
    with pytest.raises(cobs.CobsError, match=message):
        cobs.decode(encoded)


# Data with long non-zero runs (the fast paths hand runs of 254+ bytes to the block-by-block coder).
RUNS = st.lists(st.tuples(st.integers(0, 600), st.integers(0, 3)), max_size=6).map(
    lambda parts: b"".join(bytes([7]) * run + bytes(zeros) for run, zeros in parts)
)


@given(st.one_of(st.binary(max_size=1200), RUNS))
def test_fast_paths_equal_the_block_by_block_coder(raw: bytes) -> None:
    enc = cobs.encode(raw)
    assert enc == cobs._encode_blocks(raw)
    assert cobs.decode(enc) == cobs._decode_blocks(enc) == raw


@given(st.one_of(st.binary(max_size=600), RUNS.map(lambda r: cobs.encode(r)[:-1] + b"\xff")))
def test_decode_of_arbitrary_bytes_agrees_with_the_block_decoder(encoded: bytes) -> None:
    # Valid or not: same output, or the same error message.
    try:
        expected: bytes | str = cobs._decode_blocks(encoded)
    except cobs.CobsError as exc:
        expected = str(exc)
    try:
        got: bytes | str = cobs.decode(encoded)
    except cobs.CobsError as exc:
        got = str(exc)
    assert got == expected
