"""AdaTE's NNLS combination (5.11 check 4) and D2RL's densification, reward and PPO (5.11 check 5)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from robot_rl.cav.adaptive import ThetaSchedule, fit_theta, regression_pairs
from robot_rl.cav.campaign import Campaign, run_campaign
from robot_rl.cav.dense import (
    Episodes,
    EpsilonPolicy,
    PpoConfig,
    approx_ratio,
    d2rl_reward,
    densify,
    keep_steps,
    train_epsilon,
)
from robot_rl.cav.drivers import CAV_UNDER_TEST
from robot_rl.cav.estimators import DENSE_OBS_NAMES, BatchResult, StepLog
from robot_rl.cav.scenario import SINGLE, TrafficState


def test_nnls_recovers_theta_and_zeroes_irrelevant_surrogates() -> None:
    rng = np.random.default_rng(0)
    c = (rng.random((4000, 4)) < 0.3).astype(float)
    theta_true = np.array([0.7, 0.0, 0.3, 0.0])
    y = c @ theta_true + rng.normal(0.0, 0.05, 4000)
    theta = fit_theta(c, y)
    assert theta is not None
    np.testing.assert_allclose(theta, theta_true, atol=0.02)
    assert theta.sum() == pytest.approx(1.0)
    assert fit_theta(c, -np.ones(4000)) is None  # all-zero fit: keep the previous θ


def _batch(crashed: list[bool], ratios: list[list[float]], critical: list[list[bool]]) -> BatchResult:
    n, t = len(crashed), len(ratios[0])
    steps = []
    for k in range(t):
        r = np.array([row[k] for row in ratios])
        crit = np.array([row[k] for row in critical])
        steps.append(
            StepLog(
                alive=np.ones(n, bool),
                critical=crit,
                pov=np.zeros(n, np.int64),
                action=np.where(crit, 6, -1),
                p_a=np.full(n, 3e-4),
                q_a=3e-4 / r,
                adv_a=np.zeros(n),
                ratio=r,
                adversarial=crit & (r < 0.9),
                epsilon=np.full(n, 0.99),
                features=np.tile([float(k), 1.0], (n, 1)) * crit[:, None],
                obs=np.full((n, len(DENSE_OBS_NAMES)), float(k)),
            )
        )
    w = np.prod(np.array(ratios), axis=1)
    init = TrafficState(np.zeros((n, 3)), np.zeros((n, 3)), np.zeros((n, 3), np.int8), np.zeros((n, 3)))
    return BatchResult(np.array(crashed), w, steps, init, np.zeros((n, t, 2), np.int8))


def test_regression_targets_are_crash_times_later_ratios() -> None:
    b = _batch([True, False], [[0.5, 0.02], [2.0, 1.0]], [[True, True], [True, False]])
    f, y = regression_pairs(b)
    # step 0: tests 0 and 1 critical: y = crash * ρ_1 = [0.02, 0]; step 1: test 0: y = 1
    np.testing.assert_allclose(y, [0.02, 0.0, 1.0])
    np.testing.assert_allclose(f, [[0.0, 1.0], [0.0, 1.0], [1.0, 1.0]])


def test_theta_schedule_refits_only_between_batches() -> None:
    c = Campaign(SINGLE, "adaptive", 6_000, seed=0, refit_every=2_000, batch_size=1_500)
    res = run_campaign(c, CAV_UNDER_TEST)
    assert [n for n, _ in res.theta_history] == [0, 2_000, 4_000]
    assert res.theta_history[0][1] == [0.25] * 4
    for _, theta in res.theta_history:
        assert min(theta) >= 0.0 and sum(theta) == pytest.approx(1.0)
    sched = ThetaSchedule(2, 10)
    sched.refit(10)  # no data: θ stays uniform
    assert sched.theta.tolist() == [0.5, 0.5]


def test_d2rl_reward_values() -> None:
    np.testing.assert_allclose(
        d2rl_reward(np.array([0.0, 2e-3, 4e-3, 1.0, 1e-4])), [100.0, 0.0, -100.0, -100.0, 95.0]
    )
    # ρ̃: naturalistic 1/ε, adversarial p/(1-ε)
    np.testing.assert_allclose(
        approx_ratio(np.array([0.5, 0.5]), np.array([1e-3, 1e-3]), np.array([False, True])), [2.0, 2e-3]
    )


def test_densify_keeps_critical_steps_outside_the_ratio_band_in_order() -> None:
    ratios = [[1.0, 0.5, 0.95, 1.0101], [1.0, 1.0, 1.0, 0.01], [0.05, 1.0, 1.0, 1.0]]
    critical = [[False, True, True, True], [False, False, False, True], [True, False, False, False]]
    b = _batch([True, True, False], ratios, critical)
    np.testing.assert_array_equal(
        keep_steps(np.array([1.0, 0.95, 0.9, 1.001, 1.0101, 0.5]), np.ones(6, bool)),
        [False, False, True, True, True, True],
    )
    ep = densify([b])
    # test 0 (weight 0.5*0.95*1.0101 = 0.48 >= 0.1) is dropped; test 1 (0.01) keeps step 3; test 2: no crash
    assert ep.n == 1
    assert ep.mask.tolist() == [[True]]
    assert ep.obs[0, 0, 0] == 3.0
    b2 = _batch([True], [[1.2, 0.02, 0.95, 1.3]], [[True, True, True, True]])
    ep2 = densify([b2])  # weight 0.0296: steps 0, 1, 3 kept in order (ratio 0.95 deleted)
    assert ep2.adversarial[0, ep2.mask[0]].tolist() == [False, True, False]
    assert ep2.obs[0, ep2.mask[0], 0].tolist() == [0.0, 1.0, 3.0]
    b3 = _batch([True], [[0.5, 0.02]], [[True, True]])  # two adversarial steps: no reward defined, dropped
    with pytest.raises(ValueError, match="no crash episode"):
        densify([_batch([False], [[0.5]], [[True]]), b3])


def test_ppo_learns_a_state_dependent_epsilon(tmp_path: Path) -> None:
    """Synthetic pool of 2-step crash episodes: a naturalistic step (feature 0 = -1: best ε large, ρ̃ = 1/ε)
    then an adversarial one with p = 1e-3 (feature 0 = +1: best ε small, ρ̃ = p/(1-ε)). w̃ = 1e-3/(ε0 (1-ε1)):
    at ε = (0.999, 0.1) the reward is 100 - 5e4 * 1.11e-3 = 44; at (0.5, 0.5) it is -100. PPO must learn both
    ends (a single naturalistic step alone would teach nothing: w̃ = 1/ε >= 1 always gets -100)."""
    n = 400
    obs = np.zeros((n, 2, len(DENSE_OBS_NAMES)))
    obs[:, 0, 0], obs[:, 1, 0] = -1.0, 1.0
    adv = np.tile([False, True], (n, 1))
    ep = Episodes(obs, np.full((n, 2), 1e-3), adv, np.ones((n, 2), bool), np.full(n, 0.01))
    policy, hist = train_epsilon(ep, PpoConfig(iterations=80, seed=0))
    eps = policy(np.array([[-1.0] + [0.0] * 9, [1.0] + [0.0] * 9]))
    assert eps[0] > 0.8 and eps[1] < 0.3, eps
    assert hist[-1]["reward/mean"] > hist[0]["reward/mean"] + 50
    path = tmp_path / "eps.npz"
    policy.save(path)
    np.testing.assert_allclose(EpsilonPolicy.load(path)(obs[:5, 0]), policy(obs[:5, 0]))
    with pytest.raises(FileNotFoundError):
        EpsilonPolicy.load(tmp_path / "missing.npz")
