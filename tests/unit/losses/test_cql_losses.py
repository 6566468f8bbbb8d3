"""CQL(H) losses on 1-2 element tensors, expected values worked out by hand in the comments."""

from __future__ import annotations

import math

import pytest
import torch

from robot_rl.losses import cql


def test_uniform_log_density() -> None:
    # U[-1, 1]^3 has density (1/2)^3 -> log = -3 log 2
    assert cql.uniform_log_density(3) == pytest.approx(-3.0 * math.log(2.0))


def test_importance_sampled_logsumexp_known_answer() -> None:
    # K = 1, N = 1, B = 1, A = 1. Importance-weighted terms:
    #   uniform: Q - log(1/2) = 0 + log 2 -> e^. = 2
    #   pi(.|s): 1 - 0.5 = 0.5            -> e^. = 1.6487
    #   pi(.|s'): 2 - (-1) = 3            -> e^. = 20.0855
    # lse = log(2 + 1.6487 + 20.0855) = log 23.7342 = 3.1670
    lse = cql.sampled_logsumexp(
        torch.tensor([[[0.0]]]),
        torch.tensor([[[1.0]]]),
        torch.tensor([[[2.0]]]),
        torch.tensor([[0.5]]),
        torch.tensor([[-1.0]]),
        act_dim=1,
    )
    assert lse.shape == (1, 1)
    assert lse.item() == pytest.approx(math.log(2.0 + math.exp(0.5) + math.exp(3.0)), rel=1e-6)


def test_logsumexp_sums_over_all_three_n_samples_per_state() -> None:
    # K = 2 critics, N = 2, B = 1, A = 2, every importance-weighted term 0 -> lse = log(3 * 2) = log 6
    act_dim = 2
    q_uniform = torch.full((2, 2, 1), -2.0 * math.log(2.0))  # -A log 2 + A log 2 = 0
    zeros = torch.zeros(2, 2, 1)
    lse = cql.sampled_logsumexp(q_uniform, zeros, zeros, torch.zeros(2, 1), torch.zeros(2, 1), act_dim)
    assert lse.flatten().tolist() == pytest.approx([math.log(6.0), math.log(6.0)])


def test_logsumexp_does_not_differentiate_the_log_probabilities() -> None:
    log_prob = torch.zeros(1, 1, requires_grad=True)
    q = torch.zeros(1, 1, 1, requires_grad=True)
    cql.sampled_logsumexp(q, q, q, log_prob, log_prob, 1).sum().backward()
    assert log_prob.grad is None and q.grad is not None


def test_critic_loss_known_answer_and_gradient() -> None:
    q_data = torch.tensor([[1.0, 2.0]], requires_grad=True)
    q_target = torch.tensor([0.0, 1.0])
    lse = torch.tensor([[3.0, 4.0]])
    # bellman = mean(1^2, 1^2) = 1; gap = mean(3, 4) - mean(1, 2) = 2; loss = 1 + 5 * 2 = 11
    loss, metrics = cql.critic_loss(q_data, q_target, lse, min_q_weight=5.0)
    assert loss.item() == pytest.approx(11.0)
    assert metrics["cql/bellman"].item() == pytest.approx(1.0)
    assert metrics["cql/gap"].item() == pytest.approx(2.0)
    loss.backward()
    # dL/dq = 2 (q - y) / B - w / B = [1 - 2.5, 1 - 2.5]: the penalty pushes the data Q up
    assert q_data.grad is not None and q_data.grad.tolist() == [[-1.5, -1.5]]
