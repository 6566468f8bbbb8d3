"""``robot-rl export``: the command-line face of :mod:`robot_rl.export.onnx_export`.

    robot-rl export runs/<stamp>-h2o-mujoco                    # -> runs/<stamp>-h2o-mujoco/policy.onnx
    python -m robot_rl.export.commands runs/<run> --opset 11   # the same, without the CLI dispatcher

Imports stay light (``robot-rl --help`` imports this module): torch, onnx and onnxruntime are imported by
:meth:`Export.execute`.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path

from tyro.conf import Positional

OPSETS = range(11, 22)
"""Opsets the graph builder supports (robot_rl.export.graph.SUPPORTED_OPSETS; not imported: it needs onnx)."""


@dataclass(frozen=True)
class Export:
    """Export a trained policy to ONNX with its deployment manifest, verified against torch to 1e-5."""

    checkpoint: Positional[Path]
    """A `robot-rl train` run folder (its latest checkpoint), a checkpoint folder (<run>/checkpoints/update-N)
    or a policy .npz."""
    out: Path | None = None
    """Model file to write; default <run>/policy.onnx for a run folder, <run>/policy-update-N.onnx for a
    checkpoint folder, <name>.onnx beside a .npz. The summary goes beside it as <out>.json."""
    opset: int = 17
    """ONNX opset: 17, or 11 for older onnxruntime builds (11-21 are supported)."""
    calib: Path | None = None
    """Calibration file whose PD gains and control period go into the manifest; default calib/<robot>.toml of
    this repository. Its hash must equal the one the training data was recorded with."""
    allow_calib_mismatch: bool = False
    """Export even if --calib's hash differs from the training data's (recorded in the summary and in the
    model's metadata)."""
    real_logs: Path | None = None
    """Log run folder whose observations feed the parity check; default: the run's training dataset (random
    states only, said in the summary, if it is not available)."""
    robot: str | None = None
    """Robot; default: the run's. Needed only for a .npz outside a run folder that fits several robots."""
    parity_n: int = 10_000
    """Observations in the parity check: half from the logs, half random states; each run at batch 1."""
    parity_tol: float = 1e-5
    """Largest allowed |onnxruntime - torch| joint target difference (rad); above it nothing is written
    (exit 1)."""
    overwrite: bool = False
    """Replace an existing --out (and its summary)."""

    def __post_init__(self) -> None:
        if self.opset not in OPSETS:
            raise ValueError(f"opset: {self.opset} is not supported; use {OPSETS.start}-{OPSETS.stop - 1}")
        if self.parity_n < 1:
            raise ValueError(f"parity_n: expected >= 1, got {self.parity_n}")
        if not (self.parity_tol > 0.0 and math.isfinite(self.parity_tol)):
            raise ValueError(f"parity_tol: expected a finite tolerance > 0, got {self.parity_tol}")

    def execute(self) -> int:
        """Export; 0 written, 1 a check failed (nothing written), 2 bad input (nothing written)."""
        from robot_rl.export.onnx_export import run_export

        return run_export(self)


def main(argv: list[str] | None = None) -> int:
    """``python -m robot_rl.export.commands ARGS`` (the arguments of ``robot-rl export``)."""
    from robot_rl.cli import run_command

    return run_command(Export, sys.argv[1:] if argv is None else argv, "robot-rl export")


if __name__ == "__main__":
    sys.exit(main())
