"""CRC-32C: the published check value and residue (reveng catalogue, CRC-32/ISCSI), table, and properties."""

from __future__ import annotations

import struct

from hypothesis import given
from hypothesis import strategies as st

from firmware_bridge.protocol import crc


def test_published_check_value() -> None:
    assert crc.crc32c(b"123456789") == 0xE3069283 == crc.CHECK


def test_rfc3720_iscsi_vectors() -> None:
    # RFC 3720 (iSCSI) appendix B.4 test patterns, stated there as the bytes sent (little-endian CRC).
    assert struct.pack("<I", crc.crc32c(bytes(32))) == bytes.fromhex("aa36918a")
    assert struct.pack("<I", crc.crc32c(b"\xff" * 32)) == bytes.fromhex("43aba862")
    assert struct.pack("<I", crc.crc32c(bytes(range(32)))) == bytes.fromhex("4e79dd46")


def test_empty_input_and_table_entries() -> None:
    assert crc.crc32c(b"") == 0  # init ^ xorout with no data
    assert crc.TABLE[0] == 0
    assert crc.TABLE[128] == crc.POLY_REFLECTED  # 0x80 shifted right 7 times lands on bit 0 -> one xor
    assert len(crc.TABLE) == 256


@given(st.binary(max_size=600))
def test_residue_after_appending_the_crc(data: bytes) -> None:
    framed = data + struct.pack("<I", crc.crc32c(data))
    assert crc.crc32c_update(crc.INIT, framed) == crc.RESIDUE


@given(st.binary(min_size=1, max_size=600), st.data())
def test_every_single_bit_flip_is_detected(data: bytes, draw: st.DataObject) -> None:
    bit = draw.draw(st.integers(0, 8 * len(data) - 1))
    flipped = bytearray(data)
    flipped[bit // 8] ^= 1 << (bit % 8)
    assert crc.crc32c(bytes(flipped)) != crc.crc32c(data)


@given(st.binary(max_size=300), st.binary(max_size=300))
def test_incremental_update_equals_one_shot(a: bytes, b: bytes) -> None:
    assert crc.crc32c_update(crc.crc32c_update(crc.INIT, a), b) ^ crc.XOROUT == crc.crc32c(a + b)


@given(st.binary(max_size=600))
def test_compiled_and_table_implementations_agree(data: bytes) -> None:
    # crc32c uses google-crc32c when installed; the table-driven function is the spec's reference.
    assert crc.crc32c(data) == crc.crc32c_table(data) == crc.crc32c(bytearray(data))


def test_the_compiled_implementation_is_in_use() -> None:
    # google-crc32c is a declared dependency: without it every frame costs ~12 us more in the bridge.
    assert crc.IMPLEMENTATION == "google_crc32c"
