"""Garbage against every socket the learner and sim-worker processes bind, while they run for real.

The learner binds the rollout PULL and its control ROUTER; a worker binds its control ROUTER (weights are
a SUB it connects, covered by the bus barrage tests, as is the launcher's telemetry SUB). Each bound socket
gets random bytes, truncated frames, a wrong schema version, an oversized array and NaN arrays. Asserted:
both processes stay up, every kind of garbage is counted as rejected in their heartbeats, and valid
traffic continues (rollouts keep arriving, control requests are still answered).
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from robot_rl.bus.codec import encode
from robot_rl.bus.messages import BUS_SCHEMA_VERSION, Command, Envelope, Heartbeat, Request, RolloutChunk
from robot_rl.bus.sockets import BusContext, Receiver, Requester, make_dealer, make_push, make_sub
from robot_rl.bus.topics import CONTROL, HEARTBEAT_PREFIX, ROLLOUT, endpoints_from_base
from robot_rl.nets.numpy_policy import random_init, save_npz

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
OBS_DIM, ACT_DIM = 34, 8  # quadruped


def _env(seq: int, version: int = BUS_SCHEMA_VERSION) -> Envelope:
    now = time.time_ns()
    return Envelope(schema_version=version, seq=seq, t_src_ns=now, t_pub_ns=now, sender="fuzzer")


def _chunk(n: int, *, obs_fill: float = 0.0, version: int = BUS_SCHEMA_VERSION) -> list[bytes]:
    obs = np.full((n, OBS_DIM), obs_fill, np.float32)
    msg = RolloutChunk(
        worker_id=99,
        policy_version=1,
        robot="quadruped",
        backend="mujoco",
        task="fuzz",
        env_index=np.zeros(n, np.int64),
        episode_index=np.zeros(n, np.int64),
        step=np.arange(n, dtype=np.int64),
        t_ns=np.arange(n, dtype=np.int64),
        next_t_ns=np.arange(1, n + 1, dtype=np.int64),
        obs=obs,
        action=np.zeros((n, ACT_DIM), np.float32),
        reward=np.zeros(n, np.float64),
        next_obs=obs.copy(),
        terminated=np.zeros(n, bool),
        truncated=np.zeros(n, bool),
    )
    return [bytes(f) for f in encode(ROLLOUT, _env(1, version), msg)]


def _request(command: Command, version: int = BUS_SCHEMA_VERSION) -> list[bytes]:
    return [bytes(f) for f in encode(CONTROL, _env(1, version), Request(command=command))]


def barrage(valid: Callable[[], list[bytes]], seed: int) -> list[list[bytes]]:
    """Random bytes, truncations and a wrong schema version derived from one valid message."""
    rng = np.random.default_rng(seed)
    good = valid()
    out: list[list[bytes]] = [[rng.bytes(int(rng.integers(0, 200)))] for _ in range(20)]
    out += [[rng.bytes(int(rng.integers(1, 40))) for _ in range(int(rng.integers(2, 6)))] for _ in range(20)]
    out.append(good[:1])  # topic only
    out.append(good[:2])  # header without its array frames
    out.append([*good[:-1], good[-1][: len(good[-1]) // 2]])  # last array frame cut in half
    out.append([good[0], good[1][:-5], *good[2:]])  # header cut
    return out


def test_bound_sockets_of_running_processes_survive_garbage(
    tmp_path: Path, spawn: Callable[..., Any]
) -> None:
    base = f"ipc://{tmp_path}/rrl-f"
    ep = endpoints_from_base(base)
    policy = save_npz(tmp_path / "policy.npz", random_init(OBS_DIM, ACT_DIM, seed=1))
    learner = spawn(
        "robot_rl.runners.learner_process", "--bind", base, "--robot", "quadruped", "--policy", str(policy),
        name="learner",
    )  # fmt: skip
    worker = spawn(
        "sim.worker", "--connect", base, "--robot", "quadruped", "--num-envs", "2", "--worker-id", "sim-1",
        "--chunk-steps", "8", name="worker",
    )  # fmt: skip
    with BusContext() as ctx:
        telemetry = Receiver(make_sub(ctx, ep.telemetry, topics=(HEARTBEAT_PREFIX,), bind=True))
        beats: dict[str, dict[str, int]] = {}

        def wait_for(pred: Callable[[], bool], timeout_s: float, what: str) -> None:
            deadline = time.monotonic() + timeout_s
            while not pred():
                assert time.monotonic() < deadline, f"timed out waiting for {what}; heartbeats {beats}"
                got = telemetry.recv(100)
                if got is not None and isinstance(got.msg, Heartbeat):
                    beats[got.env.sender] = dict(got.msg.counters)

        def received() -> int:
            return beats.get("learner", {}).get("received/transitions", 0)

        wait_for(lambda: received() > 0, 30, "first rollouts at the learner")

        # Learner rollout PULL: garbage plus crafted invalid chunks (NaN, wrong version, oversized rows).
        push = make_push(ctx, ep.rollout, bind=False)
        for frames in [
            *barrage(lambda: _chunk(4), seed=0),
            _chunk(4, obs_fill=float("nan")),
            _chunk(4, version=BUS_SCHEMA_VERSION + 7),
            _chunk(200_000),  # 200k rows: past the receiver's array limit
        ]:
            push.send_multipart(frames)
        # Control ROUTERs of both processes: garbage and wrong-version requests over a raw DEALER.
        # Both DEALERs stay referenced: a socket garbage-collected with LINGER=0 drops what it still queues.
        dealers = [make_dealer(ctx, ep.control(index)) for index in (0, 1)]
        for index, dealer in enumerate(dealers):
            for frames in [*barrage(lambda: _request("status"), seed=index + 1), _request("status", 9)]:
                dealer.send_multipart(frames)

        def rejected(sender: str, prefix: str) -> int:
            return sum(v for k, v in beats.get(sender, {}).items() if k.startswith(prefix))

        wait_for(
            lambda: (
                rejected("learner", "rejected/") >= 40
                and rejected("learner", "control/rejected/") >= 40
                and rejected("sim-1", "control/rejected/") >= 40
            ),
            15,
            "the garbage to be counted",
        )
        learner_beat = beats["learner"]
        for reason in ("nan", "bad_version", "oversized", "truncated", "bad_frames"):
            assert learner_beat.get(f"rejected/{reason}", 0) >= 1, (reason, learner_beat)
        assert beats["sim-1"].get("control/rejected/bad_version", 0) >= 1

        # Valid traffic continues: rollouts keep arriving and both control sockets still answer.
        before = received()
        wait_for(lambda: received() > before + 100, 10, "rollouts after the barrage")
        for index in (0, 1):
            reply = Requester(ctx, ep.control(index), "tester", timeout_s=2.0, attempts=2).request("status")
            assert reply.ok, reply.error
            assert reply.payload["msgs_in"] > 0
        assert learner.poll() is None and worker.poll() is None

        worker.send_signal(signal.SIGTERM)
        learner.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=10) == 0
        assert learner.wait(timeout=10) == 0
