"""IQL: implicit Q-learning on the real dataset (the IQL-real-only baseline of ALGORITHMS.md 6).

Paper: Kostrikov, Nair and Levine, "Offline Reinforcement Learning with Implicit Q-Learning",
ICLR 2022. Losses (:mod:`robot_rl.losses.iql`)::

    L_V  = mean L2_tau(min_k Qbar_k(s, a) - V(s)),          tau = 0.7 (expectile)
    L_Q  = sum_k mean (Q_k(s, a) - r - gamma (1 - terminated) V(s'))^2
    L_pi = -mean [min(exp(beta (min_k Qbar_k(s, a) - V(s))), 100) log pi(a | s)],   beta = 3.0
    Qbar <- (1 - tau_polyak) Qbar + tau_polyak Q,  tau_polyak = 5e-3

Order as in the paper's algorithm box and code: the value step, then the actor and the critics
against the updated V (one backward pass: their parameters are disjoint), then the Polyak step.
The expectile 0.7 and inverse temperature beta = 3.0 are the paper's MuJoCo locomotion values; the
weight clip 100 is the authors' code's.

Deliberate differences from the paper's code:

- The policy is the shared tanh-Gaussian actor (state-dependent std, H2O's head) so it exports to
  :class:`robot_rl.nets.NumpyPolicy`; the paper's MuJoCo policy is a Gaussian with a tanh'd mean and
  a state-independent std. log pi of a dataset action uses ``atanh`` of the action clipped to
  +-(1 - 1e-6) (rlkit's clip), since an action of exactly +-1 has no finite pre-squash value.
- Constant learning rates (the paper decays the actor's with a cosine schedule); no dropout.
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
from robot_rl.losses import iql as iql_losses
from robot_rl.nets.torch_nets import MLP, CriticEnsemble, TanhGaussianActor, polyak_update_
from robot_rl.schema import Source


@dataclass(frozen=True)
class IQLConfig:
    """IQL hyperparameters (module docstring)."""

    hidden: tuple[int, ...] = (256, 256)
    """Hidden widths of the actor, each critic and the value net."""
    n_critics: int = 2
    gamma: float = 0.99
    tau: float = 5e-3
    """Polyak rate of the target critics."""
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    value_lr: float = 3e-4
    batch_size: int = 256
    source: Source = Source.REAL
    expectile: float = 0.7
    temperature: float = 3.0
    """beta, the inverse temperature of the advantage weights."""
    max_weight: float = 100.0
    """Clip of exp(beta * advantage)."""
    action_clip_eps: float = 1e-6
    """Dataset actions are clipped to +-(1 - eps) before atanh in log pi(a|s)."""

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
        for name in ("actor_lr", "critic_lr", "value_lr"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0.0):
                raise ValueError(f"{name}: expected a finite rate > 0, got {value}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size: expected >= 1, got {self.batch_size}")
        if not 0.0 < self.expectile < 1.0:
            raise ValueError(f"expectile: expected in (0, 1), got {self.expectile}")
        if not (math.isfinite(self.temperature) and self.temperature >= 0.0):
            raise ValueError(f"temperature: expected a finite value >= 0, got {self.temperature}")
        if not (math.isfinite(self.max_weight) and self.max_weight > 0.0):
            raise ValueError(f"max_weight: expected a finite value > 0, got {self.max_weight}")
        if not 0.0 < self.action_clip_eps < 1.0:
            raise ValueError(f"action_clip_eps: expected in (0, 1), got {self.action_clip_eps}")


_SAVED = ("actor", "critic", "critic_target", "value", "actor_opt", "critic_opt", "value_opt")
"""Attributes whose ``state_dict()`` a checkpoint holds (networks, then optimisers)."""
_SAVED_TENSORS: tuple[str, ...] = ()
"""Tensor attributes a checkpoint holds."""


class IQL:
    """IQL implementing :class:`robot_rl.algos.base.Algo` (module docstring)."""

    name = "iql"

    def __init__(self, obs_dim: int, act_dim: int, *, seed: int = 0, config: IQLConfig | None = None) -> None:
        self.config = cfg = config if config is not None else IQLConfig()
        self.obs_dim, self.act_dim, self.seed = obs_dim, act_dim, seed
        self.batch_spec: Mapping[str, BatchSpec] = {cfg.source.value: BatchSpec(cfg.source, cfg.batch_size)}
        self.generator = torch.Generator().manual_seed(seed)
        self.actor = TanhGaussianActor(obs_dim, act_dim, cfg.hidden, self.generator)
        self.critic = CriticEnsemble(obs_dim, act_dim, cfg.hidden, cfg.n_critics, self.generator)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.value = MLP(obs_dim, 1, cfg.hidden, self.generator)
        self.actor_opt = adam(self.actor.parameters(), cfg.actor_lr)
        self.critic_opt = adam(self.critic.parameters(), cfg.critic_lr)
        self.value_opt = adam(self.value.parameters(), cfg.value_lr)
        self.updates = 0
        self._critic_params = list(self.critic.parameters())
        self._target_params = list(self.critic_target.parameters())
        self._value_params = list(self.value.parameters())
        self._actor_critic_params = [*self._critic_params, *self.actor.parameters()]

    def update(self, batches: Mapping[str, TorchBatch]) -> dict[str, float]:
        """One IQL update; metrics ``loss/value``, ``loss/critic``, ``loss/actor``, ``train/*``, ``iql/*``."""
        key = self.config.source.value
        check_batches(batches, (key,))
        batch = batches[key]
        cfg = self.config
        n_batch = batch.obs.shape[0]

        with torch.no_grad():
            q_target = self.critic_target(batch.obs, batch.action).min(dim=0).values
        v = self.value(batch.obs).squeeze(-1)
        loss_v, metrics = iql_losses.value_loss(q_target, v, cfg.expectile)
        for p in self._value_params:
            p.grad = None
        torch.autograd.backward(loss_v)
        self.value_opt.step()

        with torch.no_grad():
            v_both = self.value(torch.cat((batch.obs, batch.next_obs))).squeeze(-1)
            advantage = q_target - v_both[:n_batch]
            y = iql_losses.td_target(batch.reward, batch.terminated, v_both[n_batch:], cfg.gamma)
        log_prob = self.actor.log_prob(batch.obs, batch.action, cfg.action_clip_eps)
        loss_pi, m_pi = iql_losses.awr_actor_loss(log_prob, advantage, cfg.temperature, cfg.max_weight)
        loss_q, m_q = iql_losses.critic_loss(self.critic(batch.obs, batch.action), y)
        metrics.update(m_pi)
        metrics.update(m_q)
        for p in self._actor_critic_params:
            p.grad = None
        torch.autograd.backward(loss_pi + loss_q)
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
        """Networks, target critics, optimisers, generator state and update count (a copy)."""
        return algo_state(self, _SAVED, _SAVED_TENSORS)

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`; ValueError naming the first mismatching key or shape."""
        load_algo_state(self, state, _SAVED, _SAVED_TENSORS)
