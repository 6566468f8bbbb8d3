"""The byte link to the firmware: a small `SerialPort` protocol and the pyserial implementation.

The bridge only needs `read`, `write` and `close`, so tests inject fakes (and count whether a port was
opened at all) through a `PortFactory`. Any failure of the link (a USB cable pulled, the emulator's
pseudo-terminal closed) surfaces as `OSError`: pyserial's `SerialException` is a subclass of it, and
`PortClosedError` is raised for end-of-file, which some drivers report instead of an error.
"""

from __future__ import annotations

import contextlib
import os
import select
from collections.abc import Callable
from typing import Protocol, runtime_checkable


class PortClosedError(OSError):
    """The other end of the link went away (end of file on the device)."""


@runtime_checkable
class SerialPort(Protocol):
    """A non-blocking byte stream to the firmware."""

    def read(self, n: int) -> bytes:
        """Up to `n` bytes that have arrived, b"" if none; OSError if the link is lost."""
        ...

    def write(self, data: bytes) -> int | None:
        """Write all of `data`; OSError if the link is lost."""
        ...

    def close(self) -> None: ...


PortFactory = Callable[[str], SerialPort]
"""Opens the device at a path; raises OSError if it cannot."""


class PySerialPort:
    """`serial.Serial(path, timeout=0)`: non-blocking reads. Pseudo-terminals ignore the baud rate.

    `fileno()` lets the bridge wait on the device together with its ZeroMQ sockets instead of spinning.

    pyserial opens, configures and closes the device (exclusive lock, raw mode, baud rate); `read` and `write`
    call `os.read` / `os.write` on its non-blocking descriptor directly, because pyserial's own `read` runs a
    `select` before every read and its `write` one after every write, with timeout objects around them: a
    few system calls and Python frames per frame that the bridge, which reads only when its poll says the
    device is readable, does not need at 500+ frames/s. The meaning is pyserial's: no data -> b"", a device
    that polls readable and reads nothing (end of file) -> `PortClosedError`, any other error -> OSError; a
    write the device does not take at once (a full output buffer) is finished by pyserial's `write`, with
    its write timeout.
    """

    def __init__(self, path: str, baudrate: int = 1_000_000, write_timeout_s: float = 0.5) -> None:
        import serial  # imported here: pyserial is only needed when a real device is opened

        # exclusive: a second bridge on the same device would interleave frames with ours.
        self._serial = serial.Serial(
            path, baudrate=baudrate, timeout=0, write_timeout=write_timeout_s, exclusive=True
        )
        self._fd = int(self._serial.fileno())

    def fileno(self) -> int:
        return self._fd

    def read(self, n: int) -> bytes:
        try:
            data = os.read(self._fd, n)
        except BlockingIOError:
            return b""  # nothing has arrived
        if data:
            return data
        # pyserial sets VMIN = VTIME = 0, so an empty read means "nothing yet" or end of file; as in pyserial,
        # a descriptor that polls readable and still reads nothing is a device that went away.
        if select.select([self._fd], [], [], 0)[0]:
            data = os.read(self._fd, n)
            if not data:
                raise PortClosedError("device reports readiness to read but returned no data (disconnected?)")
        return data

    def write(self, data: bytes) -> int | None:
        try:
            n = os.write(self._fd, data)
        except BlockingIOError:
            n = 0
        if n == len(data):
            return n
        return n + self._write_slow(data[n:])

    def _write_slow(self, data: bytes) -> int:
        """The rest of a write the device did not take at once: pyserial waits up to its write timeout."""
        import serial

        try:
            return int(self._serial.write(data) or 0)
        except serial.SerialTimeoutException as exc:
            raise PortClosedError(f"write timed out: {exc}") from exc

    def close(self) -> None:
        self._fd = -1  # a late read or write fails with EBADF (an OSError) instead of using a reused number
        # Closing a device that is already gone is not an error worth reporting.
        with contextlib.suppress(OSError):
            self._serial.close()


def open_pyserial(path: str) -> SerialPort:
    """The default `PortFactory`."""
    return PySerialPort(path)
