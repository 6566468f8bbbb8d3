"""`python -m robot_rl.record` stopped mid-episode: kill -9 loses no finished episode, keeps the partial one.

The emulator and the bridge run in a `RealRig` owned by the test (the recorder gets `--bus`), so the kill hits
the recorder alone and the rig is torn down by the fixture.
"""

from __future__ import annotations

import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from robot_rl.envs.rig import RealRig

pytestmark = pytest.mark.integration

Spawn = Callable[..., subprocess.Popen[bytes]]  # the `spawn` fixture of tests/integration/conftest.py

STEPS = 100  # 2 s per episode at 50 Hz
LINE = re.compile(r"^episode (\d+) ([0-9a-f]+) steps=(\d+) ", re.MULTILINE)


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealRig]:
    with RealRig("quadruped", log_dir=Path(tmp_path_factory.mktemp("rig"))) as r:
        yield r


def _log(proc: subprocess.Popen[bytes]) -> Path:
    path: Path = proc.log_path  # type: ignore[attr-defined]  # set by the spawn fixture
    return path


def _finished(log: Path) -> list[tuple[str, int]]:
    return [(m.group(2), int(m.group(3))) for m in LINE.finditer(log.read_text(errors="replace"))]


def _start(spawn: Spawn, rig: RealRig, out: Path) -> subprocess.Popen[bytes]:
    return spawn(
        "robot_rl.record",
        "--out",
        str(out),
        "--episodes",
        "20",
        "--max-episode-steps",
        str(STEPS),
        "--reset-hold-s",
        "0.1",
        "--bus",
        rig.bus,
        "--no-progress",
        name="record",
    )


def _wait_finished(proc: subprocess.Popen[bytes], n: int, timeout_s: float = 30.0) -> list[tuple[str, int]]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, _log(proc).read_text()
        done = _finished(_log(proc))
        if len(done) >= n:
            return done
        time.sleep(0.05)
    raise AssertionError(f"fewer than {n} episodes in {timeout_s} s: {_log(proc).read_text()}")


def test_kill9_mid_episode_keeps_finished_and_partial(spawn: Spawn, rig: RealRig, tmp_path: Path) -> None:
    from robot_rl.data.reader import EpisodeReader

    out = tmp_path / "run"
    proc = _start(spawn, rig, out)
    done = _wait_finished(proc, 2)
    time.sleep(0.8)  # into the next episode: past its reset hold, well before its 2 s end
    done = _finished(_log(proc))
    proc.kill()  # SIGKILL: no handler, no cleanup
    proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL

    reader = EpisodeReader(out)
    assert reader.manifest.robot == "quadruped" and reader.manifest.source == "real"
    episodes = {ep.meta.episode_id: ep for ep in reader.load_episodes()}
    finished_ids = [eid for eid, _ in done]
    for eid, steps in done:
        ep = episodes[eid]
        assert ep.n_steps == steps == STEPS
        assert ep.truncated[-1] and not ep.truncated[:-1].any() and not ep.terminated.any()
        assert "recovered" not in ep.meta.extra or ep.meta.extra["recovered"] != "partial"
        assert np.isfinite(ep.obs).all() and np.isfinite(ep.reward).all()
    partial = [ep for eid, ep in episodes.items() if eid not in finished_ids]
    assert len(partial) == 1, f"expected one partial episode, got {len(partial)}"
    p = partial[0]
    assert p.meta.extra.get("recovered") == "partial"
    assert 0 < p.n_steps < STEPS
    assert p.truncated[-1] and not p.terminated.any()
    assert p.obs.shape == (p.n_steps + 1, 34)


def test_sigterm_ends_partial_episode_truncated(spawn: Spawn, rig: RealRig, tmp_path: Path) -> None:
    from robot_rl.data.reader import EpisodeReader

    out = tmp_path / "run"
    proc = _start(spawn, rig, out)
    _wait_finished(proc, 1)
    time.sleep(0.8)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0
    done = _finished(_log(proc))
    episodes = EpisodeReader(out).load_episodes()
    assert len(episodes) == len(done) >= 2
    last = episodes[-1]
    assert 0 < last.n_steps < STEPS and last.truncated[-1]
    assert "recovered" not in last.meta.extra  # written by the recorder itself, not recovered from a journal
