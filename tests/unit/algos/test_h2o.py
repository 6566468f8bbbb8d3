"""H2O: ALGORITHMS.md 1.7 unit check 1 (the classifiers on a 1-D linear-Gaussian system), the
alpha-free target of check 4, naive-mix's w = 1, and the constructor's checks of real_obs_std.
(Checks 2-4 on the loss functions: tests/unit/losses/test_h2o_losses.py.)"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest
import torch

from robot_rl.algos.base import TorchBatch
from robot_rl.algos.h2o import H2O, NAIVE_MIX, H2OConfig
from robot_rl.schema import TransitionBatch

K_REAL, K_SIM, SIGMA = 1.0, 1.5, 0.5


def linear_gaussian(rng: np.random.Generator, n: int, k: float) -> tuple[np.ndarray, ...]:
    """s, a ~ U(-1, 1); s' = s + k a + xi, xi ~ N(0, SIGMA^2); returns (s, a, s', xi)."""
    s = rng.uniform(-1.0, 1.0, n)
    a = rng.uniform(-1.0, 1.0, n)
    xi = rng.normal(0.0, SIGMA, n)
    return s, a, s + k * a + xi, xi


def batch(s: np.ndarray, a: np.ndarray, s_next: np.ndarray) -> TorchBatch:
    def col(v: np.ndarray) -> torch.Tensor:
        return torch.tensor(v, dtype=torch.float32).unsqueeze(-1)

    n = len(s)
    return TransitionBatch(col(s), col(a), torch.zeros(n), col(s_next), torch.zeros(n), torch.zeros(n))


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Rank correlation (continuous data: no ties)."""
    rx, ry = np.argsort(np.argsort(x)), np.argsort(np.argsort(y))
    return float(np.corrcoef(rx, ry)[0, 1])


def test_classifier_log_ratio_on_a_linear_gaussian_system_check_1() -> None:
    # Truth [exact]: log P_r/P_s(s'|s,a) = [(d - k_s a)^2 - (d - k_r a)^2] / (2 sigma^2), d = s' - s;
    # on sim samples (d = k_s a + xi) that is -2 a xi - 0.5 a^2. KL(P_s || P_r) = 0.5 a^2.
    rng = np.random.default_rng(0)
    n = 20_000
    real = linear_gaussian(rng, n, K_REAL)
    sim = linear_gaussian(rng, n, K_SIM)
    algo = H2O(1, 1, real_obs_std=np.array([real[0].std()]), seed=0, config=H2OConfig(hidden=(8,)))
    pick = np.random.default_rng(1)
    for _ in range(1000):  # reference losses and input noise, 256 + 256 per step
        i, j = pick.integers(0, n, 256), pick.integers(0, n, 256)
        algo.classifier_step(
            batch(real[0][i], real[1][i], real[2][i]), batch(sim[0][j], sim[1][j], sim[2][j])
        )

    s, a, s_next, xi = linear_gaussian(np.random.default_rng(2), 4000, K_SIM)  # held-out sim samples
    gap = algo.ratio_and_gap(batch(s, a, s_next))
    truth = -2.0 * a * xi - 0.5 * a**2
    assert spearman(gap.log_w.numpy(), truth) > 0.8
    # u is rank-increasing in |a|: its mean rises over the five quintiles of |a|.
    quintile = np.digitize(np.abs(a), np.quantile(np.abs(a), [0.2, 0.4, 0.6, 0.8]))
    u = gap.u.numpy()
    means = [u[quintile == q].mean() for q in range(5)]
    assert all(lo < hi for lo, hi in itertools.pairwise(means)), means
    assert gap.w.min() > 0.0 and gap.w.max() <= 1.0
    assert gap.omega.sum().item() == pytest.approx(1.0, abs=1e-12)


SMALL = H2OConfig(hidden=(16,), classifier_hidden=(16,))


def h2o(config: H2OConfig = SMALL) -> H2O:
    return H2O(3, 2, real_obs_std=np.array([1.0, 0.0, 2.0]), seed=0, config=config)


def test_alpha_does_not_change_the_target_check_4() -> None:
    algo = h2o()
    g = torch.Generator().manual_seed(0)
    next_obs, reward, terminated = torch.randn(8, 3, generator=g), torch.randn(8, generator=g), torch.zeros(8)
    state = algo.generator.get_state()
    y_before = algo.td_target(next_obs, reward, terminated)
    with torch.no_grad():
        algo.log_alpha.fill_(3.0)
    algo.generator.set_state(state)
    assert torch.equal(algo.td_target(next_obs, reward, terminated), y_before)


def test_naive_mix_is_h2o_with_w_one_and_beta_zero() -> None:
    assert dataclasses.replace(H2OConfig(), use_dynamics_ratio=False, beta=0.0) == NAIVE_MIX
    config = dataclasses.replace(NAIVE_MIX, hidden=(16,), classifier_hidden=(16,))
    algo = h2o(config)
    g = torch.Generator().manual_seed(1)
    sim = TransitionBatch(
        torch.randn(5, 3, generator=g), torch.rand(5, 2, generator=g), torch.zeros(5),
        torch.randn(5, 3, generator=g), torch.zeros(5), torch.zeros(5),
    )  # fmt: skip
    # The ratio is still estimated (and logged) but the update weighs sim transitions by 1.
    assert algo.ratio_and_gap(sim).w.min() < 1.0
    metrics = algo.update({k: sim for k in algo.batch_spec})
    assert metrics["h2o/w_mean"] < 1.0
    # Two critics, beta = 0: L_Q = sum_k (L_real,k + L_sim,k) and the metrics are means over k.
    expected = 2.0 * (metrics["h2o/bellman_real"] + metrics["h2o/bellman_sim"])
    assert metrics["loss/critic"] == pytest.approx(expected, rel=1e-6)


def test_gap_noise_is_the_real_std_floored() -> None:
    algo = h2o()
    assert algo.gap_noise_std.tolist() == pytest.approx([1.0, 1e-6, 2.0])
    scaled = h2o(H2OConfig(hidden=(16,), classifier_hidden=(16,), gap_noise_scale=0.5))
    assert scaled.gap_noise_std.tolist() == pytest.approx([0.5, 0.5e-6, 1.0])


@pytest.mark.parametrize(
    ("std", "match"),
    [(np.ones(2), r"real_obs_std: shape \(2,\), expected \(3,\)"), (np.array([1.0, -1.0, 1.0]), "finite")],
)
def test_real_obs_std_is_checked(std: np.ndarray, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        H2O(3, 2, real_obs_std=std)
