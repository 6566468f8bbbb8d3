"""Certified lower bounds on a smoothed policy's expected return under an observation attack (pure functions).

ALGORITHMS.md 4.2, after Kumar, Levine and Feizi, "Policy Smoothing for Provably Robust Reinforcement
Learning" (ICLR 2022). The smoothed agent acts on ``o_t + sigma * xi_t`` with fresh ``xi_t ~ N(0, I)`` at
every step; an adversary adds ``eps_t`` to the observations, adaptively, with
``||(eps_1, ..., eps_T)||_2 <= B``.
For the total reward ``F`` and any threshold ``x``, the adaptive Neyman-Pearson lemma gives

    P_adv[F >= x] >= Phi(Phi^-1(P[F >= x]) - B / sigma)                                        (1)

so for ``F >= a`` always, ``E_adv[F] = a + int_a^inf P_adv[F >= x] dx`` is bounded below by integrating (1)
against a lower confidence bound of the clean tail ``P[F >= x]``, estimated from N clean episodes:

- integer returns in ``[a, b]`` (CartPole: 0..200), R = b - a unit-width levels: ``k_i = #{j : F_j > i}`` for
  ``i = a .. b - 1``, ``p_i`` the one-sided Clopper-Pearson lower bound of ``P[F > i]`` at level ``alpha / R``
  (Bonferroni), i.e. the ``alpha / R`` quantile of ``Beta(k_i, N - k_i + 1)`` (0 if ``k_i = 0``), and

      C(B) = a + sum_i Phi(Phi^-1(p_i) - B / sigma);

  one level (R = 1, a 0/1 outcome) is the binary case ``Phi(Phi^-1(p) - B / sigma)``;
- real returns: the DKW band ``h = sqrt(ln(2 / alpha) / (2 N))`` holds for every ``x`` at once; over the
  distinct sorted values ``v_1 < ... < v_m`` with ``v_0 = a`` and ``S(v) = #{F_j >= v} / N``,

      C(B) = a + sum_k (v_k - v_{k-1}) Phi(Phi^-1(max(S(v_k) - h, 0)) - B / sigma).

Each is a bound with confidence ``1 - alpha`` over the N clean episodes. ``C(0)`` is the lower-bounded mean
(the clean mean's lower confidence bound); ``C`` is non-increasing in ``B``; terms with ``p = 0`` contribute 0
(``Phi(-inf) = 0``, guarded explicitly rather than left to ``-inf`` arithmetic).

Per-step budget (ALGORITHMS.md 4.2): an adversary limited to ``||eps_t||_2 <= eps`` at every step has spent at
most ``sqrt(t + 1) eps`` in total by step ``t``; a level decided by the first ``n`` steps is bounded with the
total budget ``sqrt(n) eps``. Without more knowledge every level is decided by the whole episode (``n = T``,
the episode cap); for a survival return (reward 1 per step until termination: ``F > i`` is decided by the
first ``i + 1`` steps) level ``i`` takes ``n_i = i + 1`` [choice: ALGORITHMS.md's "t + 1 steps" applied per
level; it is never looser than ``n = T``].

Everything is float64 numpy and vectorised over budgets; ``scipy.stats`` supplies the Beta quantile and
``Phi``/``Phi^-1``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
from scipy.stats import beta as _beta
from scipy.stats import norm as _norm

F64 = npt.NDArray[np.float64]
Method = Literal["cp", "dkw"]

METHOD_NAMES: dict[str, str] = {
    "cp": "Clopper-Pearson with Bonferroni over the return levels",
    "dkw": "DKW band on the return's distribution",
}


class BoundInputError(ValueError):
    """Input to a bound that has no valid answer (the message names the argument and the problem)."""


def check_sigma(sigma: float) -> float:
    """``sigma`` as a float; BoundInputError unless it is finite and > 0."""
    s = float(sigma)
    if not (math.isfinite(s) and s > 0.0):
        raise BoundInputError(f"sigma: the smoothing noise scale must be finite and > 0, got {sigma}")
    return s


def check_alpha(alpha: float) -> float:
    a = float(alpha)
    if not 0.0 < a < 1.0:
        raise BoundInputError(f"alpha: expected 0 < alpha < 1, got {alpha}")
    return a


def check_budgets(budgets: npt.ArrayLike, what: str = "budgets") -> F64:
    """(K,) float64 budgets; BoundInputError if empty, negative or not finite."""
    b = np.atleast_1d(np.asarray(budgets, dtype=np.float64))
    if b.ndim != 1 or b.size == 0:
        raise BoundInputError(f"{what}: expected a non-empty 1-d list of budgets, got shape {b.shape}")
    if not bool(np.all(np.isfinite(b))) or bool(np.any(b < 0.0)):
        raise BoundInputError(f"{what}: every budget must be finite and >= 0, got {b.tolist()}")
    return b


def _check_returns(returns: npt.ArrayLike) -> F64:
    f = np.asarray(returns, dtype=np.float64).reshape(-1)
    if f.size == 0:
        raise BoundInputError("returns: no episodes (N = 0)")
    if not bool(np.all(np.isfinite(f))):
        raise BoundInputError("returns: every return must be finite")
    return f


def clopper_pearson_lower(k: npt.ArrayLike, n: int, level: float) -> F64:
    """One-sided Clopper-Pearson lower bound of a binomial probability from ``k`` successes in ``n`` trials.

    ``P[p >= bound] >= 1 - level``; the bound is the ``level`` quantile of ``Beta(k, n - k + 1)`` and 0 where
    ``k = 0``. (It equals the lower end of a *two-sided* interval at ``2 * level``: ALGORITHMS.md 4.5.)
    Example: k = n = 10,000, level 0.05/200 -> (2.5e-4)^(1/10000) = 0.999171.
    """
    kk = np.asarray(k, dtype=np.float64)
    if n < 1:
        raise BoundInputError(f"n: expected >= 1 trials, got {n}")
    if bool(np.any(kk < 0)) or bool(np.any(kk > n)):
        raise BoundInputError(f"k: successes must lie in [0, {n}]")
    if not 0.0 < level < 1.0:
        raise BoundInputError(f"level: expected 0 < level < 1, got {level}")
    out = np.zeros_like(kk)
    pos = kk > 0
    out[pos] = _beta.ppf(level, kk[pos], n - kk[pos] + 1.0)
    return out


def dkw_band(n: int, alpha: float) -> float:
    """Half-width ``h = sqrt(ln(2 / alpha) / (2 n))`` of the DKW band (0.01358 at n = 10^4, alpha = 0.05)."""
    if n < 1:
        raise BoundInputError(f"n: expected >= 1 episodes, got {n}")
    return math.sqrt(math.log(2.0 / check_alpha(alpha)) / (2.0 * n))


def smoothed_tail(p: npt.ArrayLike, budgets: npt.ArrayLike, sigma: float) -> F64:
    """``Phi(Phi^-1(p) - B / sigma)`` for every (budget, p): shape (K, m) for p (m,) and budgets (K,).

    ``p = 0`` gives 0 and ``p = 1`` gives 1 at every budget (no infinite arithmetic).
    """
    pp = np.clip(np.asarray(p, dtype=np.float64).reshape(-1), 0.0, 1.0)
    b = check_budgets(budgets)
    s = check_sigma(sigma)
    out = np.zeros((b.size, pp.size))
    mid = (pp > 0.0) & (pp < 1.0)
    out[:, mid] = _norm.cdf(_norm.ppf(pp[mid])[None, :] - b[:, None] / s)
    out[:, pp >= 1.0] = 1.0
    return out


@dataclass(frozen=True)
class TailBounds:
    """The clean return's lower-bounded tail, the input of every certificate.

    ``E[F] >= lower + sum_k widths[k] * tail_lower[k]`` (with confidence ``1 - alpha``), and the certificate
    replaces each ``tail_lower[k]`` by its smoothed bound (module docstring).
    """

    method: Method
    lower: float
    """a: the return's lower end (the integral starts there)."""
    upper: float
    """b: the return's upper end (cp: the last level; dkw: the largest return seen or the declared end)."""
    widths: F64
    """(m,) width of each level in return units (1 for cp; v_k - v_{k-1} for dkw)."""
    tail_lower: F64
    """(m,) lower confidence bound of P[F > i] (cp) or P[F >= v_k] (dkw), all levels at once."""
    steps: F64
    """(m,) steps whose observations decide each level (per-step budgets): the episode cap, or ``i + 1`` for a
    survival return; NaN when unknown (then only total budgets can be certified)."""
    n: int
    alpha: float
    level: float
    """Per-bound level: alpha / R for cp (Bonferroni over R levels), alpha for the one dkw band."""
    band: float
    """The DKW half-width h (0 for cp)."""

    @property
    def confidence(self) -> float:
        return 1.0 - self.alpha

    @property
    def lower_bounded_mean(self) -> float:
        """C(0): the lower confidence bound of the clean mean return."""
        return float(self.lower + np.dot(self.widths, self.tail_lower))


def cp_tail(
    returns: npt.ArrayLike,
    low: int,
    high: int,
    alpha: float = 0.05,
    *,
    horizon: int | None = None,
    survival: bool = False,
) -> TailBounds:
    """Clopper-Pearson + Bonferroni tail of integer returns in ``[low, high]`` (module docstring).

    ``horizon``: the episode cap T, the steps deciding every level (per-step budgets only; unknown if None).
    ``survival``: reward 1 per step until termination, so level ``i`` (``F > low + i``) is decided by the
    first ``i + 1`` steps.
    """
    f = _check_returns(returns)
    a = check_alpha(alpha)
    if int(low) != low or int(high) != high or not high > low:
        raise BoundInputError(f"return range: expected integers low < high for cp, got [{low}, {high}]")
    if not bool(np.all(f == np.round(f))):
        raise BoundInputError("returns: cp needs integer returns; use dkw for real-valued returns")
    if bool(np.any(f < low)) or bool(np.any(f > high)):
        raise BoundInputError(
            f"returns: values in [{f.min():g}, {f.max():g}] fall outside the declared range [{low}, {high}]"
        )
    n_levels = int(high - low)
    levels = low + np.arange(n_levels, dtype=np.float64)
    # k_i = #{F_j > i}: one sort, one searchsorted for all R levels.
    f_sorted = np.sort(f)
    k = f.size - np.searchsorted(f_sorted, levels, side="right")
    level = a / n_levels
    steps = (
        np.arange(1, n_levels + 1, dtype=np.float64)
        if survival
        else np.full(n_levels, float(horizon) if horizon is not None else math.nan)
    )
    return TailBounds(
        method="cp",
        lower=float(low),
        upper=float(high),
        widths=np.ones(n_levels),
        tail_lower=clopper_pearson_lower(k, f.size, level),
        steps=steps,
        n=int(f.size),
        alpha=a,
        level=level,
        band=0.0,
    )


def dkw_tail(
    returns: npt.ArrayLike, low: float, alpha: float = 0.05, *, horizon: int | None = None
) -> TailBounds:
    """DKW tail of real returns ``F >= low`` (module docstring): distinct values collapsed, the band
    subtracted and floored at 0, the integral started at ``low``. ``horizon`` as in :func:`cp_tail`."""
    f = _check_returns(returns)
    a = check_alpha(alpha)
    if not math.isfinite(low):
        raise BoundInputError(f"return range: the lower end must be finite, got {low}")
    if bool(np.any(f < low)):
        raise BoundInputError(
            f"returns: the smallest return {f.min():g} lies below the declared lower end {low:g}"
        )
    h = dkw_band(f.size, a)
    values, counts = np.unique(f, return_counts=True)  # sorted, ties collapsed
    # S(v_k) = #{F >= v_k} / N: counts from the top down.
    survival = np.cumsum(counts[::-1])[::-1] / f.size
    widths = np.diff(np.concatenate(([low], values)))
    return TailBounds(
        method="dkw",
        lower=float(low),
        upper=float(values[-1]),
        widths=widths,
        tail_lower=np.maximum(survival - h, 0.0),
        steps=np.full(values.size, float(horizon) if horizon is not None else math.nan),
        n=int(f.size),
        alpha=a,
        level=a,
        band=h,
    )


def certified_bound(tail: TailBounds, budgets: npt.ArrayLike, sigma: float) -> F64:
    """C(B) for every total l2 budget B (K,): ``a + sum_k w_k Phi(Phi^-1(p_k) - B / sigma)``, (K,) float64."""
    return tail.lower + smoothed_tail(tail.tail_lower, budgets, sigma) @ tail.widths


def certified_bound_per_step(tail: TailBounds, eps: npt.ArrayLike, sigma: float) -> F64:
    """C for a per-step budget eps (K,): level k is bounded with the total budget ``sqrt(steps_k) * eps``."""
    e = check_budgets(eps, "eps")
    s = check_sigma(sigma)
    if not bool(np.all(np.isfinite(tail.steps))):
        raise BoundInputError("per-step budgets need the episode cap (horizon) the tail was built with")
    pp = np.clip(tail.tail_lower, 0.0, 1.0)
    total = np.sqrt(tail.steps)[None, :] * e[:, None]  # (K, m)
    terms = np.zeros_like(total)
    mid = (pp > 0.0) & (pp < 1.0)
    terms[:, mid] = _norm.cdf(_norm.ppf(pp[mid])[None, :] - total[:, mid] / s)
    terms[:, pp >= 1.0] = 1.0
    out: F64 = tail.lower + terms @ tail.widths
    return out


def budget_grid(start: float, stop: float, step: float) -> F64:
    """``start, start + step, ..., <= stop`` (stop included when on the grid, to 1e-9 of a step).

    BoundInputError for a step <= 0, a negative start or an empty range (stop < start)."""
    values = (start, stop, step)
    if not all(math.isfinite(v) for v in values):
        raise BoundInputError(f"budgets: START:STOP:STEP must be finite numbers, got {start}:{stop}:{step}")
    if step <= 0.0:
        raise BoundInputError(f"budgets: STEP must be > 0, got {step}")
    if start < 0.0:
        raise BoundInputError(f"budgets: START must be >= 0 (an l2 budget), got {start}")
    if stop < start:
        raise BoundInputError(f"budgets: the range {start}:{stop}:{step} is empty (STOP < START)")
    count = math.floor((stop - start) / step + 1e-9) + 1
    grid: F64 = np.round(start + step * np.arange(count), 12)
    return grid


def parse_budgets(text: str) -> F64:
    """``"START:STOP:STEP"`` (the --budgets argument) as :func:`budget_grid`; BoundInputError naming it."""
    parts = text.split(":")
    if len(parts) != 3:
        raise BoundInputError(f"budgets: expected START:STOP:STEP (e.g. 0:1:0.2), got {text!r}")
    try:
        start, stop, step = (float(p) for p in parts)
    except ValueError:
        raise BoundInputError(f"budgets: expected three numbers START:STOP:STEP, got {text!r}") from None
    return budget_grid(start, stop, step)
