"""Soundness of the policy-smoothing certificate (ALGORITHMS.md 4.7, check 5) [shape], marked slow.

The attacked mean return must stay at or above the certified bound C(B) at every budget, up to sampling
error (stated: the attacked mean plus 3 of its standard errors must reach C(B)); the undefended policy
(sigma 0) must degrade faster under the same attack. CartPole: the reference agent of check 3 (a controller
acting on the mean of 3 noisy frames), sigma 0.2, N = 10,000 clean episodes, 300 attacked episodes per
budget. Quadruped: the main job's H2O policy (bench/results/hybrid/full/h2o/seed0), sigma 0.2, episodes
capped at 200 steps, N = 200 clean episodes and 32 attacked ones per budget. About 3 minutes on 2 cores.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from robot_rl.certify import bounds
from robot_rl.certify.attack import AttackConfig, attack_smoothed
from robot_rl.certify.evaluate import evaluate_smoothed, noise_rng, resolve_env
from robot_rl.certify.policies import cartpole_controller, load_policy
from robot_rl.certify.smoothing import SmoothedPolicy

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
MAIN_POLICY = ROOT / "bench" / "results" / "hybrid" / "full" / "h2o" / "seed0" / "policy.npz"
SAMPLING_SE = 3.0
"""Standard errors of the attacked mean allowed below the certificate (sampling error)."""


@pytest.fixture(autouse=True)
def _one_torch_thread() -> None:
    torch.set_num_threads(1)


def test_cartpole_attack_stays_above_the_certificate() -> None:
    spec = resolve_env("vec:CartPole-v0")
    base = cartpole_controller()
    sigma = 0.2
    clean = evaluate_smoothed(spec, SmoothedPolicy(base, sigma, noise_rng(0)), 10_000)
    budgets = np.array([0.2, 0.6, 1.0, 1.4])
    certified = bounds.certified_bound(bounds.cp_tail(clean.returns, 0, 200, survival=True), budgets, sigma)
    smoothed, undefended = [], []
    for b in budgets.tolist():
        cfg = AttackConfig(budget=b, draws=64)
        smoothed.append(attack_smoothed(spec, base, sigma, cfg, 300, seed=0, batch_size=300))
        undefended.append(attack_smoothed(spec, base, 0.0, cfg, 300, seed=0, batch_size=300))
    for c, att in zip(certified, smoothed, strict=True):
        assert att.mean + SAMPLING_SE * att.std_err >= c
    # The attack does reach the smoothed agent (it is not a no-op) ...
    assert smoothed[-1].mean < clean.mean - 5.0
    # ... and the undefended agent, clean at 200, collapses within the same budgets while the smoothed one
    # keeps most of its return (measured: 9.8 vs 180 at B = 1.2).
    assert undefended[0].mean == 200.0
    assert undefended[-1].mean < 50.0 < 150.0 < smoothed[-1].mean


def test_quadruped_attack_stays_above_the_certificate() -> None:
    spec = resolve_env("robot_rl/Quadruped-v0", max_episode_steps=200)
    base = load_policy(MAIN_POLICY).base
    sigma = 0.2
    clean = evaluate_smoothed(spec, SmoothedPolicy(base, sigma, noise_rng(0)), 200, batch_size=100)
    clean0 = evaluate_smoothed(spec, SmoothedPolicy(base, 0.0, noise_rng(0)), 32, batch_size=32)
    budgets = np.array([0.1, 0.2, 0.4, 4.0, 8.0])
    tail = bounds.dkw_tail(clean.returns, float(clean.returns.min()), horizon=200)
    certified = bounds.certified_bound(tail, budgets, sigma)
    attacked = {}
    for b in budgets.tolist():
        cfg = AttackConfig(budget=b, draws=16)
        res = attack_smoothed(spec, base, sigma, cfg, 32, seed=0, batch_size=32)
        attacked[b] = res
        # The certificate bounds E[max(F, a)] with a the smallest clean return: compare like with like.
        floored = np.maximum(res.returns, tail.lower)
        se = floored.std(ddof=1) / np.sqrt(floored.size)
        assert floored.mean() + SAMPLING_SE * se >= certified[budgets.tolist().index(b)]
    undefended = attack_smoothed(
        spec, base, 0.0, AttackConfig(budget=8.0, draws=16), 32, seed=0, batch_size=32
    )
    smoothed_clean = float(clean.returns[:32].mean())  # the same 32 episodes (seeds, commands) as the attack
    # Relative loss under the same attack at B = 8: the undefended policy loses more of its clean return.
    loss_undefended = 1.0 - undefended.mean / clean0.mean
    loss_smoothed = 1.0 - attacked[8.0].mean / smoothed_clean
    assert loss_undefended > 0.5
    assert loss_undefended > loss_smoothed + 0.1
