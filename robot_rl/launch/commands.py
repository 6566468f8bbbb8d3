"""CLI command ``robot-rl launch FILE``: run a topology until Ctrl-C (or ``--duration-s``).

Module-level imports stay light (``robot-rl --help`` imports this module); pyzmq and rich are imported
inside ``execute``.
"""

from __future__ import annotations

import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Annotated

import tyro


@dataclass(frozen=True)
class Launch:
    """Start the processes of a topology file (launch/*.toml), show their status, restart crashed ones."""

    file: Annotated[Path, tyro.conf.Positional]
    """Topology file, e.g. launch/local_sim.toml (format: docs/launch.md)."""
    run_dir: Path | None = None
    """Run folder for logs/ and launch.json; overrides [run] run_dir (default runs/<name>-<timestamp>)."""
    duration_s: float | None = None
    """Stop everything after this many seconds (CI); default: run until Ctrl-C or SIGTERM."""
    no_live: bool = False
    """Print a line per state change instead of the live table (the default when stdout is not a TTY)."""

    def __post_init__(self) -> None:
        if self.duration_s is not None and self.duration_s <= 0:
            raise ValueError(f"duration_s: expected > 0, got {self.duration_s}")

    def execute(self) -> int:
        """Run the topology; 0 when every process ended stopped (cleanly), 1 otherwise."""
        from robot_rl.launch.config import load_topology
        from robot_rl.launch.supervisor import (
            LineReporter,
            LiveReporter,
            Reporter,
            Supervisor,
            prepare_launch,
        )

        topology = load_topology(self.file)
        plan = prepare_launch(topology, run_dir=self.run_dir)
        reporter: Reporter = LiveReporter() if sys.stdout.isatty() and not self.no_live else LineReporter()
        supervisor = Supervisor(plan, reporter=reporter)

        def on_signal(signum: int, frame: FrameType | None) -> None:
            # The first Ctrl-C / SIGTERM stops in order with a grace period; a second one kills at once.
            supervisor.request_stop(f"{signal.Signals(signum).name} received")

        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            return supervisor.run(self.duration_s)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
