"""Monte Carlo evaluation (robot_rl.certify.evaluate): the vectorised CartPole against Gymnasium's, the
reference agent's calibration numbers, the robots, and environments that do not fit the policy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from gymnasium.envs.classic_control import CartPoleEnv

from robot_rl.certify import bounds
from robot_rl.certify.evaluate import (
    CartPoleVec,
    EnvInputError,
    check_fit,
    evaluate_smoothed,
    noise_rng,
    resolve_env,
)
from robot_rl.certify.policies import cartpole_controller, load_policy
from robot_rl.certify.smoothing import SmoothedPolicy

ROOT = Path(__file__).resolve().parents[3]
MAIN_POLICY = ROOT / "bench" / "results" / "hybrid" / "full" / "h2o" / "seed0" / "policy.npz"


def test_vectorised_cartpole_equals_gymnasium_step_for_step() -> None:
    n = 8
    vec = CartPoleVec(n, max_episode_steps=200)
    vec.reset(seed=0, first=0, count=n)
    refs = []
    for i in range(n):
        env = CartPoleEnv()  # Gymnasium's own (CartPole-v0 and -v1 differ only in the cap)
        env.reset(seed=i)
        env.state = vec.state[i].copy()  # the same start
        refs.append(env)
    rng = np.random.default_rng(0)
    rows = np.arange(n)
    for _ in range(60):
        actions = rng.integers(0, 2, size=rows.size)
        obs, reward, done = vec.step(actions, rows)
        for j, i in enumerate(rows.tolist()):
            o, r, terminated, _, _ = refs[i].step(int(actions[j]))
            assert np.array_equal(obs[j], o)
            assert reward[j] == r
            assert done[j] == terminated
        rows = rows[~done]
        if rows.size == 0:
            break


def test_cartpole_is_truncated_at_its_cap() -> None:
    spec = resolve_env("vec:CartPole-v0", max_episode_steps=30)
    res = evaluate_smoothed(spec, SmoothedPolicy(cartpole_controller(), 0.0, noise_rng(0)), 50)
    assert res.lengths.max() == 30 and res.returns.max() == 30.0


def test_reference_agent_matches_the_calibration_run() -> None:
    # ALGORITHMS.md 4.7, check 3 [calib] (10,000 episodes, another random stream): sigma 0.2 clean mean
    # 199.83 with 99.58% at 200; sigma 0.4 clean mean 156.42. 2,000 episodes here: standard errors about
    # 0.07 and 1.1, so +-0.4 and +-5 are 5 standard errors.
    spec = resolve_env("vec:CartPole-v0")
    r02 = evaluate_smoothed(spec, SmoothedPolicy(cartpole_controller(), 0.2, noise_rng(0)), 2_000)
    r04 = evaluate_smoothed(spec, SmoothedPolicy(cartpole_controller(), 0.4, noise_rng(0)), 2_000)
    assert r02.mean == pytest.approx(199.83, abs=0.4)
    assert float((r02.returns == 200).mean()) == pytest.approx(0.9958, abs=0.01)
    assert r04.mean == pytest.approx(156.42, abs=5.0)
    # Any CartPole curve at a sigma lies on or below the ceiling row (check 1).
    tail = bounds.cp_tail(r02.returns, 0, 200)
    assert bool(np.all(bounds.certified_bound(tail, [0, 0.2, 0.4], 0.2) <= [199.84, 196.82, 174.81]))


def test_same_seed_same_returns() -> None:
    spec = resolve_env("vec:CartPole-v0")
    a = evaluate_smoothed(spec, SmoothedPolicy(cartpole_controller(), 0.4, noise_rng(5)), 300, seed=5)
    b = evaluate_smoothed(spec, SmoothedPolicy(cartpole_controller(), 0.4, noise_rng(5)), 300, seed=5)
    assert np.array_equal(a.returns, b.returns)
    # Batches of 64 give episodes of the same distribution (not the same streams).
    c = evaluate_smoothed(
        spec, SmoothedPolicy(cartpole_controller(), 0.4, noise_rng(5)), 300, seed=5, batch_size=64
    )
    assert c.returns.size == 300


def test_gymnasium_ids_run_through_the_list_batch() -> None:
    spec = resolve_env("CartPole-v1", max_episode_steps=40)
    assert spec.integer_returns and spec.return_range == (0.0, 40.0)
    res = evaluate_smoothed(spec, SmoothedPolicy(cartpole_controller(), 0.1, noise_rng(0)), 6, batch_size=4)
    assert res.returns.tolist() == res.lengths.astype(float).tolist()
    assert res.lengths.max() <= 40


def test_quadruped_episodes_with_the_trained_policy() -> None:
    loaded = load_policy(MAIN_POLICY)
    assert loaded.robot == "quadruped" and loaded.base.obs_dim == 34 and loaded.base.act_dim == 8
    spec = resolve_env("robot_rl/Quadruped-v0", max_episode_steps=15)
    check_fit(spec, loaded.base.obs_dim, 1, None, 8)
    runs = [
        evaluate_smoothed(spec, SmoothedPolicy(loaded.base, 0.05, noise_rng(1)), 3, seed=1) for _ in range(2)
    ]
    assert np.array_equal(runs[0].returns, runs[1].returns)  # seeded: reproducible
    assert bool(np.all(np.isfinite(runs[0].returns))) and runs[0].lengths.max() <= 15


def test_environments_that_do_not_fit_are_refused() -> None:
    cartpole = resolve_env("vec:CartPole-v0")
    with pytest.raises(EnvInputError, match=r"the policy takes 34 observations .* gives 4"):
        check_fit(cartpole, 34, 1, None, 8)
    with pytest.raises(EnvInputError, match="pass --frames 5"):
        check_fit(cartpole, 20, 1, 2, None)
    with pytest.raises(EnvInputError, match="8 continuous actions, vec:CartPole-v0 takes 2 discrete"):
        check_fit(cartpole, 4, 1, None, 8)
    quad = resolve_env("robot_rl/Quadruped-v0", max_episode_steps=5)
    with pytest.raises(EnvInputError, match=r"takes 4 observations .* gives 34"):
        check_fit(quad, 4, 1, 2, None)


@pytest.mark.parametrize(
    ("env_id", "match"),
    [
        ("vec:Pendulum-v1", "unknown vectorised env"),
        ("NoSuchEnv-v0", "not a registered Gymnasium id"),
    ],
)
def test_unknown_environments_are_refused(env_id: str, match: str) -> None:
    with pytest.raises(EnvInputError, match=match):
        resolve_env(env_id)


def test_bad_robot_profile_is_refused() -> None:
    with pytest.raises(EnvInputError, match="robot_rl/Quadruped-v0"):
        resolve_env("robot_rl/Quadruped-v0", profile="no-such-profile")
