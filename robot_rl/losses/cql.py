"""Conservative Q-learning losses: CQL(H) with the importance-sampled log-sum-exp.

Paper: Kumar et al., "Conservative Q-Learning for Offline Reinforcement Learning", NeurIPS 2020,
the CQL(H) variant with importance sampling of the log-sum-exp (the authors' ``min_q_version 3``);
ALGORITHMS.md section 6 (min-Q weight 2-5, 10 sampled actions, no entropy backup).

K critics, B states, N sampled actions per state and source, A action dims::

    lse_k(s) = log [ sum_{j<=N} exp(Q_k(s, a_j^unif) - log U)                  a^unif ~ U[-1, 1]^A
                    + sum_{j<=N} exp(Q_k(s, a_j^pi)   - log pi(a_j^pi | s))     a^pi  ~ pi(.|s)
                    + sum_{j<=N} exp(Q_k(s, a_j^pi')  - log pi(a_j^pi' | s')) ] a^pi' ~ pi(.|s')
    log U    = -A log 2   (the uniform density on [-1, 1]^A)
    L_Q      = sum_k [ mean_B (Q_k(s, a) - y)^2 + w_minq (mean_B lse_k(s) - mean_B Q_k(s, a)) ]
    y        = r + gamma (1 - terminated) min_k Qbar_k(s', a'),  a' ~ pi(.|s')    (no entropy backup)

The sampled actions and their log-probabilities carry no gradient; gradient reaches the critics
through every Q in ``lse``. The log-sum-exp temperature is 1. The sum over 3N samples is not divided
by 3N: the constant log(3N) has no gradient (the authors' code omits it as well).
"""

from __future__ import annotations

import math

import torch

Metrics = dict[str, torch.Tensor]


def uniform_log_density(act_dim: int) -> float:
    """log of the uniform density on [-1, 1]^A: ``-A log 2``."""
    return -act_dim * math.log(2.0)


def sampled_logsumexp(
    q_uniform: torch.Tensor,
    q_pi: torch.Tensor,
    q_pi_next: torch.Tensor,
    log_prob_pi: torch.Tensor,
    log_prob_pi_next: torch.Tensor,
    act_dim: int,
) -> torch.Tensor:
    """``lse`` (K, B) of the module docstring.

    q_uniform, q_pi, q_pi_next (K, N, B): Q at (s, a_j) for uniform actions, for policy actions at s
    and for policy actions at s'; log_prob_pi, log_prob_pi_next (N, B), without gradient.
    """
    stacked = torch.cat(
        (
            q_uniform - uniform_log_density(act_dim),
            q_pi - log_prob_pi.detach(),
            q_pi_next - log_prob_pi_next.detach(),
        ),
        dim=1,
    )
    return torch.logsumexp(stacked, dim=1)


def critic_loss(
    q_data: torch.Tensor, q_target: torch.Tensor, lse: torch.Tensor, min_q_weight: float
) -> tuple[torch.Tensor, Metrics]:
    """``L_Q`` for q_data (K, B) at the dataset's (s, a), q_target (B,), lse (K, B).

    Metrics: ``loss/critic``, ``cql/bellman`` and ``cql/gap`` (mean lse - mean Q(s, a), averaged over
    the critics), ``train/q_mean``.
    """
    bellman = (q_data - q_target).square().mean(dim=1)
    gap = lse.mean(dim=1) - q_data.mean(dim=1)
    loss = (bellman + min_q_weight * gap).sum()
    return loss, {
        "loss/critic": loss.detach(),
        "cql/bellman": bellman.detach().mean(),
        "cql/gap": gap.detach().mean(),
        "train/q_mean": q_data.detach().mean(),
    }
