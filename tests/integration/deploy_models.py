"""Policy files for the deploy tests: calib/behaviour/quadruped_sac.npz exported with the graph builder.

Not a test module (no `test_` prefix); imported by tests/integration/test_deploy.py. Building the graph needs
the `onnx` package (train extra), which the deploy runtime itself does not.
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from robot_rl.bus.messages import PolicyWeights
from robot_rl.export.manifest import DeployManifest
from robot_rl.nets.numpy_policy import load_npz, save_npz

ROOT = Path(__file__).resolve().parents[2]
BEHAVIOUR = ROOT / "calib" / "behaviour" / "quadruped_sac.npz"
CALIB = ROOT / "calib" / "quadruped.toml"


def behaviour_weights(head_gain: float = 1.0) -> PolicyWeights:
    """The behaviour policy; `head_gain` scales its mean head (tanh(g * mean): a calmer policy for g < 1)."""
    w = load_npz(BEHAVIOUR)
    if head_gain == 1.0:
        return w
    params = dict(w.params)
    params["mu.weight"] = (params["mu.weight"] * head_gain).astype(np.float32)
    params["mu.bias"] = (params["mu.bias"] * head_gain).astype(np.float32)
    return msgspec.structs.replace(w, params=params)


def _source(weights: PolicyWeights, folder: Path) -> Any:
    from robot_rl.export.onnx_export import load_npz_source

    return load_npz_source(save_npz(folder / "policy.npz", weights), robot_override="quadruped")


def matching_manifest(weights: PolicyWeights, **changes: Any) -> DeployManifest:
    """The manifest `robot-rl export` writes for `weights` (quadruped, calib/quadruped.toml), changed."""
    from robot_rl.export.onnx_export import build_manifest

    with tempfile.TemporaryDirectory() as tmp:
        manifest, _, _ = build_manifest(_source(weights, Path(tmp)), CALIB, False, 17)
    return dataclasses.replace(manifest, **changes)


def write_model(path: Path, weights: PolicyWeights, manifest: DeployManifest) -> Path:
    import onnx

    from robot_rl.export.graph import build_model

    onnx.save(build_model(weights, manifest), str(path))
    return path


def reference_policy(weights: PolicyWeights, manifest: DeployManifest) -> Any:
    """The torch policy `robot-rl export` checks parity against, as a deploy policy callable:
    obs -> q_default + action_scale * tanh(mean)."""
    from robot_rl.export.onnx_export import reference_policy as torch_reference

    with tempfile.TemporaryDirectory() as tmp:
        return torch_reference(_source(weights, Path(tmp)), manifest)
