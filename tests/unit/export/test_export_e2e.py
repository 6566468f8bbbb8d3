"""``robot-rl export`` end to end on a real (tiny) ``robot-rl train`` run folder: H2O from the registry,
a few updates against the in-process MuJoCo sim worker, then ``python -m robot_rl.export.commands RUN``
in a subprocess; the model it writes acts like the run's ``policy.npz``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from export_testing import QUAD_HASH, ROOT

from robot_rl.data.reader import open_run
from robot_rl.export.runtime import OnnxPolicy
from robot_rl.nets.numpy_policy import NumpyPolicy, load_npz
from robot_rl.runners.train import EXIT_OK, Train, run_train

pytestmark = pytest.mark.integration


def test_export_of_a_train_run_folder(tmp_path: Path, run1_head: Callable[[int], Path]) -> None:
    logs = run1_head(6)
    reader = open_run(logs)
    run = tmp_path / "run"
    cfg = Train(
        sim="mujoco",
        real_logs=logs,
        out=run,
        algo="h2o",
        updates=20,
        real_eval=False,
        baseline=False,
        hidden=(16, 16),
        eval_every=1000,
        eval_episodes_sim=0,
        checkpoint_every=1000,
        log_every=10,
        sim_warmup_steps=256,
        policy_refresh_every=10,
        sim_max_episode_steps=50,
        quiet=True,
    )
    assert run_train(cfg) == EXIT_OK
    # train exports policy.onnx itself at the end; move it aside so the command below writes a fresh one.
    assert OnnxPolicy(run / "policy.onnx").manifest.algo == "h2o"
    (run / "policy.onnx").rename(run / "policy-from-train.onnx")

    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "robot_rl.export.commands", str(run)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "robot-rl export:" in done.stdout and done.stderr == ""
    out = run / "policy.onnx"
    summary = json.loads((run / "policy.onnx.json").read_text())
    parity = summary["parity"]
    assert parity["n_obs"] == 10_000 and parity["n_obs_logs"] == 5_000 and parity["logs"] == str(logs)
    assert parity["max_abs_diff"] <= 1e-5
    assert summary["source"]["kind"] == "run" and summary["source"]["update"] == 20

    policy = OnnxPolicy(out)
    m = policy.manifest
    assert (m.robot, m.algo, m.calib_hash) == ("quadruped", "h2o", QUAD_HASH)
    assert m.run_id.startswith("run-") and m.run_id.endswith("@update-20")
    assert m.task == {"name": "ForwardVelocityTask", "command_range_mps": [0.3, 1.0], "max_episode_steps": 50}
    assert m.obs_names == reader.manifest.obs_layout.names
    # The final checkpoint and policy.npz hold the same actor: the ONNX model acts like the .npz.
    numpy_policy = NumpyPolicy.from_weights(load_npz(run / "policy.npz"))
    obs = np.concatenate([ep.obs for ep in open_run(logs).iter_episodes()])[:500]
    want = np.asarray(m.default_joint_pos_rad) + m.action_scale_rad * numpy_policy.act(
        obs, deterministic=True
    )
    np.testing.assert_allclose(policy.batch(obs), want, rtol=0.0, atol=1e-5)
