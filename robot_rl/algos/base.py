"""The contract between a training algorithm and the runners that drive it.

An algorithm owns its networks and optimisers and nothing else: it does not sample data, step
environments, log or save files. A runner (``robot_rl.runners.train``) draws the batches named in
:attr:`Algo.batch_spec` from its per-source replay buffers, calls :meth:`Algo.update`, logs the
returned metrics, publishes :meth:`Algo.policy_weights` to sim workers and evaluators, and saves
:meth:`Algo.state_dict` in checkpoints.

Batches are :class:`robot_rl.schema.TransitionBatch` of CPU torch tensors (:func:`to_torch`):
``obs``/``next_obs`` (B, obs_dim) float32, ``action`` (B, act_dim) float32 in [-1, 1],
``reward`` (B,) float32, ``terminated`` (B,) float32 in {0, 1} (TD targets bootstrap on
``1 - terminated``), ``truncated`` (B,) float32 (bookkeeping only, never a terminal).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple, Protocol

import numpy as np
import torch

from robot_rl.bus.messages import PolicyWeights
from robot_rl.schema import Source, TransitionBatch

TorchBatch = TransitionBatch[torch.Tensor]


class BatchSpec(NamedTuple):
    """One batch an update draws: ``size`` transitions sampled uniformly from ``source``'s buffer."""

    source: Source
    size: int


class Algo(Protocol):
    """What every algorithm (SAC, H2O, CQL, IQL, ...) offers its runner."""

    name: str
    """Short name as on the command line (``"h2o"``, ``"sac"``, ...)."""
    batch_spec: Mapping[str, BatchSpec]
    """Named batches one :meth:`update` consumes, e.g. H2O: ``{"real": (REAL, 128), "sim": (SIM, 128),
    "disc_real": (REAL, 256), "disc_sim": (SIM, 256)}``; SAC in sim: ``{"sim": (SIM, 256)}``."""

    def update(self, batches: Mapping[str, TorchBatch]) -> dict[str, float]:
        """One gradient step; returns finite, slash-namespaced metrics (``loss/critic``, ``h2o/w_mean``)."""
        ...

    def act(self, obs: np.ndarray, deterministic: bool = False) -> np.ndarray:
        """Actions (N, act_dim) float32 in [-1, 1] for ``obs`` (N, obs_dim) float32.

        ``deterministic`` gives ``tanh(mean)``; otherwise a sample from the algorithm's own seeded
        torch generator (so a seeded run is reproducible).
        """
        ...

    def policy_weights(self) -> PolicyWeights:
        """The actor as a torch-free snapshot (:class:`robot_rl.nets.NumpyPolicy` acts with it and
        matches :meth:`act` to 1e-5); ``policy_version`` 0, the runner sets it."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly: networks, targets, optimisers, temperature, RNG state,
        update count. Plain tensors, numbers and dicts (``torch.save``-able with ``weights_only=True``)."""
        ...

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`; ValueError naming the first mismatching key or shape."""
        ...


def to_torch(batch: TransitionBatch[np.ndarray]) -> TorchBatch:
    """A numpy batch (schema dtypes) as the CPU float32 tensors :meth:`Algo.update` takes (no copy for
    float32 arrays)."""
    return TransitionBatch(
        obs=torch.from_numpy(np.ascontiguousarray(batch.obs, dtype=np.float32)),
        action=torch.from_numpy(np.ascontiguousarray(batch.action, dtype=np.float32)),
        reward=torch.from_numpy(np.asarray(batch.reward, dtype=np.float32)),
        next_obs=torch.from_numpy(np.ascontiguousarray(batch.next_obs, dtype=np.float32)),
        terminated=torch.from_numpy(np.asarray(batch.terminated, dtype=np.float32)),
        truncated=torch.from_numpy(np.asarray(batch.truncated, dtype=np.float32)),
    )


class AlgoFactory(Protocol):
    """``make_algo`` in :mod:`robot_rl.algos` (the registry) has this signature."""

    def __call__(
        self,
        name: str,
        *,
        obs_dim: int,
        act_dim: int,
        seed: int,
        real_obs_std: np.ndarray | None = None,
        hidden: tuple[int, ...] = (256, 256),
        init_log_alpha: float | None = None,
    ) -> Algo:
        """Build algorithm ``name`` (``"h2o"``, ``"naive-mix"``, ``"sac"``, ``"cql"``, ``"iql"``) with its
        default config; ``real_obs_std`` (obs_dim,) is the real dataset's per-dimension state std that
        H2O's gap estimate needs (ValueError if H2O gets None); ValueError naming the known algorithms
        for an unknown ``name``. ``init_log_alpha``: initial SAC temperature where there is one (None: the
        config's default)."""
        ...
