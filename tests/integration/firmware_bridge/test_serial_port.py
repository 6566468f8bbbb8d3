"""`PySerialPort` on a real pseudo-terminal: non-blocking reads, writes, and a lost device as OSError."""

from __future__ import annotations

import contextlib
import os
import pty
import select
import tty

import pytest

from firmware_bridge.serial_port import PySerialPort

pytestmark = pytest.mark.integration


def test_read_write_and_hang_up() -> None:
    master, slave = pty.openpty()
    tty.setraw(slave)
    port = PySerialPort(os.ttyname(slave))
    try:
        assert port.read(4096) == b""  # nothing yet: empty, not blocking
        os.write(master, b"\x01\x02\x00")
        select.select([port.fileno()], [], [], 1.0)
        assert port.read(4096) == b"\x01\x02\x00"
        frame = bytes(range(1, 200)) + b"\x00"
        assert port.write(frame) == len(frame)
        got = b""
        while len(got) < len(frame) and select.select([master], [], [], 1.0)[0]:
            got += os.read(master, 4096)
        assert got == frame
        # The device goes away (last master descriptor closed): the next read fails with an OSError,
        # which is what makes the bridge count the port as lost and reconnect.
        os.close(master)
        master = -1
        with pytest.raises(OSError):
            port.read(4096)
        port.close()
        with pytest.raises(OSError):  # closed: never a read from a reused descriptor number
            port.read(4096)
    finally:
        port.close()
        for fd in (master, slave):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
