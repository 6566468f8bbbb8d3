"""The deployment manifest: what an onboard runner must know about a policy besides its weights.

It travels inside ``policy.onnx`` as ``metadata_props`` (ONNX's string -> string model metadata, read back
by onnxruntime's ``custom_metadata_map`` without the ``onnx`` package): one key per field below, each value
JSON-encoded, plus ``robot_rl_manifest_version``. mjlab and LeRobot's Unitree loader keep joint names,
default pose and gains in the same place (CONVENTIONS.md, ONNX policies).

The graph (robot_rl.export.onnx_export) maps ``obs`` (1, obs_dim) float32, in the order and units of
``obs_names`` / ``obs_units``, to ``actions`` (1, act_dim) float32: joint position targets in rad,
``default_joint_pos_rad + action_scale_rad * tanh(mean)``, always inside [action_low_rad, action_high_rad].
The normaliser and the scaling are inside the graph; ``normaliser_hash`` identifies the normaliser
(sha256 of its float32 mean and std bytes).

Version 1 fields are :class:`DeployManifest`'s. A later version adds fields with defaults and bumps
``MANIFEST_VERSION``; a reader refuses a newer major version than it knows.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import MISSING, asdict, dataclass, fields
from typing import Any

import numpy as np

MANIFEST_VERSION = 1
VERSION_KEY = "robot_rl_manifest_version"
OUTPUT_KIND = "q_target_rad"
"""What ``actions`` holds: absolute joint position targets (rad), ready for a PD controller."""


class ManifestError(ValueError):
    """A manifest that is missing, incomplete or inconsistent; the message names the field."""


@dataclass(frozen=True)
class DeployManifest:
    """Manifest version 1 (module docstring). Angles rad, gains N m/rad and N m s/rad, times s."""

    robot: str
    joint_names: tuple[str, ...]
    obs_names: tuple[str, ...]
    obs_units: tuple[str, ...]
    default_joint_pos_rad: tuple[float, ...]
    action_scale_rad: float
    action_low_rad: tuple[float, ...]
    action_high_rad: tuple[float, ...]
    kp_nm_per_rad: tuple[float, ...]
    kd_nm_s_per_rad: tuple[float, ...]
    control_dt_s: float
    normaliser_hash: str
    calib_hash: str
    software_version: str
    run_id: str
    algo: str
    task: dict[str, Any]
    """The task it was trained on: {"name": "ForwardVelocityTask", "command_range_mps": [lo, hi], ...}."""
    output: str = OUTPUT_KIND
    opset: int = 17
    exported_utc: str = ""

    def __post_init__(self) -> None:
        n = len(self.joint_names)
        for name in (
            "default_joint_pos_rad",
            "action_low_rad",
            "action_high_rad",
            "kp_nm_per_rad",
            "kd_nm_s_per_rad",
        ):
            got = len(getattr(self, name))
            if got != n:
                raise ManifestError(
                    f"manifest field {name!r}: {got} values for {n} joints {list(self.joint_names)}"
                )
        if len(self.obs_units) != len(self.obs_names):
            raise ManifestError(
                f"manifest field 'obs_units': {len(self.obs_units)} units for {len(self.obs_names)} names"
            )
        if not self.obs_names:
            raise ManifestError("manifest field 'obs_names' is empty")
        if not self.control_dt_s > 0.0:
            raise ManifestError(f"manifest field 'control_dt_s': expected > 0, got {self.control_dt_s}")
        if self.output != OUTPUT_KIND:
            raise ManifestError(f"manifest field 'output': expected {OUTPUT_KIND!r}, got {self.output!r}")

    @property
    def obs_dim(self) -> int:
        return len(self.obs_names)

    @property
    def act_dim(self) -> int:
        return len(self.joint_names)

    def to_metadata_props(self) -> dict[str, str]:
        """String -> string map for ``onnx.ModelProto.metadata_props`` (values are JSON)."""
        props = {k: json.dumps(v, allow_nan=False) for k, v in asdict(self).items()}
        props[VERSION_KEY] = str(MANIFEST_VERSION)
        return props

    @classmethod
    def from_metadata_props(cls, props: dict[str, str], source: str = "<model>") -> DeployManifest:
        """Parse :meth:`to_metadata_props` output; ManifestError naming ``source`` and the field."""
        if VERSION_KEY not in props:
            raise ManifestError(
                f"{source}: no robot-rl deployment manifest in the model metadata (no {VERSION_KEY!r});"
                " export it with `robot-rl export`"
            )
        try:
            version = int(props[VERSION_KEY])
        except ValueError:
            raise ManifestError(
                f"{source}: {VERSION_KEY} is {props[VERSION_KEY]!r}, expected an integer"
            ) from None
        if version > MANIFEST_VERSION:
            raise ManifestError(
                f"{source}: manifest version {version} is newer than this robot-rl's ({MANIFEST_VERSION}); "
                "upgrade robot-rl on this computer"
            )
        values: dict[str, Any] = {}
        for f in fields(cls):
            if f.name not in props:
                if f.default is MISSING:
                    raise ManifestError(f"{source}: manifest field {f.name!r} is missing from metadata_props")
                continue
            try:
                v = json.loads(props[f.name])
            except ValueError:
                raise ManifestError(
                    f"{source}: manifest field {f.name!r} is not JSON: {props[f.name][:80]!r}"
                ) from None
            values[f.name] = tuple(v) if isinstance(v, list) else v
        try:
            return cls(**values)
        except ManifestError as err:
            raise ManifestError(f"{source}: {err}") from None
        except TypeError as err:
            raise ManifestError(f"{source}: manifest has a mistyped field: {err}") from None


def normaliser_hash(obs_mean: np.ndarray, obs_std: np.ndarray) -> str:
    """sha256 of the float32 little-endian bytes of mean then std: equal normalisers, equal hashes."""
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(obs_mean, dtype="<f4").tobytes())
    h.update(np.ascontiguousarray(obs_std, dtype="<f4").tobytes())
    return h.hexdigest()
