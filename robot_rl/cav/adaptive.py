"""AdaTE-style adaptive combination of surrogate models (ALGORITHMS.md 5.7 [recon]).

Every critical step i of a finished test gives a regression pair: the challenges C_k(s_i, a_i) of the K
surrogates for the POV action actually taken, and the unbiased Monte-Carlo target

    y_i = 1[crash] * Π_{t' > t_i} ρ_{t'}          (the crash indicator times the test's later step ratios)

whose conditional mean is P(crash | s_i, a_i) under the naturalistic behaviour of the rest of the test. The
weights are the non-negative least-squares fit (a convex QP)

    θ = argmin_{θ >= 0} Σ_i (y_i - Σ_k θ_k C_k(s_i, a_i))^2      (scipy.optimize.nnls)

rescaled to sum 1 (only the c > 0 test and the ratios p C_θ / c use θ, both scale-free). Schedule: θ_0
uniform, refit every ``refit_every`` tests on all pairs so far, keep the previous θ when the fit is all
zeros. θ only ever depends on earlier tests, so the estimate stays unbiased.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import nnls

from robot_rl.cav.estimators import BatchResult
from robot_rl.cav.types import FloatArray


def fit_theta(features: FloatArray, y: FloatArray) -> FloatArray | None:
    """NNLS weights (K,) for features (M, K) and targets (M,), rescaled to sum 1; None if all zero."""
    features = np.asarray(features, np.float64)
    if len(features) == 0:
        return None
    theta, _ = nnls(features, np.asarray(y, np.float64))
    total = float(theta.sum())
    if not (total > 0.0 and np.isfinite(total)):
        return None
    out: FloatArray = theta / total
    return out


def regression_pairs(batch: BatchResult) -> tuple[FloatArray, FloatArray]:
    """(features (M, K), y (M,)) of every critical step in ``batch`` (module docstring)."""
    if not batch.steps:
        return np.zeros((0, 0)), np.zeros(0)
    ratios = np.stack([s.ratio for s in batch.steps], 1)  # (n, T')
    # later[:, t] = Π_{t' > t} ρ_t'
    later = np.cumprod(ratios[:, ::-1], axis=1)[:, ::-1]
    later = np.concatenate([later[:, 1:], np.ones((len(ratios), 1))], axis=1)
    feats, ys = [], []
    crash = batch.crashed.astype(np.float64)
    for t, s in enumerate(batch.steps):
        rows = np.flatnonzero(s.critical)
        feats.append(s.features[rows])
        ys.append(crash[rows] * later[rows, t])
    return np.concatenate(feats), np.concatenate(ys)


@dataclass
class ThetaSchedule:
    """θ_0 uniform, refit every ``refit_every`` tests on everything so far (module docstring)."""

    n_surrogates: int
    refit_every: int = 10_000
    theta: FloatArray = field(init=False)
    history: list[tuple[int, list[float]]] = field(default_factory=list)
    """(tests so far, θ) at the start and after each refit."""
    _features: list[FloatArray] = field(default_factory=list)
    _y: list[FloatArray] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.n_surrogates < 1:
            raise ValueError(f"n_surrogates: expected >= 1, got {self.n_surrogates}")
        if self.refit_every < 1:
            raise ValueError(f"refit_every: expected >= 1 test, got {self.refit_every}")
        self.theta = np.full(self.n_surrogates, 1.0 / self.n_surrogates)
        self.history.append((0, self.theta.tolist()))

    def observe(self, batch: BatchResult) -> None:
        f, y = regression_pairs(batch)
        if len(f):
            self._features.append(f)
            self._y.append(y)

    @property
    def n_pairs(self) -> int:
        return int(sum(len(y) for y in self._y))

    def refit(self, n_tests: int) -> None:
        """Refit on all pairs observed so far (called after tests n_tests - refit_every .. n_tests - 1)."""
        if not self._y:
            return
        theta = fit_theta(np.concatenate(self._features), np.concatenate(self._y))
        if theta is not None:
            self.theta = theta
        self.history.append((n_tests, self.theta.tolist()))
