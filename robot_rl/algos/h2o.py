"""H2O: dynamics-aware hybrid offline-and-online RL, and the naive real+sim mix.

Paper: Niu et al., "When to Trust Your Simulator: Dynamics-Aware Hybrid Offline-and-Online
Reinforcement Learning", NeurIPS 2022. Specification: ALGORITHMS.md section 1 (implemented from it,
not from the reference code t6-thu/H2O). Losses (:mod:`robot_rl.losses.h2o`, class 0 = real)::

    L_D    = E_real[-log p_sa,0 - log p_sas,0] + E_sim[-log p_sa,1 - log p_sas,1]     inputs + N(0, 0.1^2)
    log w^ = (log p_sas,0 - log p_sas,1) - (log p_sa,0 - log p_sa,1),  w = clip(w^, 1e-5, 1)
    u      = clip(mean_{j<=10} -log w^(s, a, s' + sigma_s xi_j), 1e-45, 10),  omega = u / sum_{B_s} u
    y      = r + gamma (1 - terminated) min_k Qbar_k(s', a'),  a' ~ pi(.|s')        (no entropy term)
    L_Q    = sum_k [mean_{B_r}(Q_k - y)^2 + mean_{B_s} w (Q_k - y)^2 + beta R_k]
    R_k    = clip(log sum_{B_s} omega exp Q_k(s, a) - mean_{B_r} Q_k(s, a), -1000, 1000)
    L_pi   = mean_{B_r u B_s}[alpha log pi(a~|s) - min_k Q_k(s, a~)]
    L_alpha = -mean[log alpha sg(log pi(a~|s) + H_target)],  H_target = -|A|

One update (ALGORITHMS.md 1.3 step 3): (a) one classifier step on its own batches ``disc_real`` and
``disc_sim`` (256 + 256) with input noise 0.1; (b) w, u, omega on the RL sim batch without gradient;
(c)-(e) the temperature, policy and critic losses, all at this update's parameters (the reference
computes the three losses before any of their steps, so one backward pass and three optimiser steps
give the same result); (f) Polyak tau = 5e-3. ``truncated`` transitions bootstrap.

**naive-mix** is this class with ``use_dynamics_ratio=False`` (w = 1) and ``beta=0``
(:data:`NAIVE_MIX`). It still trains the classifiers and logs w and u (``h2o/w_mean`` is then the
ratio it would have used), so the two runs differ only in those two knobs.

Deliberate choices (beyond ALGORITHMS.md 1.6):

- sigma_s is the real dataset's per-dimension state std, given to the constructor
  (``real_obs_std``); dimensions whose std is below ``obs_std_floor`` (1e-6) are raised to it, so a
  constant feature still gets a (tiny) perturbation and the std is never zero or negative.
- Critics: one batched ensemble with one Adam (the reference has two modules and one optimiser over
  both, which is the same update); the policy's Q is taken through detached critic parameters.
- Classifier, actor and critic networks use ``torch.nn.Linear``'s initialisation except the actor's
  head (Xavier gain 1e-2, ALGORITHMS.md 1.4).
- The initial log temperature is a config field (default 0, the spec); see :mod:`robot_rl.algos.sac`
  for the quadruped's lower starting temperature.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch

from robot_rl.algos.base import BatchSpec, TorchBatch
from robot_rl.algos.common import (
    act_with,
    adam,
    algo_state,
    check_batches,
    load_algo_state,
    metrics_to_floats,
)
from robot_rl.bus.messages import PolicyWeights
from robot_rl.losses import h2o as h2o_losses
from robot_rl.losses import sac as sac_losses
from robot_rl.nets.torch_nets import MLP, CriticEnsemble, TanhGaussianActor, polyak_update_
from robot_rl.schema import Source


@dataclass(frozen=True)
class H2OConfig:
    """H2O hyperparameters; defaults are ALGORITHMS.md 1.4's reference column."""

    hidden: tuple[int, ...] = (256, 256)
    """Hidden widths of the actor and of each critic."""
    classifier_hidden: tuple[int, ...] = (256, 256)
    """Hidden widths of D_sa and D_sas."""
    n_critics: int = 2
    gamma: float = 0.99
    tau: float = 5e-3
    """Polyak rate of the target critics, every update."""
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    alpha_lr: float = 3e-4
    classifier_lr: float = 3e-4
    real_batch: int = 128
    """B_r: real transitions per RL update."""
    sim_batch: int = 128
    """B_s: sim transitions per RL update (omega is normalised over these)."""
    classifier_batch: int = 256
    """Real and (as many) sim transitions per classifier step."""
    classifier_noise: float = 0.1
    """Std of the Gaussian noise added to s, a, s' of the classifier's inputs."""
    ratio_clip: tuple[float, float] = (1e-5, 1.0)
    """w = clip(w^, lo, hi): hi = 1 means sim samples are never up-weighted."""
    gap_clip: tuple[float, float] = (1e-45, 10.0)
    """u = clip(., lo, hi)."""
    gap_samples: int = 10
    """N perturbed next states per sim transition in the gap estimate."""
    gap_noise_scale: float = 1.0
    """sigma_s = gap_noise_scale * real_obs_std."""
    beta: float = 0.01
    """Weight of the regulariser R_k."""
    regulariser_clip: float = 1000.0
    use_dynamics_ratio: bool = True
    """False: w = 1 (naive mix)."""
    init_log_alpha: float = 0.0
    """Initial log temperature (spec: 0)."""
    target_entropy: float | None = None
    """Entropy target; None means -|A|."""
    obs_std_floor: float = 1e-6
    """Floor on real_obs_std per dimension."""

    def __post_init__(self) -> None:
        for name in ("hidden", "classifier_hidden"):
            widths = tuple(int(h) for h in getattr(self, name))
            object.__setattr__(self, name, widths)
            if not widths or any(h < 1 for h in widths):
                raise ValueError(f"{name}: expected one or more widths >= 1, got {widths}")
        object.__setattr__(self, "ratio_clip", tuple(float(v) for v in self.ratio_clip))
        object.__setattr__(self, "gap_clip", tuple(float(v) for v in self.gap_clip))
        if self.n_critics < 1:
            raise ValueError(f"n_critics: expected >= 1, got {self.n_critics}")
        if not 0.0 <= self.gamma < 1.0:
            raise ValueError(f"gamma: expected in [0, 1), got {self.gamma}")
        if not 0.0 < self.tau <= 1.0:
            raise ValueError(f"tau: expected in (0, 1], got {self.tau}")
        for name in ("actor_lr", "critic_lr", "alpha_lr", "classifier_lr"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0.0):
                raise ValueError(f"{name}: expected a finite rate > 0, got {value}")
        for name in ("real_batch", "sim_batch", "classifier_batch", "gap_samples"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: expected >= 1, got {getattr(self, name)}")
        for name in ("classifier_noise", "gap_noise_scale", "beta"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0.0):
                raise ValueError(f"{name}: expected a finite value >= 0, got {value}")
        for name in ("ratio_clip", "gap_clip"):
            lo, hi = getattr(self, name)
            if not (len(getattr(self, name)) == 2 and 0.0 < lo <= hi and math.isfinite(hi)):
                raise ValueError(f"{name}: expected (lo, hi) with 0 < lo <= hi < inf, got {(lo, hi)}")
        if not (math.isfinite(self.regulariser_clip) and self.regulariser_clip > 0.0):
            raise ValueError(f"regulariser_clip: expected a finite value > 0, got {self.regulariser_clip}")
        if not math.isfinite(self.init_log_alpha):
            raise ValueError(f"init_log_alpha: expected a finite value, got {self.init_log_alpha}")
        if self.target_entropy is not None and not math.isfinite(self.target_entropy):
            raise ValueError(f"target_entropy: expected a finite value or None, got {self.target_entropy}")
        if not (math.isfinite(self.obs_std_floor) and self.obs_std_floor > 0.0):
            raise ValueError(f"obs_std_floor: expected a finite value > 0, got {self.obs_std_floor}")


class GapEstimate(NamedTuple):
    """What the classifiers say about a sim batch (B_s,), all without gradient."""

    w: torch.Tensor
    """clip(w^, 1e-5, 1), float32."""
    log_w: torch.Tensor
    """log w^ at the stored s', float32."""
    u: torch.Tensor
    """The gap estimate, float64."""
    omega: torch.Tensor
    """u normalised over the batch, float64."""


NAIVE_MIX = H2OConfig(use_dynamics_ratio=False, beta=0.0)
"""The naive real+sim mix baseline (ALGORITHMS.md section 6): H2O with w = 1 and beta = 0."""


_SAVED = (
    "actor",
    "critic",
    "critic_target",
    "d_sa",
    "d_sas",
    "actor_opt",
    "critic_opt",
    "alpha_opt",
    "classifier_opt",
)
"""Attributes whose ``state_dict()`` a checkpoint holds (networks, then optimisers)."""
_SAVED_TENSORS: tuple[str, ...] = ("log_alpha",)
"""Tensor attributes a checkpoint holds."""


class H2O:
    """H2O (and naive-mix) implementing :class:`robot_rl.algos.base.Algo` (module docstring)."""

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        *,
        real_obs_std: np.ndarray,
        seed: int = 0,
        config: H2OConfig | None = None,
        name: str = "h2o",
    ) -> None:
        self.config = cfg = config if config is not None else H2OConfig()
        self.name = name
        self.obs_dim, self.act_dim, self.seed = obs_dim, act_dim, seed
        std = np.asarray(real_obs_std, dtype=np.float64)
        if std.shape != (obs_dim,):
            raise ValueError(f"real_obs_std: shape {std.shape}, expected ({obs_dim},)")
        if not bool(np.all(np.isfinite(std))) or bool(np.any(std < 0.0)):
            raise ValueError("real_obs_std: expected finite values >= 0")
        self.gap_noise_std = torch.as_tensor(
            cfg.gap_noise_scale * np.maximum(std, cfg.obs_std_floor), dtype=torch.float32
        )
        """sigma_s (D,): the perturbation std of s' in the gap estimate."""
        self.batch_spec: Mapping[str, BatchSpec] = {
            "real": BatchSpec(Source.REAL, cfg.real_batch),
            "sim": BatchSpec(Source.SIM, cfg.sim_batch),
            "disc_real": BatchSpec(Source.REAL, cfg.classifier_batch),
            "disc_sim": BatchSpec(Source.SIM, cfg.classifier_batch),
        }
        self.target_entropy = -float(act_dim) if cfg.target_entropy is None else cfg.target_entropy

        self.generator = torch.Generator().manual_seed(seed)
        g = self.generator
        self.actor = TanhGaussianActor(obs_dim, act_dim, cfg.hidden, g)
        self.critic = CriticEnsemble(obs_dim, act_dim, cfg.hidden, cfg.n_critics, g)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.d_sa = MLP(obs_dim + act_dim, 2, cfg.classifier_hidden, g)
        self.d_sas = MLP(2 * obs_dim + act_dim, 2, cfg.classifier_hidden, g)
        self.log_alpha = torch.tensor(float(cfg.init_log_alpha), requires_grad=True)
        self.actor_opt = adam(self.actor.parameters(), cfg.actor_lr)
        self.critic_opt = adam(self.critic.parameters(), cfg.critic_lr)
        self.alpha_opt = adam([self.log_alpha], cfg.alpha_lr)
        self.classifier_opt = adam([*self.d_sa.parameters(), *self.d_sas.parameters()], cfg.classifier_lr)
        self.updates = 0
        self._critic_params = list(self.critic.parameters())
        self._target_params = list(self.critic_target.parameters())
        self._rl_params = [*self._critic_params, *self.actor.parameters(), self.log_alpha]
        self._classifier_params = [*self.d_sa.parameters(), *self.d_sas.parameters()]

    # --- classifiers -------------------------------------------------------------------------------

    def classifier_logits(self, x_sas: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(D_sa, D_sas)`` outputs ``2 tanh(.)``, each (B, 2), for rows ``[s, a, s']`` (B, 2D + A)."""
        sa = 2.0 * torch.tanh(self.d_sa(x_sas[:, : self.obs_dim + self.act_dim]))
        sas = 2.0 * torch.tanh(self.d_sas(x_sas))
        return sa, sas

    def classifier_step(self, real: TorchBatch, sim: TorchBatch) -> dict[str, torch.Tensor]:
        """One step of L_D on ``real`` and ``sim`` with input noise; returns the metric tensors."""
        n_real = real.obs.shape[0]
        x = torch.cat(
            (
                torch.cat((real.obs, real.action, real.next_obs), dim=-1),
                torch.cat((sim.obs, sim.action, sim.next_obs), dim=-1),
            )
        )
        noise = torch.randn(x.shape, generator=self.generator)
        x = torch.add(x, noise, alpha=self.config.classifier_noise)
        sa, sas = self.classifier_logits(x)
        loss, metrics = h2o_losses.classifier_loss(sa[:n_real], sas[:n_real], sa[n_real:], sas[n_real:])
        for p in self._classifier_params:
            p.grad = None
        torch.autograd.backward(loss)
        self.classifier_opt.step()
        return metrics

    def ratio_and_gap(self, sim: TorchBatch) -> GapEstimate:
        """w, log w^, u and omega for the sim batch (B_s transitions), without gradient.

        One D_sas pass covers the clean s' (for w) and the N perturbed ``s' + sigma_s xi_j`` (for u);
        D_sa does not depend on s' and runs once.
        """
        cfg = self.config
        n, d = sim.obs.shape
        with torch.no_grad():
            sa_in = torch.cat((sim.obs, sim.action), dim=-1)
            xi = torch.randn((cfg.gap_samples, n, d), generator=self.generator)
            next_noisy = torch.addcmul(sim.next_obs, xi, self.gap_noise_std)
            x = torch.cat(
                (
                    torch.cat((sa_in, sim.next_obs), dim=-1),
                    torch.cat((sa_in.expand(cfg.gap_samples, n, -1), next_noisy), dim=-1).reshape(
                        cfg.gap_samples * n, -1
                    ),
                )
            )
            logits_sa = 2.0 * torch.tanh(self.d_sa(sa_in))
            logits_sas = 2.0 * torch.tanh(self.d_sas(x))
            log_w = h2o_losses.dynamics_log_ratio(logits_sa, logits_sas[:n])
            log_w_noisy = h2o_losses.dynamics_log_ratio(logits_sa, logits_sas[n:].view(cfg.gap_samples, n, 2))
            w = h2o_losses.clip_ratio(log_w, *cfg.ratio_clip)
            u = h2o_losses.gap_estimate(log_w_noisy, *cfg.gap_clip)
            omega = h2o_losses.normalise_gap(u)
        return GapEstimate(w=w, log_w=log_w, u=u, omega=omega)

    def td_target(
        self, next_obs: torch.Tensor, reward: torch.Tensor, terminated: torch.Tensor
    ) -> torch.Tensor:
        """``y = r + gamma (1 - terminated) min_k Qbar_k(s', a')``, a' ~ pi(.|s'), (B,): no entropy term,
        so alpha does not enter."""
        with torch.no_grad():
            next_action, _ = self.actor.sample(next_obs, self.generator)
            next_q = self.critic_target(next_obs, next_action)
            return sac_losses.td_target(reward, terminated, next_q, self.config.gamma)

    # --- the update --------------------------------------------------------------------------------

    def update(self, batches: Mapping[str, TorchBatch]) -> dict[str, float]:
        """One H2O update (module docstring); metrics ``loss/*``, ``train/*``, ``h2o/*``."""
        check_batches(batches, self.batch_spec)
        cfg = self.config
        metrics = self.classifier_step(batches["disc_real"], batches["disc_sim"])
        real, sim = batches["real"], batches["sim"]
        gap = self.ratio_and_gap(sim)
        w = gap.w if cfg.use_dynamics_ratio else torch.ones_like(gap.w)
        metrics.update(
            {
                "h2o/w_mean": gap.w.mean(),
                "h2o/w_min": gap.w.min(),
                "h2o/log_w_mean": gap.log_w.mean(),
                "h2o/u_mean": gap.u.mean().float(),
                "h2o/omega_max": gap.omega.max().float(),
            }
        )

        n_real = real.obs.shape[0]
        obs = torch.cat((real.obs, sim.obs))
        action = torch.cat((real.action, sim.action))
        alpha = self.log_alpha.detach().exp()
        y = self.td_target(
            torch.cat((real.next_obs, sim.next_obs)),
            torch.cat((real.reward, sim.reward)),
            torch.cat((real.terminated, sim.terminated)),
        )
        action_pi, log_prob = self.actor.sample(obs, self.generator)
        q_pred, q_pi = self.critic.forward_split(obs, action, obs, action_pi)

        loss_alpha, m_alpha = sac_losses.temperature_loss(self.log_alpha, log_prob, self.target_entropy)
        loss_pi, m_pi = sac_losses.actor_loss(log_prob, q_pi, alpha)
        loss_q, m_q = h2o_losses.critic_loss(
            q_pred[:, :n_real],
            y[:n_real],
            q_pred[:, n_real:],
            y[n_real:],
            w,
            gap.omega,
            cfg.beta,
            cfg.regulariser_clip,
        )
        metrics.update(m_alpha)
        metrics.update(m_pi)
        metrics.update(m_q)
        for p in self._rl_params:
            p.grad = None
        torch.autograd.backward(loss_alpha + loss_pi + loss_q)
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
        """Networks, targets, classifiers, temperature, optimisers, generator, update count (a copy)."""
        return algo_state(self, _SAVED, _SAVED_TENSORS, {"gap_noise_std": self.gap_noise_std})

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`; ValueError naming the first mismatching key or shape."""
        restored = load_algo_state(self, state, _SAVED, _SAVED_TENSORS)
        self.gap_noise_std = restored["gap_noise_std"].to(torch.float32)
