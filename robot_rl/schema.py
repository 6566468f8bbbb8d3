"""The robot-rl data contract: episodes, their metadata, and the batches derived from them.

One schema is shared by real-robot logs, sim rollouts, demonstrations and evaluation runs
(ARCHITECTURE.md section 3). Data is stored as *episodes*; transitions, n-step targets and
returns-to-go are *derived* from episodes by the pure functions at the bottom of this module, so
they are computed one way everywhere.

Conventions:

- ``T`` is the number of steps (actions) in an episode. An episode holds ``T + 1`` observations:
  ``obs[t]`` is observed before ``action[t]`` is sent, and ``obs[T]`` is the final observation
  (needed to bootstrap a truncated episode).
- ``done`` is never stored. ``terminated`` means the MDP reached a terminal state (no bootstrap);
  ``truncated`` means the episode was cut (time limit, operator stop, crash) and the value of
  ``obs[T]`` is still well defined. TD targets bootstrap on ``1 - terminated`` only.
- Rewards are stored raw as float64; scaling is a transform recorded in the run config.
- Physical quantities carry SI units in their names (``control_dt_s``, ``t_ns``).
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Generic, TypeAlias, TypeVar

import numpy as np
import numpy.typing as npt

SCHEMA_VERSION = 1
"""Version of the episode schema and the on-disk log format; bump on any incompatible change."""

F32Array: TypeAlias = npt.NDArray[np.float32]
F64Array: TypeAlias = npt.NDArray[np.float64]
I64Array: TypeAlias = npt.NDArray[np.int64]
BoolArray: TypeAlias = npt.NDArray[np.bool_]

ArrayT = TypeVar("ArrayT")
"""The array type of a batch: ``np.ndarray`` now, ``torch.Tensor`` once batches move to a device."""


class SchemaError(ValueError):
    """A value violates the data contract.

    Carries the offending ``field`` (for example ``"obs"``), what was ``expected`` and what was
    ``got``, and where known the ``episode_id`` and ``step`` index, so a caller can point a user at
    the exact value.
    """

    def __init__(
        self,
        field: str,
        expected: str,
        got: str,
        *,
        episode_id: str | None = None,
        step: int | None = None,
        detail: str = "",
    ) -> None:
        self.field = field
        self.expected = expected
        self.got = got
        self.episode_id = episode_id
        self.step = step
        self.detail = detail
        super().__init__(self._message())

    def _where(self) -> str:
        parts: list[str] = []
        if self.episode_id is not None:
            parts.append(f"episode {self.episode_id}")
        parts.append(f"field {self.field!r}")
        if self.step is not None:
            parts.append(f"step {self.step}")
        return ", ".join(parts)

    def _message(self) -> str:
        msg = f"{self._where()}: expected {self.expected}, got {self.got}"
        if self.detail:
            msg += f" ({self.detail})"
        return msg


class Source(StrEnum):
    """Where an episode came from. H2O weighs real and sim data differently; AILBoost separates demos."""

    REAL = "real"
    SIM = "sim"
    DEMO = "demo"
    EVAL = "eval"


@dataclass(frozen=True)
class FieldLayout:
    """Names and units of the elements of a flat observation or action vector.

    ``names[i]`` names element ``i`` with its SI unit as a suffix (``"joint_pos_FL_hip_rad"``);
    ``units[i]`` repeats the unit on its own (``"rad"``) so tools can group and convert without
    parsing names. ``"unknown"`` is the unit of imported data whose meaning was not given.
    """

    names: tuple[str, ...]
    units: tuple[str, ...]

    def __post_init__(self) -> None:
        # Accept lists from JSON or callers but store tuples, so the layout stays hashable.
        object.__setattr__(self, "names", tuple(self.names))
        object.__setattr__(self, "units", tuple(self.units))
        if len(self.names) != len(self.units):
            raise SchemaError("units", f"one unit per name ({len(self.names)})", f"{len(self.units)} units")
        seen: set[str] = set()
        for i, name in enumerate(self.names):
            if not name:
                raise SchemaError("names", "non-empty names", f"empty name at index {i}")
            if name in seen:
                raise SchemaError("names", "unique names", f"duplicate {name!r} at index {i}")
            seen.add(name)

    @property
    def size(self) -> int:
        """Number of elements in the vector."""
        return len(self.names)

    @classmethod
    def anonymous(cls, prefix: str, size: int) -> FieldLayout:
        """A layout for data whose meaning is not known: ``{prefix}_0..`` with unit ``"unknown"``."""
        return cls(tuple(f"{prefix}_{i}" for i in range(size)), ("unknown",) * size)

    def to_json(self) -> list[dict[str, str]]:
        """JSON form: ``[{"name": ..., "unit": ...}, ...]`` (one object per element, readable in diffs)."""
        return [{"name": n, "unit": u} for n, u in zip(self.names, self.units, strict=True)]

    @classmethod
    def from_json(cls, value: object, field_name: str = "layout") -> FieldLayout:
        """Inverse of :meth:`to_json`; raises :class:`SchemaError` naming ``field_name`` on bad input."""
        if not isinstance(value, list):
            raise SchemaError(field_name, "a list of {name, unit} objects", type(value).__name__)
        names: list[str] = []
        units: list[str] = []
        for i, item in enumerate(value):
            if (
                not isinstance(item, dict)
                or not isinstance(item.get("name"), str)
                or not isinstance(item.get("unit"), str)
            ):
                raise SchemaError(
                    field_name, "{name: str, unit: str}", repr(item), step=None, detail=f"[{i}]"
                )
            names.append(item["name"])
            units.append(item["unit"])
        return cls(tuple(names), tuple(units))


def layout_difference(
    what: str, a: Sequence[tuple[str, str]], a_name: str, b: Sequence[tuple[str, str]], b_name: str
) -> str | None:
    """The first difference between two (name, unit) layouts as a sentence, or None if they are equal.

    ``what`` names the layout ("observation"), ``a_name`` / ``b_name`` its two holders ("the logs").
    """
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if tuple(x) != tuple(y):
            return (
                f"{what} layout differs at element {i}: {a_name} has {x[0]!r} ({x[1]}), "
                f"{b_name} has {y[0]!r} ({y[1]})"
            )
    if len(a) != len(b):
        return f"{what} layout: {a_name} has {len(a)} elements, {b_name} has {len(b)}"
    return None


def _new_episode_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True)
class EpisodeMeta:
    """Per-episode metadata.

    Attributes:
        source: real robot, simulator, demonstration or evaluation run.
        robot: robot name, matching the run manifest.
        task: task name.
        policy_version: version of the policy that acted; -1 for scripted or unknown.
        control_dt_s: nominal control period in seconds (the true timing is in ``Episode.t_ns``).
        calib_hash: hash of the calibration file in force; ``""`` if none.
        episode_id: globally unique id (uuid4 hex by default).
        seed: environment seed, if the episode was seeded.
        extra: free-form string annotations (``"recovered": "partial"``, operator notes, ...).
    """

    source: Source
    robot: str
    task: str
    policy_version: int = -1
    control_dt_s: float = 0.0
    calib_hash: str = ""
    episode_id: str = field(default_factory=_new_episode_id)
    seed: int | None = None
    extra: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Coerce a plain string so callers may pass "real"; an unknown value fails here, by name.
        try:
            object.__setattr__(self, "source", Source(self.source))
        except ValueError:
            raise SchemaError(
                "source", f"one of {[s.value for s in Source]}", repr(self.source), episode_id=self.episode_id
            ) from None
        if not self.episode_id:
            raise SchemaError("episode_id", "a non-empty string", "''")
        if not (np.isfinite(self.control_dt_s) and self.control_dt_s > 0.0):
            raise SchemaError(
                "control_dt_s", "a finite period > 0 s", repr(self.control_dt_s), episode_id=self.episode_id
            )
        for key, value in self.extra.items():
            if not isinstance(key, str) or not isinstance(value, str):
                raise SchemaError(
                    "extra", "str -> str", f"{key!r}: {type(value).__name__}", episode_id=self.episode_id
                )


def _check_array(
    name: str,
    value: object,
    dtype: type[np.generic],
    shape: tuple[int | None, ...],
    episode_id: str,
) -> None:
    """Raise SchemaError unless ``value`` is an ndarray of ``dtype`` with ``shape`` (None = any)."""
    if not isinstance(value, np.ndarray):
        raise SchemaError(
            name, f"np.ndarray of {np.dtype(dtype)}", type(value).__name__, episode_id=episode_id
        )
    if value.dtype != np.dtype(dtype):
        raise SchemaError(name, f"dtype {np.dtype(dtype)}", f"dtype {value.dtype}", episode_id=episode_id)
    ok = len(value.shape) == len(shape) and all(
        want is None or want == got for want, got in zip(shape, value.shape, strict=True)
    )
    if not ok:
        want_s = "(" + ", ".join("*" if d is None else str(d) for d in shape) + ")"
        raise SchemaError(name, f"shape {want_s}", f"shape {value.shape}", episode_id=episode_id)


def _first_bad_row(finite: BoolArray) -> int:
    """Index of the first row of ``finite`` (1-D or 2-D) that holds a non-finite value."""
    rows = finite if finite.ndim == 1 else finite.all(axis=1)
    return int(np.flatnonzero(~rows)[0])


@dataclass(frozen=True)
class Episode:
    """One episode of ``T >= 1`` steps.

    Attributes:
        meta: per-episode metadata.
        obs: (T+1, obs_dim) float32 observations; ``obs[T]`` is the final observation.
        action: (T, act_dim) float32, the action actually sent after safety clamping.
        reward: (T,) float64 raw rewards; ``reward[t]`` follows ``action[t]``.
        terminated: (T,) bool; only ``terminated[T-1]`` may be True (MDP terminal state).
        truncated: (T,) bool; only ``truncated[T-1]`` may be True (cut short; bootstrap from obs[T]).
            Exactly one of ``terminated[T-1]`` and ``truncated[T-1]`` is True.
        t_ns: (T+1,) int64 source timestamps of each observation in nanoseconds, strictly
            increasing. These are the true times, not ``index * control_dt_s``.

    Construction validates internal consistency (shapes, dtypes, finiteness, flag placement, time
    order); :meth:`validate` additionally checks the widths against a run's layouts.
    """

    meta: EpisodeMeta
    obs: F32Array
    action: F32Array
    reward: F64Array
    terminated: BoolArray
    truncated: BoolArray
    t_ns: I64Array

    def __post_init__(self) -> None:
        eid = self.meta.episode_id
        _check_array("action", self.action, np.float32, (None, None), eid)
        n_steps = self.action.shape[0]
        if n_steps < 1:
            raise SchemaError("action", "T >= 1 steps", "T = 0", episode_id=eid)
        _check_array("obs", self.obs, np.float32, (n_steps + 1, None), eid)
        _check_array("reward", self.reward, np.float64, (n_steps,), eid)
        _check_array("terminated", self.terminated, np.bool_, (n_steps,), eid)
        _check_array("truncated", self.truncated, np.bool_, (n_steps,), eid)
        _check_array("t_ns", self.t_ns, np.int64, (n_steps + 1,), eid)

        for name, arr in (("obs", self.obs), ("action", self.action), ("reward", self.reward)):
            finite = np.isfinite(arr)
            if not finite.all():
                step = _first_bad_row(finite)
                raise SchemaError(name, "finite values", f"{arr[step]!r}", episode_id=eid, step=step)

        for name, flags in (("terminated", self.terminated), ("truncated", self.truncated)):
            early = np.flatnonzero(flags[:-1])
            if early.size:
                raise SchemaError(
                    name,
                    f"True only at the last step ({n_steps - 1})",
                    "True",
                    episode_id=eid,
                    step=int(early[0]),
                )
        if not (self.terminated[-1] or self.truncated[-1]):
            raise SchemaError(
                "truncated",
                "terminated or truncated at the last step",
                "neither",
                episode_id=eid,
                step=n_steps - 1,
                detail="a stored episode either reached a terminal state or was cut",
            )
        if self.terminated[-1] and self.truncated[-1]:
            raise SchemaError(
                "truncated",
                "not both terminated and truncated",
                "both True",
                episode_id=eid,
                step=n_steps - 1,
                detail="a terminal state is terminated only",
            )

        dt = np.diff(self.t_ns)
        bad = np.flatnonzero(dt <= 0)
        if bad.size:
            i = int(bad[0]) + 1
            raise SchemaError(
                "t_ns",
                f"strictly increasing timestamps (> {int(self.t_ns[i - 1])})",
                str(int(self.t_ns[i])),
                episode_id=eid,
                step=i,
            )

    @property
    def n_steps(self) -> int:
        """Number of steps ``T``."""
        return int(self.action.shape[0])

    @property
    def obs_dim(self) -> int:
        """Width of one observation."""
        return int(self.obs.shape[1])

    @property
    def act_dim(self) -> int:
        """Width of one action."""
        return int(self.action.shape[1])

    def validate(self, obs_layout: FieldLayout, act_layout: FieldLayout) -> None:
        """Check the vector widths against a run's layouts (the rest was checked at construction)."""
        eid = self.meta.episode_id
        if self.obs_dim != obs_layout.size:
            raise SchemaError("obs", f"obs_dim {obs_layout.size}", f"{self.obs_dim}", episode_id=eid)
        if self.act_dim != act_layout.size:
            raise SchemaError("action", f"act_dim {act_layout.size}", f"{self.act_dim}", episode_id=eid)

    def undiscounted_return(self) -> float:
        """Sum of raw rewards."""
        return float(self.reward.sum())

    def equals(self, other: Episode) -> bool:
        """Exact equality of metadata and every array (bitwise values, same dtypes)."""
        return self.meta == other.meta and all(
            getattr(self, f).dtype == getattr(other, f).dtype
            and np.array_equal(getattr(self, f), getattr(other, f))
            for f in ("obs", "action", "reward", "terminated", "truncated", "t_ns")
        )


# --------------------------------------------------------------------------------------------------
# Derived batches. B is the batch size; shapes below are for the numpy instantiation.


@dataclass(frozen=True)
class TransitionBatch(Generic[ArrayT]):
    """One-step transitions ``(s, a, r, s', terminated, truncated)``.

    The TD target is ``r + gamma * (1 - terminated) * V(next_obs)``: ``truncated`` is carried for
    bookkeeping (and recurrent resets) but must NOT stop bootstrapping.
    """

    obs: ArrayT  # (B, obs_dim) float32
    action: ArrayT  # (B, act_dim) float32
    reward: ArrayT  # (B,) float64
    next_obs: ArrayT  # (B, obs_dim) float32
    terminated: ArrayT  # (B,) bool
    truncated: ArrayT  # (B,) bool


@dataclass(frozen=True)
class NStepBatch(Generic[ArrayT]):
    """n-step transitions, truncated at the episode end.

    For start step ``t`` of an episode of ``T`` steps, ``k = min(n, T - t)``:
    ``reward_sum_n = sum_{i<k} gamma^i r_{t+i}``, ``next_obs = obs[t+k]``,
    ``discount = gamma^k * (1 - terminated[t+k-1])`` so the target is
    ``reward_sum_n + discount * V(next_obs)``.
    """

    obs: ArrayT  # (B, obs_dim) float32
    action: ArrayT  # (B, act_dim) float32
    reward_sum_n: ArrayT  # (B,) float64
    next_obs: ArrayT  # (B, obs_dim) float32, obs at t + n_steps
    discount: ArrayT  # (B,) float64, gamma^k * (1 - terminated at the k-th step)
    n_steps: ArrayT  # (B,) int64, k in [1, n]


@dataclass(frozen=True)
class MonteCarloBatch(Generic[ArrayT]):
    """Observed discounted return-to-go ``G_t = sum_{i>=t} gamma^(i-t) r_i`` per step.

    ``partial`` marks steps of truncated episodes: their ``return_to_go`` stops at the cut, so it
    is a lower-variance but biased (missing-tail) estimate of the value; no bootstrapping is done.
    """

    obs: ArrayT  # (B, obs_dim) float32
    action: ArrayT  # (B, act_dim) float32
    return_to_go: ArrayT  # (B,) float64
    partial: ArrayT  # (B,) bool, True for steps of truncated episodes


AnyBatch: TypeAlias = TransitionBatch[np.ndarray] | NStepBatch[np.ndarray] | MonteCarloBatch[np.ndarray]
BatchT = TypeVar("BatchT", TransitionBatch[np.ndarray], NStepBatch[np.ndarray], MonteCarloBatch[np.ndarray])

SourcedBatches: TypeAlias = Mapping[Source, BatchT]
"""Batches keyed by source: the mixer keeps real, sim and demo data apart (H2O, AILBoost)."""


def episode_transitions(ep: Episode) -> TransitionBatch[np.ndarray]:
    """The ``T`` one-step transitions of an episode; ``next_obs[T-1]`` is the real final observation."""
    return TransitionBatch(
        obs=ep.obs[:-1],
        action=ep.action,
        reward=ep.reward,
        next_obs=ep.obs[1:],
        terminated=ep.terminated,
        truncated=ep.truncated,
    )


def episode_nstep(ep: Episode, n: int, gamma: float) -> NStepBatch[np.ndarray]:
    """n-step targets for every start step of ``ep``; windows stop at the episode end (see NStepBatch)."""
    if n < 1:
        raise SchemaError("n", "n >= 1", str(n))
    if not 0.0 <= gamma <= 1.0:
        raise SchemaError("gamma", "0 <= gamma <= 1", str(gamma))
    n_steps = ep.n_steps
    t = np.arange(n_steps)
    k = np.minimum(n, n_steps - t)  # (T,) steps actually summed
    reward_sum = np.zeros(n_steps, dtype=np.float64)
    for i in range(n):
        valid = i < k
        reward_sum[valid] += gamma**i * ep.reward[t[valid] + i]
    end = t + k  # index of the bootstrap observation
    terminated_at_end = ep.terminated[end - 1]
    discount = np.power(gamma, k.astype(np.float64)) * (~terminated_at_end)
    return NStepBatch(
        obs=ep.obs[:-1],
        action=ep.action,
        reward_sum_n=reward_sum,
        next_obs=ep.obs[end],
        discount=discount.astype(np.float64),
        n_steps=k.astype(np.int64),
    )


def episode_return_to_go(ep: Episode, gamma: float) -> F64Array:
    """(T,) float64 discounted return-to-go ``G_t = r_t + gamma * G_{t+1}``, ``G_T = 0``.

    For a truncated episode this stops at the cut and does not bootstrap, so it underestimates the
    value by the missing tail (biased, lower variance); :func:`episode_monte_carlo` flags such steps.
    """
    if not 0.0 <= gamma <= 1.0:
        raise SchemaError("gamma", "0 <= gamma <= 1", str(gamma))
    out = np.empty(ep.n_steps, dtype=np.float64)
    running = 0.0
    for t in range(ep.n_steps - 1, -1, -1):
        running = float(ep.reward[t]) + gamma * running
        out[t] = running
    return out


def episode_monte_carlo(ep: Episode, gamma: float) -> MonteCarloBatch[np.ndarray]:
    """Return-to-go per step of ``ep`` with the ``partial`` flag set for a truncated episode."""
    partial = bool(ep.truncated[-1])
    return MonteCarloBatch(
        obs=ep.obs[:-1],
        action=ep.action,
        return_to_go=episode_return_to_go(ep, gamma),
        partial=np.full(ep.n_steps, partial, dtype=np.bool_),
    )


def concat_batches(batches: Sequence[BatchT]) -> BatchT:
    """Concatenate batches of one type along the batch axis (numpy arrays)."""
    if not batches:
        raise SchemaError("batches", "at least one batch", "none")
    cls = type(batches[0])
    for b in batches:
        if type(b) is not cls:
            raise SchemaError("batches", f"all {cls.__name__}", type(b).__name__)
    columns = {
        f.name: np.concatenate([getattr(b, f.name) for b in batches], axis=0) for f in dataclasses.fields(cls)
    }
    return cls(**columns)
