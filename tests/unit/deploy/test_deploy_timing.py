"""The pure parts of the deploy runner: the ramp, the overrun rule, the timing statistics, the report."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from robot_rl.deploy.report import DeployReport, EpisodeReport, is_overrun, timing_stats
from robot_rl.deploy.runner import RunnerConfig, ramp_target


def test_ramp_goes_linearly_from_the_measured_pose_to_the_default_pose() -> None:
    q_start = np.array([0.0, -2.0])
    q_goal = np.array([1.0, -1.0])
    assert np.allclose(ramp_target(q_start, q_goal, 0.0, 2.0), q_start)
    # a quarter of the way: 0 + 0.25 * (1 - 0) = 0.25; -2 + 0.25 * (-1 - -2) = -1.75
    assert np.allclose(ramp_target(q_start, q_goal, 0.5, 2.0), [0.25, -1.75])
    assert np.allclose(ramp_target(q_start, q_goal, 2.0, 2.0), q_goal)
    assert np.allclose(ramp_target(q_start, q_goal, 5.0, 2.0), q_goal)  # held at the goal afterwards
    assert np.allclose(ramp_target(q_start, q_goal, -1.0, 2.0), q_start)  # never extrapolated backwards
    assert np.allclose(ramp_target(q_start, q_goal, 0.0, 0.0), q_goal)  # no ramp: the goal at once


def test_ramp_steps_stay_below_the_bridge_per_step_limit_for_the_quadruped() -> None:
    # The worst start (a joint 2.5 rad away, end stop to end stop) over 2 s at 50 Hz moves 2.5 / 100 =
    # 0.025 rad per period: far under the calibration's max_step_rad 0.3, so the clamp never acts.
    q_start, q_goal = np.array([-0.45]), np.array([2.05])
    steps = np.diff([ramp_target(q_start, q_goal, k * 0.02, 2.0)[0] for k in range(101)])
    assert np.allclose(steps, 0.025)


@pytest.mark.parametrize(
    ("t_start", "t_done", "expected"),
    [
        (10.000, 10.002, False),  # on time, 2 ms of work
        (10.004, 10.006, False),  # 4 ms late: within the 5 ms tolerance
        (10.006, 10.007, True),  # 6 ms late start
        (10.001, 10.021, True),  # work past the next tick at 10.020
        (10.000, 10.020, False),  # work ending exactly at the deadline is in time
    ],
)
def test_overrun_rule(t_start: float, t_done: float, expected: bool) -> None:
    assert is_overrun(t_start, t_done, scheduled=10.0, period_s=0.02, late_tol_s=0.005) is expected


def test_timing_stats_by_hand() -> None:
    # periods 19, 20, 21, 30 ms around a 20 ms control period: jitter 1, 0, 1, 10 ms.
    periods = [0.019, 0.020, 0.021, 0.030]
    compute = [0.001, 0.002, 0.003, 0.004, 0.005]
    infer = [0.0001] * 5
    st = timing_stats(periods, compute, infer, 0.02)
    assert st.ticks == 5
    assert st.period_p50_ms == pytest.approx(20.5)  # median of 19, 20, 21, 30
    # p99 by linear interpolation: rank 0.99 * 3 = 2.97 between 21 and 30 -> 21 + 0.97 * 9 = 29.73
    assert st.period_p99_ms == pytest.approx(29.73)
    assert st.period_max_ms == pytest.approx(30.0)
    # jitter sorted 0, 1, 1, 10: rank 2.97 -> 1 + 0.97 * 9 = 9.73
    assert st.jitter_p99_ms == pytest.approx(9.73)
    assert st.jitter_max_ms == pytest.approx(10.0)
    assert st.compute_p50_ms == pytest.approx(3.0)
    assert st.compute_max_ms == pytest.approx(5.0)
    assert st.infer_p50_ms == pytest.approx(0.1)


def test_timing_stats_of_nothing_are_nan_and_json_null() -> None:
    st = timing_stats([], [], [], 0.02)
    assert st.ticks == 0 and math.isnan(st.period_p50_ms)
    report = DeployReport(reason="lost", exit_code=4, control_dt_s=0.02, timing=st)
    out = json.loads(json.dumps(report.to_json(), allow_nan=False))  # NaN must not reach the JSON
    assert out["timing"]["period_p50_ms"] is None
    assert out["reason"] == "lost" and out["returns"] == []


def test_report_json_and_summary_carry_the_numbers() -> None:
    st = timing_stats([0.02, 0.02], [0.001, 0.001, 0.001], [0.0002] * 3, 0.02)
    ep = EpisodeReport(
        index=0,
        episode_id="abc",
        reason="completed",
        steps=3,
        episode_return=1.5,
        terminated=False,
        command_mps=0.65,
        overruns=1,
        max_consecutive_overruns=1,
        timing=st,
    )
    report = DeployReport(
        reason="completed", exit_code=0, control_dt_s=0.02, steps=3, overruns=1, timing=st, episodes=[ep]
    )
    out = report.to_json()
    assert out["returns"] == [1.5]
    assert out["episodes"][0]["episode_return"] == 1.5
    assert out["timing"]["period_p50_ms"] == pytest.approx(20.0)
    text = report.summary()
    assert "ended 'completed' (exit 0)" in text
    assert "overruns 1" in text and "jitter p99 0.00 ms" in text and "return 1.500" in text


def test_runner_config_names_the_bad_field() -> None:
    with pytest.raises(ValueError, match="steps"):
        RunnerConfig(steps=0)
    with pytest.raises(ValueError, match="episodes > 1 needs steps"):
        RunnerConfig(episodes=2)
    with pytest.raises(ValueError, match="ramp_s"):
        RunnerConfig(ramp_s=-1.0)
    assert RunnerConfig(episodes=2, duration_s=1.0).episodes == 2
