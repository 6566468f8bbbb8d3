"""The deployment manifest round trip and what :class:`OnnxPolicy` refuses to load (each refusal is a
PolicyFileError whose message names the problem)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import onnx
import pytest
from export_testing import ACT_DIM, HIDDEN, OBS_DIM, QUAD_HASH

from robot_rl.export.graph import build_model
from robot_rl.export.manifest import DeployManifest, normaliser_hash
from robot_rl.export.runtime import OnnxPolicy, PolicyFileError
from robot_rl.nets.numpy_policy import NumpyPolicy, random_init
from sim.robots import get_robot
from sim.tasks import default_task

QUAD = get_robot("quadruped")
TASK = default_task(QUAD)
WEIGHTS = random_init(OBS_DIM, ACT_DIM, hidden=HIDDEN, seed=0)


def manifest(**kw: object) -> DeployManifest:
    q0 = tuple(float(q) for q in QUAD.default_joint_pos_rad)
    s = QUAD.action_scale_rad
    fields: dict[str, object] = {
        "robot": "quadruped",
        "joint_names": QUAD.joint_names,
        "obs_names": tuple(n for n, _ in TASK.obs_layout),
        "obs_units": tuple(u for _, u in TASK.obs_layout),
        "default_joint_pos_rad": q0,
        "action_scale_rad": s,
        "action_low_rad": tuple(q - s for q in q0),
        "action_high_rad": tuple(q + s for q in q0),
        "kp_nm_per_rad": (40.0,) * ACT_DIM,
        "kd_nm_s_per_rad": (1.0,) * ACT_DIM,
        "control_dt_s": 0.02,
        "normaliser_hash": normaliser_hash(WEIGHTS.obs_mean, WEIGHTS.obs_std),
        "calib_hash": QUAD_HASH,
        "software_version": "0.1.0",
        "run_id": "test-run-0123abcd@update-2",
        "algo": "sac",
        "task": {"name": "ForwardVelocityTask", "command_range_mps": [0.3, 1.0], "max_episode_steps": 1000},
        "opset": 17,
        "exported_utc": "2026-01-02T03:04:05Z",
    }
    fields.update(kw)
    return DeployManifest(**fields)  # type: ignore[arg-type]


def write(model: onnx.ModelProto, path: Path) -> Path:
    path.write_bytes(model.SerializeToString())
    return path


def set_props(model: onnx.ModelProto, props: dict[str, str]) -> None:
    del model.metadata_props[:]
    for key, value in props.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value


def test_manifest_round_trips_through_metadata_props_and_the_runtime(tmp_path: Path) -> None:
    m = manifest()
    assert DeployManifest.from_metadata_props(m.to_metadata_props()) == m
    policy = OnnxPolicy(write(build_model(WEIGHTS, m), tmp_path / "p.onnx"))
    assert policy.manifest == m
    # The runtime computes q0 + scale * tanh(mean) of the numpy policy, one observation at a time.
    obs = np.random.default_rng(0).standard_normal((50, OBS_DIM)).astype(np.float32)
    want = np.asarray(m.default_joint_pos_rad) + m.action_scale_rad * NumpyPolicy.from_weights(WEIGHTS).act(
        obs, deterministic=True
    )
    np.testing.assert_allclose(policy.batch(obs), want, rtol=0.0, atol=1e-5)
    assert policy(obs[0]).shape == (ACT_DIM,)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(PolicyFileError, match="no such file"):
        OnnxPolicy(tmp_path / "absent.onnx")


def test_truncated_file(tmp_path: Path) -> None:
    data = build_model(WEIGHTS, manifest()).SerializeToString()
    path = tmp_path / "truncated.onnx"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(PolicyFileError, match=r"truncated\.onnx: not a readable ONNX model"):
        OnnxPolicy(path)


def test_random_bytes(tmp_path: Path) -> None:
    path = tmp_path / "noise.onnx"
    path.write_bytes(np.random.default_rng(1).bytes(4096))
    with pytest.raises(PolicyFileError, match=r"noise\.onnx: not a readable ONNX model"):
        OnnxPolicy(path)


def test_input_size_that_disagrees_with_the_manifest(tmp_path: Path) -> None:
    m = manifest()
    model = build_model(WEIGHTS, m)
    short = dataclasses.replace(m, obs_names=m.obs_names[:-1], obs_units=m.obs_units[:-1])
    set_props(model, short.to_metadata_props())
    with pytest.raises(PolicyFileError, match=r"input 'obs' has shape \[1, 34\], the manifest describes 33"):
        OnnxPolicy(write(model, tmp_path / "p.onnx"))


def test_manifest_missing_a_field(tmp_path: Path) -> None:
    model = build_model(WEIGHTS, manifest())
    props = {p.key: p.value for p in model.metadata_props}
    del props["kp_nm_per_rad"]
    set_props(model, props)
    with pytest.raises(PolicyFileError, match="manifest field 'kp_nm_per_rad' is missing"):
        OnnxPolicy(write(model, tmp_path / "p.onnx"))


def test_model_without_a_manifest(tmp_path: Path) -> None:
    model = build_model(WEIGHTS, manifest())
    set_props(model, {})
    with pytest.raises(PolicyFileError, match="no robot-rl deployment manifest"):
        OnnxPolicy(write(model, tmp_path / "p.onnx"))


def test_manifest_with_too_few_gains(tmp_path: Path) -> None:
    model = build_model(WEIGHTS, manifest())
    props = {p.key: p.value for p in model.metadata_props}
    props["kd_nm_s_per_rad"] = "[1.0, 1.0]"
    set_props(model, props)
    with pytest.raises(
        PolicyFileError, match=r"p\.onnx: manifest field 'kd_nm_s_per_rad': 2 values for 8 joints"
    ):
        OnnxPolicy(write(model, tmp_path / "p.onnx"))
