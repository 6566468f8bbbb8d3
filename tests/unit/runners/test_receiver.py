"""RolloutReceiver over inproc: acceptance into the replay, rejection counters, restarts, episodes."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from robot_rl.bus.messages import RolloutChunk, Status, assemble_episode_rows
from robot_rl.bus.sockets import BusContext, Sender, make_push
from robot_rl.bus.topics import ROLLOUT, STATUS, endpoints_from_base
from robot_rl.data.manifest import RunManifest
from robot_rl.data.reader import EpisodeReader
from robot_rl.data.replay import SourceMixer
from robot_rl.data.writer import EpisodeWriter
from robot_rl.runners.receiver import EpisodeAssembler, RolloutReceiver
from robot_rl.schema import FieldLayout, Source

D, A = 3, 2
_run_ids = itertools.count()


def chunk(
    worker: int,
    env_episode_steps: list[tuple[int, int, int]],
    *,
    version: int = 1,
    robot: str = "quadruped",
    obs_dim: int = D,
    done_at: int | None = None,
) -> RolloutChunk:
    """A chunk whose rows are (env, episode, step) triples; obs = [step, env, episode], next_obs =
    [step + 1, env, episode]; a row with step == done_at is truncated."""
    n = len(env_episode_steps)
    e, k, t = (np.array(col, np.int64) for col in zip(*env_episode_steps, strict=True))
    obs = np.zeros((n, obs_dim), np.float32)
    obs[:, 0], obs[:, 1], obs[:, 2] = t, e, k
    nxt = obs.copy()
    nxt[:, 0] += 1
    return RolloutChunk(
        worker_id=worker,
        policy_version=version,
        robot=robot,
        backend="mujoco",
        task="T",
        env_index=e,
        episode_index=k,
        step=t,
        obs=obs,
        action=np.full((n, A), 0.5, np.float32),
        reward=t.astype(np.float64),
        next_obs=nxt,
        terminated=np.zeros(n, np.bool_),
        truncated=t == done_at if done_at is not None else np.zeros(n, np.bool_),
        t_ns=t * 20_000_000,
        next_t_ns=(t + 1) * 20_000_000,
    )


@pytest.fixture
def ctx() -> Iterator[BusContext]:
    with BusContext() as c:
        yield c


def make(
    ctx: BusContext, assembler: EpisodeAssembler | None = None
) -> tuple[RolloutReceiver, Sender, Sender]:
    ep = endpoints_from_base(f"inproc://rrl-recv{next(_run_ids)}")
    mixer = SourceMixer(D, A, {Source.SIM: 100})
    rx = RolloutReceiver(
        ctx, ep, mixer, robot="quadruped", expected_obs_dim=D, expected_act_dim=A, assembler=assembler
    )
    return rx, Sender(make_push(ctx, ep.rollout), "sim-1"), Sender(make_push(ctx, ep.rollout), "sim-1b")


def drain(rx: RolloutReceiver) -> int:
    total = 0
    while (n := rx.poll(100)) or rx.receiver.sock.poll(0):
        total += n
    return total


def test_valid_chunks_reach_the_replay_and_bad_ones_are_counted(ctx: BusContext) -> None:
    rx, tx, _ = make(ctx)
    tx.send(ROLLOUT, chunk(1, [(0, 0, 0), (1, 0, 0)], version=3))
    tx.send(ROLLOUT, chunk(1, [(0, 0, 1)], robot="manipulator"))
    tx.send(ROLLOUT, chunk(1, [(0, 0, 1)], obs_dim=D + 1))
    tx.send(STATUS, Status(state="x"))
    tx.send(ROLLOUT, chunk(2, [(0, 0, 0)], version=4))
    assert drain(rx) == 3
    c = rx.all_counters()
    assert c["received/chunks"] == 2 and c["received/transitions"] == 3
    assert c["received/transitions/w1"] == 2 and c["received/transitions/w2"] == 1
    assert c["rejected/robot"] == 1 and c["rejected/shape"] == 1 and c["rejected/kind"] == 1
    buf = rx.mixer.buffer(Source.SIM)
    assert len(buf) == 3
    assert buf.policy_version[:3].tolist() == [3, 3, 4]
    assert buf.obs[:3, 1].tolist() == [0.0, 1.0, 0.0]  # env index of each row, in arrival order
    assert rx.versions_seen == {1: {3}, 2: {4}}


def test_malformed_bytes_are_counted_by_reason(ctx: BusContext) -> None:
    rx, tx, _ = make(ctx)
    tx.sock.send_multipart([b"rollout", b"\xc1not msgpack"])
    tx.send(ROLLOUT, chunk(1, [(0, 0, 0)]))
    assert drain(rx) == 1
    assert rx.all_counters()["rejected/bad_header"] == 1


def test_episodes_are_assembled_across_chunks_and_written(ctx: BusContext, tmp_path: Path) -> None:
    manifest = RunManifest(
        robot="quadruped",
        task="T",
        control_dt_s=0.02,
        obs_layout=FieldLayout.anonymous("o", D),
        action_layout=FieldLayout.anonymous("a", A),
        source=Source.SIM,
    )
    writer = EpisodeWriter(tmp_path / "run", manifest)
    assembler = EpisodeAssembler(writer, 0.02)
    rx, tx, tx_restarted = make(ctx, assembler)
    # env 0: episode 0 = steps 0..2 (truncated at 2) over two chunks with versions 1 then 2, then
    # episode 1 starts; env 1: episode 0 steps 0..1 and then a reset (episode 1 at step 0) abandons it.
    c1 = chunk(1, [(0, 0, 0), (1, 0, 0), (0, 0, 1), (1, 0, 1)], version=1, done_at=2)
    c2 = chunk(1, [(0, 0, 2), (1, 1, 0), (0, 1, 0), (1, 1, 1)], version=2, done_at=2)
    for c in (c1, c2):
        tx.send(ROLLOUT, c)
    assert drain(rx) == 8
    assert assembler.counters["episodes/written"] == 1
    assert assembler.counters["episodes/abandoned"] == 1  # env 1 episode 0, cut by the reset
    # The same worker number from a new process (new sender, seq from 0): open episodes are dropped.
    tx_restarted.send(ROLLOUT, chunk(1, [(0, 0, 5)], done_at=5))
    assert drain(rx) == 1
    assert rx.counters["workers/restarts"] == 1
    assert assembler.counters["episodes/abandoned"] == 3  # env 0 ep 1 and env 1 ep 1 were open
    assert assembler.counters["episodes/incomplete"] == 1  # starts at step 5
    writer.close()
    (ep,) = EpisodeReader(tmp_path / "run").load_episodes()
    # The same episode as the reference (non-streaming) assembler builds from the same rows.
    (ref,), _ = assemble_episode_rows([c1, c2])
    np.testing.assert_array_equal(ep.obs, ref.obs)
    np.testing.assert_array_equal(ep.obs[:, 0], [0, 1, 2, 3])  # obs rows 0..2, then the final next_obs
    np.testing.assert_array_equal(ep.t_ns, ref.t_ns)
    np.testing.assert_array_equal(ep.reward, [0.0, 1.0, 2.0])
    assert ep.truncated.tolist() == [False, False, True]
    assert ep.meta.source == Source.SIM and ep.meta.policy_version == 1
    assert ep.meta.extra["policy_versions"] == "1,2" and ep.meta.extra["worker_id"] == "1"
