"""H2O losses: known answers worked out by hand, and ALGORITHMS.md 1.7 unit checks 2-4."""

from __future__ import annotations

import math

import pytest
import torch

from robot_rl.losses import h2o, sac

LOG2 = math.log(2.0)


def test_classifier_loss_at_zero_logits_is_four_log_two() -> None:
    # p = 1/2 everywhere: each of the four -log p terms is log 2 (two per source, each a mean).
    z = torch.zeros(3, 2)
    loss, metrics = h2o.classifier_loss(z, z, z, z)
    assert loss.item() == pytest.approx(4.0 * LOG2)
    assert metrics["loss/classifier"].item() == pytest.approx(4.0 * LOG2)


def test_classifier_loss_known_answer_and_residual_gradient_into_d_sa() -> None:
    sa_real = torch.tensor([[1.0, -1.0]], requires_grad=True)
    sas_real = torch.tensor([[0.0, 0.0]], requires_grad=True)
    sa_sim = torch.tensor([[1.0, -1.0]])
    sas_sim = torch.tensor([[0.0, 0.0]])
    # p_sa = p_sas = softmax([1, -1]) = [1/(1+e^-2), 1/(1+e^2)] = [0.8808, 0.1192] on both sources.
    # real: 2 * -log 0.8808 = 2 log(1 + e^-2) = 0.2539; sim: 2 * -log 0.1192 = 2 log(1 + e^2) = 4.2539
    loss, metrics = h2o.classifier_loss(sa_real, sas_real, sa_sim, sas_sim)
    expected = 2.0 * math.log1p(math.exp(-2.0)) + 2.0 * math.log1p(math.exp(2.0))
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    # p_sas's argmax is class 0 on both rows: right on the real row, wrong on the sim row.
    assert metrics["h2o/classifier_acc"].item() == pytest.approx(0.5)
    loss.backward()
    # d(-log p_0)/dz = p - e_0 = [-0.1192, 0.1192]; D_sa gets it twice (own term + the p_sas residual).
    p1 = 1.0 / (1.0 + math.exp(2.0))
    assert sa_real.grad is not None and sas_real.grad is not None
    assert sa_real.grad[0].tolist() == pytest.approx([-2 * p1, 2 * p1], rel=1e-5)
    assert sas_real.grad[0].tolist() == pytest.approx([-p1, p1], rel=1e-5)


def test_dynamics_log_ratio_is_the_sas_logit_difference() -> None:
    # (log p_sas,0 - log p_sas,1) = (0.5 + 1) - (-0.3 + 2) = -0.2; (log p_sa,0 - log p_sa,1) = 1 - 2 = -1
    # log w^ = -0.2 - (-1) = 0.8 = 0.5 - (-0.3): the D_sa residual cancels.
    log_w = h2o.dynamics_log_ratio(torch.tensor([1.0, 2.0]), torch.tensor([0.5, -0.3]))
    assert log_w.item() == pytest.approx(0.8, abs=1e-6)


def test_dynamics_log_ratio_broadcasts_one_d_sa_over_n_next_states() -> None:
    sa = torch.tensor([[0.0, 1.0], [2.0, 0.0]])  # (B=2, 2)
    sas = torch.tensor([[[1.0, 0.0], [0.0, 0.5]], [[0.0, 0.0], [-1.0, 1.0]]])  # (N=2, B=2, 2)
    # sas logit differences [[1, -0.5], [0, -2]]; every D_sa cancels
    expected = torch.tensor([[1.0, -0.5], [0.0, -2.0]])
    torch.testing.assert_close(h2o.dynamics_log_ratio(sa, sas), expected, atol=1e-6, rtol=0.0)


def test_ratio_clipping_check_2() -> None:
    # ALGORITHMS.md 1.7 check 2: w^ = 50 -> 1; w^ = 1e-9 -> 1e-5; inside the range unchanged.
    w = h2o.clip_ratio(torch.log(torch.tensor([50.0, 1e-9, 0.3])))
    assert w.tolist() == pytest.approx([1.0, 1e-5, 0.3], rel=1e-5)


def test_gap_estimate_clip_and_omega_normalisation_check_2() -> None:
    # -log w^ averaged over N = 2: [(1 + 3)/2, (-0.5 + 0.5)/2, 100] = [2, 0, 100] -> clip [1e-45, 10]
    log_w_noisy = torch.tensor([[-1.0, 0.5, -100.0], [-3.0, -0.5, -100.0]])
    u = h2o.gap_estimate(log_w_noisy)
    assert u.dtype == torch.float64
    assert u.tolist() == [2.0, 1e-45, 10.0]
    omega = h2o.normalise_gap(u)
    # omega = u / 12 = [1/6, ~8e-47, 5/6]
    assert omega.tolist() == pytest.approx([1.0 / 6.0, 1e-45 / 12.0, 5.0 / 6.0], rel=1e-12)
    assert omega.sum().item() == pytest.approx(1.0, abs=1e-15)


def test_omega_of_an_all_floor_batch_is_uniform() -> None:
    u = h2o.gap_estimate(torch.full((10, 4), 5.0))  # -log w^ = -5 everywhere -> clipped to 1e-45
    assert u.tolist() == [1e-45] * 4
    assert h2o.normalise_gap(u).tolist() == pytest.approx([0.25] * 4, rel=1e-12)


def test_regulariser_is_zero_for_uniform_omega_and_constant_q_check_3() -> None:
    # log sum_i (1/B) e^c - c = c - c = 0
    c = 7.5
    r = h2o.regulariser(torch.full((2, 4), c), torch.full((2, 3), c), torch.full((4,), 0.25))
    assert r.tolist() == pytest.approx([0.0, 0.0], abs=1e-5)


def test_regulariser_one_hot_omega_picks_that_sample_check_3() -> None:
    # omega = e_1 -> log(1 * e^{Q_1}) - mean_real Q = 2 - (0 + 1)/2 = 1.5
    omega = torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64)
    q_sim = torch.tensor([[1.0, 2.0, 3.0]], requires_grad=True)
    q_real = torch.tensor([[0.0, 1.0]], requires_grad=True)
    r = h2o.regulariser(q_sim, q_real, omega)
    assert r.tolist() == pytest.approx([1.5])
    r.sum().backward()
    # dR/dq_sim = softmax(q + log omega) = e_1; dR/dq_real = -1/B_r
    assert q_sim.grad is not None and q_real.grad is not None
    assert q_sim.grad.tolist() == [[0.0, 1.0, 0.0]]
    assert q_real.grad.tolist() == [[-0.5, -0.5]]


def test_regulariser_clip_and_its_zero_gradient() -> None:
    q_sim = torch.tensor([[5000.0, 5000.0]], requires_grad=True)
    r = h2o.regulariser(q_sim, torch.zeros(1, 2), torch.tensor([0.5, 0.5]))
    assert r.tolist() == [1000.0]
    r.sum().backward()
    assert q_sim.grad is not None and q_sim.grad.tolist() == [[0.0, 0.0]]


def test_sim_bellman_with_w_one_is_the_plain_mse_check_4() -> None:
    q_real, y_real = torch.tensor([[1.0, 2.0]]), torch.tensor([0.0, 0.0])
    q_sim, y_sim = torch.tensor([[1.0, 3.0]]), torch.tensor([0.0, 1.0])
    omega = torch.tensor([0.5, 0.5])
    _, metrics = h2o.critic_loss(q_real, y_real, q_sim, y_sim, torch.ones(2), omega, beta=0.0)
    # mean((1 - 0)^2, (3 - 1)^2) = 2.5 = torch's MSE
    mse = torch.nn.functional.mse_loss(q_sim[0], y_sim).item()
    assert metrics["h2o/bellman_sim"].item() == pytest.approx(mse) == pytest.approx(2.5)
    _, weighted = h2o.critic_loss(q_real, y_real, q_sim, y_sim, torch.tensor([1.0, 0.5]), omega, 0.0)
    # (1 * 1 + 0.5 * 4) / 2 = 1.5
    assert weighted["h2o/bellman_sim"].item() == pytest.approx(1.5)


def test_critic_loss_known_answer() -> None:
    q_real, y_real = torch.tensor([[1.0, 2.0]]), torch.tensor([0.0, 0.0])  # mean(1, 4) = 2.5
    q_sim, y_sim = torch.tensor([[1.0, 3.0]]), torch.tensor([0.0, 1.0])  # mean(1, 4) = 2.5 (w = 1)
    # R = log(0.5 e^1 + 0.5 e^3) - mean(1, 2) = log(0.5) + log(e + e^3) - 1.5 = 0.93383
    reg = math.log(0.5 * math.e + 0.5 * math.exp(3.0)) - 1.5
    loss, metrics = h2o.critic_loss(
        q_real, y_real, q_sim, y_sim, torch.ones(2), torch.tensor([0.5, 0.5]), 0.01
    )
    assert metrics["h2o/regulariser"].item() == pytest.approx(reg, rel=1e-6)
    assert loss.item() == pytest.approx(2.5 + 2.5 + 0.01 * reg, rel=1e-6)


def test_td_target_without_entropy_ignores_alpha_check_4() -> None:
    # H2O's target passes no log-probability: alpha cannot enter y.
    next_q = torch.tensor([[1.0, 2.0], [3.0, 0.5]])
    y_small = sac.td_target(torch.ones(2), torch.zeros(2), next_q, 0.9, None, alpha=0.01)
    y_large = sac.td_target(torch.ones(2), torch.zeros(2), next_q, 0.9, None, alpha=100.0)
    # y = 1 + 0.9 * [1, 0.5] = [1.9, 1.45]
    assert y_small.tolist() == y_large.tolist() == pytest.approx([1.9, 1.45])
