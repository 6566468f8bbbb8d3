"""Crash-rate estimate, relative half-width and "tests needed" (ALGORITHMS.md 5.5).

With X_j the per-test estimator values (NDE: 1[crash]; importance sampling: w_j * 1[crash]):

    μ̂_n = (1/n) Σ X_j,   s_n = sample std of X_1..X_n (ddof 1),   RHW_n = z s_n / (√n μ̂_n)  (inf if μ̂_n = 0)

z = Φ⁻¹(0.95) = 1.645 (a two-sided 90 % interval μ̂ ± z s/√n). **Tests needed** n* = 1 + max{n <= n_total :
RHW_n > 0.3}, "not reached" (None) if RHW_{n_total} > 0.3 -- never the first crossing. For NDE
RHW_n = z √((1 - p) / (n p)), so n*_NDE ≈ z² (1 - p) / (0.09 p).

X is zero except on crash tests, so a run is stored sparsely (:class:`SparseRecord`: the index and X of every
crash test, and the number of tests); between two crash tests RHW_n is monotone in n, so n* and the curve are
exact from the crash tests alone, for 10^8 NDE tests as for 10^3 importance-sampled ones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from robot_rl.cav.types import FloatArray, IntArray

Z_90 = 1.6448536269514722
"""Φ⁻¹(0.95): the half-width factor of a two-sided 90 % normal interval."""
RHW_TARGET = 0.3


def rhw_curve(x: FloatArray, z: float = Z_90) -> FloatArray:
    """RHW_n for n = 1..len(x) (dense; n = 1 gives inf: the sample std needs two tests)."""
    x = np.asarray(x, np.float64)
    n = np.arange(1, len(x) + 1, dtype=np.float64)
    s1, s2 = np.cumsum(x), np.cumsum(x * x)
    return _rhw(n, s1, s2, z)


def _rhw(n: FloatArray, s1: FloatArray, s2: FloatArray, z: float) -> FloatArray:
    with np.errstate(divide="ignore", invalid="ignore"):
        var = np.maximum(s2 - s1 * s1 / n, 0.0) / (n - 1.0)
        out = z * np.sqrt(var) * np.sqrt(n) / s1
    out = np.where((s1 > 0.0) & (n > 1.0), out, np.inf)
    res: FloatArray = np.asarray(out, np.float64)
    return res


def tests_needed(rhw: FloatArray, target: float = RHW_TARGET) -> int | None:
    """n* = 1 + max{n : RHW_n > target} for a dense curve (rhw[n-1] = RHW_n); None if the last is above."""
    above = np.flatnonzero(np.asarray(rhw) > target)
    if len(above) == 0:
        return 1
    last = int(above[-1]) + 1  # 1-based n
    return None if last >= len(rhw) else last + 1


def analytic_nde_tests(p: float, target: float = RHW_TARGET, z: float = Z_90) -> float:
    """n*_NDE ≈ z² (1 - p) / (p target²): where the Bernoulli RHW formula crosses ``target``."""
    if not 0.0 < p < 1.0:
        return math.inf
    return z * z * (1.0 - p) / (p * target * target)


@dataclass
class SparseRecord:
    """A run of tests: the 0-based index and X of every test with X != 0, and the number of tests."""

    n_tests: int = 0
    index: list[IntArray] = field(default_factory=list)
    value: list[FloatArray] = field(default_factory=list)

    def add(self, x: FloatArray) -> None:
        """Append a batch of per-test values X (zeros included)."""
        nz = np.flatnonzero(x)
        self.index.append(nz.astype(np.int64) + self.n_tests)
        self.value.append(np.asarray(x, np.float64)[nz])
        self.n_tests += len(x)

    def arrays(self) -> tuple[IntArray, FloatArray]:
        if not self.index:
            return np.zeros(0, np.int64), np.zeros(0)
        return np.concatenate(self.index), np.concatenate(self.value)

    @property
    def n_nonzero(self) -> int:
        return int(sum(len(i) for i in self.index))

    def mean(self) -> float:
        _, v = self.arrays()
        return float(v.sum() / self.n_tests) if self.n_tests else math.nan

    def sample_std(self) -> float:
        _, v = self.arrays()
        n = self.n_tests
        if n < 2:
            return math.nan
        s1, s2 = v.sum(), (v * v).sum()
        return math.sqrt(max(s2 - s1 * s1 / n, 0.0) / (n - 1))

    def rhw(self, z: float = Z_90) -> float:
        _, v = self.arrays()
        n = float(self.n_tests)
        return float(_rhw(np.array([n]), np.array([v.sum()]), np.array([(v * v).sum()]), z)[0])

    def curve(self, ns: IntArray, z: float = Z_90) -> tuple[FloatArray, FloatArray]:
        """(μ̂_n, RHW_n) at the test counts ``ns`` (each 1..n_tests)."""
        idx, v = self.arrays()
        ns = np.asarray(ns, np.int64)
        c1 = np.concatenate([[0.0], np.cumsum(v)])
        c2 = np.concatenate([[0.0], np.cumsum(v * v)])
        k = np.searchsorted(idx, ns, side="left")  # crash tests with index < n
        s1, s2 = c1[k], c2[k]
        n = ns.astype(np.float64)
        return s1 / n, _rhw(n, s1, s2, z)

    def tests_needed(self, target: float = RHW_TARGET, z: float = Z_90) -> int | None:
        """Exact n* (module docstring) from the crash tests: RHW_n is monotone between them, so the largest
        n with RHW_n > target is the end of a segment [idx_k + 1, idx_{k+1}] or the start of one."""
        idx, _ = self.arrays()
        n = self.n_tests
        if n == 0:
            return None
        starts = np.concatenate([[1], idx + 1])
        ends = np.concatenate([idx, [n]])
        keep = ends >= starts
        cand = np.unique(np.concatenate([starts[keep], ends[keep]]))
        _, r = self.curve(cand, z)
        above = cand[r > target]
        if len(above) == 0:
            return 1
        last = int(above.max())
        return None if last >= n else last + 1

    def bootstrap_tests_needed(
        self, n_resamples: int, rng: np.random.Generator, target: float = RHW_TARGET
    ) -> list[int | None]:
        """n* of ``n_resamples`` bootstrap resamples (n_tests draws with replacement, random order)."""
        _, v = self.arrays()
        n, k = self.n_tests, len(v)
        out: list[int | None] = []
        for _ in range(n_resamples):
            m = int(rng.binomial(n, k / n)) if n else 0
            pos = np.sort(rng.choice(n, size=m, replace=False)) if m else np.zeros(0, np.int64)
            rec = SparseRecord(n, [pos.astype(np.int64)], [v[rng.integers(0, k, m)] if m else np.zeros(0)])
            out.append(rec.tests_needed(target))
        return out
