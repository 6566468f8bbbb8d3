"""The smoothed policy: fresh Gaussian noise on every observation at every step (ALGORITHMS.md 4.2).

    a_t = pi(window_t),   window_t = the last ``frames`` noisy observations,   o~_t = o_t + sigma * xi_t,
    xi_t ~ N(0, I) drawn fresh at every step, one sample per step (never a vote over several).

With frame stacking each raw observation is noised once, when it enters the stack, and at the first step of
an episode the first noisy observation fills the whole stack (ALGORITHMS.md 4.2 and 4.7, check 3). The same
noise function serves training (:func:`augment_transitions`: ``robot-rl train --obs-noise-sigma``) and test
(:class:`SmoothedPolicy`), so the two cannot drift apart (ALGORITHMS.md 4.5).

A policy the wrapper drives is a :class:`BasePolicy`: numpy in, environment actions out, batched over N
environments, optionally with a torch twin (``scores``) that the attack differentiates
(:mod:`robot_rl.certify.attack`). Builders for the supported policy files are in
:mod:`robot_rl.certify.policies`.

Module imports stay light (numpy only): ``robot-rl train`` imports :func:`augment_transitions`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    import torch

    from robot_rl.schema import TransitionBatch

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]


def check_noise_sigma(sigma: float, what: str = "sigma") -> float:
    """``sigma`` as a float; ValueError unless finite and >= 0 (0: no noise, the undefended policy)."""
    s = float(sigma)
    if not (math.isfinite(s) and s >= 0.0):
        raise ValueError(f"{what}: the observation noise scale must be finite and >= 0, got {sigma}")
    return s


def add_obs_noise(obs: npt.ArrayLike, sigma: float, rng: np.random.Generator) -> F32:
    """``obs + sigma * xi`` with fresh ``xi ~ N(0, I)`` from ``rng``, float32, same shape as ``obs``.

    ``sigma = 0`` returns a float32 copy and draws nothing (the random stream is left as it was).
    """
    o = np.asarray(obs, dtype=np.float32)
    if sigma == 0.0:
        return o.copy()
    noise = rng.standard_normal(o.shape, dtype=np.float32)
    noise *= np.float32(sigma)
    noise += o
    return noise


def add_obs_noise_torch(
    obs: torch.Tensor, sigma: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """The torch twin of :func:`add_obs_noise`: ``obs + sigma * xi``, xi drawn from ``generator``."""
    import torch

    if sigma == 0.0:
        return obs.clone()
    return obs + sigma * torch.randn(obs.shape, generator=generator, dtype=obs.dtype, device=obs.device)


def augment_transitions(
    batch: TransitionBatch[np.ndarray], sigma: float, rng: np.random.Generator
) -> TransitionBatch[np.ndarray]:
    """Training-time smoothing: ``obs`` and ``next_obs`` of every transition noised, independently and fresh
    for each sampled row (ALGORITHMS.md 4.1: the noise is added in training as at test). Actions, rewards and
    flags are unchanged. ``sigma = 0`` returns ``batch`` itself and draws nothing."""
    from robot_rl.schema import TransitionBatch

    if sigma == 0.0:
        return batch
    return TransitionBatch(
        obs=add_obs_noise(batch.obs, sigma, rng),
        action=batch.action,
        reward=batch.reward,
        next_obs=add_obs_noise(batch.next_obs, sigma, rng),
        terminated=batch.terminated,
        truncated=batch.truncated,
    )


ActFn = Callable[[np.ndarray], np.ndarray]
"""(N, frames * obs_dim) float32 window (oldest frame first) -> actions (N,) int64 or (N, act_dim) float32."""
ScoreFn = Callable[[Any], Any]
"""torch (M, frames * obs_dim) -> (M, n_actions) action scores (argmax acts) or (M, act_dim) pre-squash means
(tanh acts); differentiable in its input."""


@dataclass(frozen=True)
class BasePolicy:
    """A policy to smooth: a window of (noisy) observations in, environment actions out, batched."""

    name: str
    """What it is, in words (reported with every result)."""
    obs_dim: int
    """Size of one raw observation (a frame)."""
    act: ActFn
    frames: int = 1
    """Noisy observations stacked into the policy's input (oldest first)."""
    n_actions: int | None = None
    """Discrete policies: the number of actions (act returns indices). None: continuous."""
    act_dim: int | None = None
    """Continuous policies: the action size (act returns (N, act_dim) in [-1, 1])."""
    scores: ScoreFn | None = None
    """The torch twin the attack differentiates (None: no gradient attack, e.g. an ONNX file)."""

    def __post_init__(self) -> None:
        if self.obs_dim < 1 or self.frames < 1:
            raise ValueError(f"obs_dim and frames must be >= 1, got {self.obs_dim}, {self.frames}")
        if (self.n_actions is None) == (self.act_dim is None):
            raise ValueError(
                "a policy is either discrete (n_actions) or continuous (act_dim), not both/neither"
            )

    @property
    def discrete(self) -> bool:
        return self.n_actions is not None

    @property
    def input_dim(self) -> int:
        return self.frames * self.obs_dim


class SmoothedPolicy:
    """``base`` acting on noisy observations (module docstring), for N environments at once.

    ``sigma = 0`` is the undefended policy (no noise, nothing drawn). Call :meth:`reset` at the start of a
    batch of episodes, then :meth:`act` once per step with the observations of the environments still running
    (``rows``: their indices in the batch).
    """

    def __init__(self, base: BasePolicy, sigma: float, rng: np.random.Generator) -> None:
        self.base = base
        self.sigma = check_noise_sigma(sigma)
        self.rng = rng
        self._window: F32 = np.zeros((0, base.frames, base.obs_dim), np.float32)
        self._fresh = np.zeros(0, dtype=bool)

    @property
    def num_envs(self) -> int:
        return int(self._window.shape[0])

    def reset(self, n: int) -> None:
        """Start N new episodes: every stack empty (the next observation fills it)."""
        self._window = np.zeros((n, self.base.frames, self.base.obs_dim), np.float32)
        self._fresh = np.ones(n, dtype=bool)

    def noisy(self, obs: npt.ArrayLike) -> F32:
        """One fresh noisy copy of ``obs`` (N, obs_dim)."""
        return add_obs_noise(obs, self.sigma, self.rng)

    def push(self, noisy_obs: np.ndarray, rows: I64 | None = None) -> F32:
        """Put one noisy observation per row into the stacks; the windows (len(rows), frames * obs_dim)."""
        idx = np.arange(self.num_envs) if rows is None else rows
        frame = np.asarray(noisy_obs, np.float32)
        if frame.shape != (idx.size, self.base.obs_dim):
            raise ValueError(f"obs: shape {frame.shape}, expected ({idx.size}, {self.base.obs_dim})")
        if self.base.frames == 1:
            self._window[idx, 0] = frame
            self._fresh[idx] = False
            return frame
        w = self._window[idx]
        fresh = self._fresh[idx]
        w[:, :-1] = w[:, 1:]
        w[:, -1] = frame
        w[fresh] = frame[fresh, None, :]
        self._window[idx] = w
        self._fresh[idx] = False
        return w.reshape(idx.size, -1)

    def act(self, obs: npt.ArrayLike, rows: I64 | None = None) -> np.ndarray:
        """Actions for ``obs`` (len(rows), obs_dim): one fresh noise sample per row, pushed, then
        ``base.act``."""
        return self.base.act(self.push(self.noisy(obs), rows))

    def history(self, rows: I64) -> tuple[F32, np.ndarray]:
        """``(frames before the next one (len(rows), frames - 1, obs_dim), fresh (len(rows),) bool)``: what
        the next window is made of besides the next noisy observation (the attack builds its candidates
        from it)."""
        return self._window[rows, 1:].copy(), self._fresh[rows].copy()


def candidate_windows(history: Any, fresh: Any, frames_in: Any) -> Any:
    """Torch windows for M candidate next observations per row: ``history`` (n, k - 1, D), ``fresh`` (n,)
    bool, ``frames_in`` (n, M, D) -> (n, M, k * D); a fresh row's stack is the candidate repeated k times
    (:meth:`SmoothedPolicy.push`)."""
    import torch

    n, m, d = frames_in.shape
    k = history.shape[1] + 1
    if k == 1:
        return frames_in
    hist = history[:, None, :, :].expand(n, m, k - 1, d)
    stacked = torch.cat((hist, frames_in[:, :, None, :]), dim=2)  # (n, M, k, D)
    if bool(fresh.any()):
        rep = frames_in[:, :, None, :].expand(n, m, k, d)
        stacked = torch.where(fresh[:, None, None, None], rep, stacked)
    return stacked.reshape(n, m, k * d)
