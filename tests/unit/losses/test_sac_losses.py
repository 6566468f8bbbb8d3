"""SAC losses on 2-3 element tensors, expected values worked out by hand in the comments."""

from __future__ import annotations

import math

import pytest
import torch

from robot_rl.losses import sac


def test_td_target_bootstraps_unless_terminated_and_takes_the_min_critic() -> None:
    reward = torch.tensor([1.0, 2.0])
    terminated = torch.tensor([0.0, 1.0])
    next_q = torch.tensor([[3.0, 5.0], [4.0, 1.0]])  # (K=2, B=2): min over k -> [3, 1]
    # y0 = 1 + 0.5 * 1 * 3 = 2.5; y1 = 2 + 0.5 * 0 * 1 = 2 (terminal: no bootstrap)
    y = sac.td_target(reward, terminated, next_q, gamma=0.5)
    assert y.tolist() == [2.5, 2.0]


def test_td_target_entropy_backup_subtracts_alpha_log_prob() -> None:
    next_q = torch.tensor([[3.0, 5.0], [4.0, 1.0]])
    # v = min_k Q - alpha log pi = [3 - 0.5 * (-2), 1 - 0.5 * 4] = [4, -1]; y = 0 + 0.5 * v = [2, -0.5]
    y = sac.td_target(
        torch.zeros(2), torch.zeros(2), next_q, 0.5, next_log_prob=torch.tensor([-2.0, 4.0]), alpha=0.5
    )
    assert y.tolist() == [2.0, -0.5]


def test_td_target_has_no_gradient() -> None:
    next_q = torch.tensor([[1.0, 2.0]], requires_grad=True)
    assert not sac.td_target(torch.zeros(2), torch.zeros(2), next_q, 0.9).requires_grad


def test_critic_loss_is_half_mse_summed_over_critics() -> None:
    q_pred = torch.tensor([[1.0, 2.0], [0.0, 4.0]], requires_grad=True)
    q_target = torch.tensor([1.0, 0.0])
    # critic 0: errors [0, 2] -> mean sq 2 -> half 1; critic 1: errors [-1, 4] -> mean sq 8.5 -> 4.25
    loss, metrics = sac.critic_loss(q_pred, q_target)
    assert loss.item() == pytest.approx(5.25)
    assert metrics["loss/critic"].item() == pytest.approx(5.25)
    assert metrics["train/q_mean"].item() == pytest.approx(7.0 / 4.0)
    loss.backward()
    # d/dq 1/2 mean_B (q - y)^2 = (q - y) / B
    assert q_pred.grad is not None
    assert q_pred.grad.tolist() == [[0.0, 1.0], [-0.5, 2.0]]


def test_actor_loss_uses_the_min_critic() -> None:
    log_prob = torch.tensor([-1.0, 2.0])
    q_pi = torch.tensor([[3.0, 1.0], [2.0, 5.0]])  # min_k -> [2, 1]
    # alpha 0.5: [0.5 * -1 - 2, 0.5 * 2 - 1] = [-2.5, 0] -> mean -1.25; entropy = -mean log pi = -0.5
    loss, metrics = sac.actor_loss(log_prob, q_pi, 0.5)
    assert loss.item() == pytest.approx(-1.25)
    assert metrics["train/entropy"].item() == pytest.approx(-0.5)


def test_temperature_loss_value_and_gradient_direction() -> None:
    log_alpha = torch.tensor(math.log(2.0), requires_grad=True)
    log_prob = torch.tensor([1.0, 3.0], requires_grad=True)
    # mean(log pi + H) with H = -1: mean([0, 2]) = 1 -> loss = -log 2 * 1
    loss, metrics = sac.temperature_loss(log_alpha, log_prob, target_entropy=-1.0)
    assert loss.item() == pytest.approx(-math.log(2.0))
    assert metrics["train/alpha"].item() == pytest.approx(2.0)
    loss.backward()
    # dL/dlog_alpha = -1: descent raises alpha while the entropy (-mean log pi = -2) is below the target -1
    assert log_alpha.grad is not None and log_alpha.grad.item() == pytest.approx(-1.0)
    assert log_prob.grad is None  # the log-probabilities are stop-gradient here
