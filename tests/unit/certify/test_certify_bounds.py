"""Certified bounds (robot_rl.certify.bounds): ALGORITHMS.md 4.7's known answers, hand-worked small cases,
monotonicity, the per-step variant and bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import beta, norm

from robot_rl.certify import bounds

BUDGETS = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
ALL_200 = np.full(10_000, 200.0)


# --------------------------------------------------------------------------------------------------
# ALGORITHMS.md 4.7, check 1: the ceiling table (all N = 10,000 returns = 200, range 0..200).


@pytest.mark.parametrize(
    ("sigma", "row"),
    [
        (0.2, [199.8, 196.8, 174.8, 111.6, 39.3, 6.4]),
        (0.4, [199.8, 199.2, 196.8, 190.0, 174.8, 148.1]),
    ],
)
def test_clopper_pearson_ceiling_table(sigma: float, row: list[float]) -> None:
    tail = bounds.cp_tail(ALL_200, 0, 200, alpha=0.05)
    assert tail.level == pytest.approx(0.05 / 200)  # Bonferroni over R = 200 levels
    assert np.round(bounds.certified_bound(tail, BUDGETS, sigma), 1).tolist() == row


@pytest.mark.parametrize(
    ("sigma", "row"),
    [
        (0.2, [197.3, 177.3, 116.6, 42.9, 7.3, 0.5]),
        (0.4, [197.3, 191.3, 177.3, 152.2, 116.6, 77.1]),
    ],
)
def test_dkw_ceiling_table(sigma: float, row: list[float]) -> None:
    tail = bounds.dkw_tail(ALL_200, 0.0, alpha=0.05)
    assert np.round(bounds.certified_bound(tail, BUDGETS, sigma), 1).tolist() == row


def test_ceiling_ingredients() -> None:
    # Clopper-Pearson with k = n: the level quantile of Beta(n, 1) is level^(1/n) = (2.5e-4)^(1/10000).
    p = bounds.clopper_pearson_lower([10_000], 10_000, 0.05 / 200)[0]
    assert p == pytest.approx((2.5e-4) ** (1 / 10_000), abs=1e-12)
    assert round(p, 6) == 0.999171
    assert round(bounds.dkw_band(10_000, 0.05), 5) == 0.01358
    tail = bounds.cp_tail(ALL_200, 0, 200)
    # Every one of the R = 200 levels P[F > i], i = 0..199, has k_i = N: C(0) = 200 p (no off-by-one).
    assert tail.widths.size == 200 and bool(np.all(tail.tail_lower == p))
    assert tail.lower_bounded_mean == pytest.approx(200 * p)


# --------------------------------------------------------------------------------------------------
# Hand-worked small cases.


def test_clopper_pearson_small_case_by_hand() -> None:
    # Returns 0, 1, 2 in [0, 2]: R = 2 levels, each at alpha / 2 = 0.025.
    # k_0 = #{F > 0} = 2, k_1 = #{F > 1} = 1, n = 3.
    # p_0 = 0.025 quantile of Beta(2, 2); p_1 = that of Beta(1, 3) = 1 - (1 - 0.025)^(1/3) = 0.0084038.
    tail = bounds.cp_tail([0, 1, 2], 0, 2, alpha=0.05)
    p0 = beta.ppf(0.025, 2, 2)
    p1 = 1 - 0.975 ** (1 / 3)
    assert tail.tail_lower == pytest.approx([p0, p1])
    assert p1 == pytest.approx(0.0084038, abs=1e-7)
    # C(B) = 0 + Phi(Phi^-1(p0) - B/s) + Phi(Phi^-1(p1) - B/s); at B = 0 it is p0 + p1.
    c = bounds.certified_bound(tail, [0.0, 0.5], 0.5)
    assert c[0] == pytest.approx(p0 + p1)
    assert c[1] == pytest.approx(norm.cdf(norm.ppf(p0) - 1.0) + norm.cdf(norm.ppf(p1) - 1.0))


def test_dkw_small_case_by_hand() -> None:
    # Returns 1, 1, 3 from a = 0, alpha = 0.5: h = sqrt(ln(4) / 6) = 0.48062.
    # Distinct values 1, 3 (the tie collapsed): widths 1 - 0 = 1 and 3 - 1 = 2;
    # S(1) = 3/3 -> 1 - h = 0.51938, S(3) = 1/3 -> max(1/3 - h, 0) = 0.  C(0) = 1 * 0.51938 + 2 * 0.
    tail = bounds.dkw_tail([1.0, 3.0, 1.0], 0.0, alpha=0.5)
    h = math.sqrt(math.log(4) / 6)
    assert tail.band == pytest.approx(h)
    assert tail.widths.tolist() == [1.0, 2.0]
    assert tail.tail_lower == pytest.approx([1 - h, 0.0])
    assert tail.lower_bounded_mean == pytest.approx(1 - h)
    # A zero term stays zero at every budget (Phi(-inf) = 0, guarded).
    assert bounds.certified_bound(tail, [0.3], 0.1)[0] == pytest.approx(norm.cdf(norm.ppf(1 - h) - 3.0))


def test_dkw_starts_at_the_lower_end() -> None:
    # Returns 5, 5 from a = 2: C(0) = 2 + (5 - 2) * (1 - h) with h = sqrt(ln(40) / 4).
    tail = bounds.dkw_tail([5.0, 5.0], 2.0)
    h = math.sqrt(math.log(40) / 4)
    assert tail.lower_bounded_mean == pytest.approx(2 + 3 * max(1 - h, 0.0))


def test_binary_outcome() -> None:
    # One level (a 0/1 outcome): C(B) = Phi(Phi^-1(p) - B / sigma), p the Clopper-Pearson bound at alpha.
    wins = np.array([1] * 90 + [0] * 10)
    tail = bounds.cp_tail(wins, 0, 1, alpha=0.05)
    p = beta.ppf(0.05, 90, 11)
    assert tail.level == 0.05
    assert bounds.certified_bound(tail, [0.25], 0.5)[0] == pytest.approx(norm.cdf(norm.ppf(p) - 0.5))


def test_no_successes_give_a_zero_bound() -> None:
    tail = bounds.cp_tail(np.zeros(50), 0, 10)
    assert bool(np.all(tail.tail_lower == 0.0))
    assert bounds.certified_bound(tail, [0.0, 1.0], 0.3).tolist() == [0.0, 0.0]


# --------------------------------------------------------------------------------------------------
# Properties (ALGORITHMS.md 4.7, check 2).


def _samples(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.minimum(rng.geometric(0.01, size=2_000), 200).astype(float)


@pytest.mark.parametrize("method", ["cp", "dkw"])
@pytest.mark.parametrize("sigma", [0.05, 0.2, 1.0])
def test_bound_never_increases_with_budget_and_starts_at_the_lower_bounded_mean(
    method: str, sigma: float
) -> None:
    f = _samples(1)
    tail = bounds.cp_tail(f, 0, 200) if method == "cp" else bounds.dkw_tail(f, 0.0)
    grid = np.linspace(0.0, 3.0, 61)
    c = bounds.certified_bound(tail, grid, sigma)
    assert bool(np.all(np.diff(c) <= 1e-12))
    assert c[0] == pytest.approx(tail.lower_bounded_mean)
    assert tail.lower <= c[-1] <= c[0] <= f.mean()


def test_large_sigma_flattens_the_bound() -> None:
    tail = bounds.cp_tail(_samples(2), 0, 200)
    c = bounds.certified_bound(tail, [0.0, 0.5, 1.0], 1e6)
    assert c == pytest.approx([tail.lower_bounded_mean] * 3, rel=1e-5)


def test_per_step_budget() -> None:
    f = _samples(3)
    survival = bounds.cp_tail(f, 0, 200, horizon=200, survival=True)
    whole = bounds.cp_tail(f, 0, 200, horizon=200)
    eps = np.array([0.0, 0.01, 0.05])
    # Every level decided by all T = 200 steps: the total budget sqrt(200) * eps.
    assert bounds.certified_bound_per_step(whole, eps, 0.2) == pytest.approx(
        bounds.certified_bound(whole, np.sqrt(200) * eps, 0.2)
    )
    # Level i of a survival return decided by its first i + 1 steps: never looser.
    tighter = bounds.certified_bound_per_step(survival, eps, 0.2)
    assert bool(np.all(tighter >= bounds.certified_bound_per_step(whole, eps, 0.2) - 1e-12))
    assert tighter[1] > bounds.certified_bound_per_step(whole, eps, 0.2)[1]
    # Hand check of one level: k = n = 1 at level alpha / R with R = 1, horizon 4: sqrt(4) * eps.
    one = bounds.cp_tail([1.0], 0, 1, horizon=4)
    p = 0.05  # the 0.05 quantile of Beta(1, 1)
    assert bounds.certified_bound_per_step(one, [0.1], 0.5)[0] == pytest.approx(norm.cdf(norm.ppf(p) - 0.4))
    with pytest.raises(bounds.BoundInputError, match="horizon"):
        bounds.certified_bound_per_step(bounds.cp_tail(f, 0, 200), eps, 0.2)


def test_budget_grid_includes_stop() -> None:
    assert bounds.parse_budgets("0:1:0.2").tolist() == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert bounds.parse_budgets("0.01:0.03:0.01").tolist() == [0.01, 0.02, 0.03]
    assert bounds.parse_budgets("0.5:0.5:1").tolist() == [0.5]
    assert bounds.parse_budgets("0:1:0.3").tolist() == [0.0, 0.3, 0.6, 0.9]


# --------------------------------------------------------------------------------------------------
# Bad input.


@pytest.mark.parametrize("sigma", [0.0, -0.1, math.inf, math.nan])
def test_sigma_must_be_positive(sigma: float) -> None:
    tail = bounds.cp_tail(ALL_200[:10], 0, 200)
    with pytest.raises(bounds.BoundInputError, match="sigma"):
        bounds.certified_bound(tail, [0.1], sigma)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("1:0:0.1", "empty"),
        ("0:1:0", "STEP must be > 0"),
        ("0:1:-0.1", "STEP must be > 0"),
        ("-1:1:0.5", "START must be >= 0"),
        ("0:1", "START:STOP:STEP"),
        ("a:b:c", "three numbers"),
        ("0:inf:1", "finite"),
    ],
)
def test_bad_budget_ranges(text: str, match: str) -> None:
    with pytest.raises(bounds.BoundInputError, match=match):
        bounds.parse_budgets(text)


def test_bad_returns() -> None:
    with pytest.raises(bounds.BoundInputError, match="outside the declared range"):
        bounds.cp_tail([0, 201], 0, 200)
    with pytest.raises(bounds.BoundInputError, match="integer returns"):
        bounds.cp_tail([0.5, 3], 0, 200)
    with pytest.raises(bounds.BoundInputError, match="below the declared lower end"):
        bounds.dkw_tail([-1.0, 3.0], 0.0)
    with pytest.raises(bounds.BoundInputError, match="no episodes"):
        bounds.dkw_tail([], 0.0)
    with pytest.raises(bounds.BoundInputError, match="alpha"):
        bounds.dkw_tail([1.0], 0.0, alpha=1.5)
    with pytest.raises(bounds.BoundInputError, match="budgets"):
        bounds.certified_bound(bounds.dkw_tail([1.0], 0.0), [-0.1], 0.2)
