"""``robot-rl train``: learn a policy for the real robot from its logs and an imperfect simulator.

    robot-rl train --sim mujoco --real-logs calib/run1              # H2O, report in runs/<stamp>-h2o-mujoco/
    robot-rl train --resume --out runs/<stamp>-h2o-mujoco           # continue an interrupted run exactly
    python -m robot_rl.runners.train ...                            # the same, without the CLI dispatcher

What a run does, in order (docs/train.md has the details):

1. Checks its input before it creates anything: the logs open and hold real episodes, their robot is
   one the simulator has (and ``--robot`` if given), their observation and action layouts equal the
   simulator's element by element, ``--out`` is new or empty (or, with ``--resume``, a run whose
   config agrees with the command line). Bad input: one line on stderr, exit code 2, nothing written.
2. Loads every real transition into the REAL replay buffer (actions clipped to [-1, 1]); the SIM
   buffer is a FIFO of 10 x N_real transitions. Writes the behaviour policy's returns (the logs' own
   episodes) to ``evals.jsonl`` as policy ``"behaviour"``.
3. Trains for ``--updates`` gradient updates. Algorithms that learn from sim data (h2o, naive-mix,
   sac) get one sim env step per update (UTD 1) from a sim worker in lockstep over ``inproc://``
   (:mod:`robot_rl.runners.sim_collect`), acting with a policy snapshot refreshed every
   ``--policy-refresh-every`` updates; ``--launch FILE`` uses external sim workers instead.
4. Every ``--eval-every`` updates: a deterministic evaluation in sim (in this process) and one on
   the emulated real robot (the :class:`robot_rl.runners.evaluate.RealEvaluator` process, through
   firmware emulator and bridge, asynchronous: training goes on while the robot runs in real time).
5. Checkpoints every ``--checkpoint-every`` updates, at the end and on Ctrl-C (exit 130).
6. At the end: ``policy.npz``, a final evaluation on the real robot with ``--eval-episodes-final``
   episodes, the SAC sim-only baseline's final policy on the real robot (the baseline trains in a
   second process from the start), and ``report.md`` + ``curves.png``.

Module-level imports stay light (``robot-rl --help`` imports this module): numpy, torch, MuJoCo and
pyzmq are imported where they are used.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import json
import logging
import math
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

    from robot_rl.algos.base import Algo, AlgoFactory
    from robot_rl.bus.messages import PolicyWeights
    from robot_rl.data.manifest import RunManifest
    from robot_rl.data.replay import SourceMixer
    from robot_rl.runners.evaluate import EvalResult, RealEvaluator
    from robot_rl.runners.sim_collect import SimCollector
    from robot_rl.schema import Episode

log = logging.getLogger("robot_rl.train")

KNOWN_SIMS = ("mujoco", "dmcontrol", "pybullet")
KNOWN_ALGOS = ("h2o", "sac", "cql", "iql", "naive-mix")
BASELINE_ALGO = "sac"
BASELINE_TAG = "sac-sim-only"
BASELINE_DIR = "baseline-sac-sim"
BEHAVIOUR_TAG = "behaviour"
SIM_CAPACITY_FACTOR = 10
"""SIM FIFO capacity = this x the number of real transitions (ALGORITHMS.md 1.3)."""

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130

METRICS_FILE = "metrics.jsonl"
EVALS_FILE = "evals.jsonl"
CONFIG_FILE = "config.json"
POLICY_FILE = "policy.npz"
ONNX_FILE = "policy.onnx"
CHECKPOINTS_DIR = "checkpoints"

CONTROL_DT_S_MAX = 0.05
"""Upper bound of a control period, for the longest wait on real-robot evaluations."""


class TrainInputError(ValueError):
    """Bad input to ``robot-rl train``, found before anything is created or trained."""


@dataclass(frozen=True)
class Train:
    """Train a policy for the real robot from its logs and a simulator (H2O by default)."""

    sim: str | None = None
    """Simulator backend: mujoco, dmcontrol or pybullet (required, unless --resume takes it from the run)."""
    real_logs: Path | None = None
    """Run folder of real-robot logs, e.g. calib/run1 (required, unless --resume takes it from the run)."""
    algo: str = "h2o"
    """Algorithm: h2o, naive-mix (H2O with w = 1, no regulariser), sac (sim only), cql or iql (real only)."""
    robot: str | None = None
    """Robot; default: the logs' robot. Given, it must be the logs' robot."""
    updates: int = 40_000
    """Gradient updates (one sim step each, UTD 1). With --resume and left at the default: the run's own.
    The default finishes in about 10 minutes on 2 cores (with the baseline and the real evaluations)."""
    seed: int = 0
    """Seed of the networks, the batches, the simulator and the evaluations."""
    out: Path | None = None
    """Run folder; default runs/<UTC timestamp>-<algo>-<sim>. Must be new or empty (unless --resume)."""
    resume: bool = False
    """Continue the run in --out from its latest checkpoint (same result as an uninterrupted run)."""
    eval_every: int = 10_000
    """Updates between two evaluations (in sim, and on the emulated real robot)."""
    eval_episodes_real: int = 5
    """Episodes per periodic evaluation on the emulated real robot."""
    eval_episodes_sim: int = 5
    """Episodes per evaluation in the simulator."""
    eval_episodes_final: int = 10
    """Episodes of the final evaluation of the saved policy (and of the baseline) on the real robot."""
    eval_max_episode_steps: int | None = None
    """Episode cap of every evaluation; default: the logs' cap (their manifest's max_episode_steps), so
    returns compare with the behaviour policy's."""
    bridge_bus: str | None = None
    """Bus base address of an already running bridge to evaluate on; default: start emulator + bridge."""
    real_eval: bool = True
    """Evaluate on the emulated real robot (--no-real-eval: in sim only, for tests and CI)."""
    launch: Path | None = None
    """Topology file (launch/*.toml) whose [[sim_workers]] collect the sim rollouts over its ipc/tcp bus,
    instead of the in-process lockstep worker. Not deterministic; resume is then not exact."""
    baseline: bool = True
    """Also train the SAC sim-only baseline (same updates, seed, sizes) in a second process and evaluate
    it on the real robot (only for algorithms that use both logs and sim: h2o, naive-mix)."""
    hidden: tuple[int, ...] = (128, 128)
    """Hidden layer widths of every network (actor, critics, H2O's classifiers): ALGORITHMS.md's CPU-scale
    128-128, about 2.5x the update rate of 256-256."""
    init_alpha: float = 0.1
    """Initial SAC temperature alpha_0 (auto-tuned from there) of every algorithm that has one. 0.1, not the
    reference's 1.0 [choice]: at alpha 1 the quadruped's entropy bonus swamps its reward for the first
    tens of thousands of updates (Stable-Baselines3 SAC needed the same, ent_coef="auto_0.1")."""
    checkpoint_every: int = 5_000
    """Updates between two checkpoints (one is also written at the end and on Ctrl-C)."""
    keep_checkpoints: int = 2
    """Checkpoint folders kept (the newest ones)."""
    policy_refresh_every: int = 1_000
    """Updates between two policy snapshots sent to the sim worker (the reference collects per epoch)."""
    sim_warmup_steps: int = 1_000
    """Sim steps collected with the initial policy before the first update."""
    sim_profile: str = "nominal"
    """Dynamics profile of the training simulator (a name in sim/profiles/ or a TOML path)."""
    sim_max_episode_steps: int | None = None
    """Episode cap of the training simulator (truncated); default: the task's own."""
    obs_noise_sigma: float = 0.0
    """Train for policy smoothing (robot-rl certify): N(0, sigma^2 I) noise, fresh per sampled transition,
    added to obs and next_obs of every training batch (real and sim) before any network sees it (ALGORITHMS.md
    4.1; robot_rl.certify.smoothing.augment_transitions). Collection and evaluation act on clean observations.
    0: no noise."""
    log_every: int = 100
    """Updates between two lines of metrics.jsonl (each line averages the metrics since the last)."""
    quiet: bool = False
    """No progress bar (log lines only)."""

    def __post_init__(self) -> None:
        if self.sim is not None and self.sim not in KNOWN_SIMS:
            raise TrainInputError(f"sim: unknown simulator {self.sim!r}; known: {', '.join(KNOWN_SIMS)}")
        if self.algo not in KNOWN_ALGOS:
            raise TrainInputError(f"algo: unknown algorithm {self.algo!r}; known: {', '.join(KNOWN_ALGOS)}")
        if not self.resume and (self.sim is None or self.real_logs is None):
            name = "sim" if self.sim is None else "real_logs"
            raise TrainInputError(f"{name}: --{name.replace('_', '-')} is required (unless --resume)")
        if self.resume and self.out is None:
            raise TrainInputError("out: --resume needs --out RUN_FOLDER (the run to continue)")
        for name in ("updates", "eval_every", "checkpoint_every", "policy_refresh_every", "log_every"):
            if getattr(self, name) < 1:
                raise TrainInputError(f"{name}: expected >= 1, got {getattr(self, name)}")
        for name in ("eval_episodes_real", "eval_episodes_sim", "eval_episodes_final", "sim_warmup_steps"):
            if getattr(self, name) < 0:
                raise TrainInputError(f"{name}: expected >= 0, got {getattr(self, name)}")
        if self.keep_checkpoints < 1:
            raise TrainInputError(f"keep_checkpoints: expected >= 1, got {self.keep_checkpoints}")
        for name in ("eval_max_episode_steps", "sim_max_episode_steps"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise TrainInputError(f"{name}: expected >= 1, got {value}")
        if not self.init_alpha > 0.0:
            raise TrainInputError(f"init_alpha: expected > 0, got {self.init_alpha}")
        if not (math.isfinite(self.obs_noise_sigma) and self.obs_noise_sigma >= 0.0):
            raise TrainInputError(f"obs_noise_sigma: expected finite and >= 0, got {self.obs_noise_sigma}")
        if not self.hidden or any(h < 1 for h in self.hidden):
            raise TrainInputError(f"hidden: expected one or more widths >= 1, got {self.hidden}")
        if self.bridge_bus is not None and not self.real_eval:
            raise TrainInputError(
                "bridge_bus: given together with --no-real-eval, which evaluates nowhere real"
            )

    def execute(self) -> int:
        """Train; 0 done, 2 bad input (nothing written), 130 interrupted (checkpoint written), 1 failed."""
        return run_train(self)


# --------------------------------------------------------------------------------------------------
# Config for --resume: which fields must agree with the run's own, and which may change.

RESUME_MUST_MATCH = (
    "sim",
    "real_logs",
    "algo",
    "robot",
    "seed",
    "hidden",
    "init_alpha",
    "policy_refresh_every",
    "sim_warmup_steps",
    "sim_profile",
    "sim_max_episode_steps",
    "launch",
    "log_every",
    "obs_noise_sigma",
)
"""Fields that decide what is trained: a resumed run must have the same ones (or leave them unset)."""
RESUME_FROM_CLI = ("bridge_bus", "quiet", "resume", "out")
"""Fields that only say how to run this time: always taken from the command line."""


def config_to_json(cfg: Train) -> dict[str, Any]:
    """The config as a JSON object (paths as strings, tuples as lists)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if isinstance(value, Path):
            value = str(value)
        elif isinstance(value, tuple):
            value = list(value)
        out[f.name] = value
    return out


def config_from_json(obj: Mapping[str, Any]) -> Train:
    """Inverse of :func:`config_to_json` (unknown keys, e.g. provenance, are ignored)."""
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(Train):
        if f.name not in obj:
            continue
        value = obj[f.name]
        if f.name in ("real_logs", "out", "launch") and value is not None:
            value = Path(value)
        elif f.name == "hidden":
            value = tuple(int(v) for v in value)
        kwargs[f.name] = value
    return Train(**kwargs)


def merge_resume_config(cli: Train, saved: Train) -> Train:
    """The config of a resumed run: a field left at its default takes the run's value; a field given on
    the command line must equal the run's if it decides what is trained (TrainInputError naming it),
    otherwise it replaces the run's (more --updates, other evaluation settings)."""
    defaults = Train(resume=True, out=cli.out)
    merged: dict[str, Any] = {}
    for f in dataclasses.fields(Train):
        name = f.name
        given, default, theirs = getattr(cli, name), getattr(defaults, name), getattr(saved, name)
        if name in RESUME_FROM_CLI:
            merged[name] = given
        elif given in (theirs, default):
            merged[name] = theirs
        elif name in RESUME_MUST_MATCH:
            if name == "real_logs" and Path(given).resolve() == Path(theirs).resolve():
                merged[name] = theirs
                continue
            raise TrainInputError(
                f"{name}: the run in {cli.out} was trained with {name} = {theirs!r}, the command line "
                f"says {given!r}; resume with the same value (or leave it out)"
            )
        else:
            merged[name] = given
    return Train(**merged)


# --------------------------------------------------------------------------------------------------
# Input checks (no side effects).


@dataclass(frozen=True)
class RunPlan:
    """Everything :func:`prepare_run` found out about a run before anything is written."""

    cfg: Train
    """The resolved config (with --resume: merged with the run's own)."""
    run_dir: Path
    robot: str
    task: str
    manifest: RunManifest
    episodes: list[Episode]
    """The logs' real episodes."""
    dataset_hash: str
    """sha256 of the logs' manifest and episode files (the dataset a checkpoint was trained on)."""
    eval_cap: int
    """Episode cap of every evaluation (--eval-max-episode-steps or the logs' cap)."""
    logs_cap: int | None
    """The logs' own episode cap (manifest extra max_episode_steps), if recorded."""
    resume_from: Path | None
    """Checkpoint folder to continue from (None: a fresh run)."""


def dataset_fingerprint(run_dir: Path) -> str:
    """sha256 over the logs' manifest and every file under episodes/ (sorted by path)."""
    h = hashlib.sha256()
    files = [run_dir / "manifest.json", *sorted(p for p in (run_dir / "episodes").rglob("*") if p.is_file())]
    for path in files:
        h.update(str(path.relative_to(run_dir)).encode() + b"\0")
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def _default_out(cfg: Train) -> Path:
    stamp = _dt.datetime.now(_dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    return Path("runs") / f"{stamp}-{cfg.algo}-{cfg.sim}"


def _check_layout(
    what: str, logs: tuple[tuple[str, str], ...], simulator: tuple[tuple[str, str], ...]
) -> None:
    from robot_rl.schema import layout_difference

    problem = layout_difference(what, logs, "the logs", simulator, "the simulator")
    if problem is not None:
        raise TrainInputError(f"real_logs: {problem}")


def prepare_run(cfg: Train) -> RunPlan:
    """Check the input of ``cfg`` and resolve its defaults; TrainInputError (nothing written) on bad input."""
    from robot_rl.data.errors import LogFormatError
    from robot_rl.data.reader import open_run
    from robot_rl.runners.checkpoint import latest_checkpoint
    from robot_rl.schema import SchemaError, Source

    resume_from: Path | None = None
    if cfg.resume:
        assert cfg.out is not None
        config_path = cfg.out / CONFIG_FILE
        if not config_path.is_file():
            raise TrainInputError(
                f"out: {cfg.out} is not a training run (no {CONFIG_FILE}); nothing to resume"
            )
        try:
            saved = config_from_json(json.loads(config_path.read_text(encoding="utf-8")))
        except (ValueError, TypeError) as err:
            raise TrainInputError(f"out: {config_path} is not a valid run config: {err}") from None
        run_dir = cfg.out
        cfg = merge_resume_config(cfg, saved)
        resume_from = latest_checkpoint(run_dir / CHECKPOINTS_DIR)
        if resume_from is None:
            raise TrainInputError(f"out: {run_dir} has no complete checkpoint to resume from")
        done = json.loads((resume_from / "state.json").read_text(encoding="utf-8"))["update"]
        if cfg.updates < done:
            raise TrainInputError(
                f"updates: the run in {run_dir} has done {done} updates already; --updates must be >= {done}"
            )
    else:
        run_dir = cfg.out if cfg.out is not None else _default_out(cfg)
        if run_dir.exists() and (not run_dir.is_dir() or any(run_dir.iterdir())):
            raise TrainInputError(
                f"out: {run_dir} already exists and is not empty; choose a new folder, or continue that run "
                "with --resume"
            )
    assert cfg.sim is not None and cfg.real_logs is not None

    logs = cfg.real_logs
    if not logs.exists():
        raise TrainInputError(f"real_logs: {logs} does not exist")
    try:
        reader = open_run(logs)
        episodes = reader.load_episodes(sources=[Source.REAL])
    except (LogFormatError, SchemaError, OSError) as err:
        raise TrainInputError(f"real_logs: {logs} is not a readable log run: {err}") from None
    except Exception as err:  # pyarrow raises its own types on a damaged Parquet file
        raise TrainInputError(f"real_logs: {logs} is corrupt: {type(err).__name__}: {err}") from None
    if not episodes:
        raise TrainInputError(f"real_logs: {logs} holds no real episodes (source 'real')")
    manifest = reader.manifest

    from sim.env import env_layout
    from sim.robots import ROBOTS
    from sim.tasks import default_task

    robot = manifest.robot
    if cfg.robot is not None and cfg.robot != robot:
        raise TrainInputError(
            f"robot: the logs in {logs} are of robot {robot!r}, not {cfg.robot!r}; "
            "train on logs of the robot you simulate"
        )
    if robot not in ROBOTS:
        raise TrainInputError(
            f"real_logs: the logs are of robot {robot!r}, which the simulator does not have "
            f"(known: {', '.join(sorted(ROBOTS))})"
        )
    task = default_task(ROBOTS[robot])
    lay = env_layout(ROBOTS[robot], task)
    _check_layout(
        "observation",
        tuple(zip(manifest.obs_layout.names, manifest.obs_layout.units, strict=True)),
        tuple(zip(lay.obs_names, lay.obs_units, strict=True)),
    )
    _check_layout(
        "action",
        tuple(zip(manifest.action_layout.names, manifest.action_layout.units, strict=True)),
        tuple(zip(lay.action_names, lay.action_units, strict=True)),
    )
    if manifest.task and manifest.task != type(task).__name__:
        raise TrainInputError(
            f"real_logs: the logs are of task {manifest.task!r}, the simulator runs {type(task).__name__!r}"
        )

    if cfg.real_eval:
        from robot_rl.envs import REAL_ENV_IDS

        if robot not in REAL_ENV_IDS:
            raise TrainInputError(
                f"real_eval: the {robot} has no real-robot environment to evaluate on "
                f"(real robots: {', '.join(REAL_ENV_IDS)}); pass --no-real-eval"
            )
    if cfg.launch is not None:
        from robot_rl.runners.sim_collect import load_worker_topology

        try:
            load_worker_topology(cfg.launch, robot, cfg.sim)
        except (ValueError, OSError) as err:
            raise TrainInputError(f"launch: {err}") from None

    logs_cap: int | None = None
    raw_cap = manifest.extra.get("max_episode_steps")
    if raw_cap is not None and raw_cap.isdigit() and int(raw_cap) > 0:
        logs_cap = int(raw_cap)
    eval_cap = cfg.eval_max_episode_steps or logs_cap or task.max_episode_steps

    dataset_hash = dataset_fingerprint(logs)
    if resume_from is not None:
        provenance = json.loads((resume_from / "provenance.json").read_text(encoding="utf-8"))
        if provenance.get("dataset_hash") != dataset_hash:
            raise TrainInputError(
                f"real_logs: {logs} changed since the run was trained on it (dataset hash "
                f"{provenance.get('dataset_hash', '?')[:12]}..., now {dataset_hash[:12]}...); "
                "resume needs the same logs"
            )
    resolved = dataclasses.replace(cfg, robot=robot, out=run_dir)
    return RunPlan(
        cfg=resolved,
        run_dir=run_dir,
        robot=robot,
        task=type(task).__name__,
        manifest=manifest,
        episodes=episodes,
        dataset_hash=dataset_hash,
        eval_cap=eval_cap,
        logs_cap=logs_cap,
        resume_from=resume_from,
    )


# --------------------------------------------------------------------------------------------------
# Evaluation records.


def start_real_evaluator(plan: RunPlan, seed: int) -> RealEvaluator:
    """The background evaluator on the emulated real robot (or on --bridge-bus), started and ready;
    :class:`robot_rl.runners.evaluate.EvaluatorError` if the rig does not come up."""
    from robot_rl.runners.evaluate import RealEvaluator

    cfg = plan.cfg
    evaluator = RealEvaluator(
        plan.robot,
        episodes=max(1, cfg.eval_episodes_real),
        max_episode_steps=plan.eval_cap,
        seed=seed,
        bridge_bus=cfg.bridge_bus,
        log_dir=(plan.run_dir / "eval").absolute(),  # the evaluator child runs in the repository root
    )
    evaluator.start(wait=True)
    return evaluator


# --------------------------------------------------------------------------------------------------
# The run.


class _Stop:
    """SIGINT/SIGTERM -> stop at the next update boundary (a second Ctrl-C stops waiting for evaluations)."""

    def __init__(self) -> None:
        self.reason = ""
        self.count = 0

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.reason = signal.Signals(signum).name
        self.count += 1


class _Jsonl:
    """An append-only JSON-lines file, flushed per line."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._f = open(path, "a", encoding="utf-8")  # noqa: SIM115 -- closed by close()

    def write(self, obj: Mapping[str, Any]) -> None:
        self._f.write(json.dumps(obj) + "\n")
        self._f.flush()

    def close(self) -> None:
        self._f.close()


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Every complete JSON line of ``path`` (a torn last line is skipped); [] if there is no file."""
    if not path.is_file():
        return []
    out: list[dict[str, Any]] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def _rewrite_jsonl(path: Path, keep: Callable[[dict[str, Any]], bool]) -> None:
    lines = [obj for obj in read_jsonl(path) if keep(obj)]
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for obj in lines:
            f.write(json.dumps(obj) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _rng_seeds(seed: int) -> dict[str, int]:
    """Independent seeds for the run's random streams, derived from --seed."""
    import numpy as np

    names = ("batches", "sim", "eval_sim", "eval_real")
    children = np.random.SeedSequence(seed).spawn(len(names))
    return {n: int(c.generate_state(1)[0]) for n, c in zip(names, children, strict=True)}


class Trainer:
    """One training run (module docstring). Built by :func:`run_train` after :func:`prepare_run`."""

    def __init__(self, plan: RunPlan, algo_factory: AlgoFactory, stop: _Stop) -> None:
        import numpy as np
        import torch

        from robot_rl.data.replay import SourceMixer
        from robot_rl.schema import Source, episode_transitions

        self.plan = plan
        self.cfg = cfg = plan.cfg
        self.run_dir = plan.run_dir
        self.stop = stop
        self.seeds = _rng_seeds(cfg.seed)
        torch.manual_seed(cfg.seed)
        self.rng = np.random.default_rng(self.seeds["batches"])

        ep0 = plan.episodes[0]
        self.obs_dim, self.act_dim = ep0.obs_dim, ep0.act_dim
        real = [episode_transitions(ep) for ep in plan.episodes]
        n_real = sum(int(b.reward.shape[0]) for b in real)
        self.n_real = n_real
        obs_real = np.concatenate([b.obs for b in real]).astype(np.float64)
        self.real_obs_std = obs_real.std(axis=0).astype(np.float32)

        assert cfg.algo is not None
        self.algo: Algo = algo_factory(
            cfg.algo,
            obs_dim=self.obs_dim,
            act_dim=self.act_dim,
            seed=cfg.seed,
            real_obs_std=self.real_obs_std if cfg.algo in ("h2o", "naive-mix") else None,
            hidden=tuple(cfg.hidden),
            init_log_alpha=math.log(cfg.init_alpha),
        )
        sources = {spec.source for spec in self.algo.batch_spec.values()}
        unknown = sources - {Source.REAL, Source.SIM}
        if unknown:
            raise TrainInputError(
                f"algo: {cfg.algo} samples from {sorted(unknown)}, which train does not provide"
            )
        capacities: dict[Source, int] = {Source.REAL: n_real}
        if Source.SIM in sources:
            capacities[Source.SIM] = SIM_CAPACITY_FACTOR * n_real
        self.mixer: SourceMixer = SourceMixer(self.obs_dim, self.act_dim, capacities)
        from robot_rl.schema import TransitionBatch

        for b in real:
            clipped = TransitionBatch(
                obs=b.obs,
                action=np.clip(b.action, -1.0, 1.0).astype(np.float32),
                reward=b.reward,
                next_obs=b.next_obs,
                terminated=b.terminated,
                truncated=b.truncated,
            )
            self.mixer.add(Source.REAL, clipped, -1)
        self.sim_source = Source.SIM in sources
        self.collector: SimCollector | None = None
        self.ctx: Any = None
        self.update = 0
        self.version = 0
        self.wall_before = 0.0
        self.t_start = time.monotonic()
        self.sums: dict[str, list[float]] = {}
        self.sim_returns: list[tuple[float, int]] = []
        self.latest: dict[str, float] = {}
        self.pending_real: dict[str, dict[str, Any]] = {}
        """"<tag>@<update>" -> {"tag", "update", "episodes", "weights"}: submitted, no result yet."""
        self.done_evals: set[tuple[str, str, int]] = set()
        self.evaluator: RealEvaluator | None = None
        self._skipped_seen = 0
        self.real_eval_failed = ""
        self.baseline_proc: subprocess.Popen[bytes] | None = None
        self.tb: Any = None
        self.metrics_out: _Jsonl | None = None
        self.evals_out: _Jsonl | None = None

    # --- state --------------------------------------------------------------------------------

    @property
    def wall_s(self) -> float:
        return self.wall_before + (time.monotonic() - self.t_start)

    def provenance(self) -> dict[str, Any]:
        import robot_rl

        m = self.plan.manifest
        return {
            "software_version": robot_rl.__version__,
            "calib_hash": m.calib_hash,
            "dataset": str(self.cfg.real_logs),
            "dataset_hash": self.plan.dataset_hash,
            "dataset_manifest": m.to_json_dict(),
            "real_transitions": self.n_real,
            "real_episodes": len(self.plan.episodes),
            "python": sys.version.split()[0],
        }

    def write_config(self) -> None:
        """``config.json``: the resolved config, its provenance and the budgets spent so far."""
        from robot_rl.runners.checkpoint import write_json_atomic
        from robot_rl.schema import Source

        obj = {
            **self.config_json(),
            "wall_s": round(self.wall_s, 1),
            "updates_done": self.update,
            "sim_steps": self.mixer.buffer(Source.SIM).added if self.sim_source else 0,
            "provenance": self.provenance(),
        }
        if self.real_eval_failed:
            obj["real_eval_error"] = self.real_eval_failed
        write_json_atomic(self.run_dir / CONFIG_FILE, obj)

    def config_json(self) -> dict[str, Any]:
        obj = config_to_json(self.cfg)
        obj["torch_threads"] = 1
        obj["resolved"] = {
            "eval_max_episode_steps": self.plan.eval_cap,
            "logs_max_episode_steps": self.plan.logs_cap,
            "task": self.plan.task,
            "sim_capacity": SIM_CAPACITY_FACTOR * self.n_real if self.sim_source else 0,
            "real_transitions": self.n_real,
            "utd": 1,
            "torch_threads": 1,
            "deterministic_collection": self.cfg.launch is None,
        }
        return obj

    def save_checkpoint(self) -> Path:
        from robot_rl.runners.checkpoint import buffer_arrays, save_checkpoint
        from robot_rl.runners.sim_collect import weights_to_arrays
        from robot_rl.schema import Source

        arrays: dict[str, np.ndarray] = {}
        buffers: dict[str, Any] = {}
        if self.sim_source:
            counters, buf_arrays = buffer_arrays(self.mixer.buffer(Source.SIM), "replay/sim/")
            buffers["sim"] = counters
            arrays.update(buf_arrays)
        collector_values: dict[str, Any] | None = None
        if self.collector is not None:
            collector_values, c_arrays = self.collector.state()
            arrays.update({f"collector/{k}": v for k, v in c_arrays.items()})
        pending = []
        for key, item in self.pending_real.items():
            pending.append({k: item[k] for k in ("tag", "update", "episodes")} | {"key": key})
            arrays.update({f"pending/{key}/{k}": v for k, v in weights_to_arrays(item["weights"]).items()})
        state = {
            "update": self.update,
            "version": self.version,
            "wall_s": self.wall_s,
            "rng": self.rng.bit_generator.state,
            "sums": self.sums,
            "sim_returns": self.sim_returns,
            "latest": self.latest,
            "buffers": buffers,
            "collector": collector_values,
            "pending_real": pending,
        }
        path = save_checkpoint(
            self.run_dir / CHECKPOINTS_DIR,
            self.update,
            algo_state=self.algo.state_dict(),
            state=state,
            arrays=arrays,
            config=self.config_json(),
            provenance=self.provenance(),
            keep=self.cfg.keep_checkpoints,
        )
        log.info("checkpoint %s", path)
        return path

    def load_checkpoint(self, path: Path) -> None:
        import torch

        from robot_rl.runners.checkpoint import load_checkpoint, restore_buffer
        from robot_rl.runners.sim_collect import weights_from_arrays
        from robot_rl.schema import Source

        ck = load_checkpoint(path)
        self.algo.load_state_dict(ck.algo_state)
        torch.set_rng_state(ck.torch_rng)
        st = ck.state
        self.update = int(st["update"])
        self.version = int(st["version"])
        self.wall_before = float(st["wall_s"])
        self.rng.bit_generator.state = st["rng"]
        self.sums = {k: [float(v[0]), float(v[1])] for k, v in st["sums"].items()}
        self.sim_returns = [(float(r), int(n)) for r, n in st["sim_returns"]]
        self.latest = {k: float(v) for k, v in st["latest"].items()}
        if self.sim_source:
            restore_buffer(self.mixer.buffer(Source.SIM), st["buffers"]["sim"], ck.arrays, "replay/sim/")
        if self.collector is not None and st["collector"] is not None:
            prefix = "collector/"
            self.collector.load_state(
                st["collector"], {k[len(prefix) :]: v for k, v in ck.arrays.items() if k.startswith(prefix)}
            )
        for item in st["pending_real"]:
            prefix = f"pending/{item['key']}/"
            weights = weights_from_arrays(
                {k[len(prefix) :]: v for k, v in ck.arrays.items() if k.startswith(prefix)}
            )
            self.pending_real[item["key"]] = {
                **{k: item[k] for k in ("tag", "update", "episodes")},
                "weights": weights,
            }
        log.info("resumed from %s (update %d)", path, self.update)

    # --- outputs -------------------------------------------------------------------------------

    def open_outputs(self, fresh: bool) -> None:
        from torch.utils.tensorboard import SummaryWriter

        metrics_path = self.run_dir / METRICS_FILE
        evals_path = self.run_dir / EVALS_FILE
        main_tag = self.cfg.algo
        if not fresh:
            # Lines past the checkpoint are re-made by the resumed run (identically, when deterministic).
            _rewrite_jsonl(metrics_path, lambda o: int(o.get("update", 0)) <= self.update)
            _rewrite_jsonl(
                evals_path, lambda o: o.get("policy") != main_tag or int(o.get("update", 0)) <= self.update
            )
        for obj in read_jsonl(evals_path):
            self.done_evals.add((str(obj["policy"]), str(obj["where"]), int(obj["update"])))
        self.metrics_out = _Jsonl(metrics_path)
        self.evals_out = _Jsonl(evals_path)
        self.tb = SummaryWriter(
            log_dir=str(self.run_dir / "tb"), purge_step=None if fresh else self.update + 1
        )

    def record_eval(self, result: EvalResult) -> None:
        line = result.to_json_dict()
        key = (line["policy"], line["where"], line["update"])
        if key in self.done_evals:
            return
        self.done_evals.add(key)
        assert self.evals_out is not None
        self.evals_out.write(line)
        where, policy = line["where"], line["policy"]
        tag = f"eval/return_{where}" if policy == self.cfg.algo else f"eval/{policy}/return_{where}"
        if self.tb is not None:
            self.tb.add_scalar(tag, line["mean"], line["update"])
            self.tb.add_scalar(
                tag.replace("return_", "episode_length_"), _mean(line["lengths"]), line["update"]
            )
        if policy == self.cfg.algo:
            self.latest[f"eval/return_{where}"] = line["mean"]
        log.info(
            "eval %s in %s at update %d: return %.2f +- %.2f over %d episodes (%d falls)",
            policy,
            where,
            line["update"],
            line["mean"],
            line["std"],
            line["episodes"],
            line["falls"],
        )

    def flush_metrics(self) -> None:
        from robot_rl.schema import Source

        if not self.sums and not self.sim_returns:
            return
        line: dict[str, Any] = {
            "update": self.update,
            "wall_s": round(self.wall_s, 3),
            "sim_steps": self.mixer.buffer(Source.SIM).added if self.sim_source else 0,
        }
        for key, (total, count) in sorted(self.sums.items()):
            line[key] = total / count
        if self.sim_returns:
            line["train/episode_return_sim"] = _mean([r for r, _ in self.sim_returns])
            line["train/episode_length_sim"] = _mean([float(n) for _, n in self.sim_returns])
        assert self.metrics_out is not None
        self.metrics_out.write(line)
        for key, value in line.items():
            if key not in ("update", "wall_s") and self.tb is not None:
                self.tb.add_scalar(key, value, self.update)
        self.latest.update({k: float(v) for k, v in line.items() if k not in ("update",)})
        self.sums.clear()
        self.sim_returns.clear()

    # --- evaluation ----------------------------------------------------------------------------

    def policy_snapshot(self) -> PolicyWeights:
        import msgspec

        return msgspec.structs.replace(self.algo.policy_weights(), policy_version=max(self.version, 0))

    def evaluate(self, final: bool) -> None:
        """Sim evaluation now (in this process); a real one submitted to the evaluator."""
        from robot_rl.runners.evaluate import evaluate_sim

        cfg, update = self.cfg, self.update
        weights = self.policy_snapshot()
        assert cfg.sim is not None
        if cfg.eval_episodes_sim > 0 and (cfg.algo, "sim", update) not in self.done_evals:
            self.record_eval(
                evaluate_sim(
                    weights,
                    robot=self.plan.robot,
                    backend=cfg.sim,
                    episodes=cfg.eval_episodes_sim,
                    max_episode_steps=self.plan.eval_cap,
                    seed=self.seeds["eval_sim"] % (2**31),
                    policy=cfg.algo,
                    update=update,
                )
            )
        episodes = cfg.eval_episodes_final if final else cfg.eval_episodes_real
        self.submit_real(weights, update, cfg.algo, episodes)

    def submit_real(self, weights: PolicyWeights, update: int, tag: str, episodes: int) -> None:
        if self.evaluator is None or episodes <= 0 or (tag, "real", update) in self.done_evals:
            return
        key = f"{tag}@{update}"
        if key in self.pending_real:
            return
        self.pending_real[key] = {"tag": tag, "update": update, "episodes": episodes, "weights": weights}
        self._guard(lambda ev: ev.submit(weights, update=update, policy=tag, episodes=episodes))

    def poll_real(self, wait_s: float = 0.0) -> None:
        """Record the real-robot evaluations that finished (waiting up to ``wait_s`` for them)."""
        if self.evaluator is None or not self.pending_real:
            return
        results = self._guard(lambda ev: ev.wait(wait_s) if wait_s > 0 else ev.poll())
        for result in results or []:
            self.pending_real.pop(f"{result.policy}@{result.update}", None)
            self.record_eval(result)
        if self.evaluator is not None:
            for skipped in self.evaluator.skipped[self._skipped_seen :]:
                self.pending_real.pop(f"{skipped.policy}@{skipped.update}", None)
            self._skipped_seen = len(self.evaluator.skipped)

    def _guard(self, call: Callable[[RealEvaluator], Any]) -> Any:
        """``call(evaluator)``; on an evaluator failure: record what finished, log, go on without it."""
        from robot_rl.runners.evaluate import EvaluatorError

        assert self.evaluator is not None
        try:
            return call(self.evaluator)
        except EvaluatorError as err:
            for result in err.results:
                self.pending_real.pop(f"{result.policy}@{result.update}", None)
                self.record_eval(result)
            log.error("evaluation on the real robot stopped, training goes on without it: %s", err)
            self.evaluator.close()
            self.evaluator = None
            self.real_eval_failed = str(err).splitlines()[0]
            return None

    # --- the baseline --------------------------------------------------------------------------

    def wants_baseline(self) -> bool:
        return self.cfg.baseline and self.cfg.algo in ("h2o", "naive-mix")

    def start_baseline(self) -> None:
        """Start (or resume) the SAC sim-only baseline in a second process, unless it has finished."""
        cfg = self.cfg
        out = self.run_dir / BASELINE_DIR
        if (out / POLICY_FILE).is_file() and _finished_updates(out) >= cfg.updates:
            return
        assert cfg.sim is not None and cfg.real_logs is not None
        args = [
            sys.executable,
            "-m",
            "robot_rl.runners.train",
            "--sim",
            cfg.sim,
            "--real-logs",
            str(cfg.real_logs),
            "--algo",
            BASELINE_ALGO,
            "--updates",
            str(cfg.updates),
            "--seed",
            str(cfg.seed),
            "--hidden",
            *[str(h) for h in cfg.hidden],
            "--init-alpha",
            repr(cfg.init_alpha),
            "--out",
            str(out),
            "--eval-every",
            str(cfg.eval_every),
            "--eval-episodes-sim",
            str(cfg.eval_episodes_sim),
            "--eval-max-episode-steps",
            str(self.plan.eval_cap),
            "--checkpoint-every",
            str(cfg.checkpoint_every),
            "--policy-refresh-every",
            str(cfg.policy_refresh_every),
            "--sim-warmup-steps",
            str(cfg.sim_warmup_steps),
            "--sim-profile",
            cfg.sim_profile,
            "--log-every",
            str(cfg.log_every),
            "--no-real-eval",
            "--no-baseline",
            "--quiet",
        ]
        if cfg.sim_max_episode_steps is not None:
            args += ["--sim-max-episode-steps", str(cfg.sim_max_episode_steps)]
        if cfg.obs_noise_sigma > 0.0:
            args += ["--obs-noise-sigma", repr(cfg.obs_noise_sigma)]
        if (out / CONFIG_FILE).is_file() and (out / CHECKPOINTS_DIR / "latest.json").is_file():
            args.append("--resume")
        elif out.exists():
            import shutil

            shutil.rmtree(out)  # started but never checkpointed: start it again
        env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        logfile = open(self.run_dir / f"{BASELINE_DIR}.log", "ab")  # noqa: SIM115 -- the child holds it
        try:
            self.baseline_proc = subprocess.Popen(
                args, stdout=logfile, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        finally:
            logfile.close()
        log.info("baseline %s started (pid %d), log %s", BASELINE_TAG, self.baseline_proc.pid, logfile.name)

    def stop_baseline(self, timeout_s: float = 60.0) -> None:
        """SIGINT the baseline (it checkpoints and exits 130) and wait for it."""
        proc = self.baseline_proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

    def check_baseline(self, wait: bool) -> None:
        """Once the baseline has finished, submit its final policy to the real-robot evaluator (at once:
        its evaluation then runs while the main training goes on). ``wait``: wait for it to finish."""
        proc = self.baseline_proc
        if proc is not None:
            if wait and proc.poll() is None:
                log.info("waiting for the baseline %s (pid %d) to finish", BASELINE_TAG, proc.pid)
                while proc.poll() is None and not self.stop.reason:
                    self.poll_real(0.5)
                    if not self.pending_real or self.evaluator is None:
                        time.sleep(0.5)
            if proc.poll() is None:
                return
            self.baseline_proc = None
            if proc.returncode != 0:
                log.error("baseline exited with %d; see %s.log", proc.returncode, self.run_dir / BASELINE_DIR)
                return
        self._submit_baseline()

    def _submit_baseline(self) -> None:
        from robot_rl.nets.numpy_policy import load_npz

        out = self.run_dir / BASELINE_DIR
        updates = _finished_updates(out)
        if not (out / POLICY_FILE).is_file() or updates < self.cfg.updates:
            return
        self.submit_real(load_npz(out / POLICY_FILE), updates, BASELINE_TAG, self.cfg.eval_episodes_final)

    # --- the loop ------------------------------------------------------------------------------

    def setup(self) -> None:
        from robot_rl.bus.sockets import BusContext
        from robot_rl.runners.sim_collect import LaunchCollector, LockstepCollector

        cfg = self.cfg
        assert cfg.sim is not None
        if self.sim_source:
            self.ctx = BusContext()
            if cfg.launch is not None:
                self.collector = LaunchCollector(
                    topology_file=cfg.launch,
                    run_dir=self.run_dir / "launch",
                    robot=self.plan.robot,
                    backend=cfg.sim,
                    obs_dim=self.obs_dim,
                    act_dim=self.act_dim,
                    mixer=self.mixer,
                    ctx=self.ctx,
                )
            else:
                self.collector = LockstepCollector(
                    robot=self.plan.robot,
                    backend=cfg.sim,
                    profile=cfg.sim_profile,
                    seed=self.seeds["sim"] % (2**31),
                    mixer=self.mixer,
                    ctx=self.ctx,
                    max_episode_steps=cfg.sim_max_episode_steps,
                )

    def warm_up(self) -> None:
        """Publish the initial policy and collect --sim-warmup-steps steps with it (fresh runs)."""
        from robot_rl.runners.sim_collect import LaunchCollector
        from robot_rl.schema import Source

        if self.collector is None:
            return
        self.version = 1
        self.collector.publish(self.policy_snapshot(), self.version)
        need = max(
            [self.cfg.sim_warmup_steps]
            + [spec.size for spec in self.algo.batch_spec.values() if spec.source == Source.SIM]
        )
        if isinstance(self.collector, LaunchCollector):
            self.collector.wait_for(need, timeout_s=300.0)
        else:
            self.collector.collect(need)
        self._take_sim_returns()

    def _take_sim_returns(self) -> None:
        if self.collector is not None and self.collector.returns.finished:
            self.sim_returns.extend(self.collector.returns.finished)
            self.collector.returns.finished.clear()

    def train(self, progress: Callable[[], None]) -> bool:
        """Run updates until --updates or a stop request; True if it finished."""
        from robot_rl.algos.base import to_torch
        from robot_rl.certify.smoothing import augment_transitions

        cfg, algo, mixer, rng = self.cfg, self.algo, self.mixer, self.rng
        sigma = cfg.obs_noise_sigma
        spec = list(algo.batch_spec.items())
        while self.update < cfg.updates:
            if self.stop.reason:
                return False
            if self.collector is not None:
                if self.update > 0 and self.update % cfg.policy_refresh_every == 0:
                    self.version = self.update // cfg.policy_refresh_every + 1
                    self.collector.publish(self.policy_snapshot(), self.version)
                self.collector.collect(1)
                self._take_sim_returns()
            # sigma 0: the batch itself, no draws (the random stream and the result are the same as without).
            batches = {
                name: to_torch(augment_transitions(mixer.buffer(s.source).sample(s.size, rng), sigma, rng))
                for name, s in spec
            }
            metrics = algo.update(batches)
            self.update += 1
            for key, value in metrics.items():
                acc = self.sums.setdefault(key, [0.0, 0.0])
                acc[0] += float(value)
                acc[1] += 1.0
            if self.update % cfg.log_every == 0 or self.update == cfg.updates:
                self.flush_metrics()
                if self.baseline_proc is not None:
                    self.check_baseline(wait=False)
                progress()
            if self.update % cfg.eval_every == 0 and self.update < cfg.updates:
                self.evaluate(final=False)
                progress()
            if self.pending_real:
                self.poll_real()
            if self.update % cfg.checkpoint_every == 0 and self.update < cfg.updates:
                self.save_checkpoint()
        return True

    def finish(self) -> None:
        """The end of a run: policy.npz, the final checkpoint and evaluations, the baseline's."""
        from robot_rl.nets.numpy_policy import save_npz

        weights = self.policy_snapshot()
        save_npz(self.run_dir / POLICY_FILE, weights)
        self.evaluate(final=True)
        self.save_checkpoint()
        self.export_onnx()

    def export_onnx(self) -> None:
        """``policy.onnx`` from the final checkpoint (``robot-rl export``, parity-checked), ready for
        ``robot-rl deploy``. A failed export is logged, not fatal: the run's results stand without it."""
        from robot_rl.export.commands import Export
        from robot_rl.export.onnx_export import ExportCheckError, ExportInputError, export_policy

        out = self.run_dir / ONNX_FILE
        try:
            summary = export_policy(Export(checkpoint=self.run_dir, out=out, overwrite=True))
        except (ExportInputError, ExportCheckError, ImportError) as err:
            log.warning("no %s: the export failed: %s", ONNX_FILE, err)
            return
        log.info(
            "exported %s (parity %.1e rad over %d observations)",
            out,
            summary["parity"]["max_abs_diff"],
            summary["parity"]["n_obs"],
        )

    def wait_evaluations(self) -> None:
        """Wait for every submitted real-robot evaluation (bounded by their episodes at the cap)."""
        if self.evaluator is None or not self.pending_real:
            return
        episodes = sum(int(item["episodes"]) for item in self.pending_real.values())
        budget_s = 120.0 + episodes * (self.plan.eval_cap * CONTROL_DT_S_MAX + 5.0)
        log.info("waiting for %d real-robot evaluation(s) (%d episodes)", len(self.pending_real), episodes)
        deadline = time.monotonic() + budget_s
        while self.pending_real and self.evaluator is not None and not self.stop.reason:
            if time.monotonic() > deadline:
                log.error(
                    "real-robot evaluations still unfinished after %.0f s: %s",
                    budget_s,
                    list(self.pending_real),
                )
                return
            self.poll_real(1.0)

    def close(self) -> None:
        if self.collector is not None:
            self.collector.close()
        if self.ctx is not None:
            self.ctx.close()
        if self.evaluator is not None:
            self.evaluator.close()
        if self.tb is not None:
            self.tb.close()
        for out in (self.metrics_out, self.evals_out):
            if out is not None:
                out.close()


def _mean(values: list[float] | list[int]) -> float:
    return float(sum(values)) / len(values) if values else float("nan")


def _finished_updates(run_dir: Path) -> int:
    """Updates of the final checkpoint of a finished run (0 if unknown)."""
    try:
        latest = json.loads((run_dir / CHECKPOINTS_DIR / "latest.json").read_text(encoding="utf-8"))
        return int(latest["update"])
    except (OSError, ValueError, KeyError):
        return 0


# --------------------------------------------------------------------------------------------------
# Progress display.


class _Progress:
    """A rich progress bar (ETA, updates/s, latest sim and real return, critic loss), or nothing."""

    def __init__(self, trainer: Trainer, enabled: bool) -> None:
        self.trainer = trainer
        self.bar: Any = None
        self.task: Any = None
        if not enabled:
            return
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.bar = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[stats]}"),
            console=Console(stderr=True),
            transient=False,
        )
        cfg = trainer.cfg
        self.task = self.bar.add_task(
            f"{cfg.algo} {cfg.sim}", total=cfg.updates, completed=trainer.update, rate="", stats=""
        )
        self._t0, self._u0 = time.monotonic(), trainer.update

    def __enter__(self) -> _Progress:
        if self.bar is not None:
            self.bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()

    def __call__(self) -> None:
        if self.bar is None:
            return
        t = self.trainer
        latest = t.latest
        rate = (t.update - self._u0) / max(1e-9, time.monotonic() - self._t0)
        parts = []
        for label, key in (
            ("sim R", "train/episode_return_sim"),
            ("eval sim", "eval/return_sim"),
            ("real", "eval/return_real"),
        ):
            if key in latest:
                parts.append(f"{label} {latest[key]:.1f}")
        critic = next(
            (k for k in sorted(latest) if k.startswith("loss/critic") or k.startswith("loss/q")), None
        )
        if critic is not None:
            parts.append(f"critic {latest[critic]:.3g}")
        self.bar.update(self.task, completed=t.update, rate=f"{rate:.1f} upd/s", stats=" | ".join(parts))


# --------------------------------------------------------------------------------------------------
# Entry points.


def _setup_logging(run_dir: Path, quiet: bool) -> logging.Handler:
    handler = logging.FileHandler(run_dir / "train.log", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    if root.level > logging.INFO or root.level == logging.NOTSET:
        root.setLevel(logging.INFO)
    if not any(
        isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler) for h in root.handlers
    ):
        stream: logging.Handler
        if quiet:
            stream = logging.StreamHandler(sys.stderr)
            stream.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        else:
            from rich.console import Console
            from rich.logging import RichHandler

            stream = RichHandler(console=Console(stderr=True), show_path=False)
        stream.setLevel(logging.INFO)
        root.addHandler(stream)
        handler.set_name("robot-rl-train-stream")
        stream.set_name("robot-rl-train-stream")
    return handler


@dataclass(frozen=True)
class Headline:
    """The numbers printed at the end of a run."""

    report: Path | None
    final_real: float | None
    behaviour: float | None
    baseline_real: float | None
    final_sim: float | None


def headline(run_dir: Path, algo: str) -> Headline:
    evals = read_jsonl(run_dir / EVALS_FILE)

    def last(policy: str, where: str) -> float | None:
        rows = [e for e in evals if e["policy"] == policy and e["where"] == where]
        return float(max(rows, key=lambda e: int(e["update"]))["mean"]) if rows else None

    report = run_dir / "report.md"
    return Headline(
        report=report if report.is_file() else None,
        final_real=last(algo, "real"),
        behaviour=last(BEHAVIOUR_TAG, "real"),
        baseline_real=last(BASELINE_TAG, "real"),
        final_sim=last(algo, "sim"),
    )


def run_train(cfg: Train, algo_factory: AlgoFactory | None = None) -> int:
    """Run ``robot-rl train``; returns the exit code (see :meth:`Train.execute`).

    ``algo_factory`` defaults to :func:`robot_rl.algos.make_algo` (tests pass their own).
    """
    import torch

    try:
        plan = prepare_run(cfg)
    except TrainInputError as err:
        print(f"robot-rl train: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if algo_factory is None:
        try:
            from robot_rl.algos import make_algo
        except ImportError:
            print("robot-rl train: error: algo: robot_rl.algos.make_algo is not available", file=sys.stderr)
            return EXIT_BAD_INPUT
        algo_factory = make_algo
    assert algo_factory is not None
    torch.set_num_threads(1)
    cfg = plan.cfg
    fresh = plan.resume_from is None
    stop = _Stop()
    # Built before the run folder exists: a bad algorithm name or size fails with nothing written.
    try:
        trainer = Trainer(plan, algo_factory, stop)
    except (TrainInputError, ValueError) as err:
        print(f"robot-rl train: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT

    run_dir = plan.run_dir
    created = not run_dir.exists()
    run_dir.mkdir(parents=True, exist_ok=True)
    handler = _setup_logging(run_dir, cfg.quiet)
    in_main = threading.current_thread() is threading.main_thread()
    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)} if in_main else {}
    code = EXIT_FAILED
    try:
        if cfg.real_eval:
            from robot_rl.runners.evaluate import EvaluatorError

            try:
                trainer.evaluator = start_real_evaluator(plan, trainer.seeds["eval_real"] % (2**31))
            except EvaluatorError as err:
                print(
                    f"robot-rl train: error: the real-robot evaluation did not start: {err}", file=sys.stderr
                )
                if fresh:  # nothing trained: leave no half-made run behind
                    _remove_fresh_run(run_dir, created)
                return EXIT_FAILED
        code = _run(trainer, fresh)
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)
        trainer.close()
        root = logging.getLogger()
        root.removeHandler(handler)
        handler.close()
        for other in list(root.handlers):
            if other.get_name() == "robot-rl-train-stream":
                root.removeHandler(other)
    return code


def _remove_fresh_run(run_dir: Path, created: bool) -> None:
    import shutil

    logging.shutdown()
    if created:
        shutil.rmtree(run_dir, ignore_errors=True)
    else:
        for child in run_dir.iterdir():
            if child.is_dir():
                shutil.rmtree(child, ignore_errors=True)
            else:
                child.unlink(missing_ok=True)


def _warn_on_calibration_change(plan: RunPlan) -> None:
    """Warn when the rig's calibration file is not the one the logs were recorded with."""
    if plan.cfg.bridge_bus is not None or not plan.manifest.calib_hash:
        return
    from firmware_bridge.calibration import calibration_hash, load_calibration
    from robot_rl.envs.rig import CALIB_DIR

    path = CALIB_DIR / f"{plan.robot}.toml"
    try:
        current = calibration_hash(load_calibration(path))
    except (OSError, ValueError) as err:
        log.warning("could not hash %s: %s", path, err)
        return
    if current != plan.manifest.calib_hash:
        log.warning(
            "the emulated robot runs %s (hash %s...), the logs were recorded with calibration %s...",
            path,
            current[:12],
            plan.manifest.calib_hash[:12],
        )


def _run(trainer: Trainer, fresh: bool) -> int:
    plan, cfg, run_dir = trainer.plan, trainer.cfg, trainer.run_dir
    trainer.setup()
    if plan.resume_from is not None:
        trainer.load_checkpoint(plan.resume_from)
    trainer.write_config()
    trainer.open_outputs(fresh)
    if (BEHAVIOUR_TAG, "real", 0) not in trainer.done_evals:
        from robot_rl.runners.evaluate import evaluate_logs

        assert cfg.real_logs is not None
        trainer.record_eval(
            evaluate_logs(cfg.real_logs, policy=BEHAVIOUR_TAG, max_episode_steps=plan.eval_cap)
        )
    if trainer.evaluator is not None:
        _warn_on_calibration_change(plan)
        for item in list(trainer.pending_real.values()):
            trainer.pending_real.pop(f"{item['tag']}@{item['update']}")
            trainer.submit_real(item["weights"], item["update"], item["tag"], item["episodes"])
    if trainer.wants_baseline():
        trainer.start_baseline()
    if fresh:
        trainer.warm_up()
    log.info(
        "training %s on %s (%s) with %d real transitions from %s: updates %d..%d, run folder %s",
        cfg.algo,
        cfg.sim,
        plan.robot,
        trainer.n_real,
        cfg.real_logs,
        trainer.update,
        cfg.updates,
        run_dir,
    )
    with _Progress(trainer, enabled=not cfg.quiet) as progress:
        finished = trainer.train(progress)
        progress()
    if not finished:
        trainer.save_checkpoint()
        trainer.stop_baseline()
        log.warning(
            "stopped (%s) at update %d; continue with --resume --out %s",
            trainer.stop.reason,
            trainer.update,
            run_dir,
        )
        return EXIT_INTERRUPTED
    trainer.finish()
    if trainer.wants_baseline():
        trainer.check_baseline(wait=True)
    trainer.wait_evaluations()
    trainer.write_config()
    if trainer.stop.reason:
        trainer.stop_baseline()
        log.warning("stopped (%s) while waiting for evaluations; --resume finishes them", trainer.stop.reason)
        return EXIT_INTERRUPTED
    report_path: Path | None = None
    try:
        from robot_rl.runners.report import write_report

        report_path = write_report(run_dir)
    except ImportError:
        log.warning("robot_rl.runners.report is not available: no report written")
    h = headline(run_dir, cfg.algo)
    _print_headline(h, cfg, run_dir, report_path)
    return EXIT_OK


def _print_headline(h: Headline, cfg: Train, run_dir: Path, report: Path | None) -> None:
    def fmt(v: float | None) -> str:
        return "-" if v is None else f"{v:.2f}"

    lines = [f"robot-rl train: {cfg.algo} on {cfg.sim}, {cfg.updates} updates, run folder {run_dir}"]
    if report is not None:
        lines.append(f"  report: {report}")
    lines.append(
        f"  return on the emulated real robot: {cfg.algo} {fmt(h.final_real)}, "
        f"behaviour (logs) {fmt(h.behaviour)}, {BASELINE_TAG} {fmt(h.baseline_real)}; "
        f"in sim: {fmt(h.final_sim)}"
    )
    if (run_dir / ONNX_FILE).is_file():
        lines.append(f"  onboard: robot-rl deploy {run_dir / ONNX_FILE} --port DEVICE   (docs/deploy.md)")
    print("\n".join(lines), flush=True)


def main(argv: list[str] | None = None) -> int:
    """``python -m robot_rl.runners.train ARGS`` (the arguments of ``robot-rl train``)."""
    from robot_rl.cli import run_command

    return run_command(Train, sys.argv[1:] if argv is None else argv, "robot-rl train")


if __name__ == "__main__":
    sys.exit(main())
