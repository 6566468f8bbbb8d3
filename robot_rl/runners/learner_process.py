"""The learner process: publishes the policy, receives sim rollouts into the replay, logs episodes.

``python -m robot_rl.runners.learner_process --bind ipc:///tmp/rrl-run --robot quadruped`` (the
arguments of ``robot-rl learner``; :class:`robot_rl.runners.commands.Learner` documents each one).

Until the training algorithms land, the learner is a *collector*: its algorithm is ``None``. The
loop is written for an :class:`Algorithm` to plug in unchanged::

    while running:
        receiver.poll(...)                       rollouts -> replay (Source.SIM)
        if algorithm and replay is ready:
            metrics = algorithm.update(mixer.sample(algorithm.batch_sizes, rng))
            every publish_every updates: publish(algorithm.policy_weights(), version + 1)
        re-publish the current weights every republish_s (same version, for late joiners)
        --reload: a changed --policy file is published as version + 1
        heartbeat, control requests

Links: binds weights PUB (SNDHWM 2: a slow subscriber only ever needs the newest snapshot), rollout
PULL (:class:`robot_rl.runners.receiver.RolloutReceiver`, which documents the back-pressure
policy), control ROUTER at ``control(0)``; connects a telemetry PUB for heartbeats. SIGTERM/SIGINT
finish the loop iteration, flush the episode log, close the sockets (LINGER=0) and exit 0.
"""

from __future__ import annotations

import hashlib
import logging
import signal
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Protocol

import numpy as np

from robot_rl.bus.messages import PolicyWeights
from robot_rl.schema import Source, TransitionBatch

if TYPE_CHECKING:
    from robot_rl.bus.sockets import BusContext, Responder, Sender
    from robot_rl.runners.commands import Learner
    from robot_rl.runners.receiver import RolloutReceiver

log = logging.getLogger("robot_rl.learner")

LOOP_POLL_MS = 20
"""Longest wait for rollouts per loop iteration: bounds the latency of publishing and of signals."""
RELOAD_CHECK_S = 0.5
"""How often --reload looks at the policy file."""


class Algorithm(Protocol):
    """What the learner loop needs from a training algorithm (SAC, H2O, ... in a later issue)."""

    batch_sizes: Mapping[Source, int]
    """Transitions sampled per source for one update (H2O samples real and sim separately)."""
    publish_every: int
    """Updates between two published policy versions."""

    def update(self, batches: Mapping[Source, TransitionBatch[np.ndarray]]) -> dict[str, float]:
        """One gradient step on ``batches``; returns slash-namespaced metrics."""
        ...

    def policy_weights(self) -> PolicyWeights:
        """The current actor as a bus snapshot (its policy_version is set by the learner)."""
        ...


class PolicyFile:
    """Watches a policy .npz for content changes (mtime/size as a cheap pre-check, then a hash)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stat: tuple[int, int] | None = None
        self._digest = ""

    def changed(self) -> bool:
        """True once per new content (the first call is True if the file exists)."""
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return False
        key = (st.st_mtime_ns, st.st_size)
        if key == self._stat:
            return False
        self._stat = key
        digest = hashlib.sha256(self.path.read_bytes()).hexdigest()
        if digest == self._digest:
            return False
        self._digest = digest
        return True


class LearnerProcess:
    """State and loop of the learner process (module docstring)."""

    def __init__(self, cfg: Learner, algorithm: Algorithm | None = None) -> None:
        from robot_rl.bus.topics import endpoints_from_base

        self.cfg = cfg
        self.algorithm = algorithm
        self.endpoints = endpoints_from_base(cfg.bind)
        self.stop_reason = ""
        self.responder: Responder | None = None
        self.version = 0
        self.weights: PolicyWeights | None = None
        self.rng = np.random.default_rng(cfg.seed)
        self.counters: dict[str, int] = {
            "msgs_in": 0,
            "msgs_out": 0,
            "weights_version": 0,
            "weights_published": 0,
            "updates": 0,
            "rejected/policy_file": 0,
        }
        self.obs_dim, self.act_dim, self.control_dt_s = cfg.obs_dim, cfg.act_dim, 0.02
        self.layouts: tuple[object, object] | None = None
        self.task = ""
        if cfg.obs_dim is None or cfg.act_dim is None or cfg.out is not None:
            self._read_env_layout()
        self.policy_file = PolicyFile(cfg.policy) if cfg.policy is not None else None

    def _read_env_layout(self) -> None:
        import sim
        from robot_rl.schema import FieldLayout

        env = sim.make_env(self.cfg.robot, self.cfg.backend)
        try:
            obs_layout = FieldLayout(env.obs_names, env.obs_units)
            act_layout = FieldLayout(env.action_names, env.action_units)
            self.control_dt_s = float(env.robot.control_dt_s)
            self.task = type(env.task).__name__
        finally:
            env.close()
        if self.cfg.obs_dim is not None and self.cfg.obs_dim != obs_layout.size:
            raise ValueError(
                f"obs_dim: {self.cfg.obs_dim} given, the {self.cfg.robot} env has {obs_layout.size}"
            )
        if self.cfg.act_dim is not None and self.cfg.act_dim != act_layout.size:
            raise ValueError(
                f"act_dim: {self.cfg.act_dim} given, the {self.cfg.robot} env has {act_layout.size}"
            )
        self.obs_dim, self.act_dim = obs_layout.size, act_layout.size
        self.layouts = (obs_layout, act_layout)

    # --- weights -------------------------------------------------------------------------------------

    def initial_weights(self) -> PolicyWeights:
        from robot_rl.nets.numpy_policy import load_npz, random_init

        assert self.obs_dim is not None and self.act_dim is not None
        if self.policy_file is not None:
            if not self.policy_file.path.exists():
                raise FileNotFoundError(f"policy: {self.policy_file.path} does not exist")
            self.policy_file.changed()  # remember the content published as version 1
            weights = load_npz(self.policy_file.path)
        else:
            weights = random_init(self.obs_dim, self.act_dim, seed=self.cfg.seed)
        self._check_dims(weights)
        return weights

    def _check_dims(self, weights: PolicyWeights) -> None:
        from robot_rl.nets.numpy_policy import NumpyPolicy

        policy = NumpyPolicy.from_weights(weights)
        if (policy.obs_dim, policy.act_dim) != (self.obs_dim, self.act_dim):
            raise ValueError(
                f"policy is for obs {policy.obs_dim} / act {policy.act_dim}, "
                f"the run has {self.obs_dim} / {self.act_dim}"
            )

    def publish(self, tx: Sender, weights: PolicyWeights, version: int) -> None:
        """Publish ``weights`` as ``version`` and make it the current snapshot."""
        from robot_rl.bus.topics import WEIGHTS

        snapshot = PolicyWeights(
            policy_version=version,
            arch=weights.arch,
            obs_mean=weights.obs_mean,
            obs_std=weights.obs_std,
            params=weights.params,
        )
        if version != self.version:
            log.info("%s: publishing policy v%d", self.cfg.learner_id, version)
            self.counters["weights_published"] += 1
        self.weights, self.version = snapshot, version
        self.counters["weights_version"] = version
        tx.send(WEIGHTS, snapshot)  # PUB never blocks
        self.counters["msgs_out"] += 1

    def maybe_reload(self, tx: Sender) -> None:
        from robot_rl.nets.numpy_policy import load_npz

        if self.policy_file is None or not self.policy_file.changed():
            return
        try:
            weights = load_npz(self.policy_file.path)
            self._check_dims(weights)
        except (ValueError, OSError, KeyError) as err:
            self.counters["rejected/policy_file"] += 1
            log.error("%s: %s not published: %s", self.cfg.learner_id, self.policy_file.path, err)
            return
        self.publish(tx, weights, self.version + 1)

    # --- control -------------------------------------------------------------------------------------

    def serve(self, responder: Responder, receiver: RolloutReceiver) -> None:
        got = responder.recv_request(0)
        if got is None:
            return
        identity, env, req = got
        self.counters["msgs_in"] += 1
        payload: dict[str, bool | int | float | str] = {}
        if req.command == "status":
            ok, error = True, ""
            payload = {"state": "running", **self.heartbeat_counters(receiver)}
        elif req.command == "stop":
            ok, error = True, ""
            self.stop_reason = "stop request"
        else:
            ok, error = False, f"the learner does not support {req.command!r}"
        if responder.reply(identity, env, ok=ok, error=error, payload=payload):
            self.counters["msgs_out"] += 1

    def heartbeat_counters(self, receiver: RolloutReceiver) -> dict[str, int]:
        out = dict(self.counters)
        out.update(receiver.all_counters())
        if self.responder is not None:
            out.update(self.responder.rejections())
        out["msgs_in"] = self.counters["msgs_in"] + receiver.counters["received/chunks"]
        out["replay/sim_size"] = len(receiver.mixer.buffer(Source.SIM))
        out["replay/sim_added"] = receiver.mixer.buffer(Source.SIM).added
        return out

    # --- loop ----------------------------------------------------------------------------------------

    def run(self, ctx: BusContext) -> int:
        from robot_rl.bus.sockets import Heartbeater, Responder, Sender, make_pub, make_router
        from robot_rl.data.manifest import RunManifest
        from robot_rl.data.replay import SourceMixer
        from robot_rl.data.writer import EpisodeWriter
        from robot_rl.runners.receiver import EpisodeAssembler, RolloutReceiver
        from robot_rl.schema import FieldLayout

        cfg, ep = self.cfg, self.endpoints
        assert self.obs_dim is not None and self.act_dim is not None
        weights = self.initial_weights()
        mixer = SourceMixer(self.obs_dim, self.act_dim, {Source.SIM: cfg.replay_capacity})
        writer: EpisodeWriter | None = None
        assembler: EpisodeAssembler | None = None
        if cfg.out is not None:
            assert self.layouts is not None
            obs_layout, act_layout = self.layouts
            assert isinstance(obs_layout, FieldLayout) and isinstance(act_layout, FieldLayout)
            manifest = RunManifest(
                robot=cfg.robot,
                task=self.task,
                control_dt_s=self.control_dt_s,
                obs_layout=obs_layout,
                action_layout=act_layout,
                source=Source.SIM,
                description="sim rollouts collected by the learner",
                extra={"backend": cfg.backend, "bus": cfg.bind},
            )
            writer = EpisodeWriter(cfg.out, manifest)
            assembler = EpisodeAssembler(writer, self.control_dt_s)
        try:
            weights_tx = Sender(make_pub(ctx, ep.weights, sndhwm=2), cfg.learner_id)
            receiver = RolloutReceiver(
                ctx,
                ep,
                mixer,
                robot=cfg.robot,
                expected_obs_dim=self.obs_dim,
                expected_act_dim=self.act_dim,
                rcvhwm=cfg.rcvhwm,
                assembler=assembler,
            )
            responder = Responder(make_router(ctx, ep.control(0)), cfg.learner_id)
            self.responder = responder
            heart = Heartbeater(Sender(make_pub(ctx, ep.telemetry, bind=False, sndhwm=100), cfg.learner_id))
            log.info(
                "%s: bound %s (weights), %s (rollout), %s (control)",
                cfg.learner_id,
                ep.weights,
                ep.rollout,
                ep.control(0),
            )
            self.publish(weights_tx, weights, 1)
            t_start = time.monotonic()
            next_publish = t_start + cfg.republish_s
            next_reload = t_start + RELOAD_CHECK_S
            algo = self.algorithm
            while not self.stop_reason:
                receiver.poll(LOOP_POLL_MS, max_chunks=64)
                if algo is not None and all(len(mixer.buffer(s)) >= n for s, n in algo.batch_sizes.items()):
                    algo.update(mixer.sample(algo.batch_sizes, self.rng))
                    self.counters["updates"] += 1
                    if self.counters["updates"] % algo.publish_every == 0:
                        self.publish(weights_tx, algo.policy_weights(), self.version + 1)
                now = time.monotonic()
                if cfg.reload and now >= next_reload:
                    next_reload = now + RELOAD_CHECK_S
                    self.maybe_reload(weights_tx)
                if now >= next_publish and self.weights is not None:
                    next_publish = now + cfg.republish_s
                    self.publish(weights_tx, self.weights, self.version)
                self.serve(responder, receiver)
                if heart.tick("running", self.heartbeat_counters(receiver)):
                    self.counters["msgs_out"] += 1
                if cfg.max_seconds is not None and now - t_start >= cfg.max_seconds:
                    self.stop_reason = "max_seconds"
            heart.tick("stopped", self.heartbeat_counters(receiver), now=float("inf"))
            final = self.heartbeat_counters(receiver)
        finally:
            if writer is not None:
                writer.close()
        print(
            f"learner {cfg.learner_id}: stopped ({self.stop_reason}): "
            + " ".join(
                f"{k}={final[k]}"
                for k in ("received/transitions", "received/chunks", "weights_version", "replay/sim_size")
            )
            + (f" episodes/written={final.get('episodes/written', 0)}" if writer is not None else ""),
            file=sys.stderr,
            flush=True,
        )
        return 0


def run_learner(cfg: Learner, algorithm: Algorithm | None = None) -> int:
    """Run the learner of ``cfg`` in this process until it stops; returns the exit code."""
    from robot_rl.bus.sockets import BusContext

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s", stream=sys.stderr
    )
    learner = LearnerProcess(cfg, algorithm)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        learner.stop_reason = signal.Signals(signum).name

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    ctx = BusContext()
    try:
        return learner.run(ctx)
    finally:
        ctx.close()
        for s, h in previous.items():
            signal.signal(s, h)


def main(argv: list[str] | None = None) -> int:
    """``python -m robot_rl.runners.learner_process ARGS`` (the arguments of ``robot-rl learner``)."""
    from robot_rl.cli import run_command
    from robot_rl.runners.commands import Learner

    return run_command(Learner, sys.argv[1:] if argv is None else argv, "learner_process")


if __name__ == "__main__":
    sys.exit(main())
