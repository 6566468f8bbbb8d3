"""The `emulator` CLI command. Module-level imports stay light: `robot-rl --help` imports this."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

REAL_PROFILE = Path(__file__).resolve().parent / "profiles" / "real.toml"
CALIB_DIR = Path(__file__).resolve().parents[2] / "calib"

RobotName = Literal["quadruped", "manipulator"]


@dataclass(frozen=True)
class Emulator:
    """Firmware emulator: open a pseudo-terminal, print its path, and act as the robot's firmware on it."""

    robot: RobotName = "quadruped"
    """Robot to emulate (MuJoCo physics of this robot)."""
    profile: str = str(REAL_PROFILE)
    """Hidden dynamics-gap profile of the "real" robot: a path to a TOML file (sim/profile.py layout) or a
    name in sim/profiles/. The default, firmware_bridge/emulator/profiles/real.toml, is never read by the
    learner."""
    calib: Path | None = None
    """Calibration file (encoder offsets, directions, limits, watchdog); default calib/<robot>.toml."""
    seed: int = 0
    """Seed of the sensor and actuation noise."""
    realtime_factor: float = 1.0
    """Firmware clock speed relative to wall time (1.0 = real time; < 1 slows everything down)."""
    sensor_period_s: float = 0.01
    """SENSOR_STATE period (s), announced in HELLO; 0.002 streams at the 500 Hz physics rate."""

    def __post_init__(self) -> None:
        if not self.realtime_factor > 0:
            raise ValueError(f"realtime_factor: expected > 0, got {self.realtime_factor}")
        if not 0.002 <= self.sensor_period_s <= 1.0:
            raise ValueError(
                f"sensor_period_s: expected 0.002..1.0 s (physics step 2 ms), got {self.sensor_period_s}"
            )

    def execute(self) -> int:
        """Run until SIGTERM/SIGINT (exit code 0). The first stdout line is the pty device path."""
        from firmware_bridge.emulator.main import run_emulator

        calib = self.calib if self.calib is not None else CALIB_DIR / f"{self.robot}.toml"
        return run_emulator(
            self.robot,
            self.profile,
            calib,
            seed=self.seed,
            realtime_factor=self.realtime_factor,
            sensor_period_s=self.sensor_period_s,
        )
