"""``OnnxPolicy``: a ``policy.onnx`` written by ``robot-rl export``, run with onnxruntime and numpy only.

    policy = OnnxPolicy("policy.onnx")
    q_target = policy(obs)          # obs (obs_dim,) float32 -> (act_dim,) float32 joint targets, rad

Loading checks, before the first inference: the file is a readable ONNX model, its metadata holds a
complete manifest (robot_rl.export.manifest), it has one input ``obs`` and one output ``actions`` whose
sizes agree with the manifest. Each failure is a :class:`PolicyFileError` naming the file and the problem.
Never imports torch or onnx (the deploy path runs on an onboard computer without them).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from robot_rl.export.manifest import DeployManifest, ManifestError

INPUT_NAME = "obs"
OUTPUT_NAME = "actions"


class PolicyFileError(ValueError):
    """A policy file that cannot be deployed (missing, corrupt, wrong shape, bad manifest)."""


class OnnxPolicy:
    """One onnxruntime session on the CPU (``threads`` intra-op threads, 1 by default: one core stays free
    for the bridge) and the model's manifest."""

    def __init__(self, path: str | Path, *, threads: int = 1) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise PolicyFileError(f"{self.path}: no such file")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(self.path), opts, providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime raises its own Fail / InvalidProtobuf / InvalidGraph types
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise PolicyFileError(
                f"{self.path}: not a readable ONNX model (truncated or corrupt?): {first}"
            ) from None
        props = dict(self.session.get_modelmeta().custom_metadata_map)
        try:
            self.manifest = DeployManifest.from_metadata_props(props, source=str(self.path))
        except ManifestError as err:
            raise PolicyFileError(str(err)) from None
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if [i.name for i in inputs] != [INPUT_NAME] or [o.name for o in outputs] != [OUTPUT_NAME]:
            raise PolicyFileError(
                f"{self.path}: expected one input {INPUT_NAME!r} and one output {OUTPUT_NAME!r}, got inputs "
                f"{[i.name for i in inputs]} and outputs {[o.name for o in outputs]}"
            )
        m = self.manifest
        for what, name, shape, want in (
            ("input", INPUT_NAME, inputs[0].shape, m.obs_dim),
            ("output", OUTPUT_NAME, outputs[0].shape, m.act_dim),
        ):
            size = shape[-1] if shape else None
            if size != want:
                raise PolicyFileError(
                    f"{self.path}: {what} {name!r} has shape {shape}, the manifest describes {want} elements"
                )
        self._feed = np.zeros((1, m.obs_dim), np.float32)

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        """Joint position targets (act_dim,) float32, rad, for one observation (obs_dim,)."""
        self._feed[0] = obs
        out: np.ndarray = self.session.run([OUTPUT_NAME], {INPUT_NAME: self._feed})[0][0]
        return out

    def batch(self, obs: np.ndarray) -> np.ndarray:
        """(N, act_dim) for (N, obs_dim): one call per row (the graph has batch size 1)."""
        return np.stack([self(o).copy() for o in np.asarray(obs, np.float32)])
