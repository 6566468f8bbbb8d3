"""Policies to certify, as :class:`robot_rl.certify.smoothing.BasePolicy`.

- ``reference:cartpole``: the untrained reference agent of ALGORITHMS.md 4.7 (check 3): push right iff
  ``0.1 x_dot + 1.0 theta + 0.6 theta_dot > 0`` on the mean of the last 3 noisy frames. Its torch twin gives
  the scores ``[0, s]`` (left, right), so the attack pushes ``s`` across 0.
- a ``robot-rl train`` run folder, a checkpoint folder or a ``policy.npz``
  (:func:`robot_rl.export.onnx_export.load_source`): deterministic ``tanh(mean)`` from the numpy policy; the
  torch twin is the checkpoint's own actor, or :class:`robot_rl.export.onnx_export.MeanActionNet` for a
  ``.npz``.
- a ``policy.onnx`` written by ``robot-rl export`` (:class:`robot_rl.export.runtime.OnnxPolicy`, batch 1):
  its output is joint targets ``q0 + action_scale * tanh(mean)``; the env action is
  ``(q - q0) / action_scale``.
  No torch twin: the certificate needs none, the gradient attack cannot run on it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from robot_rl.certify.smoothing import BasePolicy

REFERENCE_PREFIX = "reference:"
CARTPOLE_GAINS = (0.0, 0.1, 1.0, 0.6)
"""Weights on (x, x_dot, theta, theta_dot) of the reference CartPole agent (ALGORITHMS.md 4.7, check 3)."""
CARTPOLE_FRAMES = 3


class PolicyInputError(ValueError):
    """A policy argument that cannot be loaded or does not fit the environment (the message says which)."""


@dataclass
class LoadedPolicy:
    """A base policy and what is known about where it came from."""

    base: BasePolicy
    kind: str
    """``"reference"``, ``"run"``, ``"checkpoint"``, ``"npz"`` or ``"onnx"``."""
    path: str
    robot: str | None = None
    """The robot it was trained for (None: unknown or not a robot policy)."""
    info: dict[str, Any] = field(default_factory=dict)


def cartpole_controller(
    frames: int = CARTPOLE_FRAMES, gains: tuple[float, ...] = CARTPOLE_GAINS
) -> BasePolicy:
    """The reference CartPole agent: action 1 (push right) iff ``gains . mean(window) > 0``, else 0."""
    w = np.asarray(gains, dtype=np.float32)
    d = w.size

    def act(window: np.ndarray) -> np.ndarray:
        s = window.reshape(window.shape[0], frames, d).mean(axis=1) @ w
        out: np.ndarray = (s > 0.0).astype(np.int64)
        return out

    def scores(window: Any) -> Any:
        import torch

        s = window.reshape(*window.shape[:-1], frames, d).mean(dim=-2) @ torch.from_numpy(w)
        return torch.stack((torch.zeros_like(s), s), dim=-1)

    return BasePolicy(
        name=f"reference CartPole agent: right iff {gains} . mean of the last {frames} noisy frames > 0",
        obs_dim=d,
        act=act,
        frames=frames,
        n_actions=2,
        scores=scores,
    )


def _from_weights(weights: Any, mean_fn: Any, name: str, frames: int) -> BasePolicy:
    from robot_rl.nets.numpy_policy import NumpyPolicy

    policy = NumpyPolicy.from_weights(weights)
    if policy.obs_dim % frames:
        raise PolicyInputError(
            f"frames: the policy takes {policy.obs_dim} inputs, not a multiple of --frames {frames}"
        )

    def act(window: np.ndarray) -> np.ndarray:
        return policy.act(window, deterministic=True)

    return BasePolicy(
        name=name,
        obs_dim=policy.obs_dim // frames,
        act=act,
        frames=frames,
        act_dim=policy.act_dim,
        scores=mean_fn,
    )


def _onnx_policy(path: Path, frames: int) -> LoadedPolicy:
    from robot_rl.export.runtime import OnnxPolicy, PolicyFileError

    try:
        onnx_policy = OnnxPolicy(path)
    except PolicyFileError as err:
        raise PolicyInputError(f"policy: {err}") from None
    m = onnx_policy.manifest
    if m.obs_dim % frames:
        raise PolicyInputError(
            f"frames: the policy takes {m.obs_dim} inputs, not a multiple of --frames {frames}"
        )
    q0 = np.asarray(m.default_joint_pos_rad, np.float32)
    scale = np.float32(m.action_scale_rad)

    def act(window: np.ndarray) -> np.ndarray:
        q = onnx_policy.batch(window)
        out: np.ndarray = np.clip((q - q0) / scale, -1.0, 1.0).astype(np.float32)
        return out

    base = BasePolicy(
        name=f"ONNX policy {path.name} (robot {m.robot}, algo {m.algo}, run {m.run_id})",
        obs_dim=m.obs_dim // frames,
        act=act,
        frames=frames,
        act_dim=m.act_dim,
    )
    return LoadedPolicy(base, "onnx", str(path), robot=m.robot, info={"run_id": m.run_id, "algo": m.algo})


def load_policy(policy: str | Path, frames: int | None = None) -> LoadedPolicy:
    """The policy named by the POLICY argument (module docstring); ``frames`` stacked noisy observations
    (default: 3 for ``reference:cartpole``, 1 otherwise). PolicyInputError naming the problem."""
    text = str(policy)
    if frames is not None and frames < 1:
        raise PolicyInputError(f"frames: expected >= 1, got {frames}")
    if text.startswith(REFERENCE_PREFIX):
        name = text[len(REFERENCE_PREFIX) :]
        if name != "cartpole":
            raise PolicyInputError(f"policy: unknown reference policy {name!r}; known: reference:cartpole")
        base = cartpole_controller(frames if frames is not None else CARTPOLE_FRAMES)
        return LoadedPolicy(base, "reference", text)
    path = Path(text)
    k = 1 if frames is None else frames
    if not path.exists():
        raise PolicyInputError(f"policy: {path} does not exist")
    if path.is_file() and path.suffix == ".onnx":
        return _onnx_policy(path, k)
    from robot_rl.export.onnx_export import ExportInputError, MeanActionNet, load_source

    if path.is_file() and path.suffix == ".npz":
        from robot_rl.nets.numpy_policy import load_npz

        try:
            weights = load_npz(path)
        except Exception as err:  # OSError, ValueError, zipfile.BadZipFile, EOFError: numpy raises them all
            raise PolicyInputError(f"policy: {path} is not a readable policy .npz: {err}") from None
        try:
            source = load_source(path)
        except ExportInputError:  # no run config and no robot fits its sizes: a policy for another env
            base = _from_weights(weights, MeanActionNet(weights), f"policy {path}", k)
            return LoadedPolicy(base, "npz", str(path))
    else:
        try:
            source = load_source(path)
        except ExportInputError as err:
            msg = str(err).replace("checkpoint: ", "policy: ", 1)
            if path.is_file():
                msg += " (or a policy.onnx)"
            raise PolicyInputError(msg) from None
    what = f"{source.kind} {path}" + (f" (update {source.update})" if source.update is not None else "")
    base = _from_weights(source.weights, source.mean_fn, f"{source.algo} policy from {what}", k)
    info: dict[str, Any] = {"algo": source.algo, "update": source.update, "torch_reference": source.reference}
    return LoadedPolicy(base, source.kind, str(path), robot=source.robot, info=info)
