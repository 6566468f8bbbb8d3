"""Start-up checks: a model whose manifest disagrees with the robot's calibration or task is refused."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from firmware_bridge.calibration import calibration_hash, load_calibration
from robot_rl.deploy.checks import DeployRefused, Expected, check_manifest
from robot_rl.export.manifest import DeployManifest
from sim.robots import get_robot
from sim.tasks import default_task

ROOT = Path(__file__).resolve().parents[3]


def _expected() -> Expected:
    cal = load_calibration(ROOT / "calib" / "quadruped.toml")
    robot = get_robot("quadruped")
    task = default_task(robot)
    return Expected.from_calibration(
        cal,
        calibration_hash(cal),
        obs_names=[n for n, _ in task.obs_layout],
        default_joint_pos_rad=robot.default_joint_pos_rad,
        action_scale_rad=robot.action_scale_rad,
        task_name=type(task).__name__,
    )


def _manifest(**changes: Any) -> DeployManifest:
    e = _expected()
    q0, s = e.default_joint_pos_rad, e.action_scale_rad
    m = DeployManifest(
        robot=e.robot,
        joint_names=e.joint_names,
        obs_names=e.obs_names,
        obs_units=("1",) * len(e.obs_names),
        default_joint_pos_rad=q0,
        action_scale_rad=s,
        action_low_rad=tuple(q - s for q in q0),
        action_high_rad=tuple(q + s for q in q0),
        kp_nm_per_rad=e.kp_nm_per_rad,
        kd_nm_s_per_rad=e.kd_nm_s_per_rad,
        control_dt_s=e.control_dt_s,
        normaliser_hash="0" * 64,
        calib_hash=e.calib_hash,
        software_version="0.1.0",
        run_id="test",
        algo="sac",
        task={"name": "ForwardVelocityTask", "command_range_mps": [0.3, 1.0]},
    )
    return dataclasses.replace(m, **changes)


def test_a_matching_model_passes_without_warnings() -> None:
    assert check_manifest(_manifest(), _expected()) == []


def test_the_expected_side_is_the_calibration_and_the_task() -> None:
    e = _expected()
    assert e.joint_names[:2] == ("FL_hip", "FL_knee") and len(e.obs_names) == 34
    assert e.control_dt_s == 0.02 and e.kp_nm_per_rad == (40.0,) * 8


def test_swapped_joint_names_are_refused_naming_the_element() -> None:
    names = list(_expected().joint_names)
    names[0], names[1] = names[1], names[0]
    with pytest.raises(DeployRefused, match=r"joint names differ .*element 0 is 'FL_knee' in the model"):
        check_manifest(_manifest(joint_names=tuple(names)), _expected())


def test_another_calibration_is_refused_unless_allowed() -> None:
    m = _manifest(calib_hash="f" * 64)
    with pytest.raises(
        DeployRefused, match=r"calibration hash differs: .*ffffffffffff.*--allow-calib-mismatch"
    ):
        check_manifest(m, _expected())
    warnings = check_manifest(m, _expected(), allow_calib_mismatch=True)
    assert len(warnings) == 1 and "allowed by --allow-calib-mismatch" in warnings[0]


def test_observation_layout_mismatch_is_refused() -> None:
    obs = list(_expected().obs_names)
    obs[9] = "command_yaw_radps"
    m = _manifest(obs_names=tuple(obs), obs_units=("1",) * len(obs))
    with pytest.raises(DeployRefused, match=r"observation layout differs .*element 9 is 'command_yaw_radps'"):
        check_manifest(m, _expected())
    shorter = _manifest(obs_names=_expected().obs_names[:33], obs_units=("1",) * 33)
    with pytest.raises(DeployRefused, match="33 elements in the model, 34 here"):
        check_manifest(shorter, _expected())


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"robot": "manipulator"}, "the model is for robot 'manipulator'"),
        ({"control_dt_s": 0.01}, r"control period 0.01 s in the model, 0.02 s"),
        ({"action_scale_rad": 0.25}, r"action scale 0.25 rad in the model, 0.4"),
        ({"kp_nm_per_rad": (30.0,) * 8}, "PD gains kp"),
        ({"task": {"name": "ReachTask"}}, "trained on task 'ReachTask'"),
    ],
)
def test_each_mismatch_is_named(changes: dict[str, Any], match: str) -> None:
    with pytest.raises(DeployRefused, match=match):
        check_manifest(_manifest(**changes), _expected())


def test_default_pose_mismatch_and_several_problems_in_one_line() -> None:
    q0 = list(_expected().default_joint_pos_rad)
    q0[0] += 0.1
    m = _manifest(default_joint_pos_rad=tuple(q0), control_dt_s=0.01)
    with pytest.raises(DeployRefused) as err:
        check_manifest(m, _expected())
    text = str(err.value)
    assert "\n" not in text
    assert "control period" in text and "default pose" in text and text.count("; ") == 1
