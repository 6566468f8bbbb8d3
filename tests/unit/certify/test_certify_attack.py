"""The attack (robot_rl.certify.attack): the budget is respected (total and per step), unused budget is
carried to later steps, it degrades a policy it can reach, and it refuses policies without a torch twin."""

from __future__ import annotations

import math

import numpy as np
import pytest

from robot_rl.certify.attack import AttackConfig, AttackInputError, attack_smoothed, radius
from robot_rl.certify.evaluate import evaluate_smoothed, noise_rng, resolve_env
from robot_rl.certify.policies import cartpole_controller
from robot_rl.certify.smoothing import BasePolicy, SmoothedPolicy

CARTPOLE = resolve_env("vec:CartPole-v0")
SHORT = resolve_env("vec:CartPole-v0", max_episode_steps=60)


def test_radius_rules() -> None:
    left = np.array([0.36, 0.36, 0.0])
    steps = np.array([4, 1, 10])
    # Greedy: the whole remaining budget sqrt(0.36) = 0.6; even: sqrt(0.36 / 4) = 0.3 (0.6 on the last step).
    assert radius(left, steps, AttackConfig(budget=1.0), discrete=True) == pytest.approx([0.6, 0.6, 0.0])
    assert radius(left, steps, AttackConfig(budget=1.0), discrete=False) == pytest.approx([0.3, 0.6, 0.0])
    # Per step: every step its own eps, whatever was spent before.
    cfg = AttackConfig(budget=0.05, per_step=True)
    assert radius(left, steps, cfg, discrete=True) == pytest.approx([0.05] * 3)
    # Carry-over: a step that spent less than its share leaves a larger radius to the next ones.
    share = 0.36 / 4
    assert (
        radius(np.array([0.36 - share / 4]), np.array([3]), AttackConfig(budget=1.0), False)[0]
        > radius(np.array([0.36 - share]), np.array([3]), AttackConfig(budget=1.0), False)[0]
    )


@pytest.mark.parametrize("sigma", [0.0, 0.2])
def test_total_budget_is_respected_and_carried_over(sigma: float) -> None:
    b = 0.5
    res = attack_smoothed(
        SHORT, cartpole_controller(), sigma, AttackConfig(budget=b, draws=16), 20, record_norms=True
    )
    assert res.step_norms is not None
    total = np.sqrt((res.step_norms**2).sum(axis=1))
    assert bool(np.all(total <= b * (1 + 1e-9)))
    assert res.spent == pytest.approx(total)
    # The budget is spent over several steps: what one flip left over was used later in the episode.
    assert int(res.attacked_steps.max()) >= 3
    later = res.step_norms[:, 1:].sum(axis=1) > 0
    assert bool(later.any())
    # Nothing is spent after an episode ended.
    for i, n in enumerate(res.lengths.tolist()):
        assert bool(np.all(res.step_norms[i, n:] == 0.0))


def test_per_step_budget_is_respected_without_carry_over() -> None:
    eps = 0.03
    res = attack_smoothed(
        SHORT, cartpole_controller(), 0.0, AttackConfig(budget=eps, per_step=True), 10, record_norms=True
    )
    assert res.step_norms is not None
    assert float(res.step_norms.max()) <= eps * (1 + 1e-9)
    # Without a total cap the episode's l2 goes beyond eps.
    assert float(res.spent.max()) > eps


def test_continuous_attack_spreads_the_budget_evenly() -> None:
    # Pendulum (3 observations, 1 continuous action) and a linear tanh policy: the gradient never vanishes, so
    # every step uses its whole ball, sqrt(B_rem^2 / steps_left) = 0.4 / sqrt(16) = 0.1 at every step.
    import torch

    w = np.array([[2.0, -1.0, 0.5]], np.float32)

    def act(window: np.ndarray) -> np.ndarray:
        out: np.ndarray = np.tanh(window @ w.T)
        return out

    def scores(x: torch.Tensor) -> torch.Tensor:
        return x @ torch.from_numpy(w).T

    base = BasePolicy("linear", 3, act, act_dim=1, scores=scores)
    spec = resolve_env("Pendulum-v1", max_episode_steps=16)
    res = attack_smoothed(spec, base, 0.1, AttackConfig(budget=0.4, draws=8), 3, record_norms=True)
    assert res.step_norms is not None
    assert float(res.spent.max()) <= 0.4 * (1 + 1e-9)
    assert res.step_norms == pytest.approx(np.full((3, 16), 0.1), rel=1e-3)


def test_attack_degrades_the_undefended_reference_agent() -> None:
    # ALGORITHMS.md 4.7 check 5 [shape], in small: the undefended (sigma 0) agent collapses under a total
    # budget of 1.6 (its clean return is 200).
    clean = evaluate_smoothed(CARTPOLE, SmoothedPolicy(cartpole_controller(), 0.0, noise_rng(0)), 30)
    assert clean.mean == 200.0
    res = attack_smoothed(CARTPOLE, cartpole_controller(), 0.0, AttackConfig(budget=1.6), 30)
    assert res.mean < 50.0


def test_a_zero_budget_replays_the_clean_episodes() -> None:
    base = cartpole_controller()
    clean = evaluate_smoothed(SHORT, SmoothedPolicy(base, 0.3, noise_rng(7)), 50, seed=7, batch_size=50)
    res = attack_smoothed(SHORT, base, 0.3, AttackConfig(budget=0.0, draws=4), 50, seed=7, batch_size=50)
    assert np.array_equal(res.returns, clean.returns)
    assert float(res.spent.max()) == 0.0 and int(res.attacked_steps.max()) == 0


def test_policies_without_a_torch_twin_cannot_be_attacked() -> None:
    base = BasePolicy("onnx-like", 4, lambda o: np.zeros(o.shape[0], np.int64), n_actions=2)
    with pytest.raises(AttackInputError, match="no torch twin"):
        attack_smoothed(CARTPOLE, base, 0.2, AttackConfig(budget=0.1), 2)


@pytest.mark.parametrize("budget", [-0.1, math.inf, math.nan])
def test_bad_budgets_are_refused(budget: float) -> None:
    with pytest.raises(AttackInputError, match="budget"):
        AttackConfig(budget=budget)
