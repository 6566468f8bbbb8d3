"""`FrameReader`: turns an arbitrary byte stream into messages, dropping and counting everything else.

The reader splits the stream at 0x00 delimiters, decodes each piece (`decode_frame` + `unpack_payload`) and
returns the messages that survive. Anything wrong is dropped and counted by `FrameError` reason; because every
frame ends in 0x00 and COBS guarantees no 0x00 inside a frame, the reader is back in sync at the first frame
that follows the next delimiter, whatever came before. It never raises on input bytes.

Memory is bounded: between calls the buffer holds at most `MAX_ENCODED_FRAME_LEN` bytes. A run of bytes longer
than any legal frame with no delimiter in it is discarded (counted once as "oversized"), and the rest of that
run up to the next delimiter is skipped silently.

Pure state machine, no I/O: the caller reads the port and feeds bytes in whatever chunks it got.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from firmware_bridge.protocol.frames import (
    FRAME_ERROR_REASONS,
    MAX_ENCODED_FRAME_LEN,
    FrameError,
    MessageType,
    decode_frame_fields,
)
from firmware_bridge.protocol.messages import Message, unpack_payload


class Received(NamedTuple):
    """One accepted message with its frame's type and sequence number (a NamedTuple: cheap to build)."""

    msg_type: MessageType
    seq: int
    message: Message


def _zero_reasons() -> dict[str, int]:
    return dict.fromkeys(FRAME_ERROR_REASONS, 0)


@dataclass
class ReaderStats:
    """Counters since construction (or `FrameReader.reset_stats`).

    - frames_ok: messages returned.
    - dropped: frames dropped, by `FrameError` reason (every reason present, 0 if none).
    - seq_gaps: per message type, frames missing according to sequence numbers (lost on the link, including
      the corrupt ones counted in `dropped`).
    - seq_restarts: per message type, sequence numbers that repeated or went backwards (peer restart or a
      duplicated frame); these are not counted as gaps.
    - bytes_in: bytes fed.
    """

    frames_ok: int = 0
    dropped: dict[str, int] = field(default_factory=_zero_reasons)
    seq_gaps: dict[MessageType, int] = field(default_factory=dict)
    seq_restarts: dict[MessageType, int] = field(default_factory=dict)
    bytes_in: int = 0

    @property
    def dropped_total(self) -> int:
        return sum(self.dropped.values())


class FrameReader:
    """Incremental decoder: `feed(chunk) -> [Received, ...]`. Not thread-safe (one reader per port)."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._discarding = False  # inside an oversized run: skip up to and including the next delimiter
        self._last_seq: dict[MessageType, int] = {}
        self.stats = ReaderStats()

    def feed(self, data: bytes) -> list[Received]:
        """Append `data` to the stream; return the messages of every frame completed by it, in order."""
        self.stats.bytes_in += len(data)
        buf = self._buf
        buf += data
        out: list[Received] = []
        start = 0
        while (end := buf.find(0, start)) >= 0:
            if self._discarding:
                self._discarding = False  # the tail of a run already counted as oversized
            elif end > start:  # empty frames (back-to-back delimiters) are padding a sender may use to flush
                self._decode(bytes(buf[start:end]), out)
            start = end + 1
        if start:
            del buf[:start]
        if len(buf) > MAX_ENCODED_FRAME_LEN:
            if not self._discarding:
                self.stats.dropped["oversized"] += 1
            self._discarding = True
            buf.clear()
        return out

    def reset_sequence(self) -> None:
        """Forget the last sequence numbers (call after the peer announced a restart with HELLO)."""
        self._last_seq.clear()

    def reset_stats(self) -> None:
        self.stats = ReaderStats()

    @property
    def buffered(self) -> int:
        """Bytes held waiting for a delimiter (<= MAX_ENCODED_FRAME_LEN between calls)."""
        return len(self._buf)

    def _decode(self, chunk: bytes, out: list[Received]) -> None:
        try:
            msg_type, seq, payload = decode_frame_fields(chunk)
            message = unpack_payload(msg_type, payload)
        except FrameError as exc:
            self.stats.dropped[exc.reason] += 1
            return
        self._track_seq(msg_type, seq)
        self.stats.frames_ok += 1
        out.append(Received(msg_type, seq, message))

    def _track_seq(self, msg_type: MessageType, seq: int) -> None:
        last = self._last_seq.get(msg_type)
        self._last_seq[msg_type] = seq
        if last is None:
            return
        missing = (seq - last - 1) & 0xFFFF
        if not missing:
            return
        # A jump of more than half the sequence space is read as a restart or a repeat, not 60000 lost frames.
        if missing >= 0x8000:
            self.stats.seq_restarts[msg_type] = self.stats.seq_restarts.get(msg_type, 0) + 1
        elif missing:
            self.stats.seq_gaps[msg_type] = self.stats.seq_gaps.get(msg_type, 0) + missing
