"""Calibration: the shipped files, every bad-file case, the hash, conversions with hand-computed values."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from firmware_bridge.calibration import (
    EXPECTED_JOINTS,
    Calibration,
    CalibrationError,
    calibration_hash,
    current_ma_to_torque_nm,
    gains_to_wire,
    load_calibration,
    parse_calibration,
    rad_s_to_ticks_per_s,
    rad_to_ticks,
    sensor_block_to_si,
    ticks_per_s_to_rad_s,
    ticks_to_rad,
    torque_nm_to_current_ma,
)

CALIB = Path(__file__).resolve().parents[3] / "calib"
QUAD = CALIB / "quadruped.toml"
ARM = CALIB / "manipulator.toml"


def edit(text: str, old: str, new: str, count: int = 1) -> str:
    assert old in text, old
    return text.replace(old, new, count)


def problems_of(text: str, **kw: object) -> list[str]:
    with pytest.raises(CalibrationError) as info:
        parse_calibration(text, source="calib/test.toml", **kw)  # type: ignore[arg-type]
    return list(info.value.problems)


def test_shipped_files_load_and_match_the_simulated_robots() -> None:
    from sim.robots.manipulator import MANIPULATOR
    from sim.robots.quadruped import QUADRUPED

    for path, model in ((QUAD, QUADRUPED), (ARM, MANIPULATOR)):
        cal = load_calibration(path, expected_robot=model.name)
        assert cal.joint_names == model.joint_names == EXPECTED_JOINTS[model.name]
        assert cal.control_dt_s == model.control_dt_s
        assert cal.watchdog_timeout_s == pytest.approx(3 * model.control_dt_s)
        for jc, j, q0 in zip(cal.joints, model.joints, model.default_joint_pos_rad, strict=True):
            lo, hi = j.range_rad
            assert lo < jc.position_min_rad < jc.position_max_rad < hi, jc.name
            assert jc.default_pos_rad == q0
            assert (jc.kp_nm_per_rad, jc.kd_nm_s_per_rad) == (j.kp_nm_per_rad, j.kd_nm_s_per_rad)
            assert 0 < jc.torque_limit_nm <= j.torque_limit_nm
        # calibration must undo something: offsets are non-zero and some directions are reversed
        assert all(j.zero_offset_ticks != 0 for j in cal.joints)
        assert {j.direction for j in cal.joints} == {1, -1}


def test_wrong_robot_is_refused() -> None:
    with pytest.raises(
        CalibrationError, match=r"quadruped\.toml: top level: key 'robot': expected 'manipulator'"
    ):
        load_calibration(QUAD, expected_robot="manipulator")


def test_missing_joint() -> None:
    text = QUAD.read_text()
    start = text.index('[[joint]]\nname = "FR_knee"')
    end = text.index("[[joint]]", start + 1)
    (p,) = problems_of(text[:start] + text[end:])
    assert p == (
        "calib/test.toml: joint 'FR_knee': key 'name': "
        "expected a [[joint]] table for 'FR_knee', got 'missing joint'"
    )


def test_missing_joint_against_an_explicit_list() -> None:
    (p,) = problems_of(ARM.read_text(), expected_joints=["base_yaw", "shoulder", "elbow", "wrist", "gripper"])
    assert "joint 'gripper'" in p and "missing joint" in p


def test_limit_min_above_max() -> None:
    text = edit(ARM.read_text(), "position_min_rad = -1.5", "position_min_rad = 1.6")
    (p,) = problems_of(text)
    assert p == (
        "calib/test.toml: joint 'shoulder': key 'position_min_rad': "
        "expected < position_max_rad (1.5), got 1.6"
    )


def test_default_pose_outside_limits() -> None:
    text = edit(ARM.read_text(), "default_pos_rad = 1.0", "default_pos_rad = 2.35")
    (p,) = problems_of(text)
    assert "joint 'elbow': key 'default_pos_rad': expected within [-2.3, 2.3]" in p and p.endswith("got 2.35")


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("direction = -1", "direction = 0", "key 'direction': expected +1 or -1, got 0"),
        ("gear_ratio = 50.0", "gear_ratio = -50.0", "key 'gear_ratio': expected > 0, got -50.0"),
        ("ticks_per_rev = 4096", "ticks_per_rev = 0", "key 'ticks_per_rev': expected > 0, got 0"),
        (
            "ticks_per_rev = 4096",
            "ticks_per_rev = 4096.5",
            "key 'ticks_per_rev': expected an integer, got 4096.5",
        ),
        (
            "kp_nm_per_rad = 80.0",
            "kp_nm_per_rad = nan",
            "key 'kp_nm_per_rad': expected a finite number, got nan",
        ),
        ("kp_nm_per_rad = 80.0", "kp_nm_per_rad = 700.0", "expected <= 655.35 (u16 on the wire), got 700.0"),
        (
            "max_step_rad = 0.05",
            "max_step_rad = 0.07",
            "expected <= velocity_limit_rad_s * control_dt_s = 0.06",
        ),
        ("torque_limit_nm = 25.0", "torque_limit_nm = 250.0", "expected a current <= 32767 mA (i16)"),
        ("velocity_limit_rad_s = 3.0", "velocity_limit_rad_s = true", "expected a finite number, got True"),
        ("kd_nm_s_per_rad = 4.0", "kd_nm_s_per_rad = 4.0\nkd_typo = 1.0", "key 'kd_typo': expected one of"),
        (
            "torque_constant_nm_per_a = 0.12\n",
            "",
            "key 'torque_constant_nm_per_a': expected present, got 'missing'",
        ),
    ],
)
def test_bad_joint_values_name_file_joint_key_expected_and_got(old: str, new: str, expected: str) -> None:
    (p,) = problems_of(edit(ARM.read_text(), old, new))
    assert p.startswith("calib/test.toml: joint '")
    assert expected in p


def test_bad_top_level_values() -> None:
    text = ARM.read_text()
    assert (
        "key 'format_version': expected 1, got 2"
        in problems_of(edit(text, "format_version = 1", "format_version = 2"))[0]
    )
    (p,) = problems_of(edit(text, "watchdog_timeout_s = 0.06", "watchdog_timeout_s = 0.01"))
    assert "key 'watchdog_timeout_s': expected > control_dt_s (0.02 s)" in p
    (p,) = problems_of(edit(text, 'robot = "manipulator"', 'robot = "rover"'))
    assert "expected one of ['manipulator', 'quadruped'] or pass expected_joints, got 'rover'" in p
    (p,) = problems_of("extra = 1\n" + text)
    assert "top level: key 'extra'" in p
    assert "not valid TOML" in problems_of("robot = ")[0]


def test_joint_order_must_match_the_robot() -> None:
    text = ARM.read_text()
    text = edit(text, 'name = "base_yaw"', 'name = "TMP"')
    text = edit(text, 'name = "shoulder"', 'name = "base_yaw"')
    text = edit(text, 'name = "TMP"', 'name = "shoulder"')
    (p,) = problems_of(text)
    assert "the robot's joint order ['base_yaw', 'shoulder', 'elbow', 'wrist']" in p


def test_all_problems_are_reported_at_once_and_unreadable_files_are_errors(tmp_path: Path) -> None:
    text = edit(ARM.read_text(), "direction = -1", "direction = 2", count=2)
    text = edit(text, "position_min_rad = -2.5", "position_min_rad = 2.6")
    assert len(problems_of(text)) == 3
    with pytest.raises(CalibrationError, match="cannot read the file"):
        load_calibration(tmp_path / "absent.toml")


def test_hash_is_stable_across_formatting_and_changes_with_content(tmp_path: Path) -> None:
    cal = load_calibration(ARM)
    h = calibration_hash(cal)
    assert len(h) == 64 and int(h, 16) >= 0
    text = ARM.read_text()
    # same content: no comments, extra whitespace, keys reordered inside a table, 50.0 written as 50
    stripped = "\n".join(line.split("#")[0].rstrip() for line in text.splitlines())
    reordered = edit(
        stripped, 'name = "elbow"\nticks_per_rev = 4096', 'ticks_per_rev   =   4096\nname = "elbow"'
    )
    reordered = edit(reordered, "gear_ratio = 50.0", "gear_ratio = 50", count=3)
    other = tmp_path / "copy.toml"
    other.write_text(reordered)
    copy = load_calibration(other)
    assert copy.source != cal.source and copy == Calibration(**{**copy.__dict__, "source": copy.source})
    assert calibration_hash(copy) == h
    changed = parse_calibration(edit(text, "zero_offset_ticks = 1000", "zero_offset_ticks = 1001"))
    assert calibration_hash(changed) != h


def test_conversions_hand_computed() -> None:
    cal = load_calibration(ARM)
    # rad per tick: base/shoulder/elbow 2 pi / (4096 * 50) = 3.0680e-5, wrist 2 pi / (4096 * 30) = 5.1133e-5
    # shoulder: direction -1, offset -51234: ticks -51234 - 10240 = -61474 -> -(-10240) * 3.0680e-5 = +0.31416
    # base: 1000 + 51200 -> 51200 * 3.0680e-5 = pi / 2 (a quarter joint turn = 12.5 motor turns)
    ticks = np.array([1000 + 51200, -51234 - 10240, 102400, -7777])
    q = ticks_to_rad(cal, ticks)
    np.testing.assert_allclose(q, [math.pi / 2, 10240 * 2 * math.pi / 204800, 0.0, 0.0], atol=1e-12)
    np.testing.assert_array_equal(rad_to_ticks(cal, q), ticks)
    # velocity: wrist -1 direction, 4096 * 30 / (2 pi) = 19556.96 ticks per rad -> 1 rad/s = -19557 ticks/s
    qd_ticks = rad_s_to_ticks_per_s(cal, [0.0, 0.0, 0.0, 1.0])
    assert qd_ticks.tolist() == [0, 0, 0, -19557]
    np.testing.assert_allclose(ticks_per_s_to_rad_s(cal, qd_ticks)[3], 1.0, atol=1e-4)
    # torque: elbow 1000 mA * 0.12 N m/A * 50 = 6.0 N m; shoulder reversed -> -6.0;
    # wrist (reversed) 1 A * 0.12 * 30 = -3.6
    tau = current_ma_to_torque_nm(cal, [0, 1000, 1000, 1000])
    np.testing.assert_allclose(tau, [0.0, -6.0, 6.0, -3.6], atol=1e-12)
    assert torque_nm_to_current_ma(cal, tau).tolist() == [0, 1000, 1000, 1000]
    # gains: kp 80 N m/rad / 0.01 = 8000, kd 4 / 0.001 = 4000; wrist 20 -> 2000, 0.5 -> 500
    kp, kd = gains_to_wire(cal)
    assert kp.tolist() == [8000, 8000, 8000, 2000] and kd.tolist() == [4000, 4000, 4000, 500]


def test_conversions_vectorise_over_batches_and_refuse_bad_input() -> None:
    cal = load_calibration(QUAD)
    q = np.tile(cal.arrays.default_pos_rad, (5, 1)) + np.linspace(-0.1, 0.1, 5)[:, None]
    ticks = rad_to_ticks(cal, q)
    assert ticks.shape == (5, 8) and ticks.dtype == np.int64
    # one tick is 2 pi / (16384 * 9) = 4.26e-5 rad: rounding error at most half of that
    assert np.max(np.abs(ticks_to_rad(cal, ticks) - q)) <= 0.5 * 2 * math.pi / (16384 * 9) + 1e-12
    with pytest.raises(ValueError, match="non-finite"):
        rad_to_ticks(cal, [math.nan] * 8)
    with pytest.raises(ValueError, match="8 joints"):
        ticks_to_rad(cal, [0, 0, 0])
    with pytest.raises(ValueError, match="outside"):
        torque_nm_to_current_ma(cal, [100.0] * 8)  # 100 / (0.09 * 9) = 123 A, beyond i16 mA
    assert not cal.arrays.position_min_rad.flags.writeable


def test_sensor_block_equals_the_three_conversions_bit_for_bit() -> None:
    rng = np.random.default_rng(0)
    for path in (QUAD, ARM):
        cal = load_calibration(path)
        n = cal.n_joints
        for _ in range(50):
            block = np.stack(
                [
                    rng.integers(-(2**31), 2**31, n),  # position ticks (i32)
                    rng.integers(-(2**31), 2**31, n),  # velocity ticks/s (i32)
                    rng.integers(-(2**15), 2**15, n),  # current mA (i16)
                ]
            ).astype(np.float64)
            si = sensor_block_to_si(cal, block)
            assert si[0].tobytes() == ticks_to_rad(cal, block[0]).tobytes()
            assert si[1].tobytes() == ticks_per_s_to_rad_s(cal, block[1]).tobytes()
            assert si[2].tobytes() == current_ma_to_torque_nm(cal, block[2]).tobytes()
        with pytest.raises(ValueError, match=r"expected shape \(3,"):
            sensor_block_to_si(cal, np.zeros((2, n)))
    cal = load_calibration(QUAD)
    with pytest.raises(ValueError, match="non-finite"):
        rad_to_ticks(cal, [math.inf] + [0.0] * 7)
    with pytest.raises(ValueError, match="outside"):
        rad_to_ticks(cal, [1e9] * 8)
