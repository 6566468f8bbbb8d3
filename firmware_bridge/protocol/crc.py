"""CRC-32C (Castagnoli), table-driven: the frame check sequence of the serial protocol.

Parameters (Rocksoft/Williams model, as catalogued in reveng's "CRC-32/ISCSI"):
width 32, poly 0x1EDC6F41 (reflected 0x82F63B78), init 0xFFFFFFFF, refin true, refout true,
xorout 0xFFFFFFFF, check("123456789") = 0xE3069283, residue 0xB798B438.

Why CRC-32C and not CRC-16-CCITT: a random corruption slips through a 32-bit CRC with probability 2^-32
instead of 2^-16. A noisy link can deliver thousands of corrupt frames an hour; at 2^-16 that is an accepted
corrupt motor command every day or so, at 2^-32 essentially never. The Castagnoli polynomial was chosen over
the Ethernet one for its larger Hamming distance at frame lengths like ours (at most 522 bytes unstuffed;
Koopman's CRC tables list HD 6 for it up to 5243 data bits, against HD 4 for CRC-32/Ethernet and
CRC-16-CCITT).
The cost is a 1 KiB table, or the CRC32C instructions of ARMv8 / SSE4.2.

`crc32c_update` is the table-driven reference (the algorithm of docs/serial-protocol.md section 4). `crc32c`
computes the same value with the `google-crc32c` package (Google's C library: SSE4.2 / ARMv8 instructions,
about 0.2 us for a frame instead of about 12 us of Python byte loop) when its compiled implementation is
installed, and with the table otherwise; tests/unit/firmware_bridge/test_crc.py checks that they agree.

Pure functions, no I/O.
"""

from __future__ import annotations

from collections.abc import Callable

POLY_REFLECTED = 0x82F63B78
INIT = 0xFFFFFFFF
XOROUT = 0xFFFFFFFF
CHECK = 0xE3069283  # crc32c(b"123456789")
RESIDUE = 0xB798B438  # register value after feeding data + its own CRC (little-endian), before xorout


def _make_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ POLY_REFLECTED if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


TABLE: tuple[int, ...] = _make_table()


def crc32c_update(crc: int, data: bytes) -> int:
    """Advance a raw (not yet xorout-ed) CRC-32C register over `data`; start from `INIT`."""
    table = TABLE  # local name: the loop body is the hot path of the framer
    for b in data:
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc


def crc32c_table(data: bytes) -> int:
    """CRC-32C of `data` with the table (the reference; `crc32c` is the same function, faster)."""
    return crc32c_update(INIT, data) ^ XOROUT


def _compiled() -> Callable[[bytes], int] | None:
    """google_crc32c.value if its C implementation is installed (its pure-Python fallback is slower)."""
    try:
        import google_crc32c
    except ImportError:  # pragma: no cover - a declared dependency; the table still works without it
        return None
    if getattr(google_crc32c, "implementation", "") != "c":  # pragma: no cover
        return None
    value: Callable[[bytes], int] = google_crc32c.value
    return value


_COMPILED = _compiled()
IMPLEMENTATION = "google_crc32c" if _COMPILED is not None else "table"
"""Which implementation `crc32c` uses: "google_crc32c" (compiled) or "table" (pure Python)."""


def crc32c(data: bytes) -> int:
    """CRC-32C of `data` as an unsigned 32-bit integer (transmitted little-endian after the data)."""
    if _COMPILED is not None:
        # The compiled implementation takes read-only buffers only: a bytearray is copied first.
        return _COMPILED(data if type(data) is bytes else bytes(data))
    return crc32c_update(INIT, data) ^ XOROUT  # pragma: no cover - without google-crc32c
