"""Relative half-width, tests needed, analytic NDE sample size (ALGORITHMS.md 5.5; 5.11 check 3)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from robot_rl.cav import stats
from robot_rl.cav.stats import Z_90, SparseRecord, analytic_nde_tests, rhw_curve


def test_rhw_by_hand() -> None:
    # X = [0, 2, 0, 0]: mean 0.5, sample var (ddof 1) = (0.25*3 + 2.25)/3 = 1.0,
    # RHW_4 = 1.645 * 1 / (2 * 0.5) = 1.645
    r = rhw_curve(np.array([0.0, 2.0, 0.0, 0.0]))
    assert math.isinf(r[0])  # no crash yet
    assert r[3] == pytest.approx(Z_90 * 1.0 / (math.sqrt(4) * 0.5))
    # X = [1, 1]: zero variance -> RHW 0
    assert rhw_curve(np.array([1.0, 1.0]))[1] == 0.0
    assert pytest.approx(1.6448536, rel=1e-7) == Z_90


def test_tests_needed_is_one_after_the_last_crossing_not_the_first() -> None:
    rhw = np.array([np.inf, 0.5, 0.2, 0.4, 0.25, 0.1])
    assert stats.tests_needed(rhw) == 5  # last n with RHW > 0.3 is n = 4 (0.4)
    assert stats.tests_needed(np.array([np.inf, 0.2, 0.5])) is None  # above at the end: not reached


def test_analytic_nde_sample_size() -> None:
    assert analytic_nde_tests(1.58e-7) == pytest.approx(1.90e8, rel=0.01)
    assert analytic_nde_tests(2.30e-5) == pytest.approx(1.31e6, rel=0.01)
    assert analytic_nde_tests(0.01) == pytest.approx(2976, abs=1)
    # the formula is the Bernoulli RHW solved for n: RHW_n = z sqrt((1-p)/(n p)) at n = n* is 0.3
    p = 3e-4
    n = analytic_nde_tests(p)
    assert Z_90 * math.sqrt((1 - p) / (n * p)) == pytest.approx(0.3)


def test_bernoulli_tests_needed_matches_formula() -> None:
    """5.11 check 3: Bernoulli(0.01), 1e5 draws, 20 seeds: median n* within 15 % of 2,976."""
    got = []
    for seed in range(20):
        x = (np.random.default_rng(seed).random(100_000) < 0.01).astype(float)
        n_star = stats.tests_needed(rhw_curve(x))
        assert n_star is not None
        got.append(n_star)
    assert abs(np.median(got) - 2976) / 2976 < 0.15, np.median(got)
    assert np.percentile(got, 10) > 2000 and np.percentile(got, 90) < 4500


def test_sparse_record_equals_dense() -> None:
    rng = np.random.default_rng(4)
    for _ in range(20):
        n = int(rng.integers(10, 3000))
        x = np.where(rng.random(n) < rng.uniform(0.002, 0.2), rng.lognormal(-3, 1.5, n), 0.0)
        rec = SparseRecord()
        for chunk in np.array_split(x, 3):
            rec.add(chunk)
        assert rec.n_tests == n and rec.n_nonzero == int((x != 0).sum())
        assert rec.mean() == pytest.approx(x.mean())
        dense = rhw_curve(x)
        ns = np.arange(1, n + 1)
        mu, r = rec.curve(ns)
        np.testing.assert_allclose(mu, np.cumsum(x) / ns, rtol=1e-12)
        np.testing.assert_allclose(
            np.where(np.isfinite(r), r, -1), np.where(np.isfinite(dense), dense, -1), rtol=1e-9
        )
        for target in (0.3, 0.5, 1.0):
            assert rec.tests_needed(target) == stats.tests_needed(dense, target)
        if x.sum() > 0:
            assert rec.rhw() == pytest.approx(dense[-1])
            assert rec.sample_std() == pytest.approx(x.std(ddof=1))


def test_bootstrap_tests_needed_spreads_around_the_run() -> None:
    x = (np.random.default_rng(1).random(50_000) < 0.01).astype(float)
    rec = SparseRecord()
    rec.add(x)
    draws = rec.bootstrap_tests_needed(200, np.random.default_rng(2))
    reached = np.array([d for d in draws if d is not None])
    assert len(reached) == 200
    assert 2000 < np.median(reached) < 4500  # around 2,976
    assert np.percentile(reached, 95) > np.percentile(reached, 5) * 1.2  # a distribution, not a point
