"""`robot-rl train` with real processes: launched sim workers, the emulated real robot, SIGINT from outside.

The tiny torch actor-critic of tests/unit/runners/test_train_tiny_algo.py stands in for the real
algorithms where the algorithm is not what is under test; the end-to-end run at the bottom uses
``robot_rl.algos.make_algo`` (H2O and the SAC sim-only baseline) once that registry exists.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from robot_rl.runners.evaluate import EvalResult
from robot_rl.runners.train import EXIT_INTERRUPTED, EXIT_OK, Train, run_train

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
TINY_DIR = ROOT / "tests" / "unit" / "runners"
sys.path.insert(0, str(TINY_DIR))
from test_train_tiny_algo import tiny_factory  # noqa: E402


@pytest.fixture(scope="module")
def small_logs(run1_head: Callable[[int], Path]) -> Path:
    """The first 12 episodes of calib/run1 under the same manifest."""
    return run1_head(12)


def jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def base_cfg(logs: Path, out: Path, **kw: Any) -> Train:
    fields: dict[str, Any] = {
        "sim": "mujoco",
        "real_logs": logs,
        "out": out,
        "updates": 100,
        "real_eval": False,
        "baseline": False,
        "hidden": (16, 16),
        "eval_every": 50,
        "eval_episodes_sim": 1,
        "eval_max_episode_steps": 25,
        "log_every": 25,
        "sim_warmup_steps": 64,
        "policy_refresh_every": 25,
        "quiet": True,
    }
    fields.update(kw)
    return Train(**fields)


def test_launched_sim_workers_feed_the_learner(small_logs: Path, tmp_path: Path) -> None:
    topology = tmp_path / "workers.toml"
    topology.write_text(
        "[run]\n"
        'name = "trainit"\n'
        "stop_grace_s = 5.0\n"
        "[learner]\n"  # ignored: robot-rl train is the learner
        'robot = "quadruped"\n'
        "[[sim_workers]]\n"
        'name = "sim"\n'
        "replicas = 1\n"
        'robot = "quadruped"\n'
        "num_envs = 2\n"
    )
    out = tmp_path / "run"
    t0 = time.monotonic()
    assert run_train(base_cfg(small_logs, out, launch=topology), tiny_factory) == EXIT_OK
    assert time.monotonic() - t0 < 120
    metrics = jsonl(out / "metrics.jsonl")
    assert metrics[-1]["update"] == 100
    assert metrics[-1]["sim_steps"] >= 64  # at least the warm-up arrived through the ipc bus
    state = json.loads((out / "launch" / "launch.json").read_text())
    procs = state["processes"]
    assert list(procs) == ["sim-0"]  # the topology's [learner] was not started
    assert procs["sim-0"]["state"] == "stopped", procs
    config = json.loads((out / "config.json").read_text())
    assert config["resolved"]["deterministic_collection"] is False


DRIVER = """
import sys
sys.path.insert(0, {tiny!r})
import tyro
from test_train_tiny_algo import tiny_factory
from robot_rl.runners.train import Train, run_train
sys.exit(run_train(tyro.cli(Train, args=sys.argv[1:]), tiny_factory))
"""


def test_sigint_from_outside_checkpoints_and_resume_finishes(small_logs: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = [
        "--sim", "mujoco", "--real-logs", str(small_logs), "--out", str(out), "--updates", "100000",
        "--no-real-eval", "--no-baseline", "--hidden", "16", "16", "--eval-every", "100000",
        "--log-every", "50", "--sim-warmup-steps", "64", "--quiet",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    driver = DRIVER.format(tiny=str(TINY_DIR))
    proc = subprocess.Popen([sys.executable, "-c", driver, *args], cwd=ROOT, env=env, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not (
            (out / "metrics.jsonl").is_file() and (out / "metrics.jsonl").read_text().count("\n") >= 2
        ):
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "no metrics within 60 s"
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == EXIT_INTERRUPTED, err.decode()
    assert "continue with --resume" in err.decode()
    latest = json.loads((out / "checkpoints" / "latest.json").read_text())
    stopped_at = int(latest["update"])
    assert stopped_at >= 100
    # Resume to a near target: only --out, --resume and the new --updates.
    resume = [sys.executable, "-c", driver, "--out", str(out), "--resume", "--updates", str(stopped_at + 30)]
    done = subprocess.run(resume, cwd=ROOT, env=env, capture_output=True, timeout=120)
    assert done.returncode == EXIT_OK, done.stderr.decode()
    assert jsonl(out / "metrics.jsonl")[-1]["update"] == stopped_at + 30


def test_h2o_with_the_sim_only_baseline_end_to_end(small_logs: Path, tmp_path: Path) -> None:
    """The default command's shape, scaled down (the one test that runs the emulated robot): H2O from
    robot_rl.algos.make_algo, the SAC sim-only baseline in a second process, periodic and final evaluations
    on the emulated real robot through bridge and emulator, and the report comparing them with the
    behaviour policy."""
    out = tmp_path / "run"
    cfg = base_cfg(
        small_logs,
        out,
        updates=60,
        real_eval=True,
        baseline=True,
        eval_every=30,
        eval_episodes_real=1,
        eval_episodes_final=2,
        eval_max_episode_steps=20,
        hidden=(32, 32),
        sim_warmup_steps=256,
    )
    assert run_train(cfg) == EXIT_OK
    evals = [EvalResult.from_json_dict(e) for e in jsonl(out / "evals.jsonl")]
    real = sorted((e.policy, e.update, e.episodes) for e in evals if e.where == "real")
    assert real == [("behaviour", 0, 12), ("h2o", 30, 1), ("h2o", 60, 2), ("sac-sim-only", 60, 2)]
    assert all(e.max_episode_steps == 20 and max(e.lengths) <= 20 for e in evals)
    sim_evals = sorted((e.policy, e.update) for e in evals if e.where == "sim")
    assert sim_evals == [("h2o", 30), ("h2o", 60)]
    assert (out / "eval" / "evaluator.log").is_file()

    baseline = out / "baseline-sac-sim"
    assert (baseline / "policy.npz").is_file()
    base_config = json.loads((baseline / "config.json").read_text())
    assert (base_config["algo"], base_config["updates"], base_config["seed"]) == ("sac", 60, 0)
    assert base_config["hidden"] == [32, 32] and base_config["real_eval"] is False
    report = (out / "report.md").read_text()
    assert "sac-sim-only" in report and "behaviour" in report and "h2o" in report
