"""The byte link to the firmware: a small `SerialPort` protocol and the pyserial implementation.

The bridge only needs `read`, `write` and `close`, so tests inject fakes (and count whether a port was
opened at all) through a `PortFactory`. Any failure of the link (a USB cable pulled, the emulator's
pseudo-terminal closed) surfaces as `OSError`: pyserial's `SerialException` is a subclass of it, and
`PortClosedError` is raised for end-of-file, which some drivers report instead of an error.
"""

from __future__ import annotations

import contextlib
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
    """

    def __init__(self, path: str, baudrate: int = 1_000_000, write_timeout_s: float = 0.5) -> None:
        import serial  # imported here: pyserial is only needed when a real device is opened

        # exclusive: a second bridge on the same device would interleave frames with ours.
        self._serial = serial.Serial(
            path, baudrate=baudrate, timeout=0, write_timeout=write_timeout_s, exclusive=True
        )

    def fileno(self) -> int:
        return int(self._serial.fileno())

    def read(self, n: int) -> bytes:
        import serial

        try:
            data = bytes(self._serial.read(n))
        except serial.SerialException as exc:
            # pyserial reports EOF on a hung-up pty as "readiness to read but returned no data".
            raise PortClosedError(str(exc)) from exc
        return data

    def write(self, data: bytes) -> int | None:
        import serial

        try:
            return int(self._serial.write(data) or 0)
        except serial.SerialTimeoutException as exc:
            raise PortClosedError(f"write timed out: {exc}") from exc

    def close(self) -> None:
        # Closing a device that is already gone is not an error worth reporting.
        with contextlib.suppress(OSError):
            self._serial.close()


def open_pyserial(path: str) -> SerialPort:
    """The default `PortFactory`."""
    return PySerialPort(path)
