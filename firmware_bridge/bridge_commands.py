"""`robot-rl bridge`: the command dataclass (fields are the --help text). Light imports only.

The bridge module (pyzmq, numpy) is imported inside `execute` so `robot-rl --help` stays fast on the
robot's onboard computer.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

DEFAULT_CONTROL_INDEX = 50  # keep equal to firmware_bridge.bridge.DEFAULT_CONTROL_INDEX (not imported: light)


@dataclass(frozen=True)
class Bridge:
    """Connect a robot's firmware (serial port) to the bus: SI state out, clamped commands in."""

    port: str
    """Serial device of the firmware, e.g. /dev/ttyUSB0, or the pseudo-terminal the emulator prints."""
    robot: str
    """Robot name; must match the calibration file and the firmware's HELLO."""
    calib: Path
    """Calibration file (calib/<robot>.toml); validated before the port is opened."""
    bus: str | None = None
    """Bus base address (ipc:///DIR/rrl-RUN, inproc://rrl-RUN or tcp://HOST:PORT); default from --run."""
    run: str = "real"
    """Run name used for the default bus address ipc://<tmp>/rrl-<run>."""
    log: Path | None = None
    """Append every command actually sent to this JSONL file (one object per line)."""
    control_index: int = DEFAULT_CONTROL_INDEX
    """Index of the bridge's control (ROUTER) address: e-stop, clear_fault, status, stop."""

    def base_address(self) -> str:
        """The bus base address this command uses."""
        if self.bus is not None:
            return self.bus
        return f"ipc://{Path(tempfile.gettempdir())}/rrl-{self.run}"

    def execute(self) -> int:
        """Run the bridge until SIGINT/SIGTERM or a `stop` request; 0 on a clean stop, 2 on bad input."""
        import logging
        import sys

        from firmware_bridge.bridge import BridgeConfig, run_bridge
        from robot_rl.bus.topics import endpoints_from_base

        if not logging.getLogger().handlers:
            logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
        try:
            endpoints = endpoints_from_base(self.base_address())
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        config = BridgeConfig(
            port=self.port,
            robot=self.robot,
            calib=self.calib,
            endpoints=endpoints,
            control_index=self.control_index,
            log_path=self.log,
        )
        return run_bridge(config)
