"""RealEvaluator end to end: its child process, its own rig (emulator + bridge), RealRobotEnv in real time."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from robot_rl.bus.messages import PolicyWeights
from robot_rl.nets import NumpyPolicy, random_init
from robot_rl.runners.evaluate import EvaluatorError, RealEvaluator

pytestmark = pytest.mark.integration

CAP = 50  # control steps: 1 s of robot time per episode


def _children() -> set[int]:
    """Pids of the live processes whose parent is this one (Linux /proc)."""
    me = str(os.getpid())
    out: set[int] = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()  # after "pid (comm)": state, ppid, ...
        if fields[1] == me and fields[0] != "Z":
            out.add(int(entry))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return "?"


def _hold_default_pose() -> PolicyWeights:
    """All-zero actions whatever the observation: mean layer weights and bias zero, tanh(0) = 0."""
    net = NumpyPolicy.from_weights(random_init(34, 8, hidden=(64, 64), seed=0))
    params = dict(net.params)
    params["mean.weight"] = np.zeros_like(params["mean.weight"])
    params["mean.bias"] = np.zeros_like(params["mean.bias"])
    return NumpyPolicy(net.arch, params).to_weights()


def test_evaluates_in_order_skips_superseded_and_leaves_no_process(tmp_path: Path) -> None:
    before = _children()
    ev = RealEvaluator(
        "quadruped", episodes=2, max_episode_steps=CAP, seed=0, log_dir=tmp_path, reset_hold_s=0.2
    )
    with ev:
        ev.start()
        assert ev.bus.startswith("ipc://") and len(ev.rig_pids) == 2
        assert ev.proc is not None
        child = ev.proc.pid
        t0 = time.monotonic()
        ev.submit(random_init(34, 8, hidden=(64, 64), seed=1), update=10, policy="random")
        # Both queue behind "random": the first "hold" is superseded by the second before it can start.
        ev.submit(_hold_default_pose(), update=1, policy="hold")
        ev.submit(_hold_default_pose(), update=2, policy="hold")
        assert time.monotonic() - t0 < 1.0  # submit does not wait for the robot
        results = ev.wait(timeout_s=45.0)
        assert ev.pending == 0
        assert ev.poll() == []

    assert [(r.policy, r.update) for r in results] == [("random", 10), ("hold", 2)]
    assert [(s.policy, s.update, s.superseded_by_update) for s in ev.skipped] == [("hold", 1, 2)]
    for r in results:
        assert r.where == "real" and r.episodes == 2 and r.max_episode_steps == CAP
        assert len(r.returns) == len(r.lengths) == 2
        assert all(1 <= n <= CAP for n in r.lengths)
        assert all(np.isfinite(r.returns))
        assert r.mean == pytest.approx(float(np.mean(r.returns)))
        assert r.wall_s >= 2 * (r.lengths[0] / 50.0) * 0.8  # real time: 50 steps/s
    hold = results[1]
    assert hold.falls == 0 and hold.lengths == (CAP, CAP)  # holding the default pose never falls in 1 s
    log_text = (tmp_path / "evaluator.log").read_text()
    assert log_text.count("episode ") >= 4 and "skip hold@1: superseded by hold@2" in log_text

    assert not _alive(child)
    assert not any(_alive(pid) for pid in ev.rig_pids)
    assert _children() <= before


def test_rig_that_fails_to_start_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("robot = 'quadruped'\nthis is not toml [[[\n")
    before = _children()
    ev = RealEvaluator("quadruped", episodes=1, max_episode_steps=CAP, log_dir=tmp_path / "logs", calib=bad)
    with pytest.raises(EvaluatorError) as info:
        ev.start()
    message = str(info.value)
    assert "the rig (emulator + bridge) did not start" in message
    assert "invalid calibration" in message and str(bad) in message  # the emulator's own words
    assert (tmp_path / "logs" / "rig" / "emulator.log").is_file()
    ev.close()
    assert _children() <= before


def test_child_crash_surfaces_in_poll(tmp_path: Path) -> None:
    ev = RealEvaluator("quadruped", episodes=1, max_episode_steps=CAP, log_dir=tmp_path, reset_hold_s=0.2)
    with ev:
        ev.start()
        assert ev.proc is not None
        ev.submit(_hold_default_pose(), update=0, policy="hold")
        os.kill(ev.proc.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10.0
        with pytest.raises(EvaluatorError, match=r"child exited with status -9"):
            while time.monotonic() < deadline:
                ev.poll()
                time.sleep(0.05)
        with pytest.raises(EvaluatorError):  # stays failed
            ev.wait(timeout_s=1.0)
    # Its rig dies with it (PR_SET_PDEATHSIG in the rig's processes). The bridge and emulator shut down in
    # order on that SIGTERM (the bridge may be in a lost-port back-off of up to 3.2 s), hence the slack.
    deadline = time.monotonic() + 20.0
    while any(_alive(pid) for pid in ev.rig_pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    survivors = {pid: _cmdline(pid) for pid in ev.rig_pids if _alive(pid)}
    assert not survivors, f"rig processes still alive 20 s after the evaluator was killed: {survivors}"
