"""clamp_command: hand-computed cases and properties (limits, step, finiteness, idempotence)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from firmware_bridge.calibration import Calibration, load_calibration
from firmware_bridge.protocol.messages import ControlMode
from firmware_bridge.safety import clamp_command

CALIB = Path(__file__).resolve().parents[3] / "calib"
ARM = load_calibration(CALIB / "manipulator.toml")
QUAD = load_calibration(CALIB / "quadruped.toml")
# manipulator limits: base [-2.5, 2.5], shoulder [-1.5, 1.5], elbow [-2.3, 2.3], wrist [-1.9, 1.9] rad;
# max steps 0.05, 0.05, 0.06, 0.08 rad; default pose (0, 0.5, 1.0, 0.5); torque limits 25, 25, 25, 8 N m.


def test_hand_computed_position_case() -> None:
    prev = np.array([0.0, 1.48, 1.0, -1.85])
    r = clamp_command([0.01, 3.0, 0.5, -1.95], prev, ARM)
    # base: 0.01 inside limits and step -> unchanged
    # shoulder: 3.0 -> limit 1.5, then step from 1.48: 1.48 + 0.05 = 1.53 > 1.5, so 1.5 (limit only)
    # elbow: 0.5 is 0.5 below 1.0 -> step limit 1.0 - 0.06 = 0.94
    # wrist: -1.95 -> limit -1.9; -1.85 - 0.08 = -1.93 < -1.9, so -1.9 (limit only)
    np.testing.assert_allclose(r.command, [0.01, 1.5, 0.94, -1.9], atol=1e-12)
    assert r.clipped_limit.tolist() == [False, True, False, True]
    assert r.clipped_step.tolist() == [False, False, True, False]
    assert not r.rejected and r.modified and r.mode == ControlMode.POSITION_PD


def test_no_previous_command_steps_from_the_default_pose() -> None:
    r = clamp_command([1.0, 0.5, 1.0, 0.5], None, ARM)
    np.testing.assert_allclose(r.command, [0.05, 0.5, 1.0, 0.5])  # base: 0 + 0.05
    assert r.clipped_step.tolist() == [True, False, False, False]


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_nonfinite_rejects_the_whole_command_and_holds(bad: float) -> None:
    prev = np.array([0.1, 0.2, 0.3, 0.4])
    r = clamp_command([0.1, bad, 0.3, 0.5], prev, ARM)
    np.testing.assert_array_equal(r.command, prev)
    assert r.rejected and r.nonfinite.tolist() == [False, True, False, False] and r.modified
    r0 = clamp_command([bad] * 4, None, ARM)  # nothing sent yet: hold the default pose
    np.testing.assert_array_equal(r0.command, [0.0, 0.5, 1.0, 0.5])


def test_previous_command_outside_tightened_limits_is_projected_first() -> None:
    # prev base 2.6 is beyond the 2.5 limit: projected to 2.5, then the step box [2.45, 2.55] clips 2.0
    # to 2.45
    r = clamp_command([2.0, 0.5, 1.0, 0.5], [2.6, 0.5, 1.0, 0.5], ARM)
    assert r.command[0] == pytest.approx(2.45)
    assert r.clipped_step.tolist() == [True, False, False, False]
    # and a target at the far side of the old command stays inside the limits
    r2 = clamp_command([3.0, 0.5, 1.0, 0.5], [2.6, 0.5, 1.0, 0.5], ARM)
    assert r2.command[0] == 2.5 and r2.clipped_limit[0]


def test_torque_mode() -> None:
    r = clamp_command([30.0, -30.0, 1.0, 9.0], None, ARM, mode=ControlMode.TORQUE)
    np.testing.assert_array_equal(r.command, [25.0, -25.0, 1.0, 8.0])
    assert r.clipped_limit.tolist() == [True, True, False, True] and not r.clipped_step.any()
    held = clamp_command([math.nan, 0, 0, 0], [1.0, 2.0, 3.0, 4.0], ARM, mode=ControlMode.TORQUE)
    assert held.rejected and held.command.tolist() == [1.0, 2.0, 3.0, 4.0]
    assert clamp_command([math.nan] * 4, None, ARM, mode=ControlMode.TORQUE).command.tolist() == [0.0] * 4


def test_caller_bugs_raise() -> None:
    with pytest.raises(ValueError, match=r"expected shape \(4,\)"):
        clamp_command([0.0] * 3, None, ARM)
    with pytest.raises(ValueError, match="prev_sent must be finite"):
        clamp_command([0.0] * 4, [math.nan] * 4, ARM)
    with pytest.raises(ValueError, match="carries no targets"):
        clamp_command([0.0] * 4, None, ARM, mode=ControlMode.DAMPING)


def test_inputs_are_not_modified_or_aliased() -> None:
    target = np.array([9.0, 9.0, 9.0, 9.0])
    prev = np.array([0.0, 0.5, 1.0, 0.5])
    r = clamp_command(target, prev, ARM)
    assert target.tolist() == [9.0] * 4 and prev.tolist() == [0.0, 0.5, 1.0, 0.5]
    assert not np.shares_memory(r.command, prev)


floats = st.floats(allow_nan=True, allow_infinity=True, width=64)


def _within_limits(cal: Calibration, draw: st.DrawFn) -> np.ndarray:
    a = cal.arrays
    return np.array(
        [draw(st.floats(lo, hi)) for lo, hi in zip(a.position_min_rad, a.position_max_rad, strict=True)]
    )


@st.composite
def cases(draw: st.DrawFn) -> tuple[Calibration, np.ndarray, np.ndarray | None]:
    cal = draw(st.sampled_from([ARM, QUAD]))
    n = cal.n_joints
    target = draw(
        st.one_of(
            hnp.arrays(np.float64, n, elements=st.floats(-10, 10)),
            hnp.arrays(np.float64, n, elements=floats),
        )
    )
    prev = _within_limits(cal, draw) if draw(st.booleans()) else None
    return cal, target, prev


@settings(max_examples=400, deadline=None)
@given(cases())
def test_properties(case: tuple[Calibration, np.ndarray, np.ndarray | None]) -> None:
    cal, target, prev = case
    a = cal.arrays
    r = clamp_command(target, prev, cal)
    out = r.command
    assert out.shape == (cal.n_joints,) and np.all(np.isfinite(out))
    assert np.all(out >= a.position_min_rad) and np.all(out <= a.position_max_rad)
    ref = a.default_pos_rad if prev is None else prev
    assert np.all(np.abs(out - ref) <= a.max_step_rad + 1e-12)
    assert r.rejected == bool(np.any(~np.isfinite(target)))
    again = clamp_command(out, prev, cal)  # idempotent: a safe command passes unchanged and unflagged
    np.testing.assert_array_equal(again.command, out)
    assert not again.modified
    if not r.rejected:
        # flags are exact: a joint unflagged was sent as requested
        untouched = ~(r.clipped_limit | r.clipped_step)
        np.testing.assert_array_equal(out[untouched], target[untouched])
