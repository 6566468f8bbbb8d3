"""Sim rollouts for ``robot-rl train``: through the bus, in lockstep (in-process) or from launched workers.

Two collectors, one interface (:class:`SimCollector`): ``publish(weights, version)`` hands the learner's
policy snapshot to the sim side, ``collect(n_steps)`` moves ``n_steps`` vector steps of rollouts into
the SIM replay buffer, and ``state()`` / ``load_state()`` carry what a checkpoint needs.

:class:`LockstepCollector` (the default) runs the sim worker of :mod:`sim.worker` *in this process*:
its :class:`sim.worker.SimWorkerProcess` steps the environments and builds the rollout chunks, and the
bytes travel exactly as between processes, over ``inproc://`` sockets of the same bus layout (weights
PUB -> SUB, rollout PUSH -> PULL into :class:`robot_rl.runners.receiver.RolloutReceiver`). Only the
loop is different: the learner drives it, one vector step per call, so the order of every random
draw is fixed and a seeded run is deterministic (and a resumed run continues bit for bit, see
:func:`capture_env_state`). Each step is sent as its own chunk, so no transition waits in a
half-built chunk at an update boundary.

:class:`LaunchCollector` (``--launch FILE``) starts the ``[[sim_workers]]`` of a topology file with
:mod:`robot_rl.launch` (the file's ``[learner]`` is ignored: this process is the learner), binds the
weights and rollout links on the topology's ipc/tcp addresses, and takes whatever chunks have arrived
at each update. The workers step at their own pace (back-pressure stops them when the learner falls
behind), so such a run is not deterministic and its resume is not exact.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast

import msgspec
import numpy as np

from robot_rl.bus.messages import PolicyWeights, RolloutChunk
from robot_rl.data.replay import SourceMixer
from robot_rl.runners.receiver import EpisodeAssembler, RolloutReceiver
from robot_rl.schema import Source

if TYPE_CHECKING:
    from robot_rl.bus.sockets import BusContext, Receiver, Sender, Socket
    from robot_rl.launch.supervisor import Supervisor
    from sim.env import RobotEnv
    from sim.worker import SimWorkerProcess

log = logging.getLogger(__name__)

WEIGHTS_WAIT_S = 10.0
"""Longest wait for a published snapshot to reach the in-process worker (it takes microseconds)."""
CHUNK_WAIT_S = 10.0
"""Longest wait for the in-process worker's chunk at the learner (it takes microseconds)."""
_inproc_ids = itertools.count()


# --------------------------------------------------------------------------------------------------
# Environment state (the in-process worker's envs), for exact resume.


def _mj_state_spec() -> int:
    import mujoco

    return int(mujoco.mjtState.mjSTATE_INTEGRATION)


def capture_env_state(env: RobotEnv | ReplayableEnv) -> dict[str, Any]:
    """Everything a :class:`sim.env.RobotEnv` carries between two steps, as plain arrays and numbers.

    MuJoCo and dm_control: the complete integration state (``mj_getState`` with
    ``mjSTATE_INTEGRATION``: time, qpos, qvel, act, warm-start accelerations, ctrl, mocap, ...).
    PyBullet (whose contact and solver state cannot be written back): how the episode began and its
    actions so far, to be replayed (``env`` must be a :class:`ReplayableEnv`). Either way a restored env
    continues bit for bit (tested for both robots on all three backends).

    Above the physics: ``RobotEnv.get_state()`` (random generator, latency FIFO, last action, step
    count, velocity estimate, the task's episode sample).
    """
    replay = env if isinstance(env, ReplayableEnv) else None
    env = env.env if isinstance(env, ReplayableEnv) else env
    state: dict[str, Any] = {"backend": env.backend.name, **env.get_state()}
    if env.backend.name in ("mujoco", "dmcontrol"):
        import mujoco

        spec = _mj_state_spec()
        buf = np.empty(mujoco.mj_stateSize(env.model, spec), dtype=np.float64)
        mujoco.mj_getState(env.model, env.data, buf, spec)
        state["mj_state"] = buf
    else:
        if replay is None:
            raise NotImplementedError(f"capturing a {env.backend.name} env needs a ReplayableEnv")
        state["replay"] = {
            "reset_seed": replay.reset_seed,
            "rng_before_reset": replay.rng_before_reset,
            "actions": np.array(replay.actions, dtype=np.float32).reshape(len(replay.actions), -1),
        }
    return state


def restore_env_state(env: RobotEnv | ReplayableEnv, state: dict[str, Any]) -> None:
    """Put ``env`` (same robot, backend, profile and task) in the state :func:`capture_env_state` took."""
    if "replay" in state:
        _replay(env, state)
        return
    env = env.env if isinstance(env, ReplayableEnv) else env
    if state["backend"] != env.backend.name:
        raise ValueError(f"env state is for backend {state['backend']!r}, the env runs {env.backend.name!r}")
    env.set_state(state)
    if "mj_state" in state:
        import mujoco

        mujoco.mj_setState(
            env.model, env.data, np.asarray(state["mj_state"], dtype=np.float64), _mj_state_spec()
        )
        if env.backend.name == "dmcontrol":
            # dm_control's legacy step starts with mj_step2, reusing the position/velocity stage of the
            # previous step's closing mj_step1; recompute it from the restored state (it depends on
            # nothing else, so the values are the ones the uninterrupted run had).
            mujoco.mj_step1(env.model, env.data)


class ReplayableEnv:
    """A :class:`sim.env.RobotEnv` that remembers how its current episode began and the actions since.

    PyBullet keeps solver and contact state that no API can write back, but it is deterministic and its
    reset clears that state: resetting the same way and replaying the episode's actions recreates the
    state exactly (:func:`restore_env_state`). Everything else passes through to the env.
    """

    def __init__(self, env: RobotEnv) -> None:
        self.env = env
        self.reset_seed: int | None = None
        self.rng_before_reset: Mapping[str, Any] | None = None
        self.actions: list[np.ndarray] = []

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        self.reset_seed = seed
        self.rng_before_reset = None if seed is not None else self.env.np_random.bit_generator.state
        self.actions = []
        return self.env.reset(seed=seed, options=options)

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        self.actions.append(np.array(action, dtype=np.float32))
        return self.env.step(action)

    def close(self) -> None:
        self.env.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.env, name)


def _replay(env: RobotEnv | ReplayableEnv, state: dict[str, Any]) -> None:
    """Reset as the episode began and replay its actions; check that the env arrived where it was."""
    replay = state["replay"]
    inner = env.env if isinstance(env, ReplayableEnv) else env
    if replay["reset_seed"] is not None:
        env.reset(seed=int(replay["reset_seed"]))
    else:
        inner.np_random.bit_generator.state = replay["rng_before_reset"]
        env.reset()
    for action in np.asarray(replay["actions"], dtype=np.float32):
        env.step(action)
    if inner._t != int(state["t"]) or inner.np_random.bit_generator.state != state["np_random"]:
        raise RuntimeError("replaying the sim episode did not reproduce the checkpointed env state")


# --------------------------------------------------------------------------------------------------
# Episode returns of the rollouts, for the progress display and metrics.


class ReturnTracker(EpisodeAssembler):
    """Sums rewards per (worker, env) episode from the chunks a :class:`RolloutReceiver` accepts.

    Plugged in as the receiver's assembler (it sees every accepted chunk, in order per worker), but
    writes nothing: finished episodes' undiscounted returns and lengths are queued in
    :attr:`finished` for the runner to log and clear.
    """

    def __init__(self) -> None:  # no writer: nothing is logged to disk
        self.counters: dict[str, int] = {"episodes/finished": 0}
        self.running: dict[tuple[int, int], tuple[float, int]] = {}
        """(worker_id, env_index) -> (return so far, steps so far) of the episode in progress."""
        self.finished: list[tuple[float, int]] = []
        """(return, length) of episodes finished since the runner last cleared the list."""

    def feed(self, chunk: RolloutChunk) -> None:
        done = chunk.terminated | chunk.truncated
        env_index = chunk.env_index.tolist()
        reward = chunk.reward.tolist()
        for i, e in enumerate(env_index):
            key = (chunk.worker_id, int(e))
            ret, steps = self.running.get(key, (0.0, 0))
            ret, steps = ret + reward[i], steps + 1
            if done[i]:
                self.finished.append((ret, steps))
                self.counters["episodes/finished"] += 1
                self.running.pop(key, None)
            else:
                self.running[key] = (ret, steps)

    def forget_worker(self, worker_id: int) -> None:
        for key in [k for k in self.running if k[0] == worker_id]:
            del self.running[key]

    def state(self) -> dict[str, Any]:
        return {
            "running": [[w, e, r, n] for (w, e), (r, n) in sorted(self.running.items())],
            "episodes": self.counters["episodes/finished"],
        }

    def load_state(self, state: dict[str, Any]) -> None:
        self.running = {(int(w), int(e)): (float(r), int(n)) for w, e, r, n in state["running"]}
        self.counters["episodes/finished"] = int(state["episodes"])
        self.finished.clear()


# --------------------------------------------------------------------------------------------------
# The collectors.


class SimCollector(Protocol):
    """What the training loop needs from a source of sim rollouts."""

    deterministic: bool
    """True when the same seed gives the same rollouts (and a checkpoint restores them exactly)."""
    returns: ReturnTracker

    def publish(self, weights: PolicyWeights, version: int) -> None:
        """Make ``weights`` the acting policy as ``version`` (the sim side acts with it from now on)."""
        ...

    def collect(self, n_steps: int) -> int:
        """Move the rollouts of ``n_steps`` vector steps into the SIM buffer (launched workers: what has
        arrived, at most a few chunks); returns the transitions added."""
        ...

    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """Checkpoint state: (JSON-able values, named arrays)."""
        ...

    def load_state(self, values: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        """Restore :meth:`state`."""
        ...

    def close(self) -> None: ...


def _publish(tx: Sender, weights: PolicyWeights, version: int) -> PolicyWeights:
    from robot_rl.bus.topics import WEIGHTS

    snapshot = msgspec.structs.replace(weights, policy_version=version)
    tx.send(WEIGHTS, snapshot)
    return snapshot


class LockstepCollector:
    """The sim worker of :mod:`sim.worker`, in this process, stepped by the learner (module docstring).

    Args:
        robot, backend, profile: the simulator (``sim.make_env`` arguments).
        seed: seeds the environments and the worker's action noise (``SimWorkerProcess.reseed``).
        mixer: the learner's replay; chunks go to its SIM buffer.
        num_envs: environments stepped per vector step (1 gives UTD 1 with one step per update).
        max_episode_steps: episode cut (truncated); None = the task's default.
        ctx: the bus context the inproc sockets are made in (inproc only reaches one context).
    """

    deterministic = True

    def __init__(
        self,
        *,
        robot: str,
        backend: str,
        profile: str,
        seed: int,
        mixer: SourceMixer,
        ctx: BusContext,
        num_envs: int = 1,
        max_episode_steps: int | None = None,
    ) -> None:
        from robot_rl.bus.sockets import Receiver, Sender, make_pub, make_push, make_sub
        from robot_rl.bus.topics import WEIGHTS, endpoints_from_base
        from sim.commands import SimWorker
        from sim.worker import SimWorkerProcess

        self.bus = f"inproc://rrl-train-{os.getpid()}-{next(_inproc_ids)}"
        ep = endpoints_from_base(self.bus)
        self.worker_cfg = SimWorker(
            connect=self.bus,
            robot=robot,  # type: ignore[arg-type]
            backend=backend,  # type: ignore[arg-type]
            num_envs=num_envs,
            profile=profile,
            worker_id="sim-inproc",
            index=1,
            seed=seed,
            chunk_steps=1,
            max_episode_steps=max_episode_steps,
        )
        self.worker: SimWorkerProcess = SimWorkerProcess(self.worker_cfg)
        # Every env remembers its episode's start and actions (what a PyBullet checkpoint replays); the
        # worker's seeded reset is repeated through the wrappers so they know it.
        self.worker.envs = [cast("RobotEnv", ReplayableEnv(env)) for env in self.worker.envs]
        self.worker.reseed(seed)
        self.returns = ReturnTracker()
        # Learner side binds (as the learner process does); the worker side connects.
        self._weights_tx = Sender(make_pub(ctx, ep.weights, sndhwm=2), "train")
        self.receiver = RolloutReceiver(
            ctx,
            ep,
            mixer,
            robot=robot,
            expected_obs_dim=self.worker.obs_dim,
            expected_act_dim=self.worker.act_dim,
            assembler=self.returns,
        )
        self._weights_rx: Receiver = Receiver(make_sub(ctx, ep.weights, topics=(WEIGHTS,), rcvhwm=2))
        self._push: Socket = make_push(ctx, ep.rollout, sndhwm=4)
        self._rollout_tx = Sender(self._push, self.worker.sender_id)
        self.snapshot: PolicyWeights | None = None

    @property
    def envs(self) -> list[RobotEnv]:
        return self.worker.envs

    def publish(self, weights: PolicyWeights, version: int) -> None:
        self.snapshot = _publish(self._weights_tx, weights, version)
        # The in-process worker takes it before its next step: wait until it has (a PUB drops what it
        # sends before the SUB's subscription has arrived, so re-send until it is in).
        deadline = time.monotonic() + WEIGHTS_WAIT_S
        while True:
            self.worker.take_weights(self._weights_rx.drain_latest(20), self._push, self._rollout_tx)
            policy = self.worker.policy
            if policy is not None and policy.policy_version == version:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"the in-process sim worker did not receive policy v{version}")
            self._weights_tx.send(b"weights", self.snapshot)

    def collect(self, n_steps: int) -> int:
        worker = self.worker
        if worker.policy is None:
            raise RuntimeError("collect() before the first publish()")
        added = 0
        for _ in range(n_steps):
            worker.vector_step(worker.policy)
            worker.send_chunk(self._push, self._rollout_tx, max_wait_s=CHUNK_WAIT_S)
            got = self.receiver.poll(int(CHUNK_WAIT_S * 1000), max_chunks=1)
            if got != worker.cfg.num_envs:
                raise RuntimeError(
                    f"the in-process sim worker's chunk did not arrive (got {got} rows): "
                    f"{self.receiver.all_counters()}"
                )
            added += got
        return added

    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        worker = self.worker
        assert worker.policy is not None and self.snapshot is not None
        arrays: dict[str, np.ndarray] = {
            "obs": worker.obs.copy(),
            "episode_index": worker.episode_index.copy(),
            "step": worker.step.copy(),
            **{f"policy/{k}": v for k, v in weights_to_arrays(self.snapshot).items()},
        }
        envs = [split_arrays(capture_env_state(env), f"env{i}/", arrays) for i, env in enumerate(worker.envs)]
        values: dict[str, Any] = {
            "kind": "lockstep",
            "rng": worker.rng.bit_generator.state,
            "counters": dict(worker.counters),
            "policy_version": worker.policy.policy_version,
            "returns": self.returns.state(),
            "envs": envs,
        }
        return values, arrays

    def load_state(self, values: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        if values.get("kind") != "lockstep":
            raise ValueError(
                f"the checkpoint holds a {values.get('kind')!r} collector, this run collects in lockstep"
            )
        worker = self.worker
        if len(values["envs"]) != len(worker.envs):
            raise ValueError(
                f"the checkpoint holds {len(values['envs'])} sim envs, this run has {len(worker.envs)}"
            )
        snapshot = weights_from_arrays({k[7:]: v for k, v in arrays.items() if k.startswith("policy/")})
        self.publish(snapshot, int(values["policy_version"]))
        for env, env_values in zip(worker.envs, values["envs"], strict=True):
            restore_env_state(env, join_arrays(env_values, arrays))
        worker.obs[:] = arrays["obs"]
        worker.episode_index[:] = arrays["episode_index"]
        worker.step[:] = arrays["step"]
        worker.rng.bit_generator.state = values["rng"]
        worker.counters.update({k: int(v) for k, v in values["counters"].items()})
        self.returns.load_state(values["returns"])

    def close(self) -> None:
        for env in self.worker.envs:
            env.close()


def split_arrays(tree: Any, prefix: str, arrays: dict[str, np.ndarray]) -> Any:
    """``tree`` (nested dicts/lists) with every ndarray moved into ``arrays`` under ``prefix + path`` and
    replaced by ``{"__array__": key}``, so the rest is JSON."""
    if isinstance(tree, np.ndarray):
        arrays[prefix] = tree
        return {"__array__": prefix}
    if isinstance(tree, dict):
        return {k: split_arrays(v, f"{prefix}{k}/", arrays) for k, v in tree.items()}
    if isinstance(tree, list | tuple):
        return [split_arrays(v, f"{prefix}{i}/", arrays) for i, v in enumerate(tree)]
    if isinstance(tree, np.generic):
        return tree.item()
    return tree


def join_arrays(tree: Any, arrays: dict[str, np.ndarray]) -> Any:
    """Inverse of :func:`split_arrays`."""
    if isinstance(tree, dict):
        if set(tree) == {"__array__"}:
            return arrays[tree["__array__"]]
        return {k: join_arrays(v, arrays) for k, v in tree.items()}
    if isinstance(tree, list):
        return [join_arrays(v, arrays) for v in tree]
    return tree


def weights_to_arrays(weights: PolicyWeights) -> dict[str, np.ndarray]:
    out = {f"param/{k}": np.asarray(v, np.float32) for k, v in weights.params.items()}
    out["arch"] = np.frombuffer(weights.arch.encode(), dtype=np.uint8)
    out["obs_mean"] = np.asarray(weights.obs_mean, np.float32)
    out["obs_std"] = np.asarray(weights.obs_std, np.float32)
    return out


def weights_from_arrays(arrays: dict[str, np.ndarray]) -> PolicyWeights:
    return PolicyWeights(
        policy_version=0,
        arch=bytes(np.asarray(arrays["arch"], np.uint8)).decode(),
        obs_mean=np.asarray(arrays["obs_mean"], np.float32),
        obs_std=np.asarray(arrays["obs_std"], np.float32),
        params={k[6:]: np.asarray(v, np.float32) for k, v in arrays.items() if k.startswith("param/")},
    )


class LaunchCollector:
    """Sim workers started from a topology file (``--launch``), over its ipc/tcp bus (module docstring).

    Args:
        topology_file: the launch/*.toml file; its ``[[sim_workers]]`` must simulate ``robot``.
        run_dir: the launcher's run folder (logs/, launch.json).
        robot: the robot of the training run.
        obs_dim, act_dim: the widths every chunk must have.
        mixer: the learner's replay; chunks go to its SIM buffer.
        ctx: the bus context the learner's sockets are made in.
    """

    deterministic = False
    REPUBLISH_S = 1.0
    MAX_CHUNKS_PER_COLLECT = 4

    def __init__(
        self,
        *,
        topology_file: Path,
        run_dir: Path,
        robot: str,
        backend: str,
        obs_dim: int,
        act_dim: int,
        mixer: SourceMixer,
        ctx: BusContext,
    ) -> None:
        from robot_rl.bus.sockets import Sender, make_pub
        from robot_rl.bus.topics import endpoints_from_base
        from robot_rl.launch.supervisor import LineReporter, Supervisor, prepare_launch

        topology = load_worker_topology(topology_file, robot, backend)
        self.plan = prepare_launch(topology, run_dir=run_dir)
        ep = endpoints_from_base(self.plan.bus_base)
        self.returns = ReturnTracker()
        self._weights_tx = Sender(make_pub(ctx, ep.weights, sndhwm=2), "train")
        self.receiver = RolloutReceiver(
            ctx,
            ep,
            mixer,
            robot=robot,
            expected_obs_dim=obs_dim,
            expected_act_dim=act_dim,
            assembler=self.returns,
        )
        self._log = (self.plan.logs_dir / "launcher.log").open("w", encoding="utf-8")
        self.supervisor: Supervisor = Supervisor(self.plan, reporter=LineReporter(self._log))
        self.supervisor.start()
        self.snapshot: PolicyWeights | None = None
        self._next_republish = 0.0
        log.info("launched %d sim worker process(es) on %s", len(self.plan.specs), self.plan.bus_base)

    def publish(self, weights: PolicyWeights, version: int) -> None:
        self.snapshot = _publish(self._weights_tx, weights, version)
        self._next_republish = time.monotonic() + self.REPUBLISH_S

    def _republish(self) -> None:
        # Workers that (re)start late get the current snapshot within a second.
        if self.snapshot is not None and time.monotonic() >= self._next_republish:
            self._weights_tx.send(b"weights", self.snapshot)
            self._next_republish = time.monotonic() + self.REPUBLISH_S

    def collect(self, n_steps: int) -> int:
        del n_steps  # the workers step at their own pace; take what has arrived
        self._republish()
        return self.receiver.poll(0, max_chunks=self.MAX_CHUNKS_PER_COLLECT)

    def wait_for(self, rows: int, timeout_s: float) -> None:
        """Block until the SIM buffer holds ``rows`` transitions; RuntimeError after ``timeout_s``."""
        sim = self.receiver.mixer.buffer(Source.SIM)
        deadline = time.monotonic() + timeout_s
        while len(sim) < rows:
            self._republish()
            self.receiver.poll(100, max_chunks=64)
            if time.monotonic() > deadline:
                states = {s.name: s.state_text() for s in self.supervisor.status()}
                raise RuntimeError(
                    f"sim workers delivered {len(sim)} of {rows} warm-up transitions in {timeout_s:g} s; "
                    f"worker states: {states} (logs in {self.plan.logs_dir})"
                )

    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        # External workers' envs are not ours to capture: a resumed run starts them afresh.
        arrays = (
            {}
            if self.snapshot is None
            else {f"policy/{k}": v for k, v in weights_to_arrays(self.snapshot).items()}
        )
        version = -1 if self.snapshot is None else self.snapshot.policy_version
        return {"kind": "launch", "policy_version": version, "returns": self.returns.state()}, arrays

    def load_state(self, values: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        if any(k.startswith("policy/") for k in arrays):
            snapshot = weights_from_arrays({k[7:]: v for k, v in arrays.items() if k.startswith("policy/")})
            self.publish(snapshot, int(values["policy_version"]))

    def close(self) -> None:
        with contextlib.suppress(TimeoutError):
            self.supervisor.stop(timeout_s=30.0)
        self._log.close()


def load_worker_topology(path: Path, robot: str, backend: str) -> Any:
    """The topology of ``path`` without its ``[learner]`` (``robot-rl train`` is the learner); ValueError
    if it has no sim workers or one simulates another robot or runs another backend."""
    from robot_rl.launch.config import load_topology

    topology = load_topology(path)
    if not topology.sim_workers:
        raise ValueError(f"{path} has no [[sim_workers]] table")
    for w in topology.sim_workers:
        if w.robot != robot:
            raise ValueError(
                f"{path} [[sim_workers]] {w.name!r} simulates robot {w.robot!r}, "
                f"the real logs are of {robot!r}"
            )
        if w.backend != backend:
            raise ValueError(
                f"{path} [[sim_workers]] {w.name!r} runs backend {w.backend!r}, --sim is {backend!r}"
            )
    return dataclasses.replace(topology, learner=None)
