"""Replay storage: a preallocated ring buffer of transitions, and one per data source.

``ReplayBuffer`` holds one-step transitions in the :class:`robot_rl.schema.TransitionBatch` sense
plus the ``policy_version`` that acted, in fixed numpy arrays allocated once (no per-add
allocation; memory is known up front: :attr:`ReplayBuffer.nbytes`). When full, the oldest rows are
overwritten first (FIFO). ``SourceMixer`` keeps one buffer per :class:`robot_rl.schema.Source` and
samples each separately, because H2O weighs real and sim transitions differently and AILBoost
keeps demonstrations apart from policy data (ARCHITECTURE.md section 3).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import numpy.typing as npt

from robot_rl.schema import Source, TransitionBatch

I32Array = npt.NDArray[np.int32]
I64Array = npt.NDArray[np.int64]


class ReplayBuffer:
    """Ring buffer of ``capacity`` transitions.

    Arrays (C = capacity): ``obs`` (C, obs_dim) float32, ``action`` (C, act_dim) float32,
    ``reward`` (C,) float64, ``next_obs`` (C, obs_dim) float32, ``terminated`` (C,) bool,
    ``truncated`` (C,) bool, ``policy_version`` (C,) int32. Rows ``[0, len)`` are valid; the next
    write goes to row :attr:`cursor`.
    """

    def __init__(self, obs_dim: int, act_dim: int, capacity: int) -> None:
        if obs_dim < 1 or act_dim < 1:
            raise ValueError(f"obs_dim and act_dim must be >= 1, got {obs_dim}, {act_dim}")
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.obs_dim = obs_dim
        self.act_dim = act_dim
        self.capacity = capacity
        self.obs = np.zeros((capacity, obs_dim), np.float32)
        self.action = np.zeros((capacity, act_dim), np.float32)
        self.reward = np.zeros(capacity, np.float64)
        self.next_obs = np.zeros((capacity, obs_dim), np.float32)
        self.terminated = np.zeros(capacity, np.bool_)
        self.truncated = np.zeros(capacity, np.bool_)
        self.policy_version = np.zeros(capacity, np.int32)
        self.cursor = 0
        self._size = 0
        self.added = 0
        """Transitions ever added (including overwritten ones)."""

    def __len__(self) -> int:
        return self._size

    @property
    def nbytes(self) -> int:
        """Bytes held by the preallocated arrays."""
        return sum(
            a.nbytes
            for a in (
                self.obs,
                self.action,
                self.reward,
                self.next_obs,
                self.terminated,
                self.truncated,
                self.policy_version,
            )
        )

    def add_batch(self, batch: TransitionBatch[np.ndarray], policy_version: int | npt.ArrayLike) -> None:
        """Append the B rows of ``batch`` (shapes as in the class docstring, B leading) in order.

        ``policy_version`` is one int for the whole batch or (B,) ints. A batch longer than the
        capacity keeps only its last ``capacity`` rows (what a row-by-row add would leave).
        """
        n = int(batch.reward.shape[0])
        if batch.obs.shape != (n, self.obs_dim) or batch.next_obs.shape != (n, self.obs_dim):
            raise ValueError(
                f"obs/next_obs: shapes {batch.obs.shape}, {batch.next_obs.shape}, "
                f"expected ({n}, {self.obs_dim})"
            )
        if batch.action.shape != (n, self.act_dim):
            raise ValueError(f"action: shape {batch.action.shape}, expected ({n}, {self.act_dim})")
        if batch.terminated.shape != (n,) or batch.truncated.shape != (n,):
            raise ValueError(f"terminated/truncated: expected ({n},)")
        versions = np.broadcast_to(np.asarray(policy_version, dtype=np.int32), (n,))
        self.added += n
        if n == 0:
            return
        start = 0
        if n > self.capacity:
            start = n - self.capacity
            # The skipped rows would have been overwritten; advance the cursor as if they had been written.
            self.cursor = (self.cursor + start) % self.capacity
        rows = n - start
        first = min(rows, self.capacity - self.cursor)
        for dst, src in (
            (self.obs, batch.obs),
            (self.action, batch.action),
            (self.reward, batch.reward),
            (self.next_obs, batch.next_obs),
            (self.terminated, batch.terminated),
            (self.truncated, batch.truncated),
            (self.policy_version, versions),
        ):
            dst[self.cursor : self.cursor + first] = src[start : start + first]
            if rows > first:
                dst[: rows - first] = src[start + first : n]
        self.cursor = (self.cursor + rows) % self.capacity
        self._size = min(self.capacity, self._size + rows)

    def sample_indices(self, batch_size: int, rng: np.random.Generator) -> I64Array:
        """(batch_size,) int64 row indices drawn uniformly with replacement from the filled rows."""
        if self._size == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        if batch_size < 0:
            raise ValueError(f"batch_size must be >= 0, got {batch_size}")
        return rng.integers(0, self._size, size=batch_size, dtype=np.int64)

    def take(self, idx: npt.ArrayLike) -> TransitionBatch[np.ndarray]:
        """The rows ``idx`` as a TransitionBatch (copies)."""
        i = np.asarray(idx, dtype=np.int64)
        return TransitionBatch(
            obs=self.obs[i],
            action=self.action[i],
            reward=self.reward[i],
            next_obs=self.next_obs[i],
            terminated=self.terminated[i],
            truncated=self.truncated[i],
        )

    def sample(self, batch_size: int, rng: np.random.Generator) -> TransitionBatch[np.ndarray]:
        """``batch_size`` transitions drawn uniformly with replacement from the filled rows."""
        return self.take(self.sample_indices(batch_size, rng))


class SourceMixer:
    """One :class:`ReplayBuffer` per source; samples each source separately.

    ``capacities`` maps each source that may receive data to its buffer capacity (transitions).
    """

    def __init__(self, obs_dim: int, act_dim: int, capacities: Mapping[Source, int]) -> None:
        if not capacities:
            raise ValueError("capacities: give at least one source")
        self.obs_dim = obs_dim
        self.act_dim = act_dim
        self.buffers: dict[Source, ReplayBuffer] = {
            Source(s): ReplayBuffer(obs_dim, act_dim, c) for s, c in capacities.items()
        }

    def buffer(self, source: Source) -> ReplayBuffer:
        """The buffer of ``source``; ValueError naming the configured sources otherwise."""
        try:
            return self.buffers[Source(source)]
        except (KeyError, ValueError):
            raise ValueError(
                f"source {source!r} has no replay buffer; configured: {[s.value for s in self.buffers]}"
            ) from None

    def add(
        self, source: Source, batch: TransitionBatch[np.ndarray], policy_version: int | npt.ArrayLike
    ) -> None:
        """Append ``batch`` to the buffer of ``source``."""
        self.buffer(source).add_batch(batch, policy_version)

    def sizes(self) -> dict[Source, int]:
        """Filled rows per source."""
        return {s: len(b) for s, b in self.buffers.items()}

    @property
    def nbytes(self) -> int:
        """Bytes held by all buffers."""
        return sum(b.nbytes for b in self.buffers.values())

    def sample(
        self, sizes: Mapping[Source, int], rng: np.random.Generator
    ) -> dict[Source, TransitionBatch[np.ndarray]]:
        """``{source: batch of sizes[source] transitions}``, each drawn from that source only."""
        return {Source(s): self.buffer(s).sample(n, rng) for s, n in sizes.items()}
