"""Implicit Q-learning losses (Kostrikov, Nair and Levine, "Offline Reinforcement Learning with
Implicit Q-Learning", ICLR 2022).

B transitions, K critics::

    L_V  = mean_B L2_tau(min_k Qbar_k(s, a) - V(s)),   L2_tau(u) = |tau - 1(u < 0)| u^2,  tau = 0.7
    L_Q  = sum_k mean_B (Q_k(s, a) - y)^2,             y = r + gamma (1 - terminated) V(s')
    L_pi = -mean_B [min(exp(beta (min_k Qbar_k(s, a) - V(s))), w_max) log pi(a | s)]   (AWR extraction)

with the paper's MuJoCo locomotion values tau = 0.7, beta = 3.0 (the inverse temperature) and the
weight clip w_max = 100 of the authors' code. ``truncated`` transitions bootstrap.
"""

from __future__ import annotations

import torch

Metrics = dict[str, torch.Tensor]


def expectile_loss(diff: torch.Tensor, expectile: float) -> torch.Tensor:
    """``mean |tau - 1(diff < 0)| diff^2`` for diff = target - prediction, (B,) -> 0-d."""
    weight = torch.where(diff < 0.0, 1.0 - expectile, expectile)
    return (weight * diff.square()).mean()


def value_loss(q_target: torch.Tensor, v: torch.Tensor, expectile: float) -> tuple[torch.Tensor, Metrics]:
    """``L_V`` for q_target (B,) = min_k Qbar_k(s, a) (no gradient) and v (B,) = V(s).

    Metrics: ``loss/value``, ``train/v_mean``.
    """
    loss = expectile_loss(q_target.detach() - v, expectile)
    return loss, {"loss/value": loss.detach(), "train/v_mean": v.detach().mean()}


def td_target(
    reward: torch.Tensor, terminated: torch.Tensor, v_next: torch.Tensor, gamma: float
) -> torch.Tensor:
    """``y = r + gamma (1 - terminated) V(s')``, (B,), no gradient."""
    with torch.no_grad():
        return reward + gamma * (1.0 - terminated) * v_next


def critic_loss(q_pred: torch.Tensor, q_target: torch.Tensor) -> tuple[torch.Tensor, Metrics]:
    """``L_Q = sum_k mean_B (q_pred_k - q_target)^2`` for q_pred (K, B), q_target (B,).

    Metrics: ``loss/critic``, ``train/q_mean``.
    """
    loss = (q_pred - q_target).square().mean(dim=1).sum()
    return loss, {"loss/critic": loss.detach(), "train/q_mean": q_pred.detach().mean()}


def awr_actor_loss(
    log_prob: torch.Tensor, advantage: torch.Tensor, temperature: float, max_weight: float
) -> tuple[torch.Tensor, Metrics]:
    """``L_pi = -mean [min(exp(temperature * advantage), max_weight) log_prob]``.

    log_prob (B,) = log pi(a | s) of the dataset actions (with gradient); advantage (B,) without.
    Metrics: ``loss/actor``, ``iql/adv_mean``, ``iql/weight_mean``.
    """
    weight = torch.exp(temperature * advantage.detach()).clamp(max=max_weight)
    loss = -(weight * log_prob).mean()
    return loss, {
        "loss/actor": loss.detach(),
        "iql/adv_mean": advantage.detach().mean(),
        "iql/weight_mean": weight.mean(),
    }
