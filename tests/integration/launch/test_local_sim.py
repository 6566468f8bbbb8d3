"""The launcher running the real learner and two MuJoCo sim workers over ipc (launch/local_sim.toml's shape).

kill -9 of one worker: the launcher restarts it (restarts == 1, new pid, heartbeats resume), the learner
keeps receiving from both, and every logged transition was produced by the policy version it is tagged
with. The workers act deterministically (``--deterministic``: action = tanh(mean)), so each logged action
can be recomputed from its observation with the tagged version's weights; the learner publishes a second
version mid-run (``--reload`` of the policy file) so that a wrong tag would be visible.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from robot_rl.data.reader import EpisodeReader  # imported after the skips above
from robot_rl.launch.config import load_topology
from robot_rl.launch.supervisor import LineReporter, ProcessStatus, Supervisor, prepare_launch
from robot_rl.nets.numpy_policy import NumpyPolicy, load_npz, random_init, save_npz

pytestmark = pytest.mark.integration

OBS_DIM, ACT_DIM = 34, 8  # the quadruped's observation and action widths
EP_STEPS = 20  # short episodes so that many complete within the test


def topology_text(policy: Path, episodes: Path) -> str:
    return f"""
[run]
name = "ls"
heartbeat_timeout_s = 5.0
stop_grace_s = 5.0

[learner]
robot = "quadruped"
backend = "mujoco"
policy = "{policy}"
log_episodes = true
out = "{episodes}"
extra_args = ["--reload"]

[[sim_workers]]
name = "sim"
replicas = 2
robot = "quadruped"
backend = "mujoco"
num_envs = 2
seed = 3
extra_args = ["--deterministic", "--max-episode-steps", "{EP_STEPS}", "--chunk-steps", "8"]
backoff_initial_s = 0.5
"""


@pytest.fixture
def supervisor_slot() -> Iterator[list[Supervisor]]:
    """Holds the test's supervisor; at teardown it is stopped and every process group it made is killed."""
    slot: list[Supervisor] = []
    yield slot
    for sup in slot:
        with contextlib.suppress(Exception):
            sup.stop(timeout_s=20)
        for pid in sup.pids():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with contextlib.suppress(OSError):
        if Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z":
            return False
    return True


def test_kill9_worker_is_restarted_and_learner_keeps_receiving(
    tmp_path: Path, supervisor_slot: list[Supervisor]
) -> None:
    policy_path = save_npz(tmp_path / "policy.npz", random_init(OBS_DIM, ACT_DIM, seed=5))
    episodes_dir = tmp_path / "episodes"
    topo_path = tmp_path / "topo.toml"
    topo_path.write_text(topology_text(policy_path, episodes_dir))
    run_dir = tmp_path / "run"
    sup = Supervisor(prepare_launch(load_topology(topo_path), run_dir=run_dir), reporter=LineReporter())
    supervisor_slot.append(sup)
    sup.start()

    def st(name: str) -> ProcessStatus:
        return next(s for s in sup.status() if s.name == name)

    def learner(key: str) -> int:
        return st("learner").counters.get(key, 0)

    def wait_for(pred: Callable[[], bool], timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while not pred():
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"timed out after {timeout_s} s waiting for {what}; status {sup.status()}"
                )
            time.sleep(0.1)

    wait_for(
        lambda: learner("received/transitions/w1") > 0 and learner("received/transitions/w2") > 0,
        40,
        "the learner's heartbeats to show transitions from both workers",
    )
    wait_for(
        lambda: all(s.state == "running" and (s.msgs_per_s or 0.0) > 0.0 for s in sup.status()),
        10,
        "every process running with messages/s > 0",
    )

    # Version 2 mid-run: the learner republishes the changed file, both workers switch.
    save_npz(policy_path, random_init(OBS_DIM, ACT_DIM, seed=6))
    wait_for(
        lambda: all(st(n).counters.get("weights_version") == 2 for n in ("learner", "sim-0", "sim-1")),
        15,
        "weights v2 at the learner and both workers",
    )

    victim = st("sim-0")
    learner_pid = st("learner").pid
    assert victim.pid is not None and victim.restarts == 0
    w1_at_kill = learner("received/transitions/w1")
    os.kill(victim.pid, signal.SIGKILL)

    wait_for(
        lambda: st("sim-0").restarts == 1 and st("sim-0").state == "running" and st("sim-0").heartbeats >= 2,
        30,
        "the launcher to restart sim-0 and its heartbeats to resume",
    )
    restarted = st("sim-0")
    assert restarted.pid != victim.pid and restarted.pid is not None and alive(restarted.pid)
    assert not alive(victim.pid)
    assert restarted.exit_codes == (-signal.SIGKILL,)
    # The restarted worker (same index 1) delivers again, and the learner saw it as a restart.
    w2_now, total_now = learner("received/transitions/w2"), learner("received/transitions")
    wait_for(
        lambda: learner("received/transitions/w1") > w1_at_kill + 200,
        30,
        "transitions from the restarted worker at the learner",
    )
    wait_for(
        lambda: learner("received/transitions/w2") > w2_now and learner("received/transitions") > total_now,
        15,
        "the learner to keep receiving from the other worker",
    )
    assert learner("workers/restarts") == 1
    assert learner("rejected/shape") == 0 and learner("rejected/robot") == 0
    assert (st("learner").pid, st("learner").restarts, st("sim-1").restarts) == (learner_pid, 0, 0)

    assert sup.stop(timeout_s=30) == 0
    assert not any(alive(p) for p in sup.pids()), "a process outlived stop()"
    doc = json.loads((run_dir / "launch.json").read_text())
    assert doc["exit_code"] == 0
    assert doc["processes"]["sim-0"]["restarts"] == 1
    assert doc["processes"]["sim-0"]["exit_codes"] == [-signal.SIGKILL, 0]
    assert doc["processes"]["learner"]["exit_codes"] == [0]
    sim0_log = (run_dir / "logs" / "sim-0.log").read_text()
    assert "start #2 of sim-0" in sim0_log and f"exited with {-signal.SIGKILL}" in sim0_log

    # Every logged transition was produced by the version it is tagged with: recompute each action.
    policies = {
        1: NumpyPolicy.from_weights(random_init(OBS_DIM, ACT_DIM, seed=5)),
        2: NumpyPolicy.from_weights(load_npz(policy_path)),
    }
    episodes = EpisodeReader(episodes_dir).load_episodes()
    assert len(episodes) > 10
    by_version = {1: 0, 2: 0}
    for ep in episodes:
        obs = np.asarray(ep.obs[:-1], np.float32)
        tagged = ep.meta.policy_version
        assert tagged in policies
        # Which version chose each row: the one whose deterministic action it is (and only that one).
        match = {
            v: np.abs(ep.action - p.act(obs, deterministic=True)).max(axis=1) < 1e-5
            for v, p in policies.items()
        }
        assert not np.any(match[1] & match[2]), "the two versions act alike: the check would be blind"
        assert np.all(match[1] | match[2]), f"episode {ep.meta.extra}: actions from neither version"
        switched = ep.meta.extra.get("policy_versions")
        if switched is None:
            assert np.all(match[tagged]), f"episode tagged v{tagged} has rows of another version"
            by_version[tagged] += 1
        else:
            # An episode that spans the switch: v1 rows, then v2 rows, as the tag list says.
            assert switched == "1,2", switched
            k = int(np.argmax(match[2]))
            assert np.all(match[1][:k]) and np.all(match[2][k:])
    assert by_version[1] > 0 and by_version[2] > 0
