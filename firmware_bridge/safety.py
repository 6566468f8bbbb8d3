"""The safety clamp: the one function every command passes through on its way to the firmware.

`clamp_command` is pure (arrays in, `SafetyResult` out) and the only place limits are applied (STYLE rule 10).
The bridge sends `SafetyResult.command`, and publishes and logs that same array, never the policy's request.

Position mode (targets in rad, joint order of the calibration):
1. NaN/inf anywhere -> the whole command is rejected and the previous sent command is held (the default
   pose if nothing was sent yet). One bad element means the policy is broken; moving the other joints on
   its word is not safer than holding.
2. Clip to [position_min_rad, position_max_rad].
3. Clip to [prev - max_step_rad, prev + max_step_rad], prev being the previous sent command projected into the
   position limits (limits may have been tightened since it was sent). So the output is always inside the
   limits and within one step of the projected previous command; both boxes contain it, so the clamp is
   idempotent.

Torque mode (targets in N m): NaN/inf -> hold the previous sent torques (zero if none); clip to
[-torque_limit_nm, +torque_limit_nm]. There is no per-step limit on torques.

After connecting and after every clear-fault, the first command must be clamped with `prev_sent` = the
*measured* joint positions, not the default pose: the robot may be anywhere, and the step limit is relative to
where it is.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from firmware_bridge.calibration import Calibration
from firmware_bridge.protocol.messages import ControlMode

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class SafetyResult:
    """What the clamp did. All arrays (n,), joint order of the calibration.

    command: what to send, rad (POSITION_PD) or N m (TORQUE); always finite and inside the limits.
    clipped_limit: the joint's target was outside its position (torque) limits.
    clipped_step: the joint's target moved more than max_step_rad from the previous command.
    nonfinite: the joint's requested value was NaN or inf.
    rejected: the whole command was replaced by the held previous command (some value was non-finite).
    """

    command: FloatArray
    mode: ControlMode
    clipped_limit: BoolArray
    clipped_step: BoolArray
    nonfinite: BoolArray
    rejected: bool

    @property
    def modified(self) -> bool:
        """True if what is sent differs from what was asked for."""
        return bool(self.rejected or self.clipped_limit.any() or self.clipped_step.any())


def _clip(x: FloatArray, lo: FloatArray, hi: FloatArray) -> FloatArray:
    """`np.clip(x, lo, hi)` for lo <= hi, as the two ufuncs it is made of (np.clip's wrapper costs ~2 us more
    per call, and the bridge clamps 500 commands a second)."""
    return np.minimum(np.maximum(x, lo), hi)


def _as_joint_vector(cal: Calibration, x: npt.ArrayLike, what: str) -> FloatArray:
    a = np.array(x, dtype=np.float64)  # a copy: the caller's array is never aliased into the result
    if a.shape != (cal.n_joints,):
        raise ValueError(f"{what}: expected shape ({cal.n_joints},) for {cal.robot}, got {a.shape}")
    return a


def clamp_command(
    target: npt.ArrayLike,
    prev_sent: npt.ArrayLike | None,
    cal: Calibration,
    *,
    mode: ControlMode = ControlMode.POSITION_PD,
) -> SafetyResult:
    """Clamp a requested command (n,) against `cal`'s limits; see the module docstring for the rules.

    `target`: rad for POSITION_PD, N m for TORQUE. `prev_sent`: the previous `SafetyResult.command` of the
    same mode (or the measured positions for the first position command), None if nothing was sent.
    Raises ValueError only for caller bugs: wrong shapes, a non-finite `prev_sent`, or DAMPING (no targets).
    """
    requested = _as_joint_vector(cal, target, "target")
    a = cal.arrays
    if mode == ControlMode.POSITION_PD:
        lo, hi = a.position_min_rad, a.position_max_rad
        default = a.default_pos_rad
    elif mode == ControlMode.TORQUE:
        lo, hi = -a.torque_limit_nm, a.torque_limit_nm
        default = np.zeros(cal.n_joints)
    else:
        raise ValueError(f"clamp_command: mode {mode!r} carries no targets to clamp")
    if prev_sent is None:
        hold = default.copy()
    else:
        hold = _as_joint_vector(cal, prev_sent, "prev_sent")
        if not np.isfinite(hold).all():
            raise ValueError(f"prev_sent must be finite (it is a previous clamp output), got {hold.tolist()}")
    hold = _clip(hold, lo, hi)

    nonfinite = ~np.isfinite(requested)
    no_flags = np.zeros(cal.n_joints, dtype=np.bool_)
    if nonfinite.any():
        return SafetyResult(hold, mode, no_flags, no_flags.copy(), nonfinite, rejected=True)

    within_limits = _clip(requested, lo, hi)
    clipped_limit = within_limits != requested
    if mode == ControlMode.TORQUE:
        return SafetyResult(within_limits, mode, clipped_limit, no_flags, nonfinite, rejected=False)
    step = a.max_step_rad
    # hold is inside [lo, hi], so both boxes intersect and clipping into the step box keeps the limits.
    # The final clip to [lo, hi] only guards against rounding in hold +- step at the edges.
    command = _clip(_clip(within_limits, hold - step, hold + step), lo, hi)
    clipped_step = command != within_limits
    return SafetyResult(command, mode, clipped_limit, clipped_step, nonfinite, rejected=False)
