"""The parametric naturalistic behaviour of background vehicles (ALGORITHMS.md section 5.2).

Naturalistic driving data cannot be downloaded here, so the naturalistic distribution p is a parametric pdf.
At every decision (every H = 3 s) each background vehicle picks one acceleration from the 7 values
``ACTIONS_MPS2`` = {-4, -3, ..., 2} m/s^2 and holds it for H:

    p(a | s) ∝ exp(-(a - a_nom(s))^2 / (2 sd^2)) + floor,      sd = 0.3 m/s^2, floor = 3e-4

``a_nom(s)`` is the vehicle's nominal acceleration (0 for the cruising lead vehicle, the IDM value for a
passing-lane vehicle; robot_rl.cav.scenario). The Gaussian part is a driver who executes their nominal
acceleration with a little noise: with sd 0.3 the neighbouring 1 m/s^2 values carry about 0.4 % each, two
steps away about 2e-10. The floor makes every action possible in every state, 3e-4 per action before
normalisation: rare manoeuvres (hard braking, a sudden acceleration) that crash tests are made of. The floor
is what keeps the crash rate small but non-zero (about 1e-5 per single-decision test, docs/cav.md) and is what
importance sampling must find; it is also what keeps p > 0 everywhere, so every proposal q that mixes in p is
a valid importance-sampling proposal.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from robot_rl.cav.types import FloatArray, IntArray

ACTIONS_MPS2: FloatArray = np.arange(-4.0, 3.0, 1.0)
"""(7,) accelerations a background vehicle can pick, m/s^2."""
N_ACTIONS = len(ACTIONS_MPS2)


@dataclass(frozen=True)
class Naturalistic:
    """Parameters of p(a | s) (module docstring)."""

    sd_mps2: float = 0.3
    """Spread of a driver around the nominal acceleration, m/s^2."""
    floor: float = 3e-4
    """Unnormalised probability mass added to every action (rare manoeuvres)."""

    def __post_init__(self) -> None:
        if not self.sd_mps2 > 0.0:
            raise ValueError(f"sd_mps2: expected > 0, got {self.sd_mps2}")
        if not self.floor > 0.0:
            raise ValueError(f"floor: expected > 0 (p must be positive everywhere), got {self.floor}")

    def pdf(self, a_nom: FloatArray) -> FloatArray:
        """p(a | s) over ACTIONS_MPS2: (..., 7) float64 for nominal accelerations (...,) m/s^2; rows sum 1."""
        d = ACTIONS_MPS2 - np.asarray(a_nom, np.float64)[..., None]
        w = np.exp(d * d * (-0.5 / self.sd_mps2**2)) + self.floor
        out: FloatArray = w / w.sum(-1, keepdims=True)
        return out


def sample_categorical(probs: FloatArray, u: FloatArray) -> IntArray:
    """Index drawn from each row of ``probs`` (M, K) with uniforms ``u`` (M,) in [0, 1): (M,) int64.

    Inverse-cdf sampling; a u beyond the last cumulative sum (rounding) falls into the last category.
    """
    cdf = np.cumsum(probs, axis=-1)
    idx: IntArray = np.minimum((cdf < u[:, None] * cdf[:, -1:]).sum(-1), probs.shape[-1] - 1)
    return idx
