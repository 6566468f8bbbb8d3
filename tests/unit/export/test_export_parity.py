"""ONNX export parity: onnxruntime at batch 1 against the torch reference, for every algorithm of the
registry (through a checkpoint folder, as ``robot-rl train`` writes it), for ``.npz`` policies with other
activations and a parameter log-std, and for both default and legacy opsets (STYLE.md "Tests": export to
ONNX matches torch to 1e-5)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from export_testing import ACT_DIM, HIDDEN, OBS_DIM, QUAD_HASH, RUN1, make_run

from robot_rl.algos import ALGO_NAMES
from robot_rl.export.commands import Export
from robot_rl.export.onnx_export import export_policy
from robot_rl.export.runtime import OnnxPolicy
from robot_rl.nets.numpy_policy import NumpyPolicy, random_init, save_npz
from sim.robots import get_robot

QUAD = get_robot("quadruped")
Q0 = np.asarray(QUAD.default_joint_pos_rad, np.float32)
SCALE = np.float32(QUAD.action_scale_rad)


def probe_obs(n: int, seed: int) -> np.ndarray:
    return (2.0 * np.random.default_rng(seed).standard_normal((n, OBS_DIM))).astype(np.float32)


@pytest.mark.parametrize("name", ALGO_NAMES)
def test_every_algorithm_exports_with_parity(name: str, tmp_path: Path) -> None:
    run = make_run(tmp_path, name)
    summary = export_policy(Export(checkpoint=run.run_dir))
    parity = summary["parity"]
    # At least 10k observations, half of them from the training logs (calib/run1, the provenance's dataset).
    assert parity["n_obs"] >= 10_000
    assert parity["n_obs_logs"] == parity["n_obs"] // 2 and parity["logs"] == str(RUN1)
    assert parity["passed"] and parity["max_abs_diff"] <= 1e-5, parity
    out = run.run_dir / "policy.onnx"
    assert summary["model"] == str(out) and summary["source"]["kind"] == "run"
    assert summary["source"]["update"] == 2 and summary["manifest"]["algo"] == name
    assert json.loads((run.run_dir / "policy.onnx.json").read_text())["parity"] == parity

    # Independently of the exporter: the file acts like the algorithm's own deterministic act(), in rad.
    policy = OnnxPolicy(out)
    obs = probe_obs(300, seed=1)
    want = Q0 + SCALE * run.algo.act(obs, deterministic=True)
    got = policy.batch(obs)
    np.testing.assert_allclose(got, want, rtol=0.0, atol=1e-5)
    # ... and the perturbed actor's targets cover a good part of the action range, so the check has teeth.
    assert float(np.std((got - Q0) / SCALE)) > 0.2
    assert np.all(got >= np.asarray(policy.manifest.action_low_rad) - 1e-6)
    assert np.all(got <= np.asarray(policy.manifest.action_high_rad) + 1e-6)


def test_checkpoint_folder_exports_next_to_the_run(tmp_path: Path) -> None:
    run = make_run(tmp_path, "sac")
    summary = export_policy(Export(checkpoint=run.checkpoint, parity_n=2_000))
    out = run.run_dir / f"policy-{run.checkpoint.name}.onnx"
    assert summary["model"] == str(out) and out.is_file()
    assert summary["source"]["kind"] == "checkpoint"
    assert summary["manifest"]["run_id"].startswith("sac-run-") and summary["manifest"]["run_id"].endswith(
        "@update-2"
    )


def test_unavailable_training_logs_fall_back_to_random_states(tmp_path: Path) -> None:
    run = make_run(tmp_path, "iql", dataset=str(tmp_path / "gone"))
    summary = export_policy(Export(checkpoint=run.run_dir))
    parity = summary["parity"]
    assert parity["n_obs"] >= 10_000 and parity["n_obs_logs"] == 0 and parity["n_obs_random"] >= 10_000
    assert "unavailable" in parity["logs_note"] and "random states only" in parity["logs_note"]
    assert parity["max_abs_diff"] <= 1e-5


def test_real_logs_override_the_provenance(tmp_path: Path) -> None:
    run = make_run(tmp_path, "cql", dataset=str(tmp_path / "gone"))
    summary = export_policy(Export(checkpoint=run.run_dir, real_logs=RUN1, parity_n=4_000))
    assert summary["parity"]["n_obs_logs"] == 2_000 and summary["parity"]["logs"] == str(RUN1)


def npz_policy(tmp_path: Path, activation: str, log_std: Any = "param", seed: int = 3) -> tuple[Path, Any]:
    weights = random_init(OBS_DIM, ACT_DIM, hidden=HIDDEN, seed=seed, activation=activation, log_std=log_std)
    # A non-trivial normaliser, so the in-graph normalisation is exercised too.
    rng = np.random.default_rng(seed)
    policy = NumpyPolicy.from_weights(weights)
    policy = NumpyPolicy(
        policy.arch,
        policy.params,
        obs_mean=rng.normal(size=OBS_DIM).astype(np.float32),
        obs_std=rng.uniform(0.5, 2.0, OBS_DIM).astype(np.float32),
    )
    path = save_npz(tmp_path / f"policy-{activation}.npz", policy.to_weights())
    return path, policy


@pytest.mark.parametrize("activation", ["tanh", "elu", "silu"])
def test_npz_with_other_activations_and_param_log_std(tmp_path: Path, activation: str) -> None:
    path, numpy_policy = npz_policy(tmp_path, activation)
    summary = export_policy(Export(checkpoint=path))
    out = tmp_path / f"policy-{activation}.onnx"
    assert summary["model"] == str(out)
    parity = summary["parity"]
    assert parity["n_obs"] >= 10_000 and parity["n_obs_logs"] == 0  # a bare .npz has no training logs
    assert parity["max_abs_diff"] <= 1e-5, parity
    manifest = summary["manifest"]
    assert manifest["robot"] == "quadruped"  # the one robot with 34 observations -> 8 joints
    assert manifest["calib_hash"] == QUAD_HASH and manifest["algo"] == "unknown"
    obs = probe_obs(300, seed=2)
    want = Q0 + SCALE * numpy_policy.act(obs, deterministic=True)
    np.testing.assert_allclose(OnnxPolicy(out).batch(obs), want, rtol=0.0, atol=1e-5)


def test_opsets_11_and_17_both_load_and_agree(tmp_path: Path) -> None:
    path, _ = npz_policy(tmp_path, "elu", log_std="layer")
    outs = {}
    for opset in (11, 17):
        out = tmp_path / f"p{opset}.onnx"
        summary = export_policy(Export(checkpoint=path, out=out, opset=opset, parity_n=2_000))
        assert summary["opset"] == opset and summary["parity"]["max_abs_diff"] <= 1e-5
        model = onnx.load(str(out))
        assert [o.version for o in model.opset_import if o.domain == ""] == [opset]
        outs[opset] = OnnxPolicy(out)
        assert outs[opset].manifest.opset == opset
    obs = probe_obs(200, seed=4)
    np.testing.assert_allclose(outs[11].batch(obs), outs[17].batch(obs), rtol=0.0, atol=1e-6)


def test_npz_inside_a_run_takes_the_runs_provenance(tmp_path: Path) -> None:
    run = make_run(tmp_path, "h2o")
    save_npz(run.run_dir / "policy.npz", run.algo.policy_weights())
    summary = export_policy(Export(checkpoint=run.run_dir / "policy.npz", parity_n=2_000))
    assert summary["model"] == str(run.run_dir / "policy.onnx")
    assert summary["manifest"]["algo"] == "h2o" and summary["manifest"]["run_id"].startswith("h2o-run-")
    assert summary["parity"]["n_obs_logs"] == 1_000 and summary["parity"]["max_abs_diff"] <= 1e-5
