"""Start-up checks of a policy's deployment manifest against the robot it is about to drive.

Run before anything is commanded. A model is refused (`DeployRefused`, one line naming every mismatch) when
its manifest disagrees with the robot's calibration file or with the task the runner observes with:

- robot name                        manifest.robot == calibration robot
- joint names, in order             manifest.joint_names == calibration joint names
- calibration                       manifest.calib_hash == calibration_hash(calibration file)
                                    (`allow_calib_mismatch` turns this one into a warning)
- observation layout                manifest.obs_names == the task's obs_layout names, in order
- control period                    manifest.control_dt_s == calibration control_dt_s
- default pose and action scale     == the robot model's (the observation subtracts that default pose and
                                    normalises the last action with that scale)
- PD gains                          == the calibration's (the bridge commands the calibration's gains)
- task name                         manifest.task["name"], when given, == the runner's task class

Pure: no I/O, numpy only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from firmware_bridge.calibration import Calibration
from robot_rl.export.manifest import DeployManifest

POSE_TOL_RAD = 1e-6
GAIN_TOL = 1e-6
PERIOD_TOL_S = 1e-9


class DeployRefused(ValueError):
    """A model that must not run on this robot; the message names each mismatch (one line)."""


@dataclass(frozen=True)
class Expected:
    """What the robot side expects of a model (calibration file and observation code)."""

    robot: str
    joint_names: tuple[str, ...]
    calib_hash: str
    calib_source: str
    control_dt_s: float
    kp_nm_per_rad: tuple[float, ...]
    kd_nm_s_per_rad: tuple[float, ...]
    obs_names: tuple[str, ...]
    default_joint_pos_rad: tuple[float, ...]
    action_scale_rad: float
    task_name: str

    @classmethod
    def from_calibration(
        cls,
        cal: Calibration,
        calib_hash: str,
        *,
        obs_names: Sequence[str],
        default_joint_pos_rad: Sequence[float],
        action_scale_rad: float,
        task_name: str,
    ) -> Expected:
        return cls(
            robot=cal.robot,
            joint_names=tuple(cal.joint_names),
            calib_hash=calib_hash,
            calib_source=cal.source,
            control_dt_s=float(cal.control_dt_s),
            kp_nm_per_rad=tuple(float(j.kp_nm_per_rad) for j in cal.joints),
            kd_nm_s_per_rad=tuple(float(j.kd_nm_s_per_rad) for j in cal.joints),
            obs_names=tuple(obs_names),
            default_joint_pos_rad=tuple(float(q) for q in default_joint_pos_rad),
            action_scale_rad=float(action_scale_rad),
            task_name=task_name,
        )


def _first_difference(a: Sequence[str], b: Sequence[str]) -> str:
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return f"element {i} is {x!r} in the model, {y!r} here"
    return f"{len(a)} elements in the model, {len(b)} here"


def _close(a: Sequence[float], b: Sequence[float], tol: float) -> bool:
    return len(a) == len(b) and bool(np.all(np.abs(np.asarray(a) - np.asarray(b)) <= tol))


def check_manifest(
    manifest: DeployManifest, expected: Expected, *, allow_calib_mismatch: bool = False
) -> list[str]:
    """Check `manifest` against `expected`; the warnings to log, or DeployRefused naming every problem."""
    problems: list[str] = []
    warnings: list[str] = []
    src = expected.calib_source
    if manifest.robot != expected.robot:
        problems.append(
            f"the model is for robot {manifest.robot!r}, calibration {src} for {expected.robot!r}"
        )
    if tuple(manifest.joint_names) != expected.joint_names:
        problems.append(
            f"joint names differ from calibration {src}: "
            f"{_first_difference(manifest.joint_names, expected.joint_names)}"
        )
    if manifest.calib_hash != expected.calib_hash:
        what = (
            f"calibration hash differs: the model was trained with {manifest.calib_hash[:12] or '(none)'}, "
            f"{src} hashes to {expected.calib_hash[:12]}"
        )
        if allow_calib_mismatch:
            warnings.append(what + " (allowed by --allow-calib-mismatch)")
        else:
            problems.append(what + " (--allow-calib-mismatch to run it anyway)")
    if tuple(manifest.obs_names) != expected.obs_names:
        problems.append(
            f"observation layout differs from task {expected.task_name}: "
            f"{_first_difference(manifest.obs_names, expected.obs_names)}"
        )
    if abs(manifest.control_dt_s - expected.control_dt_s) > PERIOD_TOL_S:
        problems.append(
            f"control period {manifest.control_dt_s:g} s in the model, {expected.control_dt_s:g} s in {src}"
        )
    if not _close(manifest.default_joint_pos_rad, expected.default_joint_pos_rad, POSE_TOL_RAD):
        problems.append(
            f"default pose {list(manifest.default_joint_pos_rad)} rad in the model, "
            f"{list(expected.default_joint_pos_rad)} for robot {expected.robot!r}"
        )
    if abs(manifest.action_scale_rad - expected.action_scale_rad) > POSE_TOL_RAD:
        problems.append(
            f"action scale {manifest.action_scale_rad:g} rad in the model, "
            f"{expected.action_scale_rad:g} for robot {expected.robot!r}"
        )
    if not _close(manifest.kp_nm_per_rad, expected.kp_nm_per_rad, GAIN_TOL) or not _close(
        manifest.kd_nm_s_per_rad, expected.kd_nm_s_per_rad, GAIN_TOL
    ):
        problems.append(
            f"PD gains kp {list(manifest.kp_nm_per_rad)}, kd {list(manifest.kd_nm_s_per_rad)} in the model, "
            f"kp {list(expected.kp_nm_per_rad)}, kd {list(expected.kd_nm_s_per_rad)} in {src}"
        )
    task_name = manifest.task.get("name") if isinstance(manifest.task, dict) else None
    if task_name is not None and task_name != expected.task_name:
        problems.append(
            f"the model was trained on task {task_name!r}, this robot runs {expected.task_name!r}"
        )
    if problems:
        raise DeployRefused("; ".join(problems))
    return warnings
