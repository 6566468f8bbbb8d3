"""Pictures of one test and of a campaign; replay of engine tests in highway-env's two-way-v0."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from robot_rl.cav.drivers import CAV_UNDER_TEST
from robot_rl.cav.estimators import Importance, run_batch
from robot_rl.cav.render import animate_test, plot_estimate, plot_test
from robot_rl.cav.scenario import MULTI, SINGLE, replay
from robot_rl.cav.stats import SparseRecord
from robot_rl.cav.surrogate import SURROGATES


def crash_and_safe_tests(n: int = 2_000) -> tuple[object, np.ndarray, np.ndarray]:
    imp = Importance((SURROGATES["oracle"],), epsilon=0.1)
    b = run_batch(SINGLE, CAV_UNDER_TEST, n, np.random.default_rng(0), imp)
    return b, np.flatnonzero(b.crashed), np.flatnonzero(~b.crashed)


def test_pictures_of_a_crash(tmp_path: Path) -> None:
    import imageio.v2 as imageio

    b, crashed, _ = crash_and_safe_tests()
    j = crashed[0]
    rp = replay(SINGLE, b.initial.take(np.array([j])), b.actions[j], CAV_UNDER_TEST)  # type: ignore[attr-defined]
    assert rp.crash_substep is not None
    png = plot_test(rp, tmp_path / "crash.png", title="test")
    img = imageio.imread(png)
    assert img.shape[0] > 500 and img.shape[1] > 800
    gif = animate_test(rp, tmp_path / "crash.gif", frames_per_s=4)
    frames = imageio.mimread(gif)
    # one frame per quarter second up to the crash (the last one is shown for a further second)
    assert len(frames) == rp.crash_substep * 4 + 1
    assert np.abs(frames[0].astype(int) - frames[len(frames) // 2]).mean() > 0.1  # the picture moves
    rec = SparseRecord()
    rec.add(np.where(np.random.default_rng(0).random(5000) < 0.05, 1.0, 0.0))
    out = plot_estimate([("nde", rec)], tmp_path / "est.png", reference=0.05)
    assert imageio.imread(out).shape[1] > 700


def test_highway_env_replay_agrees_with_the_engine() -> None:
    pytest.importorskip("highway_env")
    from robot_rl.cav.highway import make_replay_env, replay_in_highway_env

    b, crashed, safe = crash_and_safe_tests()
    env = make_replay_env()
    agree = 0
    rows = [*crashed[:6], *safe[:6]]
    for j in rows:
        ini, act = b.initial.take(np.array([j])), b.actions[j]  # type: ignore[attr-defined]
        rp = replay(SINGLE, ini, act, CAV_UNDER_TEST)
        hw = replay_in_highway_env(SINGLE, ini, act, CAV_UNDER_TEST, env=env)
        agree += (rp.crash_substep is not None) == hw.crashed
        # positions agree to a few metres while nobody has crashed (15 Hz bicycle model vs exact 1 s steps)
        n = min(len(hw.x_m), len(rp.frames)) - (1 if hw.crashed else 0)
        engine_x = np.stack([f.x_m[0] for f in rp.frames[:n]])
        assert np.abs(hw.x_m[:n] - engine_x).max() < 6.0
    assert agree >= len(rows) - 1, agree
    # highway-env's own IDM + MOBIL vehicle as the CAV: it does not cut in front of the faster BV
    idm_crashes = sum(
        replay_in_highway_env(
            SINGLE,
            b.initial.take(np.array([j])),
            b.actions[j],
            None,
            cav_mode="highway-idm",
            env=env,  # type: ignore[attr-defined]
        ).crashed
        for j in crashed[:6]
    )
    assert idm_crashes <= 1
    env.close()


def test_highway_env_renders_frames(tmp_path: Path) -> None:
    pytest.importorskip("highway_env")
    from robot_rl.cav.highway import make_replay_env, replay_in_highway_env

    imp = Importance((SURROGATES["oracle"],), epsilon=0.1)
    b = run_batch(MULTI, CAV_UNDER_TEST, 5, np.random.default_rng(1), imp)
    env = make_replay_env(render=True)
    hw = replay_in_highway_env(
        MULTI, b.initial.take(np.array([0])), b.actions[0], CAV_UNDER_TEST, env=env, render=True
    )
    env.close()
    assert hw.frames_per_s == 5
    assert len(hw.frames) >= 2
    assert hw.frames[-1].std() > 5.0  # not a blank frame (the viewer is disabled under SDL's dummy driver)
