"""The emulator process: a pseudo-terminal, a real-time loop, and a `Firmware` behind it.

The slave side of the pty is the "device" (`/dev/pts/N`), opened by the bridge like /dev/ttyUSB0; the
emulator keeps its own descriptor of it open so that the port stays valid while no client has it open (a
pty master reads EIO once the last slave descriptor closes). Output written while nobody reads piles up in
the pty buffer; when the buffer is full the stale bytes are flushed, as a UART drops what nobody receives,
so a client that opens the port later gets fresh frames (its FrameReader resynchronises at the next 0x00).
"""

from __future__ import annotations

import errno
import os
import pty
import select
import signal
import sys
import termios
import time
import tty
from pathlib import Path
from types import FrameType
from typing import TextIO

_POLL_S = 0.01  # longest the loop sleeps; it wakes when the next physics step is due or bytes arrive


def _write_all(master: int, slave: int, data: bytes) -> None:
    """Write `data` to the pty master; when the pty is full (nobody reading), flush stale bytes and retry."""
    view = memoryview(data)
    flushed = False
    while view:
        try:
            n = os.write(master, view)
        except BlockingIOError:
            if flushed:
                return  # still full right after a flush: drop this output like a UART with no receiver
            termios.tcflush(slave, termios.TCIFLUSH)
            flushed = True
            continue
        view = view[n:]


def run_emulator(
    robot: str,
    profile: str | Path,
    calib: str | Path,
    *,
    seed: int = 0,
    realtime_factor: float = 1.0,
    sensor_period_s: float = 0.01,
    out: TextIO | None = None,
) -> int:
    """Open a pty, print its path as the first line of `out` (stdout), run until SIGTERM/SIGINT; exit code."""
    from firmware_bridge.calibration import load_calibration
    from firmware_bridge.emulator.firmware import Firmware, FirmwareConfig
    from sim.profile import load_profile
    from sim.robots import get_robot

    if realtime_factor <= 0:
        raise ValueError(f"realtime_factor: expected > 0, got {realtime_factor}")
    model = get_robot(robot)
    cal = load_calibration(calib, robot)
    config = FirmwareConfig(sensor_period_s=sensor_period_s)
    fw = Firmware(model, cal, load_profile(profile), seed=seed, config=config)

    stop = False

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal stop
        stop = True

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    master, slave = pty.openpty()
    try:
        tty.setraw(slave)  # no echo, no line editing, no CR/LF translation: a binary serial line
        os.set_blocking(master, False)
        stream = out or sys.stdout
        print(os.ttyname(slave), file=stream, flush=True)
        t0 = time.monotonic()

        def now() -> float:
            return (time.monotonic() - t0) * realtime_factor

        _write_all(master, slave, fw.boot(now()))
        while not stop:
            # Sleep until the next physics step is due: every timer (watchdog, sensor stream, heartbeat, fault
            # report) runs at physics steps, and received bytes (commands, e-stop) wake the loop at once.
            wait_s = min(_POLL_S, max(0.0, (fw.next_step_s - now()) / realtime_factor))
            try:
                ready, _, _ = select.select([master], [], [], wait_s)
            except InterruptedError:  # pragma: no cover - PEP 475 retries; kept for signal races
                continue
            if ready:
                try:
                    data = os.read(master, 4096)
                except BlockingIOError:
                    data = b""
                except OSError as exc:
                    if exc.errno != errno.EIO:
                        raise
                    data = b""
                if data:
                    # Replies (ACKs, e-stop reaction) go out before the physics advances.
                    _write_all(master, slave, fw.feed(data, now()))
            _write_all(master, slave, fw.tick(now()))
    finally:
        os.close(master)
        os.close(slave)
        for s, h in previous.items():
            signal.signal(s, h)
    if fw.overruns:
        print(f"emulator: physics fell behind real time {fw.overruns} time(s)", file=sys.stderr)
    return 0
