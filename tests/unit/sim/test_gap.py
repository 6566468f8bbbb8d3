from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sim.commands import SimGap
from sim.gap import measure_gap, smoothed_actions


def test_nominal_vs_nominal_same_backend_is_zero() -> None:
    report = measure_gap("quadruped", "nominal", n_sequences=2, horizon=15)
    assert report.open_loop_joint_rmse_rad.shape == (15, 8)
    assert report.one_step_joint_rmse_rad.max() < 1e-9
    assert report.open_loop_joint_rmse_rad.max() < 1e-9
    assert report.open_loop_base_pos_rmse_m.max() < 1e-9


def test_mujoco_and_dmcontrol_agree_nominally() -> None:
    report = measure_gap(
        "manipulator", "nominal", backend="mujoco", vs_backend="dmcontrol", n_sequences=2, horizon=15
    )
    assert report.prediction_backend == "dmcontrol"
    assert report.one_step_joint_rmse_rad.max() < 1e-9
    assert report.open_loop_joint_rmse_rad.max() < 1e-9
    assert np.isnan(report.one_step_base_pos_rmse_m)


@pytest.mark.parametrize("robot", ["quadruped", "manipulator"])
def test_example_gap_is_clearly_visible(robot: str, tmp_path: Path) -> None:
    report = measure_gap(robot, "example_gap", n_sequences=2, horizon=20)
    # 1 step of latency alone moves each joint by a good fraction of 0.5 * action_scale per step.
    assert (report.one_step_joint_rmse_rad > 5e-3).all(), report.one_step_joint_rmse_rad
    assert (report.open_loop_joint_rmse_rad[-1] > 5e-3).all()
    if robot == "quadruped":
        assert report.open_loop_base_pos_rmse_m[-1] > 0.01  # m
    table = report.to_table()
    assert table.row_count == len(report.joint_names) + (robot == "quadruped")
    png = report.plot(tmp_path / "gap.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_dynamics_only_gap_grows_with_horizon() -> None:
    from sim.profile import DynamicsProfile, GapProfile

    prof = GapProfile(name="weak", dynamics=DynamicsProfile(motor_strength_scale=0.5))
    report = measure_gap("manipulator", prof, n_sequences=2, horizon=20)
    err = report.open_loop_joint_rmse_rad.mean(axis=1)
    assert err[-1] > err[0] > 0.0
    assert report.one_step_joint_rmse_rad.max() > 1e-4


def test_smoothed_actions_are_bounded_and_correlated() -> None:
    a = smoothed_actions(np.random.default_rng(0), 2000, 3)
    assert a.shape == (2000, 3) and np.abs(a).max() <= 1.0
    lag1 = np.corrcoef(a[:-1, 0], a[1:, 0])[0, 1]
    assert 0.7 < lag1 < 0.9  # AR(1) with rho = 0.8
    assert 0.4 < a.std() < 0.6


def test_sim_gap_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "g.png"
    rc = SimGap(robot="manipulator", profile="example_gap", sequences=1, horizon=5, out_png=out).execute()
    assert rc == 0 and out.is_file()
    text = capsys.readouterr().out
    assert "shoulder (rad)" in text and "example_gap" in text


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="horizon: expected >= 1, got 0"):
        SimGap(horizon=0)
    with pytest.raises(ValueError, match="unknown profile"):
        measure_gap("quadruped", "nope")
    with pytest.raises(ValueError, match=">= 1"):
        measure_gap("quadruped", "nominal", horizon=0)
    with pytest.raises(ValueError, match="unknown backend"):
        measure_gap("quadruped", "nominal", vs_backend="ode")
