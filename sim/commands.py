"""CLI commands of the simulator package. Module-level imports stay light: `robot-rl --help` imports this."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

RobotName = Literal["quadruped", "manipulator"]
BackendName = Literal["mujoco", "dmcontrol", "pybullet"]


@dataclass(frozen=True)
class SimGap:
    """Measure the dynamics gap between a profiled "real" simulator and a nominal predictor."""

    robot: RobotName = "quadruped"
    """Robot to simulate."""
    profile: str = "example_gap"
    """Gap profile applied to the reference: a name in sim/profiles/ or a path to a TOML file."""
    backend: BackendName = "mujoco"
    """Reference backend; the profile is applied to it."""
    vs_backend: BackendName | None = None
    """Prediction backend, run nominal; defaults to --backend (compare engines by setting it)."""
    sequences: int = 8
    """Number of action sequences replayed in both simulators."""
    horizon: int = 50
    """Open-loop horizon in control steps (50 Hz)."""
    seed: int = 0
    """Seed of the start states and action sequences."""
    out_png: Path | None = None
    """Where to write the error-vs-horizon plot (PNG); none when unset."""

    def __post_init__(self) -> None:
        if self.sequences < 1:
            raise ValueError(f"sequences: expected >= 1, got {self.sequences}")
        if self.horizon < 1:
            raise ValueError(f"horizon: expected >= 1, got {self.horizon}")

    def execute(self) -> int:
        """Print the gap table, write the PNG if asked; returns the process exit code."""
        from rich.console import Console

        from sim.gap import measure_gap

        report = measure_gap(
            self.robot,
            self.profile,
            backend=self.backend,
            vs_backend=self.vs_backend,
            n_sequences=self.sequences,
            horizon=self.horizon,
            seed=self.seed,
        )
        console = Console()
        console.print(report.to_table())
        if self.out_png is not None:
            console.print(f"wrote {report.plot(self.out_png)}")
        return 0
