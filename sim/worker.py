"""Sim worker process: N environments, a local copy of the policy, rollouts streamed to the learner.

``python -m sim.worker --connect ipc:///tmp/rrl-run --robot quadruped --num-envs 8`` (the same
arguments as ``robot-rl sim-worker``; :class:`sim.commands.SimWorker` documents each one).

Links (docs/bus.md section 2; addresses from the base address by ``endpoints_from_base``):

- weights: SUB, RCVHWM 2. Between two vector steps the worker takes the newest queued snapshot
  (``Receiver.drain_latest``). A snapshot with a new ``policy_version`` first *closes* the chunk in
  progress and sends it (its rows were all chosen by the old version), then swaps the whole policy
  object in one assignment: no action is ever computed by a mix of versions, and every chunk
  carries the one version that chose all its rows. The same version published again (the learner
  re-publishes every second for late joiners) is ignored.
- rollout: PUSH, SNDHWM ``--sndhwm`` (4 chunks). Back-pressure: when the learner's queue and ours
  are full the worker *waits* (no stepping, nothing dropped), polling in 100 ms slices and counting
  ``send_blocked`` (sends that had to wait) and ``send_blocked_ms``; after ``--send-timeout-s`` the
  chunk is dropped and counted ``dropped/backpressure`` (chunks) and ``dropped/backpressure_rows``.
- control: ROUTER at ``control(index)``: ``seed`` {"seed": s} (re-seed and reset every env),
  ``reset`` (reset every env), ``status`` (counters), ``stop``. Seed and reset close the chunk in
  progress first and give every env the same new episode index ``K`` (returned in the reply as
  ``episode_index``), so the rows of the reset episodes are easy to find.
- telemetry: PUB (connect), a heartbeat every 1 s from the main loop with the counters.

Chunks are only ever sent whole: rows are written into arrays owned by the chunk being built, and
a chunk is a message only once it is closed. A closed chunk holds whole vector steps (rows are
``env 0..N-1`` of step k, then of step k+1, ...). On SIGTERM/SIGINT the worker finishes the vector
step in progress, sends the chunk in progress as a complete, shorter chunk (waiting at most 0.5 s
for the learner to take it), closes the rollout PUSH with a 0.5 s linger (so chunks already handed
to libzmq reach a live learner) and every other socket with LINGER=0, and exits 0. A chunk that
cannot be handed over in time is dropped whole and counted ``dropped/shutdown_rows``.

Truncation: an episode's last row holds the real final observation in ``next_obs``; the env is
reset only after the row is written, and the reset observation is the next row's ``obs``.
``t_ns`` is sim time since the episode start (``step * control_dt_s``), which is what a sim
source's timestamps mean in the log format.

Exit codes: 0 stopped (signal, stop request, max_steps); 3 no weights within ``--weights-timeout-s``.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import sys
import time
from types import FrameType
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from robot_rl.bus.codec import Decoded
    from robot_rl.bus.sockets import BusContext, Responder
    from robot_rl.nets.numpy_policy import NumpyPolicy
    from sim.commands import SimWorker
    from sim.env import RobotEnv

log = logging.getLogger("sim.worker")

EXIT_NO_WEIGHTS = 3
POLL_SLICE_MS = 100
"""Longest single wait anywhere in the loop, so a signal is acted on within about this time."""
SHUTDOWN_SEND_S = 0.5
"""How long the final chunk may wait for the learner at shutdown (the exit must stay under ~2 s)."""
WAIT_LOG_INTERVAL_S = 5.0


class ChunkBuilder:
    """Rows of the rollout chunk being built, in arrays owned by that chunk.

    Fresh arrays are allocated for every chunk: the codec sends large arrays zero-copy, so a sent
    chunk's buffers must never be written again.
    """

    def __init__(self, num_envs: int, chunk_steps: int, obs_dim: int, act_dim: int) -> None:
        self.num_envs = num_envs
        self.capacity = num_envs * chunk_steps
        self.obs_dim = obs_dim
        self.act_dim = act_dim
        self.rows = 0
        self.env_index_row = np.arange(num_envs, dtype=np.int64)
        self._alloc()

    def _alloc(self) -> None:
        c = self.capacity
        self.env_index = np.empty(c, np.int64)
        self.episode_index = np.empty(c, np.int64)
        self.step = np.empty(c, np.int64)
        self.obs = np.empty((c, self.obs_dim), np.float32)
        self.action = np.empty((c, self.act_dim), np.float32)
        self.reward = np.empty(c, np.float64)
        self.next_obs = np.empty((c, self.obs_dim), np.float32)
        self.terminated = np.empty(c, np.bool_)
        self.truncated = np.empty(c, np.bool_)
        self.t_ns = np.empty(c, np.int64)
        self.next_t_ns = np.empty(c, np.int64)
        self.rows = 0

    @property
    def full(self) -> bool:
        return self.rows >= self.capacity

    def add_step(
        self,
        episode_index: np.ndarray,
        step: np.ndarray,
        obs: np.ndarray,
        action: np.ndarray,
        reward: np.ndarray,
        next_obs: np.ndarray,
        terminated: np.ndarray,
        truncated: np.ndarray,
        dt_ns: int,
    ) -> None:
        """Append one vector step: every argument has N rows (N = num_envs), in env order."""
        a, b = self.rows, self.rows + self.num_envs
        self.env_index[a:b] = self.env_index_row
        self.episode_index[a:b] = episode_index
        self.step[a:b] = step
        self.obs[a:b] = obs
        self.action[a:b] = action
        self.reward[a:b] = reward
        self.next_obs[a:b] = next_obs
        self.terminated[a:b] = terminated
        self.truncated[a:b] = truncated
        self.t_ns[a:b] = step * dt_ns
        self.next_t_ns[a:b] = (step + 1) * dt_ns
        self.rows = b

    def close(self, worker_id: int, policy_version: int, robot: str, backend: str, task: str) -> Any:
        """The chunk of the rows so far as a ``RolloutChunk``; the builder starts a new one."""
        from robot_rl.bus.messages import RolloutChunk

        n = self.rows
        chunk = RolloutChunk(
            worker_id=worker_id,
            policy_version=policy_version,
            robot=robot,
            backend=backend,
            task=task,
            env_index=self.env_index[:n],
            episode_index=self.episode_index[:n],
            step=self.step[:n],
            obs=self.obs[:n],
            action=self.action[:n],
            reward=self.reward[:n],
            next_obs=self.next_obs[:n],
            terminated=self.terminated[:n],
            truncated=self.truncated[:n],
            t_ns=self.t_ns[:n],
            next_t_ns=self.next_t_ns[:n],
        )
        self._alloc()
        return chunk


def worker_index(worker_id: str, index: int | None) -> int:
    """The explicit ``index``, else the number that ends ``worker_id`` (``sim-3`` -> 3), else the pid."""
    if index is not None:
        return index
    m = re.search(r"(\d+)$", worker_id)
    if m is not None and int(m.group(1)) >= 1:
        return int(m.group(1))
    return os.getpid()


class SimWorkerProcess:
    """The worker's state and loop (module docstring). One instance per process; not thread-safe."""

    def __init__(self, cfg: SimWorker) -> None:
        import sim
        from robot_rl.bus.topics import endpoints_from_base

        self.cfg = cfg
        self.sender_id = cfg.worker_id or f"worker-{os.getpid()}"
        self.index = worker_index(cfg.worker_id, cfg.index)
        self.endpoints = endpoints_from_base(cfg.connect)
        task_kwargs: dict[str, Any] = {}
        if cfg.max_episode_steps is not None:
            task_kwargs["max_episode_steps"] = cfg.max_episode_steps
        self.envs: list[RobotEnv] = [
            sim.make_env(cfg.robot, cfg.backend, cfg.profile, **task_kwargs) for _ in range(cfg.num_envs)
        ]
        env0 = self.envs[0]
        self.obs_dim = int(env0.observation_space.shape[0])  # type: ignore[index]
        self.act_dim = int(env0.action_space.shape[0])  # type: ignore[index]
        self.task_name = type(env0.task).__name__
        self.dt_ns = round(env0.robot.control_dt_s * 1e9)
        n = cfg.num_envs
        self.obs = np.zeros((n, self.obs_dim), np.float32)
        self.episode_index = np.zeros(n, np.int64)
        self.step = np.zeros(n, np.int64)
        self._next_obs = np.zeros((n, self.obs_dim), np.float32)
        self._reward = np.zeros(n, np.float64)
        self._terminated = np.zeros(n, np.bool_)
        self._truncated = np.zeros(n, np.bool_)
        self.builder = ChunkBuilder(n, cfg.chunk_steps, self.obs_dim, self.act_dim)
        self.policy: NumpyPolicy | None = None
        self.rng = np.random.default_rng()
        self.stop_reason = ""
        self.counters: dict[str, int] = {
            "env_steps": 0,
            "vector_steps": 0,
            "episodes": 0,
            "chunks_sent": 0,
            "rows_sent": 0,
            "msgs_out": 0,
            "msgs_in": 0,
            "weights_version": -1,
            "weights_updates": 0,
            "send_blocked": 0,
            "send_blocked_ms": 0,
            "dropped/backpressure": 0,
            "dropped/backpressure_rows": 0,
            "dropped/shutdown_rows": 0,
            "rejected/weights": 0,
            "requests": 0,
        }
        self.reseed(cfg.seed)

    # --- environments ----------------------------------------------------------------------------

    def reseed(self, seed: int | None) -> None:
        """Reset every env (with per-env seeds drawn from ``seed`` when given) and start new episodes
        all numbered ``K = max(previous) + 1`` (0 at start-up)."""
        if seed is not None:
            children = np.random.SeedSequence(seed).spawn(len(self.envs) + 1)
            env_seeds: list[int | None] = [int(c.generate_state(1)[0]) for c in children[:-1]]
            self.rng = np.random.default_rng(children[-1])
        else:
            env_seeds = [None] * len(self.envs)
        for i, env in enumerate(self.envs):
            self.obs[i], _ = env.reset(seed=env_seeds[i])
        started = self.counters["vector_steps"] > 0 or bool(self.episode_index.any())
        self.episode_index[:] = int(self.episode_index.max()) + 1 if started else 0
        self.step[:] = 0

    def vector_step(self, policy: NumpyPolicy) -> None:
        """One action for every env from ``policy``, one env step each, rows into the chunk, auto-reset."""
        action = policy.act(self.obs, self.rng, self.cfg.deterministic)
        # tanh already lands in [-1, 1]; the clip makes "the action actually sent" exact even if a
        # future policy overshoots, and it is what RobotEnv applies anyway.
        np.clip(action, -1.0, 1.0, out=action)
        next_obs, reward, terminated, truncated = (
            self._next_obs,
            self._reward,
            self._terminated,
            self._truncated,
        )
        for i, env in enumerate(self.envs):
            next_obs[i], reward[i], terminated[i], truncated[i], _ = env.step(action[i])
        self.builder.add_step(
            self.episode_index,
            self.step,
            self.obs,
            action,
            reward,
            next_obs,
            terminated,
            truncated,
            self.dt_ns,
        )
        self.obs[:] = next_obs
        self.step += 1
        done = terminated | truncated
        if done.any():
            for i in np.flatnonzero(done).tolist():
                self.obs[i], _ = self.envs[i].reset()
                self.episode_index[i] += 1
                self.step[i] = 0
            self.counters["episodes"] += int(done.sum())
        self.counters["env_steps"] += len(self.envs)
        self.counters["vector_steps"] += 1

    # --- bus ---------------------------------------------------------------------------------------

    def send_chunk(self, push: Any, sender: Any, *, max_wait_s: float) -> None:
        """Close the chunk in progress (if it has rows) and send it whole, or drop it whole."""
        import zmq

        from robot_rl.bus.topics import ROLLOUT

        if self.builder.rows == 0 or self.policy is None:
            return
        rows = self.builder.rows
        chunk = self.builder.close(
            self.index, self.policy.policy_version, self.cfg.robot, self.cfg.backend, self.task_name
        )
        if not push.poll(0, zmq.POLLOUT):
            # Back-pressure: the learner is behind. Wait (not stepping), in slices, so a signal is seen.
            self.counters["send_blocked"] += 1
            t0 = time.monotonic()
            deadline = t0 + max_wait_s
            writable = False
            while not writable:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                if self.stop_reason:
                    # Shutting down: do not hold the exit for the full send timeout.
                    deadline = min(deadline, t0 + SHUTDOWN_SEND_S)
                writable = bool(push.poll(min(POLL_SLICE_MS, max(1, int(remaining * 1000))), zmq.POLLOUT))
            self.counters["send_blocked_ms"] += int((time.monotonic() - t0) * 1000)
            if not writable:
                self.counters["dropped/backpressure"] += 1
                self.counters["dropped/backpressure_rows"] += rows
                log.warning(
                    "%s: learner not taking rollouts for %.1f s; dropped a chunk of %d rows",
                    self.sender_id,
                    max_wait_s,
                    rows,
                )
                return
        if sender.send(ROLLOUT, chunk) is None:
            self.counters["dropped/backpressure"] += 1
            self.counters["dropped/backpressure_rows"] += rows
            return
        self.counters["chunks_sent"] += 1
        self.counters["rows_sent"] += rows
        self.counters["msgs_out"] += 1

    def take_weights(self, decoded: Decoded | None, push: Any, sender: Any) -> None:
        """Swap in the snapshot in ``decoded`` if its version is new (closing the chunk first)."""
        from robot_rl.bus.messages import PolicyWeights
        from robot_rl.nets.numpy_policy import NumpyPolicy

        if decoded is None:
            return
        self.counters["msgs_in"] += 1
        msg = decoded.msg
        if not isinstance(msg, PolicyWeights):
            self.counters["rejected/weights"] += 1
            return
        if self.policy is not None and msg.policy_version == self.policy.policy_version:
            return
        try:
            policy = NumpyPolicy.from_weights(msg)
        except ValueError as err:
            self.counters["rejected/weights"] += 1
            log.error("%s: weights v%d refused: %s", self.sender_id, msg.policy_version, err)
            return
        if policy.obs_dim != self.obs_dim or policy.act_dim != self.act_dim:
            self.counters["rejected/weights"] += 1
            log.error(
                "%s: weights v%d are for obs %d / act %d, the env has %d / %d",
                self.sender_id,
                msg.policy_version,
                policy.obs_dim,
                policy.act_dim,
                self.obs_dim,
                self.act_dim,
            )
            return
        # Close and send the old version's rows before the swap: a chunk never mixes versions.
        self.send_chunk(push, sender, max_wait_s=self.cfg.send_timeout_s)
        self.policy = policy
        self.counters["weights_version"] = policy.policy_version
        self.counters["weights_updates"] += 1

    def serve(self, responder: Responder, push: Any, sender: Any) -> None:
        """Answer one pending control request, if any (never waits)."""
        got = responder.recv_request(0)
        if got is None:
            return
        identity, env, req = got
        self.counters["msgs_in"] += 1
        self.counters["requests"] += 1
        ok, error = True, ""
        payload: dict[str, bool | int | float | str] = {}
        if req.command in ("seed", "reset"):
            seed_arg = req.args.get("seed")
            if req.command == "seed" and (not isinstance(seed_arg, int) or isinstance(seed_arg, bool)):
                ok, error = False, f"seed needs an integer args.seed, got {seed_arg!r}"
            else:
                self.send_chunk(push, sender, max_wait_s=self.cfg.send_timeout_s)
                self.reseed(seed_arg if req.command == "seed" else None)  # type: ignore[arg-type]
                payload = {"episode_index": int(self.episode_index[0])}
        elif req.command == "status":
            payload = {"state": "running" if self.policy is not None else "waiting_weights", **self.counters}
        elif req.command == "stop":
            self.stop_reason = "stop request"
        else:
            ok, error = False, f"unsupported command {req.command!r}"
        if responder.reply(identity, env, ok=ok, error=error, payload=payload):
            self.counters["msgs_out"] += 1

    def heartbeat_counters(self, extra: dict[str, int]) -> dict[str, int]:
        return {**self.counters, **extra}

    # --- main loop ---------------------------------------------------------------------------------

    def run(self, ctx: BusContext) -> int:
        from robot_rl.bus.sockets import (
            Heartbeater,
            Receiver,
            Responder,
            Sender,
            make_pub,
            make_push,
            make_router,
            make_sub,
        )
        from robot_rl.bus.topics import WEIGHTS

        cfg, ep = self.cfg, self.endpoints
        weights_rx = Receiver(make_sub(ctx, ep.weights, topics=(WEIGHTS,), rcvhwm=2))
        push = make_push(ctx, ep.rollout, sndhwm=cfg.sndhwm, send_timeout_ms=int(cfg.send_timeout_s * 1000))
        rollout_tx = Sender(push, self.sender_id)
        responder = Responder(make_router(ctx, ep.control(self.index)), self.sender_id)
        heart = Heartbeater(Sender(make_pub(ctx, ep.telemetry, bind=False, sndhwm=100), self.sender_id))

        def beat(state: str) -> None:
            rejected = {k: v for k, v in weights_rx.counters.items() if k.startswith("rejected/")}
            counters = {**self.counters, **{f"weights_{k}": v for k, v in rejected.items()}}
            if heart.tick(state, {**counters, **responder.rejections()}):
                self.counters["msgs_out"] += 1

        log.info(
            "%s (index %d): %d x %s/%s, profile %s; waiting for weights on %s",
            self.sender_id,
            self.index,
            cfg.num_envs,
            cfg.robot,
            cfg.backend,
            cfg.profile,
            ep.weights,
        )
        t0 = time.monotonic()
        next_log = t0 + WAIT_LOG_INTERVAL_S
        while self.policy is None and not self.stop_reason:
            beat("waiting_weights")
            self.serve(responder, push, rollout_tx)
            self.take_weights(weights_rx.drain_latest(POLL_SLICE_MS), push, rollout_tx)
            now = time.monotonic()
            if self.policy is None and now - t0 > cfg.weights_timeout_s:
                log.error(
                    "%s: no policy weights on %s within %.0f s; is the learner running?",
                    self.sender_id,
                    ep.weights,
                    cfg.weights_timeout_s,
                )
                return EXIT_NO_WEIGHTS
            if now >= next_log:
                log.info(
                    "%s: still waiting for policy weights on %s (%.0f s)",
                    self.sender_id,
                    ep.weights,
                    now - t0,
                )
                next_log = now + WAIT_LOG_INTERVAL_S
        if self.policy is not None:
            log.info("%s: acting with weights v%d", self.sender_id, self.policy.policy_version)

        max_steps = cfg.max_steps
        while not self.stop_reason:
            self.serve(responder, push, rollout_tx)
            self.take_weights(weights_rx.drain_latest(0), push, rollout_tx)
            if self.stop_reason or self.policy is None:
                break
            self.vector_step(self.policy)
            if self.builder.full:
                self.send_chunk(push, rollout_tx, max_wait_s=cfg.send_timeout_s)
            beat("running")
            if max_steps is not None and self.counters["env_steps"] >= max_steps:
                self.stop_reason = "max_steps"

        # The rows built so far are whole transitions: send them as a complete, shorter chunk.
        rows = self.builder.rows
        dropped_before = self.counters["dropped/backpressure_rows"]
        self.send_chunk(push, rollout_tx, max_wait_s=SHUTDOWN_SEND_S)
        if self.counters["dropped/backpressure_rows"] > dropped_before:
            self.counters["dropped/shutdown_rows"] += rows
        heart.tick("stopped", self.counters, now=float("inf"))
        # BusContext.close() destroys every socket with LINGER=0, which would discard the chunk just
        # handed to libzmq. The PUSH socket alone is closed first with a bounded linger, so a chunk
        # the learner is taking gets there and a gone learner still cannot hold the exit past it.
        push.close(linger=int(SHUTDOWN_SEND_S * 1000))
        return 0


def run_worker(cfg: SimWorker) -> int:
    """Run the worker of ``cfg`` in this process until it stops; returns the exit code."""
    from robot_rl.bus.sockets import BusContext

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s", stream=sys.stderr
    )
    worker = SimWorkerProcess(cfg)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        # Only set a flag: the vector step in progress finishes and the loop exits at its top.
        worker.stop_reason = signal.Signals(signum).name

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    ctx = BusContext()
    try:
        code = worker.run(ctx)
    finally:
        ctx.close()  # LINGER=0 on every socket: nothing half-sent lingers
        for env in worker.envs:
            env.close()
        for s, h in previous.items():
            signal.signal(s, h)
    c = worker.counters
    print(
        f"sim-worker {worker.sender_id}: stopped ({worker.stop_reason or 'error'}): "
        f"env_steps={c['env_steps']} "
        f"chunks_sent={c['chunks_sent']} rows_sent={c['rows_sent']} "
        f"dropped/backpressure_rows={c['dropped/backpressure_rows']} weights_version={c['weights_version']}",
        file=sys.stderr,
        flush=True,
    )
    return code


def main(argv: list[str] | None = None) -> int:
    """``python -m sim.worker ARGS`` (the arguments of ``robot-rl sim-worker``)."""
    from robot_rl.cli import run_command
    from sim.commands import SimWorker

    return run_command(SimWorker, sys.argv[1:] if argv is None else argv, "sim.worker")


if __name__ == "__main__":
    sys.exit(main())
