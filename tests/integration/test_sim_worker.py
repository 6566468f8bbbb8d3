"""Sim worker and learner processes over real ipc sockets.

(a) one worker, the test as learner publishing v1, v2, v3: every chunk's actions are those of the
    version it is tagged with, and of no other; episodes stay continuous across version switches;
(b) SIGTERM: exit 0 within 2 s, every row stepped arrives, in whole chunks;
(c) seed requests: the same seed gives the same first observations, another seed does not;
(d) learner process + 2 workers: the replay grows, --out logs episodes, --reload publishes v2 to the
    workers; after kill -9 of one worker the other keeps delivering and the learner keeps receiving.
"""

from __future__ import annotations

import itertools
import re
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from robot_rl.bus.messages import Heartbeat, PolicyWeights, RolloutChunk
from robot_rl.bus.sockets import BusContext, Receiver, Requester, Sender, make_pub, make_pull, make_sub
from robot_rl.bus.topics import HEARTBEAT_PREFIX, WEIGHTS, Endpoints, endpoints_from_base
from robot_rl.data.reader import EpisodeReader
from robot_rl.nets.numpy_policy import NumpyPolicy, random_init, save_npz
from robot_rl.schema import Source

pytestmark = pytest.mark.integration

OBS_DIM, ACT_DIM = 34, 8  # quadruped
N_ENVS = 3
CHUNK_STEPS = 8  # 24 rows per full chunk
EP_STEPS = 20
ROOT = Path(__file__).resolve().parents[2]

Spawn = Callable[..., subprocess.Popen[bytes]]  # the `spawn` fixture of tests/integration/conftest.py


@pytest.fixture
def base(tmp_path: Path) -> str:
    return f"ipc://{tmp_path}/rrl-t"


def worker_args(base: str, *extra: str) -> list[str]:
    return [
        "--connect", base, "--robot", "quadruped", "--backend", "mujoco", "--num-envs", str(N_ENVS),
        "--chunk-steps", str(CHUNK_STEPS), "--max-episode-steps", str(EP_STEPS), *extra,
    ]  # fmt: skip


def log_text(proc: subprocess.Popen[bytes]) -> str:
    return Path(proc.log_path).read_text()  # type: ignore[attr-defined]


class FakeLearner:
    """The test's side of the weights and rollout links."""

    def __init__(self, ctx: BusContext, ep: Endpoints) -> None:
        self.weights_tx = Sender(make_pub(ctx, ep.weights), "test-learner")
        self.rollout_rx = Receiver(make_pull(ctx, ep.rollout))
        self.chunks: list[RolloutChunk] = []

    def publish(self, w: PolicyWeights) -> None:
        self.weights_tx.send(WEIGHTS, w)

    def collect_until(
        self,
        done: Callable[[list[RolloutChunk]], bool],
        timeout_s: float,
        republish: PolicyWeights | None = None,
    ) -> None:
        """Receive chunks until ``done(self.chunks)``; re-publish ``republish`` every 0.2 s meanwhile
        (a PUB message sent before the worker's SUB is connected is lost)."""
        deadline = time.monotonic() + timeout_s
        next_pub = 0.0
        while not done(self.chunks):
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out; got {len(self.chunks)} chunks")
            if republish is not None and time.monotonic() >= next_pub:
                self.publish(republish)
                next_pub = time.monotonic() + 0.2
            got = self.rollout_rx.recv(50)
            if got is not None:
                assert isinstance(got.msg, RolloutChunk)
                self.chunks.append(got.msg)


def count_version(v: int, n: int) -> Callable[[list[RolloutChunk]], bool]:
    return lambda chunks: sum(c.policy_version == v for c in chunks) >= n


def check_episode_continuity(chunks: list[RolloutChunk]) -> None:
    """Per env, rows in arrival order: steps count up by one, obs[t+1] == next_obs[t], and an
    episode ends (truncated at EP_STEPS or terminated) exactly before a step-0 row of the next index."""
    rows: dict[int, list[tuple[int, int, np.ndarray, np.ndarray, bool, bool]]] = {}
    for c in chunks:
        for i in range(len(c.env_index)):
            rows.setdefault(int(c.env_index[i]), []).append(
                (
                    int(c.episode_index[i]),
                    int(c.step[i]),
                    c.obs[i],
                    c.next_obs[i],
                    bool(c.terminated[i]),
                    bool(c.truncated[i]),
                )
            )
    assert set(rows) == set(range(N_ENVS))
    for env_rows in rows.values():
        for prev, cur in itertools.pairwise(env_rows):
            ended = prev[4] or prev[5]
            if ended:
                assert cur[0] == prev[0] + 1 and cur[1] == 0
                assert prev[5] == (prev[1] == EP_STEPS - 1) or prev[4]
            else:
                assert (cur[0], cur[1]) == (prev[0], prev[1] + 1)
                np.testing.assert_array_equal(cur[2], prev[3])


def test_chunks_carry_the_version_that_chose_their_actions(base: str, spawn: Spawn) -> None:
    ep = endpoints_from_base(base)
    versions = {v: random_init(OBS_DIM, ACT_DIM, seed=100 + v, policy_version=v) for v in (1, 2, 3)}
    policies = {v: NumpyPolicy.from_weights(w) for v, w in versions.items()}
    with BusContext() as ctx:
        learner = FakeLearner(ctx, ep)
        proc = spawn("sim.worker", *worker_args(base, "--deterministic", "--worker-id", "sim-1"), name="w")
        for v in (1, 2, 3):
            learner.collect_until(count_version(v, 4), timeout_s=30, republish=versions[v])
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0

    chunks = learner.chunks
    tags = [c.policy_version for c in chunks]
    assert tags == sorted(tags) and set(tags) == {1, 2, 3}  # versions only move forward
    for c in chunks:
        assert c.worker_id == 1 and c.robot == "quadruped" and c.backend == "mujoco"
        n = len(c.env_index)
        assert n % N_ENVS == 0 and 0 < n <= N_ENVS * CHUNK_STEPS
        # Recompute every action with the tagged version: equal to 1e-5; every other version differs.
        for v, policy in policies.items():
            expected = policy.act(c.obs, deterministic=True)
            if v == c.policy_version:
                np.testing.assert_allclose(c.action, expected, atol=1e-5)
            else:
                assert float(np.abs(c.action - expected).max()) > 1e-3, (v, c.policy_version)
    # The switch closed a chunk early at least once (a shorter chunk right before a new version).
    assert any(len(c.env_index) < N_ENVS * CHUNK_STEPS for c in chunks)
    check_episode_continuity(chunks)
    assert any(bool(c.truncated.any()) for c in chunks)


def test_sigterm_exits_zero_and_delivers_every_row_in_whole_chunks(base: str, spawn: Spawn) -> None:
    ep = endpoints_from_base(base)
    w1 = random_init(OBS_DIM, ACT_DIM, seed=1, policy_version=1)
    with BusContext() as ctx:
        learner = FakeLearner(ctx, ep)
        proc = spawn("sim.worker", *worker_args(base, "--worker-id", "sim-2"), name="w")
        learner.collect_until(lambda c: len(c) >= 3, timeout_s=30, republish=w1)
        # Mid-chunk with high probability: a chunk takes ~8 vector steps of ~1 ms.
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=5)
        elapsed = time.monotonic() - t0
        # Whatever was handed over before the exit is still queued at our PULL.
        while (got := learner.rollout_rx.recv(200)) is not None:
            assert isinstance(got.msg, RolloutChunk)
            learner.chunks.append(got.msg)
    assert code == 0 and elapsed < 2.0, (code, elapsed)
    summary = re.search(r"env_steps=(\d+) chunks_sent=(\d+) rows_sent=(\d+)", log_text(proc))
    assert summary is not None, log_text(proc)
    env_steps, chunks_sent, rows_sent = (int(g) for g in summary.groups())
    rows = [len(c.env_index) for c in learner.chunks]
    assert rows_sent == env_steps == sum(rows)  # nothing lost, nothing dropped
    assert chunks_sent == len(learner.chunks)
    for c in learner.chunks:
        # Whole vector steps only: every env appears the same number of times, in env order.
        n = len(c.env_index)
        assert n % N_ENVS == 0
        np.testing.assert_array_equal(c.env_index, np.tile(np.arange(N_ENVS), n // N_ENVS))
    check_episode_continuity(learner.chunks)


def test_seed_request_gives_reproducible_first_observations(base: str, spawn: Spawn) -> None:
    ep = endpoints_from_base(base)
    w1 = random_init(OBS_DIM, ACT_DIM, seed=1, policy_version=1)
    with BusContext() as ctx:
        learner = FakeLearner(ctx, ep)
        spawn("sim.worker", *worker_args(base, "--deterministic", "--index", "4"), name="w")
        learner.collect_until(lambda c: len(c) >= 1, timeout_s=30, republish=w1)
        req = Requester(ctx, ep.control(4), "test", timeout_s=2.0)

        def first_rows(seed: int) -> np.ndarray:
            """obs of steps 0..2 of every env right after a seed request: (N_ENVS, 3, D)."""
            reply = req.request("seed", {"seed": seed})
            assert reply.ok, reply.error
            k = reply.payload["episode_index"]
            assert isinstance(k, int) and k >= 1

            def have_all(chunks: list[RolloutChunk]) -> bool:
                got = sum(int(((c.episode_index == k) & (c.step <= 2)).sum()) for c in chunks)
                return got >= 3 * N_ENVS

            learner.collect_until(have_all, timeout_s=15)
            out = np.zeros((N_ENVS, 3, OBS_DIM), np.float32)
            for c in learner.chunks:
                for i in np.flatnonzero((c.episode_index == k) & (c.step <= 2)):
                    out[c.env_index[i], c.step[i]] = c.obs[i]
            return out

        a = first_rows(7)
        b = first_rows(7)
        c = first_rows(8)
        bad = req.request("seed", {"seed": "x"})
        status = req.request("status")
        req.close()
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a[:, 0], c[:, 0])
    # Different envs of one worker get different seeds.
    assert not np.allclose(a[0, 0], a[1, 0])
    assert not bad.ok and "seed" in bad.error
    assert status.ok and isinstance(status.payload["env_steps"], int) and status.payload["env_steps"] > 0
    assert status.payload["weights_version"] == 1


def test_learner_keeps_receiving_after_a_worker_is_killed(base: str, spawn: Spawn, tmp_path: Path) -> None:
    ep = endpoints_from_base(base)
    policy_path = save_npz(tmp_path / "policy.npz", random_init(OBS_DIM, ACT_DIM, seed=5))
    run_dir = tmp_path / "run"
    with BusContext() as ctx:
        # The test binds telemetry as the launcher would, and reads everyone's heartbeats.
        telemetry = Receiver(make_sub(ctx, ep.telemetry, topics=(HEARTBEAT_PREFIX,), bind=True))
        beats: dict[str, dict[str, int]] = {}

        def wait_for(pred: Callable[[], bool], timeout_s: float, what: str) -> None:
            deadline = time.monotonic() + timeout_s
            while not pred():
                if time.monotonic() > deadline:
                    raise AssertionError(f"timed out waiting for {what}; last heartbeats {beats}")
                got = telemetry.recv(100)
                if got is not None and isinstance(got.msg, Heartbeat):
                    beats[got.env.sender] = got.msg.counters

        learner = spawn(
            "robot_rl.runners.learner_process",
            "--bind", base, "--robot", "quadruped", "--policy", str(policy_path), "--reload",
            "--out", str(run_dir),
            name="learner",
        )  # fmt: skip
        w1 = spawn("sim.worker", *worker_args(base, "--worker-id", "sim-1"), name="w1")
        w2 = spawn("sim.worker", *worker_args(base, "--worker-id", "sim-2"), name="w2")

        def received(w: int) -> int:
            return beats.get("learner", {}).get(f"received/transitions/w{w}", 0)

        wait_for(lambda: received(1) > 0 and received(2) > 0, 30, "rollouts from both workers")
        assert beats["learner"]["weights_version"] == 1

        # --reload: a new policy file becomes version 2 at the learner and at both workers.
        save_npz(policy_path, random_init(OBS_DIM, ACT_DIM, seed=6))
        wait_for(
            lambda: all(beats.get(s, {}).get("weights_version") == 2 for s in ("learner", "sim-1", "sim-2")),
            10,
            "weights v2 everywhere",
        )

        w2.kill()  # kill -9
        w2.wait(timeout=5)
        # Chunks the dead worker handed over before dying may still be queued at the learner: let
        # two learner heartbeats (1 s apart) go by before taking the reference counts.
        t_kill = time.monotonic()
        wait_for(lambda: time.monotonic() - t_kill > 2.1, 5, "2 s after the kill")
        before_total = beats["learner"]["received/transitions"]
        before = {1: received(1), 2: received(2)}
        t0 = time.monotonic()
        wait_for(lambda: time.monotonic() - t0 > 2.5, 5, "2.5 s more")
        after = beats["learner"]
        # The survivor keeps delivering: thousands of steps per second when it has a core to itself.
        assert received(1) > before[1] + 1000, (before, beats["learner"])
        assert received(2) == before[2], (before, beats["learner"])  # nothing more from the dead one
        assert after["received/transitions"] > before_total
        assert after["replay/sim_size"] == after["received/transitions"]
        assert after.get("rejected/shape", 0) == 0 and after.get("rejected/robot", 0) == 0
        assert learner.poll() is None and w1.poll() is None

        learner.send_signal(signal.SIGTERM)
        assert learner.wait(timeout=5) == 0
        w1.send_signal(signal.SIGTERM)
        assert w1.wait(timeout=5) == 0

    reader = EpisodeReader(run_dir)
    episodes = reader.load_episodes()
    assert len(episodes) > 10
    assert {e.meta.source for e in episodes} == {Source.SIM}
    assert {e.meta.policy_version for e in episodes} <= {1, 2}
    for e in episodes:
        assert e.n_steps <= EP_STEPS
        assert e.truncated[-1] == (e.n_steps == EP_STEPS) or e.terminated[-1]
