"""CQL: conservative Q-learning on the real dataset (the CQL-real-only baseline of ALGORITHMS.md 6).

Paper: Kumar et al., "Conservative Q-Learning for Offline Reinforcement Learning", NeurIPS 2020:
CQL(H) with the importance-sampled log-sum-exp, on top of SAC with a learned temperature. Losses
(:mod:`robot_rl.losses.cql`, :mod:`robot_rl.losses.sac`)::

    y       = r + gamma (1 - terminated) min_k Qbar_k(s', a'),  a' ~ pi(.|s')          (no entropy backup)
    L_Q     = sum_k [mean (Q_k(s, a) - y)^2 + w_minq (mean lse_k(s) - mean Q_k(s, a))]
    lse_k   = log sum over 10 uniform, 10 pi(.|s) and 10 pi(.|s') actions of exp(Q_k(s, a_j) - log density_j)
    L_pi    = mean [alpha log pi(a~|s) - min_k Q_k(s, a~)]
    L_alpha = -mean [log alpha sg(log pi(a~|s) + H_target)],  H_target = -|A|

All three losses are taken at this update's parameters, then the three optimisers step (the
SimpleSAC-lineage order H2O also uses); Polyak tau = 5e-3 every update.

Choices: ``min_q_weight`` 5.0 (the CQL paper's Gym-MuJoCo value; t6-thu/H2Oplus uses 2.0 - both
inside ALGORITHMS.md's 2-5); no Lagrange variant; no behaviour-cloning warm-up of the policy; all
learning rates 3e-4 (ALGORITHMS.md 6; the paper's policy rate is 1e-4). The trunk of the actor runs
once per state for all 10 sampled actions, and the 31 critic evaluations per state go through the
batched ensemble in one pass.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from robot_rl.algos.base import BatchSpec, TorchBatch
from robot_rl.algos.common import (
    act_with,
    adam,
    algo_state,
    as_source,
    check_batches,
    load_algo_state,
    metrics_to_floats,
)
from robot_rl.bus.messages import PolicyWeights
from robot_rl.losses import cql as cql_losses
from robot_rl.losses import sac as sac_losses
from robot_rl.nets.torch_nets import CriticEnsemble, TanhGaussianActor, polyak_update_, squash_sample
from robot_rl.schema import Source


@dataclass(frozen=True)
class CQLConfig:
    """CQL hyperparameters (module docstring)."""

    hidden: tuple[int, ...] = (256, 256)
    n_critics: int = 2
    gamma: float = 0.99
    tau: float = 5e-3
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    alpha_lr: float = 3e-4
    batch_size: int = 256
    source: Source = Source.REAL
    """The replay the batch comes from (the real dataset)."""
    min_q_weight: float = 5.0
    """w_minq, the weight of the conservative term."""
    n_action_samples: int = 10
    """Actions per state from each of: uniform, pi(.|s), pi(.|s')."""
    init_log_alpha: float = 0.0
    target_entropy: float | None = None
    """Entropy target; None means -|A|."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        object.__setattr__(self, "source", as_source(self.source))
        if not self.hidden or any(h < 1 for h in self.hidden):
            raise ValueError(f"hidden: expected one or more widths >= 1, got {self.hidden}")
        if self.n_critics < 1:
            raise ValueError(f"n_critics: expected >= 1, got {self.n_critics}")
        if not 0.0 <= self.gamma < 1.0:
            raise ValueError(f"gamma: expected in [0, 1), got {self.gamma}")
        if not 0.0 < self.tau <= 1.0:
            raise ValueError(f"tau: expected in (0, 1], got {self.tau}")
        for name in ("actor_lr", "critic_lr", "alpha_lr"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0.0):
                raise ValueError(f"{name}: expected a finite rate > 0, got {value}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size: expected >= 1, got {self.batch_size}")
        if not (math.isfinite(self.min_q_weight) and self.min_q_weight >= 0.0):
            raise ValueError(f"min_q_weight: expected a finite value >= 0, got {self.min_q_weight}")
        if self.n_action_samples < 1:
            raise ValueError(f"n_action_samples: expected >= 1, got {self.n_action_samples}")
        if not math.isfinite(self.init_log_alpha):
            raise ValueError(f"init_log_alpha: expected a finite value, got {self.init_log_alpha}")
        if self.target_entropy is not None and not math.isfinite(self.target_entropy):
            raise ValueError(f"target_entropy: expected a finite value or None, got {self.target_entropy}")


_SAVED = ("actor", "critic", "critic_target", "actor_opt", "critic_opt", "alpha_opt")
"""Attributes whose ``state_dict()`` a checkpoint holds (networks, then optimisers)."""
_SAVED_TENSORS: tuple[str, ...] = ("log_alpha",)
"""Tensor attributes a checkpoint holds."""


class CQL:
    """CQL implementing :class:`robot_rl.algos.base.Algo` (module docstring)."""

    name = "cql"

    def __init__(self, obs_dim: int, act_dim: int, *, seed: int = 0, config: CQLConfig | None = None) -> None:
        self.config = cfg = config if config is not None else CQLConfig()
        self.obs_dim, self.act_dim, self.seed = obs_dim, act_dim, seed
        self.batch_spec: Mapping[str, BatchSpec] = {cfg.source.value: BatchSpec(cfg.source, cfg.batch_size)}
        self.target_entropy = -float(act_dim) if cfg.target_entropy is None else cfg.target_entropy
        self.generator = torch.Generator().manual_seed(seed)
        self.actor = TanhGaussianActor(obs_dim, act_dim, cfg.hidden, self.generator)
        self.critic = CriticEnsemble(obs_dim, act_dim, cfg.hidden, cfg.n_critics, self.generator)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.log_alpha = torch.tensor(float(cfg.init_log_alpha), requires_grad=True)
        self.actor_opt = adam(self.actor.parameters(), cfg.actor_lr)
        self.critic_opt = adam(self.critic.parameters(), cfg.critic_lr)
        self.alpha_opt = adam([self.log_alpha], cfg.alpha_lr)
        self.updates = 0
        self._critic_params = list(self.critic.parameters())
        self._target_params = list(self.critic_target.parameters())
        self._all_params = [*self._critic_params, *self.actor.parameters(), self.log_alpha]

    def update(self, batches: Mapping[str, TorchBatch]) -> dict[str, float]:
        """One CQL update; metrics ``loss/*``, ``train/*``, ``cql/*``."""
        key = self.config.source.value
        check_batches(batches, (key,))
        batch = batches[key]
        cfg = self.config
        n_batch = batch.obs.shape[0]
        n_samples = cfg.n_action_samples
        alpha = self.log_alpha.detach().exp()

        with torch.no_grad():
            mean_next, log_std_next = self.actor(batch.next_obs)
            next_action, _ = squash_sample(mean_next, log_std_next, self.generator)
            next_q = self.critic_target(batch.next_obs, next_action)
            y = sac_losses.td_target(batch.reward, batch.terminated, next_q, cfg.gamma)
            a_next, log_prob_next = squash_sample(mean_next, log_std_next, self.generator, n_samples)
            a_uniform = torch.rand((n_samples, n_batch, self.act_dim), generator=self.generator) * 2.0 - 1.0
        mean, log_std = self.actor(batch.obs)
        action_pi, log_prob = squash_sample(mean, log_std, self.generator)
        with torch.no_grad():
            a_curr, log_prob_curr = squash_sample(mean.detach(), log_std.detach(), self.generator, n_samples)

        # Rows: dataset actions, then N uniform, N pi(.|s) and N pi(.|s') actions for every state.
        sampled = torch.cat((a_uniform, a_curr, a_next)).reshape(3 * n_samples * n_batch, self.act_dim)
        obs_rows = torch.cat((batch.obs, batch.obs.repeat(3 * n_samples, 1)))
        q_rows, q_pi = self.critic.forward_split(
            obs_rows, torch.cat((batch.action, sampled)), batch.obs, action_pi
        )
        q_data = q_rows[:, :n_batch]
        q_sampled = q_rows[:, n_batch:].reshape(q_rows.shape[0], 3, n_samples, n_batch)
        lse = cql_losses.sampled_logsumexp(
            q_sampled[:, 0], q_sampled[:, 1], q_sampled[:, 2], log_prob_curr, log_prob_next, self.act_dim
        )
        loss_q, metrics = cql_losses.critic_loss(q_data, y, lse, cfg.min_q_weight)
        loss_pi, m_pi = sac_losses.actor_loss(log_prob, q_pi, alpha)
        loss_alpha, m_alpha = sac_losses.temperature_loss(self.log_alpha, log_prob, self.target_entropy)
        metrics.update(m_pi)
        metrics.update(m_alpha)
        for p in self._all_params:
            p.grad = None
        torch.autograd.backward(loss_q + loss_pi + loss_alpha)
        self.alpha_opt.step()
        self.actor_opt.step()
        self.critic_opt.step()
        polyak_update_(self._target_params, self._critic_params, cfg.tau)
        self.updates += 1
        return metrics_to_floats(metrics)

    def act(self, obs: np.ndarray, deterministic: bool = False) -> np.ndarray:
        """Actions (N, A) float32 for obs (N, D): ``tanh(mean)``, or a sample from the own generator."""
        return act_with(self.actor, obs, deterministic, self.generator)

    def policy_weights(self) -> PolicyWeights:
        """The actor in :class:`robot_rl.nets.NumpyPolicy`'s format (policy_version 0)."""
        return self.actor.policy_weights()

    def state_dict(self) -> dict[str, Any]:
        """Networks, target critics, temperature, optimisers, generator state and update count (a copy)."""
        return algo_state(self, _SAVED, _SAVED_TENSORS)

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`; ValueError naming the first mismatching key or shape."""
        load_algo_state(self, state, _SAVED, _SAVED_TENSORS)
