"""SAC: soft actor-critic with automatic temperature.

Paper: Haarnoja et al., "Soft Actor-Critic Algorithms and Applications" (2018), the version with the
learned temperature. Losses (:mod:`robot_rl.losses.sac`)::

    y        = r + gamma (1 - terminated) [min_k Qbar_k(s', a') - alpha log pi(a'|s')],  a' ~ pi(.|s')
    L_Q      = sum_k 1/2 mean (Q_k(s, a) - y)^2
    L_pi     = mean [alpha log pi(a~|s) - min_k Q_k(s, a~)],  a~ ~ pi(.|s) reparameterised
    L_alpha  = -mean [log alpha * sg(log pi(a~|s) + H_target)],  H_target = -|A|
    Qbar    <- (1 - tau) Qbar + tau Q                                  (every update, tau = 5e-3)

All three losses are taken at this update's parameters and alpha, then the three optimisers step:
the order of rlkit's and SimpleSAC's SAC, the lineage of H2O's and CQL's reference code.
Stable-Baselines3 and CleanRL instead step the critics first and take L_pi against the updated
critics; the two differ by one critic step in the actor's target. One order for SAC, H2O and CQL
keeps the baselines comparable, and it allows one backward pass. ``truncated`` transitions
bootstrap like any other; only ``terminated`` stops the backup.

Other deliberate differences from SB3's SAC:

- The actor head is H2O's (``robot_rl.nets.torch_nets``): ``log_std = clamp(m raw + o, -20, 2)``
  with learned ``m``, ``o`` and a 1e-2-gain head, so the first policy's std is e^-1 rather than ~1.
  One actor for every algorithm keeps the baselines comparable with H2O.
- ``init_log_alpha`` defaults to 0 (alpha 1, SB3's ``"auto"``); on this project's quadruped SB3
  needed ``ent_coef="auto_0.1"`` (``init_log_alpha = log 0.1 = -2.303``) to learn a gait within
  30k steps, so a runner training that robot should set it.
- The critics are one :class:`~robot_rl.nets.torch_nets.CriticEnsemble` (batched, one Adam); the
  actor's Q is taken through the critics' detached parameters, in the same batched pass as the
  critics' own Q (no gradient into the critics, no weight-gradient work for those rows).
- ``source`` picks the replay the batch is drawn from: SIM by default (SAC sim-only), REAL for the
  oracle trained online on the real robot (ALGORITHMS.md section 6).
- ``backup_entropy=False`` drops the entropy term from y (used by the 1/(1 - gamma) value test).
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
from robot_rl.losses import sac as sac_losses
from robot_rl.nets.torch_nets import CriticEnsemble, TanhGaussianActor, polyak_update_
from robot_rl.schema import Source


@dataclass(frozen=True)
class SACConfig:
    """SAC hyperparameters (defaults: Haarnoja et al. 2018 / SB3)."""

    hidden: tuple[int, ...] = (256, 256)
    """Hidden widths of the actor and of each critic."""
    n_critics: int = 2
    """Critics in the ensemble; the target and the actor's loss take their minimum."""
    gamma: float = 0.99
    """Discount."""
    tau: float = 5e-3
    """Polyak rate of the target critics, every update."""
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    alpha_lr: float = 3e-4
    batch_size: int = 256
    """Transitions per update."""
    source: Source = Source.SIM
    """The replay the batch comes from: SIM (sim-only SAC) or REAL (the oracle, online on the real robot)."""
    init_log_alpha: float = 0.0
    """Initial log temperature (0: alpha 1; the quadruped wants log 0.1, see the module docstring)."""
    target_entropy: float | None = None
    """Entropy target H_target; None means -|A|."""
    autotune_alpha: bool = True
    """Learn alpha with L_alpha; False keeps alpha = exp(init_log_alpha)."""
    backup_entropy: bool = True
    """Subtract alpha log pi(a'|s') in the TD target (SAC); False gives the plain min-Q backup."""

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
        if not math.isfinite(self.init_log_alpha):
            raise ValueError(f"init_log_alpha: expected a finite value, got {self.init_log_alpha}")
        if self.target_entropy is not None and not math.isfinite(self.target_entropy):
            raise ValueError(f"target_entropy: expected a finite value or None, got {self.target_entropy}")


_SAVED = ("actor", "critic", "critic_target", "actor_opt", "critic_opt", "alpha_opt")
"""Attributes whose ``state_dict()`` a checkpoint holds (networks, then optimisers)."""
_SAVED_TENSORS: tuple[str, ...] = ("log_alpha",)
"""Tensor attributes a checkpoint holds."""


class SAC:
    """SAC implementing :class:`robot_rl.algos.base.Algo` (module docstring)."""

    name = "sac"

    def __init__(self, obs_dim: int, act_dim: int, *, seed: int = 0, config: SACConfig | None = None) -> None:
        self.config = cfg = config if config is not None else SACConfig()
        self.obs_dim, self.act_dim, self.seed = obs_dim, act_dim, seed
        self.batch_spec: Mapping[str, BatchSpec] = {cfg.source.value: BatchSpec(cfg.source, cfg.batch_size)}
        self.target_entropy = -float(act_dim) if cfg.target_entropy is None else cfg.target_entropy
        # One generator draws the initial weights and then all sampling noise: a seed fixes the run.
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
        """One SAC step on ``batches[config.source.value]``; metrics ``loss/critic``, ``loss/actor``,
        ``loss/alpha``, ``train/alpha``, ``train/q_mean``, ``train/entropy``."""
        key = self.config.source.value
        check_batches(batches, (key,))
        batch = batches[key]
        cfg = self.config
        alpha = self.log_alpha.detach().exp()

        with torch.no_grad():
            next_action, next_log_prob = self.actor.sample(batch.next_obs, self.generator)
            next_q = self.critic_target(batch.next_obs, next_action)
            y = sac_losses.td_target(
                batch.reward,
                batch.terminated,
                next_q,
                cfg.gamma,
                next_log_prob if cfg.backup_entropy else None,
                alpha,
            )
        action_pi, log_prob = self.actor.sample(batch.obs, self.generator)
        q_pred, q_pi = self.critic.forward_split(batch.obs, batch.action, batch.obs, action_pi)
        loss_q, metrics = sac_losses.critic_loss(q_pred, y)
        loss_pi, m_pi = sac_losses.actor_loss(log_prob, q_pi, alpha)
        metrics.update(m_pi)
        loss = loss_q + loss_pi
        if cfg.autotune_alpha:
            loss_alpha, m_alpha = sac_losses.temperature_loss(self.log_alpha, log_prob, self.target_entropy)
            metrics.update(m_alpha)
            loss = loss + loss_alpha
        else:
            metrics["train/alpha"] = alpha
        for p in self._all_params:
            p.grad = None
        torch.autograd.backward(loss)
        self.critic_opt.step()
        self.actor_opt.step()
        if cfg.autotune_alpha:
            self.alpha_opt.step()

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
