"""A writer process is SIGKILLed mid-episode; nothing it finished, and no step it returned from, is lost."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from robot_rl.data.chunks import list_chunks
from robot_rl.data.journal import list_journals
from robot_rl.data.store import EpisodeWriter, open_run
from robot_rl.schema import Episode

pytestmark = pytest.mark.integration

# Shared by the child (which writes) and the test (which knows what must come back).
GEN = """
import numpy as np
from robot_rl.schema import Episode, EpisodeMeta, FieldLayout, Source
from robot_rl.data.manifest import RunManifest

OBS_DIM, ACT_DIM = 34, 8
MANIFEST = RunManifest(robot="go1", task="walk", control_dt_s=0.02,
    obs_layout=FieldLayout.anonymous("obs", OBS_DIM), action_layout=FieldLayout.anonymous("act", ACT_DIM))

def gen(i, n_steps):
    rng = np.random.default_rng(1000 + i)
    term = np.zeros(n_steps, bool); trunc = np.zeros(n_steps, bool)
    (term if i % 2 else trunc)[-1] = True
    return Episode(
        meta=EpisodeMeta(Source.REAL, "go1", "walk", control_dt_s=0.02, episode_id=f"ep{i:03d}", seed=i),
        obs=rng.standard_normal((n_steps + 1, OBS_DIM)).astype(np.float32),
        action=rng.standard_normal((n_steps, ACT_DIM)).astype(np.float32),
        reward=rng.standard_normal(n_steps), terminated=term, truncated=trunc,
        t_ns=np.cumsum(rng.integers(19_000_000, 21_000_000, n_steps + 1)).astype(np.int64))
"""

CHILD = (
    GEN
    + """
import sys, time
from robot_rl.data.writer import EpisodeWriter
run_dir, partial_steps = sys.argv[1], int(sys.argv[2])
# chunk_steps=50: episodes 0-1 (30 + 31 steps) go to a chunk, episode 2 stays journaled only.
w = EpisodeWriter(run_dir, MANIFEST, chunk_steps=50, fsync_every_steps=1000, fsync_interval_s=60.0)
for i in range(3):
    ep = gen(i, 30 + i)
    w.begin_episode(ep.meta, ep.obs[0], int(ep.t_ns[0]))
    for t in range(ep.n_steps):
        w.add_step(ep.action[t], float(ep.reward[t]), ep.obs[t + 1], int(ep.t_ns[t + 1]),
                   terminated=bool(ep.terminated[t]), truncated=bool(ep.truncated[t]))
ep = gen(3, 40)
w.begin_episode(ep.meta, ep.obs[0], int(ep.t_ns[0]))
for t in range(partial_steps):
    w.add_step(ep.action[t], float(ep.reward[t]), ep.obs[t + 1], int(ep.t_ns[t + 1]))
print("READY", flush=True)
time.sleep(60)
"""
)


def _gen(i: int, n_steps: int) -> Episode:
    scope: dict[str, object] = {}
    exec(GEN, scope)
    return scope["gen"](i, n_steps)  # type: ignore[operator,no-any-return]


def test_sigkill_mid_episode_loses_nothing_finished(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    partial_steps = 17
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(run_dir), str(partial_steps)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "READY"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL

    episodes_dir = run_dir / "episodes"
    assert len(list_chunks(episodes_dir)) == 1
    assert len(list_journals(episodes_dir)) == 2  # finished-but-unchunked episode 2 and partial 3
    finished = [_gen(0, 30), _gen(1, 31), _gen(2, 32)]

    before = {p.name: p.stat().st_size for p in episodes_dir.iterdir()}
    got = open_run(run_dir).load_episodes()
    assert {p.name: p.stat().st_size for p in episodes_dir.iterdir()} == before  # reading changed nothing
    assert len(got) == 4
    for g, want in zip(got[:3], finished, strict=True):
        assert g.equals(want), want.meta.episode_id

    full = _gen(3, 40)
    partial = got[3]
    assert partial.meta.episode_id == "ep003" and partial.n_steps == partial_steps
    assert partial.meta.extra == {"recovered": "partial"}
    np.testing.assert_array_equal(partial.obs, full.obs[: partial_steps + 1])
    np.testing.assert_array_equal(partial.action, full.action[:partial_steps])
    np.testing.assert_array_equal(partial.reward, full.reward[:partial_steps])
    np.testing.assert_array_equal(partial.t_ns, full.t_ns[: partial_steps + 1])
    assert partial.truncated[-1] and not partial.truncated[:-1].any() and not partial.terminated.any()

    # Reopen for append: recovery rewrites both journals into a chunk and removes them.
    with EpisodeWriter(run_dir) as w:
        assert w.recovery.recovered_complete == ("ep002",)
        assert w.recovery.recovered_partial == ("ep003",)
    assert list_journals(episodes_dir) == []
    assert len(list_chunks(episodes_dir)) == 2
    after = open_run(run_dir).load_episodes()
    assert len(after) == 4 and all(a.equals(b) for a, b in zip(after, got, strict=True))
