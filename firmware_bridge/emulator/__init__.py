"""Firmware emulator: the stand-in for the robot's motor controller behind a pseudo-terminal.

`robot-rl emulator --robot quadruped` (or `python -m firmware_bridge.emulator --robot quadruped`) opens a
pseudo-terminal, prints its device path as the first line on stdout, and speaks docs/serial-protocol.md on it
exactly as the firmware does on /dev/ttyUSB0, over the robot's "real" physics: MuJoCo with a hidden dynamics
gap profile (default `profiles/real.toml`), a PD loop at the physics rate (500 Hz), raw firmware units with
the calibration file's offsets and directions, sensor noise, actuation latency, watchdog and e-stop.

- `firmware.Firmware`: the firmware as a state machine, no I/O (`feed(bytes, now)`, `tick(now)` -> bytes).
- `main.run_emulator`: the process around it (pty, real-time loop, SIGTERM).
- `commands.Emulator`: the CLI command.

This package imports MuJoCo (through `firmware.py`); `firmware_bridge` itself never imports it, so the bridge
stays light on the robot's onboard computer. This `__init__` imports nothing.
"""

from __future__ import annotations
