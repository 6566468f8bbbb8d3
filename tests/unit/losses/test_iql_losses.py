"""IQL losses on 2-element tensors, expected values worked out by hand in the comments."""

from __future__ import annotations

import math

import pytest
import torch

from robot_rl.losses import iql


def test_expectile_loss_weights_positive_and_negative_errors() -> None:
    # tau = 0.7: diff 2 -> 0.7 * 4 = 2.8; diff -2 -> 0.3 * 4 = 1.2; mean 2.0
    assert iql.expectile_loss(torch.tensor([2.0, -2.0]), 0.7).item() == pytest.approx(2.0)
    # tau = 0.5 is half the MSE: 0.5 * mean(4, 4) = 2
    assert iql.expectile_loss(torch.tensor([2.0, -2.0]), 0.5).item() == pytest.approx(2.0)
    assert iql.expectile_loss(torch.tensor([1.0, 3.0]), 0.9).item() == pytest.approx(0.9 * 5.0)


def test_value_loss_and_its_gradient() -> None:
    q_target = torch.tensor([3.0, 1.0], requires_grad=True)
    v = torch.tensor([1.0, 3.0], requires_grad=True)
    loss, metrics = iql.value_loss(q_target, v, 0.7)
    # diff = q - v = [2, -2] -> 2.0 (above); v_mean = 2
    assert loss.item() == pytest.approx(2.0)
    assert metrics["train/v_mean"].item() == pytest.approx(2.0)
    loss.backward()
    # dL/dv = -2 w diff / B = [-2 * 0.7 * 2 / 2, -2 * 0.3 * -2 / 2] = [-1.4, 0.6]: V moves up more than down
    assert v.grad is not None and v.grad.tolist() == pytest.approx([-1.4, 0.6])
    assert q_target.grad is None


def test_td_target_bootstraps_unless_terminated() -> None:
    # [1 + 0.5 * 2, 1 + 0] = [2, 1]
    y = iql.td_target(torch.tensor([1.0, 1.0]), torch.tensor([0.0, 1.0]), torch.tensor([2.0, 5.0]), 0.5)
    assert y.tolist() == [2.0, 1.0]


def test_critic_loss_sums_the_critics_mse() -> None:
    # critic 0: mean(0, 1) = 0.5; critic 1: mean(4, 1) = 2.5; sum 3
    loss, _ = iql.critic_loss(torch.tensor([[1.0, 2.0], [3.0, 0.0]]), torch.tensor([1.0, 1.0]))
    assert loss.item() == pytest.approx(3.0)


def test_awr_weights_are_exponentiated_and_clipped() -> None:
    log_prob = torch.tensor([-1.0, -2.0], requires_grad=True)
    advantage = torch.tensor([0.0, 2.0])
    # weights: [e^0, min(e^(3 * 2) = 403.4, 100)] = [1, 100]; loss = -mean(1 * -1, 100 * -2) = 100.5
    loss, metrics = iql.awr_actor_loss(log_prob, advantage, temperature=3.0, max_weight=100.0)
    assert loss.item() == pytest.approx(100.5)
    assert metrics["iql/weight_mean"].item() == pytest.approx(50.5)
    loss.backward()
    assert log_prob.grad is not None and log_prob.grad.tolist() == pytest.approx([-0.5, -50.0])


def test_awr_weight_of_a_huge_advantage_is_the_clip_not_inf() -> None:
    loss, metrics = iql.awr_actor_loss(torch.tensor([-1.0]), torch.tensor([1e4]), 3.0, 100.0)
    assert math.isfinite(loss.item()) and metrics["iql/weight_mean"].item() == 100.0
