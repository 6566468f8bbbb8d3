"""Consistent Overhead Byte Stuffing (Cheshire & Baker, 1999) with 0x00 as the frame delimiter.

COBS rewrites a byte string so that it contains no 0x00 at all, at a cost of at most one byte per 254
bytes (plus one), which lets 0x00 mark frame boundaries unambiguously: a receiver that lost sync simply
waits for the next 0x00. The encoding is a sequence of blocks `code, data[code - 1]`: the block's `code - 1`
bytes are copied, and a 0x00 is implied after them unless `code == 0xFF` (a full block of 254 non-zero bytes)
or the block ends the frame.

Pure functions, no I/O. `encode` never emits the delimiter itself; the framer appends it.

Speed (the bridge runs this for every frame at 500+ frames/s, in pure Python): both directions work in
place on one copy of the frame, one loop step per zero byte / block, the byte search done by `bytearray.find`
in C. Without 0xFF blocks (no run of 254 non-zero bytes, which only frames of over 254 bytes can contain),
the encoding is the data shifted by one with every zero replaced by the distance to the next zero (or the
end), and a leading code byte: decoding zeroes the code bytes again and drops the first. Inputs that need
0xFF blocks, and malformed inputs, take the general block-by-block path (`_encode_blocks`,
`_decode_blocks`), which also words the errors.
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
    """COBS-encode `data`; the result contains no 0x00 and is `max_encoded_len(len(data))` bytes at most."""
    out = bytearray(1)
    out += data
    last = 0  # position of the code byte still to be filled in
    find = out.find
    pos = find(0, 1)
    while pos >= 0:
        code = pos - last
        if code >= 0xFF:
            return _encode_blocks(data)  # a run of 254+ non-zero bytes: needs 0xFF blocks
        out[last] = code
        last = pos
        pos = find(0, pos + 1)
    code = len(out) - last
    if code >= 0xFF:
        return _encode_blocks(data)
    out[last] = code
    return bytes(out)


def decode(encoded: bytes) -> bytes:
    """Invert `encode`. `encoded` excludes the delimiter. Raises `CobsError` on any malformed input.

    The empty string is rejected (the encoding of b"" is b"\\x01"), so an empty frame is never data.
    """
    n = len(encoded)
    if n == 0 or DELIMITER in encoded:
        return _decode_blocks(encoded)  # raises, with the reason
    out = bytearray(encoded)
    i = out[0]
    if i == 0xFF:
        return _decode_blocks(encoded)
    while i < n:
        code = out[i]
        if code == 0xFF:
            return _decode_blocks(encoded)
        out[i] = DELIMITER  # a code byte after a block stands where a zero was
        i += code
    if i != n:
        return _decode_blocks(encoded)  # the last block runs past the end: raises
    del out[0]
    return bytes(out)


def _encode_blocks(data: bytes) -> bytes:
    """The general encoder, one block at a time (`bytes.split` into zero-free runs, 0xFF blocks for 254)."""
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


def _decode_blocks(encoded: bytes) -> bytes:
    """The general decoder, one block at a time; raises `CobsError` naming what is wrong."""
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
