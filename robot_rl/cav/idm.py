"""The Intelligent Driver Model (Treiber, Hennecke, Helbing 2000), vectorised.

    a = a_max * (1 - (v / v0)^4 - (s* / s)^2),   s* = s0 + max(0, v T + v Δv / (2 sqrt(a_max b)))

v own speed, v0 desired speed, s bumper-to-bumper gap to the vehicle ahead in the same lane, Δv = v - v_ahead
(closing speed), T time headway, s0 standstill gap, a_max comfortable acceleration, b comfortable braking.
Without a vehicle ahead (gap = inf) the interaction term vanishes: free-flow IDM.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from robot_rl.cav.types import FloatArray

MIN_GAP_M = 0.1
"""Gaps are floored here before dividing (a gap <= 0 is a crash anyway, detected by the scenario)."""


@dataclass(frozen=True)
class Idm:
    """IDM parameters (module docstring); speeds m/s, accelerations m/s^2, gaps m, headway s."""

    headway_s: float = 1.5
    max_accel_mps2: float = 2.0
    comfort_brake_mps2: float = 3.0
    min_gap_m: float = 2.0

    def __post_init__(self) -> None:
        for name in ("headway_s", "max_accel_mps2", "comfort_brake_mps2"):
            if not getattr(self, name) > 0.0:
                raise ValueError(f"{name}: expected > 0, got {getattr(self, name)}")
        if not self.min_gap_m >= 0.0:
            raise ValueError(f"min_gap_m: expected >= 0, got {self.min_gap_m}")

    def accel(
        self, v_mps: FloatArray, v0_mps: FloatArray | float, gap_m: FloatArray, v_ahead_mps: FloatArray
    ) -> FloatArray:
        """IDM acceleration (N,) for own speeds, desired speeds, gaps (inf: nobody ahead) and speeds ahead."""
        free = 1.0 - (v_mps / v0_mps) ** 4
        s_star = self.min_gap_m + np.maximum(
            0.0,
            v_mps * self.headway_s
            + v_mps * (v_mps - v_ahead_mps) / (2.0 * np.sqrt(self.max_accel_mps2 * self.comfort_brake_mps2)),
        )
        ratio = s_star / np.maximum(gap_m, MIN_GAP_M)  # gap inf -> 0
        out: FloatArray = self.max_accel_mps2 * (free - ratio * ratio)
        return out
