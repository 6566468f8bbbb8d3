"""Soft actor-critic losses (Haarnoja et al. 2018, "Soft Actor-Critic Algorithms and Applications").

Shapes: K critics, B transitions, A action dims. ``q_*`` of K critics are (K, B); everything
else (B,). Metrics are 0-d detached tensors (the algorithm converts them to floats in one go).

    y        = r + gamma (1 - terminated) [min_k Qbar_k(s', a') - alpha log pi(a'|s')],  a' ~ pi(.|s')
    L_Q      = sum_k 1/2 mean_B (Q_k(s, a) - y)^2
    L_pi     = mean_B [alpha log pi(a~|s) - min_k Q_k(s, a~)],   a~ ~ pi(.|s) reparameterised
    L_alpha  = -mean_B [log alpha * sg(log pi(a~|s) + H_target)],  H_target = -|A| by default

``truncated`` never enters: a time-limit cut still bootstraps (schema.py).
"""

from __future__ import annotations

import torch

Metrics = dict[str, torch.Tensor]


def td_target(
    reward: torch.Tensor,
    terminated: torch.Tensor,
    next_q: torch.Tensor,
    gamma: float,
    next_log_prob: torch.Tensor | None = None,
    alpha: torch.Tensor | float = 0.0,
) -> torch.Tensor:
    """``y = r + gamma (1 - terminated) (min_k next_q_k - alpha next_log_prob)``, (B,), no gradient.

    ``next_q`` (K, B) target-critic values at (s', a'); ``next_log_prob`` (B,) log pi(a'|s') or None
    for no entropy backup (H2O, CQL); ``terminated`` (B,) in {0, 1}.
    """
    with torch.no_grad():
        v_next = next_q.min(dim=0).values
        if next_log_prob is not None:
            v_next = v_next - alpha * next_log_prob
        return reward + gamma * (1.0 - terminated) * v_next


def critic_loss(q_pred: torch.Tensor, q_target: torch.Tensor) -> tuple[torch.Tensor, Metrics]:
    """``L_Q = sum_k 1/2 mean_B (q_pred_k - q_target)^2`` for q_pred (K, B), q_target (B,)."""
    td = q_pred - q_target
    loss = 0.5 * td.square().mean(dim=1).sum()
    return loss, {"loss/critic": loss.detach(), "train/q_mean": q_pred.detach().mean()}


def actor_loss(
    log_prob: torch.Tensor, q_pi: torch.Tensor, alpha: torch.Tensor | float
) -> tuple[torch.Tensor, Metrics]:
    """``L_pi = mean_B [alpha log_prob - min_k q_pi_k]``; log_prob (B,), q_pi (K, B), alpha no gradient."""
    loss = (alpha * log_prob - q_pi.min(dim=0).values).mean()
    return loss, {"loss/actor": loss.detach(), "train/entropy": -log_prob.detach().mean()}


def temperature_loss(
    log_alpha: torch.Tensor, log_prob: torch.Tensor, target_entropy: float
) -> tuple[torch.Tensor, Metrics]:
    """``L_alpha = -log_alpha * mean_B sg(log_prob + target_entropy)``; log_alpha 0-d with gradient.

    Its gradient raises alpha while the entropy ``-log_prob`` is below ``target_entropy``.
    """
    loss = -log_alpha * (log_prob.detach() + target_entropy).mean()
    return loss, {"loss/alpha": loss.detach(), "train/alpha": log_alpha.detach().exp()}
