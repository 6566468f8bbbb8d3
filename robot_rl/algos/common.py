"""Helpers every algorithm file shares: metric conversion, state checks, acting, Adam."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from enum import Enum
from typing import Any

import numpy as np
import torch

from robot_rl.algos.base import TorchBatch
from robot_rl.nets.torch_nets import TanhGaussianActor
from robot_rl.schema import Source


def metrics_to_floats(metrics: Mapping[str, torch.Tensor]) -> dict[str, float]:
    """0-d metric tensors as Python floats, converted in one ``stack().tolist()`` (one sync, not one
    ``.item()`` per metric)."""
    keys = list(metrics)
    values: list[float] = torch.stack([metrics[k].detach().float() for k in keys]).tolist()
    return dict(zip(keys, values, strict=True))


def adam(params: Iterable[torch.Tensor], lr: float) -> torch.optim.Adam:
    """Adam with the fused CPU kernel (one kernel for all parameters of the optimiser)."""
    return torch.optim.Adam(params, lr=lr, fused=True)


def snapshot(state: Mapping[str, Any]) -> dict[str, Any]:
    """A deep copy, so a saved or loaded state never shares storage with live parameters or Adam moments
    (``Optimizer.load_state_dict`` keeps the tensors it is given)."""
    return copy.deepcopy(dict(state))


def algo_state(
    algo: Any, modules: Sequence[str], params: Sequence[str], extra: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """An algorithm's ``state_dict`` (a copy): the ``state_dict()`` of each attribute named in ``modules``
    (networks and optimisers), each tensor attribute named in ``params`` (detached), the generator state,
    ``extra``, the update count and the config. Each algorithm lists what it saves; this writes it."""
    state: dict[str, Any] = {name: getattr(algo, name).state_dict() for name in modules}
    state.update({name: getattr(algo, name).detach() for name in params})
    state["generator"] = algo.generator.get_state()
    state.update(extra or {})
    state["updates"] = algo.updates
    state["config"] = config_dict(algo.config)
    return snapshot(state)


def load_algo_state(
    algo: Any, state: Mapping[str, Any], modules: Sequence[str], params: Sequence[str]
) -> dict[str, Any]:
    """Restore :func:`algo_state` into ``algo`` (ValueError naming the first mismatching key or shape, before
    anything changes); returns the checked copy, for the algorithm's ``extra`` entries."""
    check_state(algo.state_dict(), state)
    state = snapshot(state)
    for name in modules:
        getattr(algo, name).load_state_dict(state[name])
    with torch.no_grad():
        for name in params:
            getattr(algo, name).copy_(state[name])
    algo.generator.set_state(state["generator"])
    algo.updates = int(state["updates"])
    return state


def check_state(expected: Mapping[str, Any], got: Mapping[str, Any], prefix: str = "") -> None:
    """ValueError naming the first key of ``expected`` missing from ``got`` (or extra in it), or the
    first tensor whose shape differs. Optimiser states (keys ending ``_opt``) are compared by their
    top-level keys only: an optimiser that has not stepped yet holds no moments. ``config`` is a record
    of the hyperparameters the state was trained with, not compared."""
    missing = [k for k in expected if k not in got]
    if missing:
        raise ValueError(f"state_dict: missing key {prefix}{missing[0]!r}")
    extra = [k for k in got if k not in expected]
    if extra:
        raise ValueError(f"state_dict: unexpected key {prefix}{extra[0]!r}")
    for key, want in expected.items():
        have = got[key]
        name = f"{prefix}{key}"
        if isinstance(want, torch.Tensor):
            if not isinstance(have, torch.Tensor):
                raise ValueError(f"state_dict: {name!r} should be a tensor, got {type(have).__name__}")
            if have.shape != want.shape:
                raise ValueError(
                    f"state_dict: {name!r} has shape {tuple(have.shape)}, expected {tuple(want.shape)}"
                )
        elif isinstance(want, Mapping) and not key.endswith("_opt") and key != "config":
            if not isinstance(have, Mapping):
                raise ValueError(f"state_dict: {name!r} should be a dict, got {type(have).__name__}")
            check_state(want, have, prefix=f"{name}.")


def check_batches(batches: Mapping[str, TorchBatch], names: Iterable[str]) -> None:
    """KeyError naming the first batch of the algorithm's ``batch_spec`` that ``batches`` lacks."""
    for name in names:
        if name not in batches:
            raise KeyError(f"update() needs batch {name!r}; got {sorted(batches)}")


def act_with(
    actor: TanhGaussianActor, obs: np.ndarray, deterministic: bool, generator: torch.Generator
) -> np.ndarray:
    """``actor``'s actions (N, A) float32 for ``obs`` (N, D): ``tanh(mean)`` or a sample drawn from
    ``generator``."""
    obs = np.asarray(obs, dtype=np.float32)
    if obs.ndim != 2 or obs.shape[1] != actor.obs_dim:
        raise ValueError(f"obs: shape {obs.shape}, expected (N, {actor.obs_dim})")
    obs_t = torch.from_numpy(obs)
    with torch.no_grad():
        if deterministic:
            mean, _ = actor(obs_t)
            action = torch.tanh(mean)
        else:
            action, _ = actor.sample(obs_t, generator)
    out: np.ndarray = action.numpy()
    return out


def config_dict(config: Any) -> dict[str, Any]:
    """A frozen config dataclass as plain values (enums as their value, tuples as lists), so a
    checkpoint loads with ``torch.load(weights_only=True)``."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if isinstance(value, Enum):
            value = value.value
        elif isinstance(value, tuple):
            value = list(value)
        out[f.name] = value
    return out


def as_source(value: str) -> Source:
    """``value`` as a :class:`Source`; ValueError naming the ``source`` field otherwise."""
    try:
        return Source(value)
    except ValueError:
        raise ValueError(f"source: expected one of {[s.value for s in Source]}, got {value!r}") from None
