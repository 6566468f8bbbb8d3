"""CLI commands for run folders: ``logs info``, ``logs export``, ``logs import``.

Frozen dataclasses turned into a CLI by tyro (field docstrings become ``--help``). Imports here
stay light; pyarrow, minari and h5py are imported inside ``execute`` so ``robot-rl --help`` is fast.
Each command's ``execute()`` (also ``cmd()``) returns an exit code: 0 on success, 2 with a one-line
message on stderr on bad input. The method is not called ``run`` because ``LogsInfo.run`` and
``LogsExport.run`` are the run-folder fields (``--run``), and an instance field shadows a method.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from tyro.conf import Positional

EXIT_OK = 0
EXIT_BAD_INPUT = 2


def _fail(err: BaseException) -> int:
    print(f"error: {err}", file=sys.stderr)
    return EXIT_BAD_INPUT


def _fmt(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}g}"


@dataclass(frozen=True)
class LogsInfo:
    """Summarise a run folder: episodes, steps, returns, rates, robot, task and layouts."""

    run: Positional[Path]
    """Run folder (contains manifest.json and episodes/)."""
    json: bool = False
    """Print one JSON object instead of tables."""

    def __call__(self) -> int:
        """Same as :meth:`execute`."""
        return self.execute()

    def execute(self) -> int:
        from robot_rl.data.errors import LogFormatError, RunLockedError
        from robot_rl.data.reader import EpisodeReader

        try:
            stats = EpisodeReader(self.run).stats()
        except (LogFormatError, RunLockedError, ValueError, OSError) as err:
            return _fail(err)
        if self.json:
            print(json.dumps(stats.to_json_dict(), indent=2))
            return EXIT_OK

        from rich.console import Console
        from rich.table import Table

        console = Console(width=120)
        summary = Table(title=f"run {stats.run_dir}", show_header=False)
        summary.add_column("key")
        summary.add_column("value")
        rows = [
            ("robot", stats.robot),
            ("task", stats.task),
            ("episodes", str(stats.episodes)),
            ("steps", str(stats.steps)),
            ("terminated / truncated", f"{stats.terminated} / {stats.truncated}"),
            ("recovered partial", str(stats.recovered_partial)),
            (
                "sources (episodes)",
                ", ".join(f"{k}: {v}" for k, v in sorted(stats.episodes_per_source.items())),
            ),
            ("control_dt_s", f"{stats.control_dt_s:g} s ({stats.control_rate_hz:g} Hz)"),
            ("measured dt (median)", "-" if stats.measured_dt_s is None else f"{stats.measured_dt_s:g} s"),
        ]
        for k, v in rows:
            summary.add_row(k, v)
        console.print(summary)

        dist = Table(title="distributions")
        dist.add_column("")
        for col in ("mean", "std", "min", "p25", "median", "p75", "max"):
            dist.add_column(col, justify="right")
        dist.add_row(
            "return", *(_fmt(stats.returns[c]) for c in ("mean", "std", "min", "p25", "median", "p75", "max"))
        )
        dist.add_row(
            "length", *(_fmt(stats.lengths[c]) for c in ("mean", "std", "min", "p25", "median", "p75", "max"))
        )
        console.print(dist)

        for title, layout in (
            ("observation layout", stats.obs_layout),
            ("action layout", stats.action_layout),
        ):
            t = Table(title=f"{title} ({layout.size})")
            t.add_column("index", justify="right")
            t.add_column("name")
            t.add_column("unit")
            for i, (name, unit) in enumerate(zip(layout.names, layout.units, strict=True)):
                t.add_row(str(i), name, unit)
            console.print(t)
        return EXIT_OK


@dataclass(frozen=True)
class LogsExport:
    """Export a run folder to a Minari dataset or a D4RL-style HDF5 file."""

    run: Positional[Path]
    """Run folder to export."""
    to: Literal["minari", "d4rl-hdf5"]
    """Output format."""
    out: Path
    """minari: the datasets root folder (the dataset goes to OUT/<dataset-id>/); d4rl-hdf5: the file."""
    dataset_id: str | None = None
    """Minari dataset id (default <robot>_<task>-v0)."""

    def __call__(self) -> int:
        """Same as :meth:`execute`."""
        return self.execute()

    def execute(self) -> int:
        from robot_rl.data.errors import LogFormatError

        try:
            if self.to == "minari":
                from robot_rl.data.minari_io import export_minari

                path = export_minari(self.run, self.out, self.dataset_id)
            else:
                from robot_rl.data.d4rl_io import export_d4rl

                path = export_d4rl(self.run, self.out)
        except (LogFormatError, ValueError, FileExistsError, OSError) as err:
            return _fail(err)
        print(f"exported {self.run} -> {path}")
        return EXIT_OK


@dataclass(frozen=True)
class LogsImport:
    """Import a Minari dataset or a D4RL-style HDF5 file into a new run folder."""

    source: Positional[Path]
    """Minari dataset folder (or its data/ folder), or the HDF5 file."""
    format: Literal["minari", "d4rl-hdf5"]
    """Input format."""
    out: Path
    """New run folder; must not exist or be empty."""
    robot: str | None = None
    """Robot name for data not made by robot-rl (default "unknown")."""
    task: str | None = None
    """Task name for data not made by robot-rl (default: the dataset id or file stem)."""
    source_kind: Literal["real", "sim", "demo", "eval"] = "real"
    """Source of the imported episodes (data not made by robot-rl)."""
    control_dt_s: float | None = None
    """Control period in seconds (data not made by robot-rl; default from timestamps, else 1.0)."""

    def __call__(self) -> int:
        """Same as :meth:`execute`."""
        return self.execute()

    def execute(self) -> int:
        from robot_rl.data.errors import LogFormatError, RunLockedError

        if self.out.exists() and (not self.out.is_dir() or any(self.out.iterdir())):
            return _fail(ValueError(f"{self.out} exists and is not an empty folder; refusing to overwrite"))
        kwargs = {
            "robot": self.robot,
            "task": self.task,
            "source_kind": self.source_kind,
            "control_dt_s": self.control_dt_s,
        }
        try:
            if self.format == "minari":
                from robot_rl.data.minari_io import import_minari

                path = import_minari(self.source, self.out, **kwargs)  # type: ignore[arg-type]
            else:
                from robot_rl.data.d4rl_io import import_d4rl

                path = import_d4rl(self.source, self.out, **kwargs)  # type: ignore[arg-type]
        except (LogFormatError, RunLockedError, ValueError, OSError) as err:
            return _fail(err)
        print(f"imported {self.source} -> {path}")
        return EXIT_OK
