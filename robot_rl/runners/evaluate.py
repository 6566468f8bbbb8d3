"""Policy evaluation: in the nominal simulator (in-process) and on the robot behind the firmware bridge.

Protocol (ALGORITHMS.md section 7): deterministic actions ``tanh(mean)`` from a
:class:`robot_rl.nets.NumpyPolicy`, episodes capped at ``max_episode_steps`` (``truncated``), a fall is an
episode that ended ``terminated``. Episode ``i`` of every evaluation, sim or real, of any policy, starts with
``reset(seed=seed + i, options=evaluation_options(robot, seed, n)[i])``:

    quadruped (ForwardVelocityTask): command_mps[i] = lo + (hi - lo) * frac(u0 + i * (sqrt(5) - 1) / 2),
                                     u0 = numpy.random.default_rng(seed).random(), (lo, hi) the task's
                                     command range (0.3, 1.0) m/s
    fixed-base robots (ReachTask):   no options; the target comes from the env's rng seeded with seed + i

The golden-ratio (Weyl) sequence makes episode ``i``'s command depend on ``(seed, i)`` only, so two policies,
or two evaluations with different episode counts, share their first commands, and any prefix of it covers
the command range evenly (5 episodes never all land on slow commands by chance).

The real robot: evaluation goes through the bridge and the firmware emulator (ARCHITECTURE.md sections 6-7),
never through a simulator shortcut. :class:`RealEvaluator` runs :class:`robot_rl.envs.RealRobotEnv` in a
child process (with its own :class:`robot_rl.envs.rig.RealRig` unless given a bridge's bus address), so
the learner keeps training while the robot runs in real time (50 Hz: 1000 steps take 20 s).

Parent <-> child link: a ZeroMQ PAIR over ``ipc://`` in a private directory, and the child is a plain
``python -m robot_rl.runners.evaluate`` subprocess rather than a ``multiprocessing`` spawn/forkserver
process, because

- spawn and forkserver children re-import the parent's ``__main__`` (the training runner, so torch) before
  running the target; a fresh interpreter imports only this torch-free module (numpy, pyzmq, MuJoCo for the
  task code), which is what runs on a robot's onboard computer;
- the weights travel as the bus's own :class:`robot_rl.bus.messages.PolicyWeights` encoding (no pickle on
  any wire, ARCHITECTURE.md section 1), preceded by one JSON frame with the request (id, policy name,
  update, episodes); the child answers with one JSON frame per event (ready, episode, result, skipped,
  error);
- the child is its own session (Ctrl-C in the learner's terminal reaches the learner, whose ``close()``
  stops the child in order: episode cut, sockets closed, rig stopped) and asks the kernel for SIGTERM when
  its parent dies (PR_SET_PDEATHSIG, set by the child itself, so the torch parent never runs Python code
  between fork and exec); the rig's processes do the same towards the child, so ``kill -9`` of the
  learner leaves no orphan. PR_SET_PDEATHSIG fires when the *thread* that started the child exits: create
  the evaluator from a thread that outlives it (the main thread).

Requests are served one at a time in submission order. While one runs, newer requests queue in the child;
when a request arrives for a policy name that already has one queued (not running), the older queued one is
skipped: reported to the parent (``RealEvaluator.skipped``, a warning in the log), never silently dropped.

Failures: a child that exits, a rig that does not start, a bridge that stops answering
(``BridgeUnavailable``) make ``start()``, ``poll()`` and ``wait()`` raise :class:`EvaluatorError` naming the
cause, with the tails of the child's and the rig's logs.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import logging
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, Literal

import gymnasium as gym
import numpy as np
import zmq

from robot_rl.bus.codec import BusDecodeError, decode, encode
from robot_rl.bus.messages import BUS_SCHEMA_VERSION, Envelope, PolicyWeights
from robot_rl.bus.sockets import BusContext, Socket, make_pair, recv_frames, send_frames
from robot_rl.nets.numpy_policy import NumpyPolicy

log = logging.getLogger(__name__)

Where = Literal["real", "sim"]
REPO_ROOT = Path(__file__).resolve().parents[2]
GOLDEN_FRACTION = (math.sqrt(5.0) - 1.0) / 2.0
"""Step of the Weyl sequence of evaluation commands (module docstring)."""
EXIT_FAILED = 3
"""Exit status of a child that hit a rig or bridge failure (it sent an ``error`` event first)."""
_LOG_TAIL_CHARS = 1500
_PR_SET_PDEATHSIG = 1


# ------------------------------------------------------------------------------------------------ results


def _int(d: Mapping[str, Any], key: str) -> int:
    v = d[key]
    if isinstance(v, bool) or not isinstance(v, int):
        raise ValueError(f"{key!r}: expected an integer, got {v!r}")
    return v


def _float(d: Mapping[str, Any], key: str) -> float:
    v = d[key]
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise ValueError(f"{key!r}: expected a number, got {v!r}")
    return float(v)


@dataclass(frozen=True)
class EvalResult:
    """One evaluation of one policy snapshot: a line of ``run_dir/evals.jsonl``.

    policy:            name of the policy ("h2o", "sac-sim-only", "behaviour", ...)
    where:             "real" (through the bridge) or "sim" (nominal simulator)
    update:            gradient updates behind the snapshot (0 for the behaviour policy)
    returns, lengths:  undiscounted return and steps of each episode, in episode order
    falls:             episodes that ended terminated (the robot fell)
    mean, std:         mean and population standard deviation (ddof 0) of ``returns``
    episodes:          len(returns)
    max_episode_steps: the episode cap the episodes ran under (truncated there)
    wall_s:            wall time of the evaluation (s); for logs, the robot time of their episodes
    """

    policy: str
    where: Where
    update: int
    returns: tuple[float, ...]
    lengths: tuple[int, ...]
    falls: int
    mean: float
    std: float
    episodes: int
    max_episode_steps: int
    wall_s: float

    def __post_init__(self) -> None:
        if self.where not in ("real", "sim"):
            raise ValueError(f"where: expected 'real' or 'sim', got {self.where!r}")
        if len(self.returns) != self.episodes or len(self.lengths) != self.episodes:
            raise ValueError(
                f"episodes: {self.episodes}, but {len(self.returns)} returns and {len(self.lengths)} lengths"
            )
        if not 0 <= self.falls <= self.episodes:
            raise ValueError(f"falls: expected 0..{self.episodes}, got {self.falls}")

    @classmethod
    def summarise(
        cls,
        *,
        policy: str,
        where: Where,
        update: int,
        returns: Sequence[float],
        lengths: Sequence[int],
        falls: int,
        max_episode_steps: int,
        wall_s: float,
    ) -> EvalResult:
        """Build a result from per-episode values (mean, std and episodes computed here)."""
        arr = np.asarray(returns, dtype=np.float64)
        return cls(
            policy=policy,
            where=where,
            update=int(update),
            returns=tuple(float(r) for r in returns),
            lengths=tuple(int(n) for n in lengths),
            falls=int(falls),
            mean=float(arr.mean()) if arr.size else math.nan,
            std=float(arr.std()) if arr.size else math.nan,
            episodes=len(arr),
            max_episode_steps=int(max_episode_steps),
            wall_s=float(wall_s),
        )

    def to_json_dict(self) -> dict[str, Any]:
        """The evals.jsonl object (keys in the agreed order)."""
        return {
            "policy": self.policy,
            "where": self.where,
            "update": self.update,
            "returns": list(self.returns),
            "lengths": list(self.lengths),
            "falls": self.falls,
            "mean": self.mean,
            "std": self.std,
            "episodes": self.episodes,
            "max_episode_steps": self.max_episode_steps,
            "wall_s": self.wall_s,
        }

    @classmethod
    def from_json_dict(cls, d: Mapping[str, Any]) -> EvalResult:
        """Parse an evals.jsonl object; ValueError naming the missing, unknown or mistyped key."""
        expected = {
            "policy",
            "where",
            "update",
            "returns",
            "lengths",
            "falls",
            "mean",
            "std",
            "episodes",
            "max_episode_steps",
            "wall_s",
        }
        missing, unknown = sorted(expected - set(d)), sorted(set(d) - expected)
        if missing or unknown:
            raise ValueError(f"eval result: missing keys {missing}, unknown keys {unknown}")
        if not isinstance(d["policy"], str) or not d["policy"]:
            raise ValueError(f"'policy': expected a non-empty string, got {d['policy']!r}")
        where = d["where"]
        if where not in ("real", "sim"):
            raise ValueError(f"'where': expected 'real' or 'sim', got {where!r}")
        for key in ("returns", "lengths"):
            if not isinstance(d[key], list):
                raise ValueError(f"{key!r}: expected a list, got {type(d[key]).__name__}")
        returns = tuple(_float({"returns[]": r}, "returns[]") for r in d["returns"])
        lengths = tuple(_int({"lengths[]": n}, "lengths[]") for n in d["lengths"])
        return cls(
            policy=d["policy"],
            where=where,
            update=_int(d, "update"),
            returns=returns,
            lengths=lengths,
            falls=_int(d, "falls"),
            mean=_float(d, "mean"),
            std=_float(d, "std"),
            episodes=_int(d, "episodes"),
            max_episode_steps=_int(d, "max_episode_steps"),
            wall_s=_float(d, "wall_s"),
        )


@dataclass(frozen=True)
class SkippedEval:
    """A queued real-robot evaluation that a newer request for the same policy superseded."""

    policy: str
    update: int
    superseded_by_update: int


# ----------------------------------------------------------------------------------- episodes and commands


def evaluation_options(robot: str, seed: int, episodes: int) -> list[dict[str, Any] | None]:
    """The reset options of episodes 0..episodes-1 (module docstring: commands on a Weyl sequence)."""
    from sim.robots import get_robot
    from sim.tasks import ForwardVelocityTask, default_task

    task = default_task(get_robot(robot))
    if not isinstance(task, ForwardVelocityTask):
        return [None] * episodes
    lo, hi = task.command_range_mps
    u0 = float(np.random.default_rng(seed).random())
    return [{"command_mps": lo + (hi - lo) * ((u0 + i * GOLDEN_FRACTION) % 1.0)} for i in range(episodes)]


EpisodeCallback = Callable[[int, float, int, bool, dict[str, Any]], None]
"""(episode index, return, length, terminated, last step's info) after each finished episode."""


def run_episodes(
    env: gym.Env[np.ndarray, np.ndarray],
    policy: NumpyPolicy,
    *,
    seed: int,
    options: Sequence[dict[str, Any] | None],
    on_episode: EpisodeCallback | None = None,
) -> tuple[list[float], list[int], int]:
    """Run one deterministic episode per entry of ``options``; (returns, lengths, falls).

    Episode ``i`` resets with ``seed + i`` and ``options[i]``; it ends when the env reports terminated
    (a fall) or truncated (its cap, or a latched firmware fault on the real robot).
    """
    returns: list[float] = []
    lengths: list[int] = []
    falls = 0
    for i, opts in enumerate(options):
        obs, info = env.reset(seed=seed + i, options=opts)
        ret, steps = 0.0, 0
        while True:
            action = policy.act(np.asarray(obs, dtype=np.float32)[None, :], deterministic=True)[0]
            obs, reward, terminated, truncated, info = env.step(action)
            ret += float(reward)
            steps += 1
            if terminated or truncated:
                break
        returns.append(ret)
        lengths.append(steps)
        falls += int(terminated)
        if on_episode is not None:
            on_episode(i, ret, steps, bool(terminated), info)
    return returns, lengths, falls


def _checked_policy(weights: PolicyWeights, obs_dim: int, act_dim: int) -> NumpyPolicy:
    policy = NumpyPolicy.from_weights(weights)
    if (policy.obs_dim, policy.act_dim) != (obs_dim, act_dim):
        raise ValueError(
            f"policy is {policy.obs_dim} -> {policy.act_dim}, the environment {obs_dim} -> {act_dim}"
        )
    return policy


def evaluate_sim(
    weights: PolicyWeights,
    *,
    robot: str,
    backend: str,
    episodes: int,
    max_episode_steps: int,
    seed: int,
    policy: str,
    update: int,
) -> EvalResult:
    """Evaluate ``weights`` in-process on the *nominal* simulator (no gap profile); same weights and seed,
    same result. ``where`` is "sim"."""
    from sim.env import RobotEnv

    if episodes < 1 or max_episode_steps < 1:
        raise ValueError(f"episodes and max_episode_steps must be >= 1, got {episodes}, {max_episode_steps}")
    env = RobotEnv(robot=robot, backend=backend, profile="nominal", max_episode_steps=max_episode_steps)
    try:
        net = _checked_policy(weights, len(env.obs_names), len(env.action_names))
        t0 = time.monotonic()
        returns, lengths, falls = run_episodes(
            env, net, seed=seed, options=evaluation_options(robot, seed, episodes)
        )
        wall_s = time.monotonic() - t0
    finally:
        env.close()
    return EvalResult.summarise(
        policy=policy,
        where="sim",
        update=update,
        returns=returns,
        lengths=lengths,
        falls=falls,
        max_episode_steps=max_episode_steps,
        wall_s=wall_s,
    )


def evaluate_logs(
    run_dir: Path | str, *, policy: str = "behaviour", max_episode_steps: int | None = None
) -> EvalResult:
    """The episodes of a recorded run (calib/<run>) as a "real" result of the policy that recorded them.

    The logs' cap is the manifest's ``extra["max_episode_steps"]`` (what ``robot-rl record`` wrote), else the
    longest episode. With ``max_episode_steps`` below it, each episode is cut there first (return of its first
    steps, a fall only if it happened before the cut), so the numbers compare with evaluations under that
    cap; a larger one cannot lengthen recorded episodes, and the logs' own cap is reported. ``wall_s`` is the
    robot time of the episodes (first to last timestamp).
    """
    from robot_rl.data.reader import open_run

    reader = open_run(run_dir)
    returns: list[float] = []
    lengths: list[int] = []
    falls = 0
    robot_s = 0.0
    longest = 0
    for ep in reader.iter_episodes():
        n = ep.n_steps
        longest = max(longest, n)
        cut = n if max_episode_steps is None else min(n, max_episode_steps)
        returns.append(float(np.sum(ep.reward[:cut])))
        lengths.append(cut)
        falls += int(bool(ep.terminated[cut - 1]))
        robot_s += float(ep.t_ns[cut] - ep.t_ns[0]) * 1e-9
    cap_text = reader.manifest.extra.get("max_episode_steps")
    logs_cap = int(cap_text) if cap_text is not None and cap_text.isdigit() else longest
    cap = logs_cap if max_episode_steps is None else min(logs_cap, max_episode_steps)
    return EvalResult.summarise(
        policy=policy,
        where="real",
        update=0,
        returns=returns,
        lengths=lengths,
        falls=falls,
        max_episode_steps=cap,
        wall_s=robot_s,
    )


# --------------------------------------------------------------------------------------- parent side


class EvaluatorError(RuntimeError):
    """The real-robot evaluator failed (child exit, rig or bridge failure); the message names the cause.

    ``results`` holds the evaluations that finished before the failure and were not yet returned.
    """

    def __init__(self, message: str, results: Sequence[EvalResult] = ()) -> None:
        super().__init__(message)
        self.results: list[EvalResult] = list(results)


def _tail(path: Path, chars: int = _LOG_TAIL_CHARS) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return text[-chars:].strip()


def _env_dims(robot: str) -> tuple[int, int]:
    from sim.env import env_layout
    from sim.robots import get_robot
    from sim.tasks import default_task

    model = get_robot(robot)
    lay = env_layout(model, default_task(model))
    return len(lay.obs_names), len(lay.action_names)


class RealEvaluator:
    """Evaluate policy snapshots on the (emulated) real robot in a background child process.

        with RealEvaluator("quadruped", episodes=10, max_episode_steps=1000, log_dir=run / "eval") as ev:
            ev.start()
            ...
            ev.submit(algo.policy_weights(), update=u, policy="h2o")     # returns at once
            for result in ev.poll(): write(result)                       # finished ones, never blocks
            ...
            final = ev.wait(timeout_s=600)                               # drain at the end

    robot:             robot name (a floating-base one: RealRobotEnv's restriction)
    episodes:          episodes per evaluation (``submit(episodes=)`` overrides it per request)
    max_episode_steps: episode cap (control steps; 50 per second)
    seed:              seed of the episode commands and resets (module docstring) and of the emulator
    bridge_bus:        bus base address of a running bridge (the real robot); None: start a RealRig
                       (emulator with its default hidden profile + bridge) in the child, stopped on close
    log_dir:           evaluator.log (the child's output) and rig/ (emulator.log, bridge.log); default: a
                       temporary directory, removed on close
    calib:             calibration file for the rig (default calib/<robot>.toml)
    realtime_factor:   clock speed of the rig's emulator (1.0: real time)
    reset_hold_s:      default-pose hold of each reset (RealRobotEnv)
    ready_timeout_s:   longest wait for the child (and its rig) to come up (s)
    stop_timeout_s:    longest wait for the child to stop on close before it is killed (s)
    """

    def __init__(
        self,
        robot: str = "quadruped",
        *,
        episodes: int = 10,
        max_episode_steps: int = 1000,
        seed: int = 0,
        bridge_bus: str | None = None,
        log_dir: Path | None = None,
        calib: Path | None = None,
        realtime_factor: float = 1.0,
        reset_hold_s: float = 0.5,
        ready_timeout_s: float = 60.0,
        stop_timeout_s: float = 15.0,
    ) -> None:
        if episodes < 1 or max_episode_steps < 1:
            raise ValueError(
                f"episodes and max_episode_steps must be >= 1, got {episodes}, {max_episode_steps}"
            )
        self.robot = robot
        self.episodes = episodes
        self.max_episode_steps = max_episode_steps
        self.seed = seed
        self.bridge_bus = bridge_bus
        self.calib = calib
        self.realtime_factor = realtime_factor
        self.reset_hold_s = reset_hold_s
        self.ready_timeout_s = ready_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self._own_log_dir = log_dir is None
        self.log_dir: Path | None = log_dir
        self.obs_dim, self.act_dim = _env_dims(robot)
        self.bus = ""  # the bridge's bus address, once the child is ready
        self.rig_pids: list[int] = []  # the emulator's and the bridge's pids, when the child started the rig
        self.skipped: list[SkippedEval] = []
        self.proc: subprocess.Popen[bytes] | None = None
        self._ctx: BusContext | None = None
        self._sock: Socket | None = None
        self._ipc_dir: Path | None = None
        self._ready = False
        self._closed = False
        self._started_at = 0.0
        self._next_id = 0
        self._outbox: list[list[bytes | memoryview]] = []
        self._pending: dict[int, tuple[str, int]] = {}
        self._results: list[EvalResult] = []
        self._failure: str | None = None

    # --- lifecycle -------------------------------------------------------------------------------------
    def __enter__(self) -> RealEvaluator:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def log_path(self) -> Path:
        """The child's stdout and stderr."""
        assert self.log_dir is not None, "start() first"
        return self.log_dir / "evaluator.log"

    @property
    def pending(self) -> int:
        """Submitted requests neither finished nor skipped."""
        return len(self._pending)

    def start(self, *, wait: bool = True) -> None:
        """Start the child (and its rig); with ``wait``, return once it is ready or raise EvaluatorError
        (everything stopped). Without, a failure to come up surfaces in poll()/wait()."""
        if self.proc is not None or self._closed:
            raise RuntimeError("RealEvaluator.start: already started (or closed)")
        if self.log_dir is None:
            self.log_dir = Path(tempfile.mkdtemp(prefix="rrl-eval-logs-"))
        self.log_dir.mkdir(parents=True, exist_ok=True)
        # ipc paths are limited to ~100 bytes: a short private directory, not log_dir.
        self._ipc_dir = Path(tempfile.mkdtemp(prefix="rrl-ev-", dir=tempfile.gettempdir()))
        endpoint = f"ipc://{self._ipc_dir}/eval"
        self._ctx = BusContext()
        self._sock = make_pair(self._ctx, endpoint, bind=True)
        args = [
            sys.executable,
            "-m",
            "robot_rl.runners.evaluate",
            "--endpoint",
            endpoint,
            "--parent-pid",
            str(os.getpid()),
            "--robot",
            self.robot,
            "--episodes",
            str(self.episodes),
            "--max-episode-steps",
            str(self.max_episode_steps),
            "--seed",
            str(self.seed),
            "--realtime-factor",
            repr(self.realtime_factor),
            "--reset-hold-s",
            repr(self.reset_hold_s),
            "--log-dir",
            str(self.log_dir),
        ]
        if self.bridge_bus is not None:
            args += ["--bus", self.bridge_bus]
        if self.calib is not None:
            args += ["--calib", str(self.calib)]
        env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        with self.log_path.open("wb") as out:
            self.proc = subprocess.Popen(
                args, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO_ROOT, start_new_session=True
            )
        self._started_at = time.monotonic()
        log.info("real evaluator started (pid %d, log %s)", self.proc.pid, self.log_path)
        if not wait:
            return
        try:
            while not self._ready:
                self._step(100)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Stop the child (SIGTERM: it cuts the episode, closes its env, stops its rig; SIGKILL after
        ``stop_timeout_s``), close the link and remove the private directories. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._pending:
            log.warning(
                "real evaluator closed with %d evaluation(s) unfinished: %s",
                len(self._pending),
                ", ".join(f"{p}@{u}" for p, u in self._pending.values()),
            )
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=self.stop_timeout_s)
            except subprocess.TimeoutExpired:
                log.warning("real evaluator did not stop in %g s: killed", self.stop_timeout_s)
                proc.kill()
                proc.wait(timeout=5.0)
        if self._ctx is not None:
            self._ctx.close()
            self._ctx = None
            self._sock = None
        if self._ipc_dir is not None:
            shutil.rmtree(self._ipc_dir, ignore_errors=True)
            self._ipc_dir = None
        if self._own_log_dir and self.log_dir is not None and self._failure is None:
            shutil.rmtree(self.log_dir, ignore_errors=True)

    # --- requests and results --------------------------------------------------------------------------
    def submit(self, weights: PolicyWeights, *, update: int, policy: str, episodes: int | None = None) -> int:
        """Queue an evaluation of ``weights`` (returns at once, with the request id). ValueError if the policy
        does not fit the robot's observation/action sizes."""
        self._check_usable()
        if episodes is not None and episodes < 1:
            raise ValueError(f"episodes: expected >= 1, got {episodes}")
        if not policy:
            raise ValueError("policy: expected a non-empty name")
        _checked_policy(weights, self.obs_dim, self.act_dim)
        req_id = self._next_id
        self._next_id += 1
        header = {
            "type": "eval",
            "id": req_id,
            "policy": policy,
            "update": int(update),
            "episodes": self.episodes if episodes is None else int(episodes),
        }
        now = time.time_ns()
        stamp = Envelope(
            schema_version=BUS_SCHEMA_VERSION, seq=req_id, t_src_ns=now, t_pub_ns=now, sender="evaluator"
        )
        # Copied now: the caller may reuse its arrays before the frames leave.
        frames = [json.dumps(header).encode(), *(bytes(f) for f in encode(b"weights", stamp, weights))]
        self._pending[req_id] = (policy, int(update))
        self._outbox.append(list(frames))
        self._flush()
        return req_id

    def poll(self) -> list[EvalResult]:
        """Evaluations finished since the last call (never blocks); EvaluatorError if the child failed."""
        self._check_usable()
        self._step(0)
        out, self._results = self._results, []
        return out

    def wait(self, timeout_s: float) -> list[EvalResult]:
        """Block until every submitted request is finished or skipped, or ``timeout_s`` passed; the results
        that finished meanwhile (including ones not yet returned by poll)."""
        self._check_usable()
        deadline = time.monotonic() + timeout_s
        collected: list[EvalResult] = []
        try:
            while True:
                remaining_ms = int(max(0.0, deadline - time.monotonic()) * 1000.0)
                self._step(min(remaining_ms, 200) if self._pending else 0)
                collected += self._results
                self._results = []
                if not self._pending or remaining_ms == 0:
                    return collected
        except EvaluatorError as err:
            err.results = collected + err.results
            raise

    # --- internals -------------------------------------------------------------------------------------
    def _check_usable(self) -> None:
        if self._closed:
            raise RuntimeError("RealEvaluator is closed")
        if self.proc is None:
            raise RuntimeError("RealEvaluator.start() first")
        if self._failure is not None:
            raise EvaluatorError(self._failure)

    def _step(self, timeout_ms: int) -> None:
        """Receive the child's events (waiting up to ``timeout_ms`` for the first), send queued requests,
        check that the child lives."""
        assert self._sock is not None
        if self._sock.poll(timeout_ms):
            while self._sock.poll(0):
                self._handle(recv_frames(self._sock))
        self._flush()
        self._check_child()

    def _flush(self) -> None:
        assert self._sock is not None
        # Before "ready" the child is not connected: a PAIR send would block until it is.
        while self._ready and self._outbox:
            try:
                send_frames(self._sock, self._outbox[0])
            except zmq.Again:
                return
            self._outbox.pop(0)

    def _handle(self, frames: list[bytes | memoryview]) -> None:
        try:
            event: dict[str, Any] = json.loads(bytes(frames[0]))
            kind = event["type"]
        except (ValueError, KeyError, TypeError):
            log.warning("real evaluator: unreadable event from the child (%d bytes)", len(frames[0]))
            return
        if kind == "ready":
            self._ready = True
            self.bus = str(event["bus"])
            self.rig_pids = [int(p) for p in event.get("rig_pids", [])]
            log.info(
                "real evaluator ready: robot on %s (%.1f s)", self.bus, time.monotonic() - self._started_at
            )
        elif kind == "episode":
            how = "fell" if event["terminated"] else "truncated"
            fault = f", firmware fault 0x{event['faults']:02x}" if event.get("faults") else ""
            log.info(
                "real eval %s@%d episode %d/%d: return %.2f, %d steps, %s (command %s)%s",
                event["policy"],
                event["update"],
                event["index"] + 1,
                event["episodes"],
                event["return"],
                event["length"],
                how,
                event.get("command", "-"),
                fault,
            )
        elif kind == "result":
            result = EvalResult.from_json_dict(event["result"])
            self._pending.pop(int(event["id"]), None)
            self._results.append(result)
            log.info(
                "real eval %s@%d: return %.2f +- %.2f over %d episodes, %d falls (%.1f s)",
                result.policy,
                result.update,
                result.mean,
                result.std,
                result.episodes,
                result.falls,
                result.wall_s,
            )
        elif kind == "skipped":
            self._pending.pop(int(event["id"]), None)
            skipped = SkippedEval(
                str(event["policy"]), int(event["update"]), int(event["superseded_by_update"])
            )
            self.skipped.append(skipped)
            log.warning(
                "real eval %s@%d skipped: superseded by %s@%d queued behind it",
                skipped.policy,
                skipped.update,
                skipped.policy,
                skipped.superseded_by_update,
            )
        elif kind == "error":
            self._fail(f"real evaluator failed: {event.get('message', '(no message)')}")

    def _check_child(self) -> None:
        assert self.proc is not None
        rc = self.proc.poll()
        if rc is None:
            if not self._ready and time.monotonic() - self._started_at > self.ready_timeout_s:
                self._fail(f"real evaluator not ready within {self.ready_timeout_s:g} s")
            return
        # Events sent just before the exit may still be in flight.
        assert self._sock is not None
        while self._sock.poll(100):
            self._handle(recv_frames(self._sock))
        if self._failure is None:
            self._fail(f"real evaluator child exited with status {rc} (pid {self.proc.pid})")

    def _fail(self, message: str) -> None:
        parts = [message]
        if self.log_dir is not None:
            for path in (
                self.log_dir / "evaluator.log",
                self.log_dir / "rig" / "emulator.log",
                self.log_dir / "rig" / "bridge.log",
            ):
                tail = _tail(path)
                if tail and tail not in message:  # the child's log often just repeats its error event
                    parts.append(f"--- tail of {path} ---\n{tail}")
        self._failure = "\n".join(parts)
        results, self._results = self._results, []
        log.error("%s", self._failure)
        raise EvaluatorError(self._failure, results)


# ---------------------------------------------------------------------------------------- child side


class _Terminated(Exception):
    """SIGTERM/SIGINT in the child: unwind, closing the env and stopping the rig on the way."""


def _on_signal(signum: int, frame: FrameType | None) -> None:
    raise _Terminated(signal.Signals(signum).name)


def _die_with_parent(parent_pid: int) -> bool:
    """Ask for SIGTERM when the parent dies; False if it already has."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    return os.getppid() == parent_pid


@dataclass
class _Request:
    id: int
    policy: str
    update: int
    episodes: int
    weights: PolicyWeights


@dataclass
class _ChildServer:
    """The child's loop: take requests (superseding queued ones of the same policy), run them, report."""

    sock: Socket
    env: Any  # RealRobotEnv
    robot: str
    seed: int
    max_episode_steps: int
    parent_pid: int
    queue: list[_Request] = field(default_factory=list)

    def send(self, event: dict[str, Any]) -> None:
        self.sock.send(json.dumps(event).encode())

    def receive(self, timeout_ms: int) -> None:
        if not self.sock.poll(timeout_ms):
            return
        while self.sock.poll(0):
            frames = recv_frames(self.sock)
            header = json.loads(bytes(frames[0]))
            try:
                weights = decode(frames[1:]).msg
            except BusDecodeError as err:
                raise ValueError(f"request {header.get('id')}: undecodable weights: {err}") from None
            if not isinstance(weights, PolicyWeights):
                raise ValueError(f"request {header.get('id')}: a {type(weights).__name__}, not PolicyWeights")
            req = _Request(
                int(header["id"]),
                str(header["policy"]),
                int(header["update"]),
                int(header["episodes"]),
                weights,
            )
            for old in [q for q in self.queue if q.policy == req.policy]:
                self.queue.remove(old)
                print(f"skip {old.policy}@{old.update}: superseded by {req.policy}@{req.update}", flush=True)
                self.send(
                    {
                        "type": "skipped",
                        "id": old.id,
                        "policy": old.policy,
                        "update": old.update,
                        "superseded_by_update": req.update,
                    }
                )
            self.queue.append(req)

    def serve(self) -> None:
        while True:
            self.receive(0 if self.queue else 500)
            if not self.queue:
                if os.getppid() != self.parent_pid:
                    print("parent gone: stopping", flush=True)
                    return
                continue
            self.run(self.queue.pop(0))

    def run(self, req: _Request) -> None:
        policy = _checked_policy(req.weights, len(self.env.obs_names), len(self.env.action_names))
        options = evaluation_options(self.robot, self.seed, req.episodes)

        def on_episode(i: int, ret: float, length: int, terminated: bool, info: dict[str, Any]) -> None:
            opts = options[i]
            command = f"{opts['command_mps']:.3f} m/s" if opts else "-"
            how = "fell" if terminated else f"truncated (faults 0x{info.get('faults', 0):02x})"
            print(f"{req.policy}@{req.update} episode {i}: return={ret:.3f} steps={length} {how}", flush=True)
            self.send(
                {
                    "type": "episode",
                    "id": req.id,
                    "policy": req.policy,
                    "update": req.update,
                    "index": i,
                    "episodes": req.episodes,
                    "return": ret,
                    "length": length,
                    "terminated": terminated,
                    "faults": int(info.get("faults", 0)),
                    "command": command,
                }
            )
            self.receive(0)  # report superseded requests while this one runs

        t0 = time.monotonic()
        returns, lengths, falls = run_episodes(
            self.env, policy, seed=self.seed, options=options, on_episode=on_episode
        )
        result = EvalResult.summarise(
            policy=req.policy,
            where="real",
            update=req.update,
            returns=returns,
            lengths=lengths,
            falls=falls,
            max_episode_steps=self.max_episode_steps,
            wall_s=time.monotonic() - t0,
        )
        self.send({"type": "result", "id": req.id, "result": result.to_json_dict()})


def _report_fatal(sock: Socket | None, endpoint: str, message: str) -> None:
    """Print ``message`` and send it as an error event, on ``sock`` or on a link opened for it."""
    print(message, file=sys.stderr, flush=True)
    with contextlib.suppress(Exception):
        if sock is not None:
            sock.send(json.dumps({"type": "error", "message": message}).encode())
            return
        with BusContext() as ctx:
            own = make_pair(ctx, endpoint, bind=False)
            own.send(json.dumps({"type": "error", "message": message}).encode())
            own.close(linger=2000)  # closed before the context: the event leaves (or 2 s pass)


def _child_main(argv: Sequence[str] | None = None) -> int:
    """The child process (started by RealEvaluator.start; not a user command)."""
    p = argparse.ArgumentParser(prog="python -m robot_rl.runners.evaluate", description=_child_main.__doc__)
    p.add_argument("--endpoint", required=True)
    p.add_argument("--parent-pid", type=int, required=True)
    p.add_argument("--robot", default="quadruped")
    p.add_argument("--episodes", type=int, default=10)
    p.add_argument("--max-episode-steps", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--bus", default=None)
    p.add_argument("--calib", type=Path, default=None)
    p.add_argument("--realtime-factor", type=float, default=1.0)
    p.add_argument("--reset-hold-s", type=float, default=0.5)
    p.add_argument("--log-dir", type=Path, required=True)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if not _die_with_parent(args.parent_pid):
        return 1
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _on_signal)

    from robot_rl.envs.real_robot import RealRobotEnv
    from robot_rl.envs.rig import RealRig, RigError

    rig: RealRig | None = None
    env: RealRobotEnv | None = None
    ctx: BusContext | None = None
    sock: Socket | None = None
    try:
        bus = args.bus
        if bus is None:
            # Before any zmq context exists: the rig's Popen runs a preexec_fn, unsafe once threads run.
            rig = RealRig(
                args.robot,
                calib=args.calib,
                realtime_factor=args.realtime_factor,
                seed=args.seed,
                log_dir=args.log_dir / "rig",
            )
            try:
                rig.start()
            except RigError as err:
                _report_fatal(None, args.endpoint, f"the rig (emulator + bridge) did not start: {err}")
                return EXIT_FAILED
            bus = rig.bus
        ctx = BusContext()
        sock = make_pair(ctx, args.endpoint, bind=False)
        sock.linger = 2000  # the last events (result, error) must reach the parent after we exit
        env = RealRobotEnv(
            args.robot, bus=bus, reset_hold_s=args.reset_hold_s, max_episode_steps=args.max_episode_steps
        )
        server = _ChildServer(sock, env, args.robot, args.seed, args.max_episode_steps, args.parent_pid)
        rig_pids = [] if rig is None else [pr.pid for pr in (rig.emulator, rig.bridge) if pr is not None]
        server.send({"type": "ready", "bus": bus, "rig_pids": rig_pids})
        print(f"ready: robot {args.robot} on {bus}", flush=True)
        server.serve()
        return 0
    except _Terminated as stop:
        print(f"{stop}: stopping", flush=True)
        return 0
    except Exception as err:
        traceback.print_exc()
        _report_fatal(sock, args.endpoint, f"{type(err).__name__}: {err}")
        return EXIT_FAILED
    finally:
        # A second SIGTERM must not cut the clean-up short.
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_IGN)
        if env is not None:
            env.close()
        if ctx is not None:
            ctx.zmq.destroy(linger=2000)
        if rig is not None:
            rig.stop()


if __name__ == "__main__":
    sys.exit(_child_main())
