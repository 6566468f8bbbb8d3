"""Consistent Overhead Byte Stuffing (Cheshire & Baker, 1999) with 0x00 as the frame delimiter.

COBS rewrites a byte string so that it contains no 0x00 at all, at a cost of at most one byte per 254
bytes (plus one), which lets 0x00 mark frame boundaries unambiguously: a receiver that lost sync simply
waits for the next 0x00. The encoding is a sequence of blocks `code, data[code - 1]`: the block's `code - 1`
bytes are copied, and a 0x00 is implied after them unless `code == 0xFF` (a full block of 254 non-zero bytes)
or the block ends the frame.

Pure functions, no I/O. `encode` never emits the delimiter itself; the framer appends it.
"""

from __future__ import annotations

DELIMITER = 0x00
_MAX_BLOCK = 254  # non-zero data bytes per block; code 0xFF = 254 bytes and no implied zero


class CobsError(ValueError):
    """The input is not a valid COBS encoding (a zero byte inside it, or a block running past its end)."""


def max_encoded_len(n: int) -> int:
    """Upper bound on `len(encode(data))` for `len(data) == n` (bytes): n + n // 254 + 1."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    return n + n // _MAX_BLOCK + 1


def encode(data: bytes) -> bytes:
    """COBS-encode `data`; the result contains no 0x00 and is `max_encoded_len(len(data))` bytes at most.

    Works on whole zero-free runs (`bytes.split`) rather than byte by byte: the loop is per run, not per byte,
    which matters in the pure-Python bridge at 100+ frames/s.
    """
    out = bytearray()
    chunks = bytes(data).split(b"\x00")
    last = len(chunks) - 1
    for i, chunk in enumerate(chunks):
        # A run of exactly 254 bytes followed by a zero needs the 0xFF block *and* a 0x01 block for the zero;
        # at the very end of the data there is no zero to encode, so the 0x01 is left out (canonical COBS).
        while len(chunk) > _MAX_BLOCK or (i != last and len(chunk) == _MAX_BLOCK):
            out.append(0xFF)
            out += chunk[:_MAX_BLOCK]
            chunk = chunk[_MAX_BLOCK:]
        out.append(len(chunk) + 1)
        out += chunk
    return bytes(out)


def decode(encoded: bytes) -> bytes:
    """Invert `encode`. `encoded` excludes the delimiter. Raises `CobsError` on any malformed input.

    The empty string is rejected (the encoding of b"" is b"\\x01"), so an empty frame is never data.
    """
    n = len(encoded)
    if n == 0:
        raise CobsError("empty input")
    out = bytearray()
    i = 0
    while i < n:
        code = encoded[i]
        if code == DELIMITER:
            raise CobsError(f"zero code byte at offset {i}")
        end = i + code
        if end > n:
            raise CobsError(f"block at offset {i} (code {code}) runs {end - n} byte(s) past the end")
        block = encoded[i + 1 : end]
        if DELIMITER in block:
            raise CobsError(f"zero byte inside the block at offset {i}")
        out += block
        i = end
        if code != 0xFF and i < n:
            out.append(DELIMITER)
    return bytes(out)
