"""Empirical attack on a smoothed torch policy: projected gradient steps on its observations, with an l2
budget over the whole episode and the unused budget carried to later steps (ALGORITHMS.md 4.2, soundness).

At step t of every running episode the adversary sees the true observation ``o_t`` and the policy's stack of
earlier noisy frames, and picks ``delta_t`` with ``||delta_t|| <= r_t``; the agent then acts, as always, on
``o_t + delta_t + sigma * xi_t`` with one fresh noise sample. The attack's objective is the *smoothed* policy:
the mean over ``draws`` noise samples (the same samples throughout the step) of the base policy's torch twin.

- Discrete actions (ALGORITHMS.md 4.2): targeted PGD towards every action whose smoothed score is within
  ``threshold`` of the best one; objective ``mean_j s_target - mean_j s_best``; l2-normalised steps of size
  ``max(step_size, 2 r_t / max_iters)`` (the reference: 0.01, ``2 r_t / 0.01`` steps; the cap keeps large
  budgets affordable [choice]), each followed by projection onto the ball of radius ``r_t``; a row stops as
  soon as the smoothed choice flips. The applied ``delta_t`` is the smallest successful one over the
  targets, or 0 if none flipped (nothing spent). Radius: the whole remaining budget (``allocation="greedy"``).
- Continuous actions (a tanh-Gaussian actor acting with ``tanh(mean)``): the maximal-action-difference attack
  (Zhang et al. 2020, "Robust deep RL against adversarial perturbations on state observations"): maximise
  ``||mean_j tanh(mu(o + delta + sigma xi_j)) - a_0||^2``, ``a_0`` the unattacked smoothed action, by
  ``iters`` PGD steps of size ``2.5 r_t / iters`` from a random start at half the radius [choice: the
  reference attacks only DQN]. Radius ``r_t = sqrt(B_rem^2 / steps_left)`` (``allocation="even"``: the budget
  spread evenly over the steps left to the cap; unused budget stays available to later steps).
- Budget bookkeeping: ``B_rem^2 <- B_rem^2 - ||delta_t||^2`` after every step, so
  ``sum_t ||delta_t||^2 <= B^2`` always. ``per_step=True`` instead gives every step its own ball
  ``||delta_t|| <= eps`` with nothing carried.

Everything is vectorised over the running episodes of a batch (torch, float32).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from robot_rl.certify.evaluate import BatchEnv, EnvSpec, noise_rng
from robot_rl.certify.smoothing import BasePolicy, SmoothedPolicy, candidate_windows

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
Allocation = Literal["greedy", "even"]


class AttackInputError(ValueError):
    """An attack that cannot run (no torch twin, a bad budget, ...)."""


@dataclass(frozen=True)
class AttackConfig:
    """One attack (module docstring)."""

    budget: float
    """Total l2 budget over an episode (per_step: the l2 budget of every step)."""
    per_step: bool = False
    draws: int = 128
    """Noise samples averaged into the smoothed objective (the same ones throughout a step)."""
    step_size: float = 0.01
    """Discrete: smallest PGD step (l2, observation units)."""
    max_iters: int = 100
    """Discrete: most PGD steps per env step and target action."""
    iters: int = 10
    """Continuous: PGD steps per env step."""
    threshold: float = math.inf
    """Discrete: attack towards actions whose smoothed score is within this of the best one."""
    allocation: Allocation | None = None
    """How much of the remaining budget a step may use; default greedy (discrete) / even (continuous)."""

    def __post_init__(self) -> None:
        if not (math.isfinite(self.budget) and self.budget >= 0.0):
            raise AttackInputError(f"budget: expected a finite l2 budget >= 0, got {self.budget}")
        if self.draws < 1 or self.max_iters < 1 or self.iters < 1:
            raise AttackInputError("draws, max_iters and iters must be >= 1")
        if not self.step_size > 0.0:
            raise AttackInputError(f"step_size: expected > 0, got {self.step_size}")
        if self.allocation not in (None, "greedy", "even"):
            raise AttackInputError(f"allocation: expected greedy or even, got {self.allocation!r}")


@dataclass(frozen=True)
class AttackResult:
    """N attacked episodes."""

    returns: F64
    lengths: I64
    spent: F64
    """(N,) l2 norm of the episode's whole perturbation, sqrt(sum_t ||delta_t||^2)."""
    max_step: F64
    """(N,) largest ||delta_t|| of the episode."""
    attacked_steps: I64
    """(N,) steps with a non-zero perturbation."""
    step_norms: F64 | None
    """(N, T) ||delta_t|| per step (0 after the episode ended), if recorded."""
    seconds: float
    config: AttackConfig

    @property
    def mean(self) -> float:
        return float(self.returns.mean())

    @property
    def std_err(self) -> float:
        n = self.returns.size
        return float(self.returns.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan


def radius(budget_sq_left: F64, steps_left: npt.NDArray[np.int64], cfg: AttackConfig, discrete: bool) -> F64:
    """Largest ||delta_t|| allowed this step per row (module docstring): eps (per_step), the whole remaining
    budget (greedy) or the remaining budget spread over the steps left (even)."""
    if cfg.per_step:
        return np.full(budget_sq_left.shape, cfg.budget)
    allocation = cfg.allocation or ("greedy" if discrete else "even")
    left = np.maximum(budget_sq_left, 0.0)
    if allocation == "greedy":
        out: F64 = np.sqrt(left)
        return out
    spread: F64 = np.sqrt(left / np.maximum(steps_left, 1))
    return spread


def _project(delta: Any, r: Any) -> Any:
    """Rows of ``delta`` (n, D) scaled into the l2 balls of radii ``r`` (n,)."""
    import torch

    norm = delta.norm(dim=1)
    scale = torch.where(norm > r, r / norm.clamp_min(1e-30), torch.ones_like(norm))
    return delta * scale[:, None]


def _unit(g: Any) -> Any:
    return g / g.norm(dim=1, keepdim=True).clamp_min(1e-30)


class _Objective:
    """The smoothed torch twin at one env step: ``x (n, D) -> mean over draws of scores (n, A)``."""

    def __init__(self, base: BasePolicy, sigma: float, hist: Any, fresh: Any, xi: Any) -> None:
        self.base, self.sigma, self.hist, self.fresh, self.xi = base, sigma, hist, fresh, xi

    def __call__(self, x: Any, rows: Any | None = None) -> Any:
        hist, fresh, xi = self.hist, self.fresh, self.xi
        if rows is not None:
            hist, fresh, xi = hist[rows], fresh[rows], xi[rows]
        frames_in = x[:, None, :] + self.sigma * xi  # (n, M, D)
        windows = candidate_windows(hist, fresh, frames_in)
        n, m, _ = windows.shape
        assert self.base.scores is not None
        out = self.base.scores(windows.reshape(n * m, -1)).reshape(n, m, -1)
        if not self.base.discrete:
            out = out.tanh()
        return out.mean(dim=1)


def _pgd_discrete(obj: _Objective, obs: Any, r: Any, cfg: AttackConfig) -> Any:
    import torch

    n, d = obs.shape
    with torch.no_grad():
        s0 = obj(obs)
    best = s0.argmax(dim=1)
    chosen = torch.zeros_like(obs)
    chosen_norm = torch.full((n,), math.inf)
    ar = torch.arange(n)
    n_actions = s0.shape[1]
    for target in range(n_actions):
        gap = s0[ar, best] - s0[:, target]
        rows = torch.nonzero((best != target) & (gap <= cfg.threshold) & (r > 0)).reshape(-1)
        if rows.numel() == 0:
            continue
        rr = r[rows]
        step = torch.clamp(2.0 * rr / cfg.max_iters, min=cfg.step_size)
        n_steps = torch.clamp(torch.ceil(2.0 * rr / step), max=cfg.max_iters)
        delta = torch.zeros(rows.numel(), d)
        live = torch.ones(rows.numel(), dtype=torch.bool)
        prev = torch.full((rows.numel(),), -math.inf)
        for it in range(int(n_steps.max().item()) + 1):
            x = (obs[rows] + delta).requires_grad_(True)
            s = obj(x, rows)
            margin = s[:, target] - s[torch.arange(rows.numel()), best[rows]]
            m = margin.detach()
            won = live & (m > 0)
            if bool(won.any()):
                idx, norm = rows[won], delta[won].norm(dim=1)
                better = norm < chosen_norm[idx]
                chosen[idx[better]] = delta[won][better]
                chosen_norm[idx[better]] = norm[better]
                live &= ~won
            # A row on its ball's surface whose margin no longer grows has converged without a flip.
            stalled = (delta.norm(dim=1) >= rr * (1.0 - 1e-5)) & (m <= prev + 1e-7 * (1.0 + m.abs()))
            live &= (it < n_steps) & ~stalled
            prev = m
            if not bool(live.any()):
                break
            (g,) = torch.autograd.grad(margin.sum(), x)
            with torch.no_grad():
                moved = _project(delta + step[:, None] * _unit(g), rr)
                delta = torch.where(live[:, None], moved, delta)
    return torch.where(torch.isfinite(chosen_norm)[:, None], chosen, torch.zeros_like(chosen))


def _pgd_continuous(obj: _Objective, obs: Any, r: Any, cfg: AttackConfig, gen: Any) -> Any:
    import torch

    d = obs.shape[1]
    rows = torch.nonzero(r > 0).reshape(-1)
    out = torch.zeros_like(obs)
    if rows.numel() == 0:
        return out
    rr = r[rows]
    with torch.no_grad():
        a0 = obj(obs[rows], rows)
    delta = 0.5 * rr[:, None] * _unit(torch.randn(rows.numel(), d, generator=gen))
    step = 2.5 * rr / cfg.iters
    for _ in range(cfg.iters):
        x = (obs[rows] + delta).requires_grad_(True)
        gap = (obj(x, rows) - a0).square().sum()
        (g,) = torch.autograd.grad(gap, x)
        with torch.no_grad():
            delta = _project(delta + step[:, None] * _unit(g), rr)
    out[rows] = delta
    return out


def attack_batch(
    env: BatchEnv,
    policy: SmoothedPolicy,
    cfg: AttackConfig,
    seed: int,
    first: int,
    count: int,
    horizon: int,
    gen: Any,
    record: bool = False,
) -> dict[str, np.ndarray]:
    """Episodes ``first .. first + count - 1`` under attack (module docstring); per-episode arrays."""
    import torch

    base = policy.base
    discrete = base.discrete
    draws = cfg.draws if policy.sigma > 0.0 else 1  # without noise every draw is the same
    obs = env.reset(seed, first, count)
    policy.reset(count)
    returns = np.zeros(count)
    lengths = np.zeros(count, np.int64)
    budget_sq = np.full(count, cfg.budget**2)
    spent_sq = np.zeros(count)
    max_step = np.zeros(count)
    attacked = np.zeros(count, np.int64)
    norms = np.zeros((count, horizon)) if record else None
    rows: I64 = np.arange(count, dtype=np.int64)
    t = 0
    while rows.size:
        hist, fresh = policy.history(rows)
        r = radius(budget_sq[rows], horizon - lengths[rows], cfg, discrete)
        xi = torch.randn(rows.size, draws, base.obs_dim, generator=gen)
        obj = _Objective(base, policy.sigma, torch.from_numpy(hist), torch.from_numpy(fresh), xi)
        obs_t = torch.from_numpy(np.ascontiguousarray(obs, np.float32))
        r_t = torch.from_numpy(r.astype(np.float32))
        if discrete:
            delta_t = _pgd_discrete(obj, obs_t, r_t, cfg)
        else:
            delta_t = _pgd_continuous(obj, obs_t, r_t, cfg, gen)
        # Float32 projection can overshoot its radius by an ulp: rescale in float64 before it counts.
        delta = delta_t.detach().numpy().astype(np.float64)
        norm = np.linalg.norm(delta, axis=1)
        over = norm > r
        if over.any():
            delta[over] *= (r[over] / norm[over])[:, None] * (1.0 - 1e-7)
            norm = np.linalg.norm(delta, axis=1)
        if not cfg.per_step:
            budget_sq[rows] = np.maximum(budget_sq[rows] - norm**2, 0.0)
        spent_sq[rows] += norm**2
        max_step[rows] = np.maximum(max_step[rows], norm)
        attacked[rows] += norm > 0.0
        if norms is not None and t < horizon:
            norms[rows, t] = norm
        actions = policy.act(obs + delta.astype(np.float32), rows)
        obs, reward, done = env.step(actions, rows)
        returns[rows] += reward
        lengths[rows] += 1
        t += 1
        if done.any():
            keep = ~done
            rows, obs = rows[keep], obs[keep]
    out: dict[str, np.ndarray] = {
        "returns": returns,
        "lengths": lengths,
        "spent": np.sqrt(spent_sq),
        "max_step": max_step,
        "attacked": attacked,
    }
    if norms is not None:
        out["norms"] = norms
    return out


def attack_smoothed(
    spec: EnvSpec,
    base: BasePolicy,
    sigma: float,
    cfg: AttackConfig,
    episodes: int,
    *,
    seed: int = 0,
    batch_size: int = 1000,
    record_norms: bool = False,
) -> AttackResult:
    """``episodes`` episodes of ``base`` smoothed with ``sigma`` (0: the undefended policy) under ``cfg``."""
    import torch

    if base.scores is None:
        raise AttackInputError(
            f"attack: {base.name} has no torch twin to differentiate (an ONNX file?); attack its run folder, "
            "checkpoint or policy.npz instead"
        )
    if episodes < 1:
        raise AttackInputError(f"episodes: expected >= 1, got {episodes}")
    # The clean evaluation's seeds: the same episodes (starts, commands) and smoothing noise stream, so a
    # budget of 0 replays the clean episodes and attacked returns pair with clean ones.
    policy = SmoothedPolicy(base, sigma, noise_rng(seed))
    gen = torch.Generator().manual_seed(seed)
    n = 1 if spec.realtime else max(1, min(batch_size, episodes))
    horizon = spec.max_episode_steps
    parts: list[dict[str, np.ndarray]] = []
    t0 = time.perf_counter()
    env = spec.make(n)
    try:
        for first in range(0, episodes, n):
            count = min(n, episodes - first)
            parts.append(attack_batch(env, policy, cfg, seed, first, count, horizon, gen, record_norms))
    finally:
        env.close()

    def cat(key: str) -> np.ndarray:
        return np.concatenate([p[key] for p in parts])

    return AttackResult(
        returns=cat("returns"),
        lengths=cat("lengths"),
        spent=cat("spent"),
        max_step=cat("max_step"),
        attacked_steps=cat("attacked"),
        step_norms=cat("norms") if record_norms else None,
        seconds=time.perf_counter() - t0,
        config=cfg,
    )
