"""Issue 8's efficiency claims on the single-decision scenario (seconds); slow ones under pytest -m slow."""

from __future__ import annotations

import numpy as np
import pytest

from robot_rl.cav.campaign import Campaign, run_campaign
from robot_rl.cav.drivers import CAV_UNDER_TEST
from robot_rl.cav.estimators import enumerate_single_decision
from robot_rl.cav.scenario import MULTI, SINGLE, sample_initial
from robot_rl.cav.stats import analytic_nde_tests


def n_star(method: str, surrogates: tuple[str, ...], n: int, seed: int = 0) -> int | None:
    c = Campaign(SINGLE, method, n, seed=seed, surrogates=surrogates)
    return run_campaign(c, CAV_UNDER_TEST).record.tests_needed()


def test_single_decision_efficiency() -> None:
    """Accurate surrogate >= 100x fewer tests than NDE; the adaptive combination of 4 surrogates (one
    accurate) within 1.5x of the accurate one alone; >= 5x better than the mis-specified surrogate alone."""
    mu = float(
        enumerate_single_decision(
            SINGLE, CAV_UNDER_TEST, sample_initial(SINGLE, 20_000, np.random.default_rng(9))
        ).mean()
    )
    assert 1.0e-5 < mu < 1.7e-5
    nde = analytic_nde_tests(mu)  # NDE's RHW is the Bernoulli formula (tests/unit/cav/test_cav_stats.py)
    accurate = n_star("nade", ("oracle",), 20_000)
    assert accurate is not None and accurate * 100 <= nde
    combined = n_star("adaptive", ("s1", "oracle", "s3", "s4"), 20_000)
    assert combined is not None and combined <= 1.5 * accurate
    default_set = n_star("adaptive", ("s1", "s2", "s3", "s4"), 20_000)
    assert default_set is not None and default_set <= 1.5 * accurate
    mis = n_star("nade", ("s1",), 100_000)
    assert mis is None or mis >= 5 * default_set  # None: RHW still above 0.3 after 100,000 tests


@pytest.mark.slow
@pytest.mark.xfail(
    strict=True,
    reason="docs/cav.md 'Multi-decision': 68 % of the T = 2 crash probability runs through states where "
    "the crash is already unavoidable at the second decision, reached by a first action the 3 s challenge "
    "does not flag; no epsilon(s) lowers their weight below ~1, and the clipped D2RL reward gives those "
    "episodes no gradient",
)
def test_multi_decision_learned_epsilon_beats_best_fixed() -> None:
    from robot_rl.cav.campaign import train_dense
    from robot_rl.cav.dense import PpoConfig

    fixed = []
    for eps in (0.1, 0.5, 0.9, 0.99):
        rec = run_campaign(
            Campaign(MULTI, "nade", 400_000, seed=0, surrogates=("oracle",), epsilon=eps), CAV_UNDER_TEST
        ).record
        fixed.append(rec.tests_needed() or 10**9)
    policy, _ = train_dense(MULTI, CAV_UNDER_TEST, ("oracle",), 1_000_000, 0, PpoConfig(seed=0))
    rec = run_campaign(
        Campaign(MULTI, "dense", 400_000, seed=0, surrogates=("oracle",)),
        CAV_UNDER_TEST,
        epsilon_policy=policy,
    ).record
    learned = rec.tests_needed()
    assert learned is not None and learned < min(fixed)


@pytest.mark.slow
def test_nde_tests_needed_matches_the_analytic_formula() -> None:
    """10 NDE runs of 8e6 single-decision tests: median n* within 15 % of z^2 (1 - p) / (0.09 p) at the
    pooled p."""
    recs = [
        run_campaign(Campaign(SINGLE, "nde", 8_000_000, seed=1000 + s), CAV_UNDER_TEST).record
        for s in range(10)
    ]
    p = float(np.mean([r.mean() for r in recs]))
    got = [r.tests_needed() for r in recs]
    assert all(g is not None for g in got)
    assert abs(np.median([g for g in got if g]) / analytic_nde_tests(p) - 1.0) < 0.15
