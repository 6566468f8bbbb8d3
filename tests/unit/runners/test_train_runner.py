"""`robot-rl train` runner: input checks, run-folder outputs, exact resume, SIGINT (tiny algorithm, no robot).

The algorithm is the tiny torch actor-critic of ``test_train_tiny_algo`` (a real Algo, fast); training
runs a few hundred updates on a small copy of calib/run1 with the in-process lockstep sim worker and
``--no-real-eval``, so each test takes seconds.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from test_train_tiny_algo import TinyActorCritic, tiny_factory

from robot_rl.cli import main as cli_main
from robot_rl.data.manifest import RunManifest
from robot_rl.data.reader import open_run
from robot_rl.data.writer import EpisodeWriter
from robot_rl.nets.numpy_policy import NumpyPolicy, load_npz
from robot_rl.runners.checkpoint import latest_checkpoint, load_checkpoint
from robot_rl.runners.evaluate import EvalResult
from robot_rl.runners.train import (
    EXIT_BAD_INPUT,
    EXIT_INTERRUPTED,
    EXIT_OK,
    Train,
    TrainInputError,
    merge_resume_config,
    run_train,
)
from robot_rl.schema import Episode, EpisodeMeta, FieldLayout, Source

ROOT = Path(__file__).resolve().parents[3]
RUN1 = ROOT / "calib" / "run1"


@pytest.fixture(scope="module")
def small_logs(run1_head: Callable[[int], Path]) -> Path:
    """The first 12 episodes of calib/run1 (about 900 transitions) under the same manifest."""
    return run1_head(12)


def make_cfg(logs: Path, out: Path, **kw: Any) -> Train:
    fields: dict[str, Any] = {
        "sim": "mujoco",
        "real_logs": logs,
        "out": out,
        "updates": 120,
        "real_eval": False,
        "baseline": False,
        "hidden": (16, 16),
        "eval_every": 60,
        "eval_episodes_sim": 2,
        "eval_max_episode_steps": 40,
        "checkpoint_every": 1000,
        "log_every": 20,
        "sim_warmup_steps": 40,
        "policy_refresh_every": 25,
        "sim_max_episode_steps": 50,
        "quiet": True,
    }
    fields.update(kw)
    return Train(**fields)


class Capture:
    """An AlgoFactory that remembers the algorithm it built last."""

    def __init__(self) -> None:
        self.algo: TinyActorCritic | None = None

    def __call__(self, name: str, **kw: Any) -> TinyActorCritic:
        self.algo = tiny_factory(name, **kw)
        return self.algo

    def actor(self) -> dict[str, torch.Tensor]:
        assert self.algo is not None
        return {k: v.clone() for k, v in self.algo.actor.state_dict().items()}


def jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def snapshot_tree(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


# --------------------------------------------------------------------------------------------------
# A run and what it writes.


def test_run_writes_the_agreed_files(small_logs: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert run_train(make_cfg(small_logs, out), Capture()) == EXIT_OK

    metrics = jsonl(out / "metrics.jsonl")
    assert [m["update"] for m in metrics] == [20, 40, 60, 80, 100, 120]
    for m in metrics:
        assert isinstance(m["wall_s"], float) and isinstance(m["sim_steps"], int)
        assert np.isfinite(m["loss/critic"])
    # 40 warm-up steps, then one sim step per update (UTD 1).
    assert [m["sim_steps"] for m in metrics] == [40 + u for u in (20, 40, 60, 80, 100, 120)]
    # 50-step sim episodes end within 160 steps: their returns are logged.
    assert any("train/episode_return_sim" in m for m in metrics)

    evals = [EvalResult.from_json_dict(e) for e in jsonl(out / "evals.jsonl")]
    behaviour = [e for e in evals if e.policy == "behaviour"]
    assert len(behaviour) == 1 and behaviour[0].where == "real" and behaviour[0].episodes == 12
    # The logs' episodes under the evaluations' 40-step cap: returns of their first 40 steps.
    logs_returns = [float(ep.reward[:40].sum()) for ep in open_run(small_logs).iter_episodes()]
    np.testing.assert_allclose(behaviour[0].returns, logs_returns)
    assert behaviour[0].max_episode_steps == 40
    sim_evals = [(e.update, e.episodes, e.max_episode_steps) for e in evals if e.where == "sim"]
    assert sim_evals == [(60, 2, 40), (120, 2, 40)]

    config = json.loads((out / "config.json").read_text())
    assert config["algo"] == "h2o" and config["robot"] == "quadruped" and config["updates"] == 120
    assert config["resolved"]["eval_max_episode_steps"] == 40
    assert config["resolved"]["sim_capacity"] == 10 * config["resolved"]["real_transitions"]
    assert config["provenance"]["calib_hash"] == open_run(small_logs).manifest.calib_hash

    ckpt = latest_checkpoint(out / "checkpoints")
    assert ckpt is not None and ckpt.name == "update-00000120"
    for name in ("algo.pt", "runner.pt", "state.json", "arrays.npz", "config.json", "provenance.json"):
        assert (ckpt / name).is_file(), name
    provenance = json.loads((ckpt / "provenance.json").read_text())
    manifest = RunManifest.from_json_dict(provenance["dataset_manifest"])
    assert manifest.robot == "quadruped" and manifest.calib_hash == provenance["calib_hash"] != ""
    assert provenance["software_version"] and len(provenance["dataset_hash"]) == 64

    weights = load_npz(out / "policy.npz")
    obs = np.zeros((1, 34), np.float32)
    policy = NumpyPolicy.from_weights(weights)
    assert policy.act(obs, deterministic=True).shape == (1, 8)
    assert any((out / "tb").iterdir())
    assert (out / "report.md").is_file() and (out / "curves.png").is_file()


def test_real_transitions_fill_the_real_buffer_with_clipped_actions(small_logs: Path, tmp_path: Path) -> None:
    from robot_rl.runners.train import Trainer, _Stop, prepare_run

    plan = prepare_run(make_cfg(small_logs, tmp_path / "run"))
    trainer = Trainer(plan, tiny_factory, _Stop())
    real = trainer.mixer.buffer(Source.REAL)
    n = sum(ep.n_steps for ep in plan.episodes)
    assert len(real) == n == trainer.n_real
    assert trainer.mixer.buffer(Source.SIM).capacity == 10 * n
    assert float(np.abs(real.action[:n]).max()) <= 1.0
    first = plan.episodes[0]
    np.testing.assert_array_equal(real.obs[: first.n_steps], first.obs[:-1])
    np.testing.assert_array_equal(real.next_obs[: first.n_steps], first.obs[1:])
    expected_std = np.concatenate([ep.obs[:-1] for ep in plan.episodes]).astype(np.float64).std(axis=0)
    np.testing.assert_allclose(trainer.real_obs_std, expected_std, rtol=1e-5)
    assert not (tmp_path / "run").exists()  # building a trainer writes nothing


def test_real_only_algorithm_collects_no_sim_data(small_logs: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert run_train(make_cfg(small_logs, out, algo="cql", updates=40, eval_every=40), Capture()) == EXIT_OK
    assert {m["sim_steps"] for m in jsonl(out / "metrics.jsonl")} == {0}


# --------------------------------------------------------------------------------------------------
# Exact resume and SIGINT.


def interrupt_at(update: int) -> Callable[[], None]:
    """Make the tiny algorithm send SIGINT to this process after ``update`` updates; returns the undo."""
    original = TinyActorCritic.update

    def update_then_interrupt(self: TinyActorCritic, batches: Any) -> dict[str, float]:
        metrics = original(self, batches)
        if self.updates == update:
            os.kill(os.getpid(), signal.SIGINT)
        return metrics

    TinyActorCritic.update = update_then_interrupt  # type: ignore[method-assign]

    def undo() -> None:
        TinyActorCritic.update = original  # type: ignore[method-assign]

    return undo


def test_interrupt_and_resume_equals_an_uninterrupted_run(small_logs: Path, tmp_path: Path) -> None:
    straight, parted = Capture(), Capture()
    kw = {"updates": 160, "eval_every": 40, "checkpoint_every": 1000}
    assert run_train(make_cfg(small_logs, tmp_path / "a", **kw), straight) == EXIT_OK

    undo = interrupt_at(70)  # mid log window, mid policy-refresh period, mid sim episode
    try:
        code = run_train(make_cfg(small_logs, tmp_path / "b", **kw), parted)
    finally:
        undo()
    assert code == EXIT_INTERRUPTED
    ckpt = latest_checkpoint(tmp_path / "b" / "checkpoints")
    assert ckpt is not None and load_checkpoint(ckpt).update == 70
    assert not (tmp_path / "b" / "policy.npz").exists()

    # Only --out and --resume: everything else comes from the run's config.
    assert run_train(Train(out=tmp_path / "b", resume=True), parted) == EXIT_OK

    a, b = straight.actor(), parted.actor()
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert (tmp_path / "a" / "policy.npz").read_bytes() == (tmp_path / "b" / "policy.npz").read_bytes()

    def without_wall(path: Path) -> list[dict[str, Any]]:
        return [{k: v for k, v in m.items() if k != "wall_s"} for m in jsonl(path)]

    assert without_wall(tmp_path / "a" / "metrics.jsonl") == without_wall(tmp_path / "b" / "metrics.jsonl")
    assert without_wall(tmp_path / "a" / "evals.jsonl") == without_wall(tmp_path / "b" / "evals.jsonl")


@pytest.mark.parametrize("backend", ["dmcontrol", "pybullet"])
def test_resume_is_exact_on_the_other_backends(small_logs: Path, tmp_path: Path, backend: str) -> None:
    straight, parted = Capture(), Capture()
    kw = {"sim": backend, "updates": 90, "eval_every": 1000, "eval_episodes_sim": 0}
    assert run_train(make_cfg(small_logs, tmp_path / "a", **kw), straight) == EXIT_OK
    undo = interrupt_at(45)
    try:
        assert run_train(make_cfg(small_logs, tmp_path / "b", **kw), parted) == EXIT_INTERRUPTED
    finally:
        undo()
    assert run_train(make_cfg(small_logs, tmp_path / "b", resume=True, **kw), parted) == EXIT_OK
    a, b = straight.actor(), parted.actor()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_with_more_updates_continues_a_finished_run(small_logs: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert run_train(make_cfg(small_logs, out, updates=40, eval_every=40), Capture()) == EXIT_OK
    assert run_train(Train(out=out, resume=True, updates=80), Capture()) == EXIT_OK
    assert [m["update"] for m in jsonl(out / "metrics.jsonl")] == [20, 40, 60, 80]
    assert json.loads((out / "config.json").read_text())["updates"] == 80
    # Fewer updates than the run has done: refused, nothing touched.
    before = snapshot_tree(out)
    assert run_train(Train(out=out, resume=True, updates=60), Capture()) == EXIT_BAD_INPUT
    assert snapshot_tree(out) == before


# --------------------------------------------------------------------------------------------------
# Bad input: exit 2, one clear line, nothing created or changed.


def write_run(path: Path, manifest: RunManifest, episodes: list[Episode]) -> Path:
    with EpisodeWriter(path, manifest) as writer:
        for ep in episodes:
            writer.write_episode(ep)
    return path


def fake_episode(robot: str, obs_dim: int, act_dim: int, rng: np.random.Generator, n: int = 10) -> Episode:
    term = np.zeros(n, bool)
    term[-1] = True
    return Episode(
        meta=EpisodeMeta(source=Source.REAL, robot=robot, task="ReachTask", control_dt_s=0.02),
        obs=rng.standard_normal((n + 1, obs_dim)).astype(np.float32),
        action=rng.uniform(-1, 1, (n, act_dim)).astype(np.float32),
        reward=rng.standard_normal(n),
        terminated=term,
        truncated=np.zeros(n, bool),
        t_ns=np.arange(n + 1, dtype=np.int64) * 20_000_000,
    )


def manipulator_logs(tmp_path: Path) -> Path:
    import sim
    from sim.env import env_layout

    env = sim.make_env("manipulator")
    lay = env_layout(env.robot, env.task)
    manifest = RunManifest(
        robot="manipulator",
        task="ReachTask",
        control_dt_s=0.02,
        obs_layout=FieldLayout(lay.obs_names, lay.obs_units),
        action_layout=FieldLayout(lay.action_names, lay.action_units),
    )
    rng = np.random.default_rng(0)
    eps = [fake_episode("manipulator", len(lay.obs_names), len(lay.action_names), rng) for _ in range(3)]
    return write_run(tmp_path / "arm-logs", manifest, eps)


def refused(cfg: Train, capsys: pytest.CaptureFixture[str]) -> str:
    assert run_train(cfg, Capture()) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert err.startswith("robot-rl train: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    return err


def test_missing_logs_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = refused(make_cfg(tmp_path / "nope", tmp_path / "run"), capsys)
    assert "real_logs" in err and str(tmp_path / "nope") in err and "does not exist" in err
    assert not (tmp_path / "run").exists()


def test_empty_logs_folder_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").mkdir()
    err = refused(make_cfg(tmp_path / "empty", tmp_path / "run"), capsys)
    assert "real_logs" in err and "manifest.json" in err
    assert not (tmp_path / "run").exists()


def test_logs_without_episodes_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_run(tmp_path / "no-eps", open_run(RUN1).manifest, [])
    err = refused(make_cfg(tmp_path / "no-eps", tmp_path / "run"), capsys)
    assert "holds no real episodes" in err
    assert not (tmp_path / "run").exists()


def test_corrupt_logs_are_refused(
    small_logs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    logs = tmp_path / "corrupt"
    shutil.copytree(small_logs, logs)
    chunk = sorted((logs / "episodes").glob("*.parquet"))[0]
    data = chunk.read_bytes()
    chunk.write_bytes(data[: len(data) // 2] + b"\0" * 64 + data[len(data) // 2 + 64 :])
    err = refused(make_cfg(logs, tmp_path / "run"), capsys)
    assert "real_logs" in err and str(logs) in err
    assert not (tmp_path / "run").exists()


def test_logs_of_another_robot_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = refused(make_cfg(manipulator_logs(tmp_path), tmp_path / "run", robot="quadruped"), capsys)
    assert "'manipulator'" in err and "'quadruped'" in err
    assert not (tmp_path / "run").exists()


def test_a_layout_that_differs_is_refused_naming_the_element(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    m = open_run(RUN1).manifest
    names = list(m.obs_layout.names)
    names[9] = "command_vy_mps"
    manifest = dataclasses.replace(m, obs_layout=FieldLayout(tuple(names), m.obs_layout.units))
    rng = np.random.default_rng(1)
    ep = fake_episode("quadruped", 34, 8, rng)
    ep = dataclasses.replace(ep, meta=dataclasses.replace(ep.meta, task="ForwardVelocityTask"))
    err = refused(make_cfg(write_run(tmp_path / "logs", manifest, [ep]), tmp_path / "run"), capsys)
    assert "element 9" in err and "'command_vy_mps'" in err and "'command_vx_mps'" in err
    assert not (tmp_path / "run").exists()


def test_real_evaluation_of_a_robot_without_a_real_env_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    err = refused(make_cfg(manipulator_logs(tmp_path), tmp_path / "run", real_eval=True), capsys)
    assert "--no-real-eval" in err
    assert not (tmp_path / "run").exists()


def test_unknown_sim_is_refused_by_the_cli(
    small_logs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The config's __post_init__ refuses it while tyro parses; tyro prints the message and exits 2.
    with pytest.raises(SystemExit) as exc:
        cli_main(["train", "--sim", "gazebo", "--real-logs", str(small_logs), "--out", str(tmp_path / "r")])
    assert exc.value.code == EXIT_BAD_INPUT
    err = " ".join(capsys.readouterr().err.split())
    assert "sim: unknown simulator 'gazebo'; known: mujoco, dmcontrol, pybullet" in err
    assert "Traceback" not in err
    assert not (tmp_path / "r").exists()


def test_config_validation_names_the_field() -> None:
    with pytest.raises(TrainInputError, match=r"^algo: unknown algorithm 'ppo'; known: h2o, sac"):
        Train(sim="mujoco", real_logs=RUN1, algo="ppo")
    with pytest.raises(TrainInputError, match=r"^real_logs: --real-logs is required"):
        Train(sim="mujoco")
    with pytest.raises(TrainInputError, match=r"^updates: expected >= 1"):
        Train(sim="mujoco", real_logs=RUN1, updates=0)
    with pytest.raises(TrainInputError, match=r"^out: --resume needs --out"):
        Train(resume=True)


def test_an_existing_run_folder_is_never_overwritten(
    small_logs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    before = snapshot_tree(out)
    err = refused(make_cfg(small_logs, out), capsys)
    assert "already exists and is not empty" in err and "--resume" in err
    assert snapshot_tree(out) == before


def test_resume_with_a_different_seed_is_refused(
    small_logs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    assert run_train(make_cfg(small_logs, out, updates=20, eval_every=20), Capture()) == EXIT_OK
    before = snapshot_tree(out)
    err = refused(make_cfg(small_logs, out, updates=20, eval_every=20, resume=True, seed=7), capsys)
    assert err.startswith("robot-rl train: error: seed: ") and "0" in err and "7" in err
    assert snapshot_tree(out) == before


def test_resume_of_a_folder_that_is_not_a_run_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "x").mkdir()
    err = refused(Train(out=tmp_path / "x", resume=True), capsys)
    assert "nothing to resume" in err


def test_merge_resume_config_rules() -> None:
    saved = Train(sim="dmcontrol", real_logs=RUN1, algo="sac", seed=3, updates=500, eval_every=50)
    # Left at the defaults: the run's own values.
    merged = merge_resume_config(Train(out=Path("r"), resume=True), saved)
    assert (merged.sim, merged.algo, merged.seed, merged.updates, merged.eval_every) == (
        "dmcontrol",
        "sac",
        3,
        500,
        50,
    )
    # Given and allowed to change: the command line wins.
    merged = merge_resume_config(Train(out=Path("r"), resume=True, updates=900, eval_every=10), saved)
    assert (merged.updates, merged.eval_every) == (900, 10)
    with pytest.raises(TrainInputError, match=r"^sim: .*'dmcontrol'.*'pybullet'"):
        merge_resume_config(Train(out=Path("r"), resume=True, sim="pybullet"), saved)


def test_checkpoints_keep_the_newest_and_leave_no_temporaries(small_logs: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    cfg = make_cfg(small_logs, out, updates=100, checkpoint_every=20, keep_checkpoints=2, eval_every=1000)
    assert run_train(cfg, Capture()) == EXIT_OK
    names = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert names == ["latest.json", "update-00000080", "update-00000100"]
    assert json.loads((out / "checkpoints" / "latest.json").read_text()) == {
        "update": 100,
        "dir": "update-00000100",
    }


def test_launch_file_for_another_backend_is_refused(
    small_logs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    topology = tmp_path / "t.toml"
    topology.write_text('[run]\nname = "x"\n[[sim_workers]]\nrobot = "quadruped"\nbackend = "pybullet"\n')
    err = refused(make_cfg(small_logs, tmp_path / "run", launch=topology), capsys)
    assert "launch: " in err and "'pybullet'" in err and "'mujoco'" in err
    assert not (tmp_path / "run").exists()


def test_train_is_a_cli_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main([]) == 2
    listing = capsys.readouterr().out
    assert "  train " in listing and "H2O by default" in listing
    with pytest.raises(SystemExit) as exc:
        cli_main(["train", "--help"])
    assert exc.value.code == 0
    helptext = capsys.readouterr().out
    for option in (
        "--sim",
        "--real-logs",
        "--algo",
        "--updates",
        "--resume",
        "--no-real-eval",
        "--no-baseline",
    ):
        assert option in helptext, option


class InterruptAt:
    """An AlgoFactory around robot_rl.algos.make_algo whose algorithm sends this process SIGINT after
    ``at`` updates (None: never); remembers the algorithm."""

    def __init__(self, at: int | None) -> None:
        self.at = at
        self.algo: Any = None

    def __call__(self, name: str, **kw: Any) -> Any:
        from robot_rl.algos import make_algo

        algo = make_algo(name, **kw)
        self.algo = algo
        original, at = algo.update, self.at
        count = [0]

        def update(batches: Any) -> dict[str, float]:
            metrics = original(batches)
            count[0] += 1
            if count[0] == at:
                os.kill(os.getpid(), signal.SIGINT)
            return metrics

        algo.update = update
        return algo


def test_h2o_resume_is_bitwise_exact(small_logs: Path, tmp_path: Path) -> None:
    """The same check with the real H2O (classifiers, temperature, its own generator) from make_algo."""
    kw = {
        "updates": 50,
        "hidden": (32, 32),
        "sim_warmup_steps": 256,
        "eval_every": 1000,
        "eval_episodes_sim": 0,
    }
    straight, first, second = InterruptAt(None), InterruptAt(23), InterruptAt(None)
    assert run_train(make_cfg(small_logs, tmp_path / "a", **kw), straight) == EXIT_OK
    assert run_train(make_cfg(small_logs, tmp_path / "b", **kw), first) == EXIT_INTERRUPTED
    assert run_train(Train(out=tmp_path / "b", resume=True), second) == EXIT_OK
    a, b = straight.algo.state_dict(), second.algo.state_dict()

    def flat(state: Any, prefix: str = "") -> dict[str, Any]:
        if isinstance(state, dict):
            return {k: v for key, sub in state.items() for k, v in flat(sub, f"{prefix}{key}/").items()}
        return {prefix: state}

    fa, fb = flat(a), flat(b)
    assert fa.keys() == fb.keys()
    for key, value in fa.items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(value, fb[key]), key
        else:
            assert value == fb[key], key
    assert (tmp_path / "a" / "policy.npz").read_bytes() == (tmp_path / "b" / "policy.npz").read_bytes()
