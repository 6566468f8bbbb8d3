"""Per-robot calibration (calib/<robot>.toml): the one place raw firmware units meet SI joint units.

A calibration file maps each motor's encoder and current sensor to the joint of the simulated robot with the
same name, and holds the limits the safety function enforces. Loading validates everything before any motion
command can be built from it; each problem names the file, the joint, the key, what was expected and what was
found, and all problems are reported together (`CalibrationError.problems`).

Conversions (vectorised over joints, in the robot's joint order; arrays are float64 unless stated):

    q_rad      = direction * (ticks - zero_offset_ticks) * 2 pi / (ticks_per_rev * gear_ratio)
    qd_rad_s   = direction * ticks_per_s * 2 pi / (ticks_per_rev * gear_ratio)
    tau_nm     = direction * current_ma / 1000 * torque_constant_nm_per_a * gear_ratio

The encoder sits on the motor shaft (ticks count motor revolutions, hence the gear ratio); torque_constant is
the motor's, at its shaft; `direction` is -1 where motor and joint positive senses disagree (mirrored legs);
gearbox losses are ignored.

Joint names per robot are a small table here (`EXPECTED_JOINTS`), not read from `sim.robots`: the bridge runs
on the robot's onboard computer without MuJoCo; tests/unit/firmware_bridge/test_calibration.py checks the
table against `sim.robots` so the two cannot drift.
"""

from __future__ import annotations

import hashlib
import json
import math
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from firmware_bridge.protocol.messages import KD_NM_S_PER_RAD_PER_LSB, KP_NM_PER_RAD_PER_LSB

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

FORMAT_VERSION = 1
TWO_PI = 2.0 * math.pi

# Joint order of the simulated robots (sim/robots/quadruped.py, sim/robots/manipulator.py): the action and
# joint-observation order, and therefore the order of every per-joint array on the wire.
EXPECTED_JOINTS: dict[str, tuple[str, ...]] = {
    "quadruped": ("FL_hip", "FL_knee", "FR_hip", "FR_knee", "RL_hip", "RL_knee", "RR_hip", "RR_knee"),
    "manipulator": ("base_yaw", "shoulder", "elbow", "wrist"),
}

_I16_MAX = (1 << 15) - 1
_I32_MAX = (1 << 31) - 1
_U16_MAX = (1 << 16) - 1


class CalibrationError(ValueError):
    """An invalid calibration file. `problems` lists every problem found, each naming file, joint and key."""

    def __init__(self, source: str, problems: Sequence[str]) -> None:
        self.source = source
        self.problems = tuple(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"invalid calibration {source} ({len(self.problems)} problem(s)):\n{lines}")


@dataclass(frozen=True)
class JointCalibration:
    """One joint. Angles in rad (joint side), torques in N m (joint side), ticks on the motor side."""

    name: str
    ticks_per_rev: int  # encoder ticks per motor revolution
    gear_ratio: float  # motor revolutions per joint revolution
    direction: int  # +1 or -1
    zero_offset_ticks: int  # encoder reading at joint angle 0
    position_min_rad: float
    position_max_rad: float
    velocity_limit_rad_s: float
    torque_limit_nm: float
    torque_constant_nm_per_a: float  # motor side
    max_step_rad: float  # largest change of the position target per control step
    default_pos_rad: float
    kp_nm_per_rad: float
    kd_nm_s_per_rad: float


_JOINT_KEYS: tuple[str, ...] = tuple(f.name for f in fields(JointCalibration))
_TOP_KEYS = ("robot", "format_version", "control_dt_s", "watchdog_timeout_s", "joint")


@dataclass(frozen=True)
class JointArrays:
    """Per-joint parameters as read-only arrays (n,), for the vectorised conversions and the safety clamp."""

    ticks_per_rev: FloatArray
    gear_ratio: FloatArray
    direction: FloatArray
    zero_offset_ticks: FloatArray
    position_min_rad: FloatArray
    position_max_rad: FloatArray
    velocity_limit_rad_s: FloatArray
    torque_limit_nm: FloatArray
    torque_constant_nm_per_a: FloatArray
    max_step_rad: FloatArray
    default_pos_rad: FloatArray
    kp_nm_per_rad: FloatArray
    kd_nm_s_per_rad: FloatArray
    rad_per_tick: FloatArray  # 2 pi / (ticks_per_rev * gear_ratio), joint side
    nm_per_ma: FloatArray  # torque_constant * gear_ratio / 1000, joint side
    # (3, n) rows for `sensor_block_to_si`: position, velocity, current.
    sensor_offset: FloatArray  # zero_offset_ticks, 0, 0
    sensor_rate: FloatArray  # rad_per_tick, rad_per_tick, nm_per_ma


@dataclass(frozen=True)
class Calibration:
    """A validated calibration. `source` (the file it came from) is not part of `calibration_hash`."""

    robot: str
    format_version: int
    control_dt_s: float
    watchdog_timeout_s: float
    joints: tuple[JointCalibration, ...]
    source: str = "<memory>"

    @property
    def joint_names(self) -> tuple[str, ...]:
        return tuple(j.name for j in self.joints)

    @property
    def n_joints(self) -> int:
        return len(self.joints)

    @cached_property
    def arrays(self) -> JointArrays:
        def col(name: str) -> FloatArray:
            a = np.array([float(getattr(j, name)) for j in self.joints], dtype=np.float64)
            a.flags.writeable = False
            return a

        values = {f.name: col(f.name) for f in fields(JointCalibration) if f.name != "name"}
        rad_per_tick = TWO_PI / (values["ticks_per_rev"] * values["gear_ratio"])
        nm_per_ma = values["torque_constant_nm_per_a"] * values["gear_ratio"] / 1000.0
        zeros = np.zeros_like(rad_per_tick)
        sensor_offset = np.stack([values["zero_offset_ticks"], zeros, zeros])
        sensor_rate = np.stack([rad_per_tick, rad_per_tick, nm_per_ma])
        for arr in (rad_per_tick, nm_per_ma, sensor_offset, sensor_rate):
            arr.flags.writeable = False
        return JointArrays(
            **values,
            rad_per_tick=rad_per_tick,
            nm_per_ma=nm_per_ma,
            sensor_offset=sensor_offset,
            sensor_rate=sensor_rate,
        )


# --- loading and validation ---------------------------------------------------------------------------


class _Problems:
    """Collects validation problems, each as `file: where: key 'k': expected X, got Y`."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.items: list[str] = []

    def add(self, where: str, key: str, expected: str, got: object) -> None:
        self.items.append(f"{self.source}: {where}: key {key!r}: expected {expected}, got {got!r}")

    def __len__(self) -> int:
        return len(self.items)


def load_calibration(
    path: str | Path,
    expected_robot: str | None = None,
    *,
    expected_joints: Sequence[str] | None = None,
) -> Calibration:
    """Read and validate calib/<robot>.toml. Raises `CalibrationError` listing every problem.

    `expected_robot`: the robot this process drives; a file for another robot is an error.
    `expected_joints`: the joint names in order; defaults to `EXPECTED_JOINTS[robot]` (error if unknown).
    """
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise CalibrationError(source, [f"cannot read the file: {exc}"]) from None
    return parse_calibration(
        text, source=source, expected_robot=expected_robot, expected_joints=expected_joints
    )


def parse_calibration(
    text: str,
    *,
    source: str = "<string>",
    expected_robot: str | None = None,
    expected_joints: Sequence[str] | None = None,
) -> Calibration:
    """Validate TOML text as a calibration (see `load_calibration`)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CalibrationError(source, [f"not valid TOML: {exc}"]) from None
    return calibration_from_dict(
        data, source=source, expected_robot=expected_robot, expected_joints=expected_joints
    )


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: object) -> bool:
    return (isinstance(v, int | float)) and not isinstance(v, bool)


def _positive_finite(v: object) -> float | None:
    if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and v > 0:
        return float(v)
    return None


def calibration_from_dict(
    data: Mapping[str, Any],
    *,
    source: str = "<dict>",
    expected_robot: str | None = None,
    expected_joints: Sequence[str] | None = None,
) -> Calibration:
    """Validate a parsed calibration mapping (see `load_calibration`)."""
    problems = _Problems(source)
    bad = problems.add

    for key in data:
        if key not in _TOP_KEYS:
            bad("top level", key, f"one of {list(_TOP_KEYS)} (unknown key)", data[key])
    for key in _TOP_KEYS:
        if key not in data:
            bad("top level", key, "present", "missing")

    robot = data.get("robot")
    if "robot" in data and not (isinstance(robot, str) and robot):
        bad("top level", "robot", "a non-empty string", robot)
        robot = None
    if expected_robot is not None and isinstance(robot, str) and robot != expected_robot:
        bad("top level", "robot", f"{expected_robot!r} (wrong robot)", robot)
    version = data.get("format_version")
    if "format_version" in data and version != FORMAT_VERSION:
        bad("top level", "format_version", str(FORMAT_VERSION), version)
    dt = _positive_finite(data.get("control_dt_s"))
    if "control_dt_s" in data and dt is None:
        bad("top level", "control_dt_s", "a finite number > 0 (s)", data["control_dt_s"])
    wd = _positive_finite(data.get("watchdog_timeout_s"))
    if "watchdog_timeout_s" in data:
        if wd is None:
            bad("top level", "watchdog_timeout_s", "a finite number > 0 (s)", data["watchdog_timeout_s"])
        elif dt is not None and wd <= dt:
            bad("top level", "watchdog_timeout_s", f"> control_dt_s ({dt} s): at least one period", wd)

    # Which joints, in which order.
    if expected_joints is None and isinstance(robot, str):
        if robot in EXPECTED_JOINTS:
            expected_joints = EXPECTED_JOINTS[robot]
        else:
            bad("top level", "robot", f"one of {sorted(EXPECTED_JOINTS)} or pass expected_joints", robot)

    raw_joints = data.get("joint", [])
    if "joint" in data and not (
        isinstance(raw_joints, list) and all(isinstance(j, dict) for j in raw_joints)
    ):
        bad("top level", "joint", "an array of tables [[joint]]", type(raw_joints).__name__)
        raw_joints = []
    names = [j.get("name") for j in raw_joints]
    if expected_joints is not None:
        exp = list(expected_joints)
        for name in exp:
            if name not in names:
                bad(f"joint {name!r}", "name", f"a [[joint]] table for {name!r}", "missing joint")
        for name in names:
            if name not in exp:
                bad(f"joint {name!r}", "name", f"one of {exp}", name)
        dupes = sorted({str(n) for n in names if names.count(n) > 1})
        if dupes:
            bad("joints", "name", "each joint once", f"duplicates {dupes}")
        if not problems and names != exp:
            bad("joints", "name", f"the robot's joint order {exp}", names)

    joints: list[JointCalibration] = []
    for i, raw in enumerate(raw_joints):
        joint = _validate_joint(raw, i, dt, problems)
        if joint is not None:
            joints.append(joint)

    if problems:
        raise CalibrationError(source, problems.items)
    assert isinstance(robot, str) and dt is not None and wd is not None  # no problems -> all present
    return Calibration(
        robot=robot,
        format_version=FORMAT_VERSION,
        control_dt_s=dt,
        watchdog_timeout_s=wd,
        joints=tuple(joints),
        source=source,
    )


def _validate_joint(
    raw: Mapping[str, Any], index: int, dt: float | None, problems: _Problems
) -> JointCalibration | None:
    """One [[joint]] table; adds to `problems`; None if it has any."""
    where = f"joint {raw['name']!r}" if "name" in raw else f"joint #{index}"
    bad = problems.add
    problems_before = len(problems)
    for key in raw:
        if key not in _JOINT_KEYS:
            bad(where, key, f"one of {list(_JOINT_KEYS)} (unknown key)", raw[key])
    for key in _JOINT_KEYS:
        if key not in raw:
            bad(where, key, "present", "missing")

    def number(key: str, cond: str = "", *, integer: bool = False) -> float | None:
        if key not in raw:
            return None
        v = raw[key]
        ok = _is_int(v) if integer else (_is_number(v) and math.isfinite(v))
        if not ok:
            bad(where, key, "an integer" if integer else "a finite number", v)
            return None
        return float(v)

    ticks = number("ticks_per_rev", integer=True)
    gear = number("gear_ratio")
    direction = number("direction", integer=True)
    offset = number("zero_offset_ticks", integer=True)
    qmin = number("position_min_rad")
    qmax = number("position_max_rad")
    vlim = number("velocity_limit_rad_s")
    tlim = number("torque_limit_nm")
    kt = number("torque_constant_nm_per_a")
    step = number("max_step_rad")
    q0 = number("default_pos_rad")
    kp = number("kp_nm_per_rad")
    kd = number("kd_nm_s_per_rad")
    if "name" in raw and not (isinstance(raw["name"], str) and raw["name"]):
        bad(where, "name", "a non-empty string", raw["name"])

    for key, v in (("ticks_per_rev", ticks), ("gear_ratio", gear), ("velocity_limit_rad_s", vlim)):
        if v is not None and v <= 0:
            bad(where, key, "> 0", raw[key])
    for key, v in (("torque_limit_nm", tlim), ("torque_constant_nm_per_a", kt), ("max_step_rad", step)):
        if v is not None and v <= 0:
            bad(where, key, "> 0", raw[key])
    for key, v in (("kp_nm_per_rad", kp), ("kd_nm_s_per_rad", kd)):
        if v is not None and v < 0:
            bad(where, key, ">= 0", raw[key])
    if direction is not None and direction not in (1.0, -1.0):
        bad(where, "direction", "+1 or -1", raw["direction"])
    if qmin is not None and qmax is not None and qmin >= qmax:
        bad(
            where,
            "position_min_rad",
            f"< position_max_rad ({raw['position_max_rad']})",
            raw["position_min_rad"],
        )
    if q0 is not None and qmin is not None and qmax is not None and qmin < qmax and not qmin <= q0 <= qmax:
        bad(
            where, "default_pos_rad", f"within [{qmin}, {qmax}] (the position limits)", raw["default_pos_rad"]
        )
    if (
        step is not None
        and vlim is not None
        and dt is not None
        and step > 0
        and step > vlim * dt * (1 + 1e-9)
    ):
        bad(
            where,
            "max_step_rad",
            "<= velocity_limit_rad_s * control_dt_s"
            f" = {vlim * dt:.6g} (a larger step outruns the velocity limit)",
            raw["max_step_rad"],
        )
    # What the wire can carry: gains in u16 with fixed scales, current in i16 mA, ticks in i32.
    if kp is not None and kp / KP_NM_PER_RAD_PER_LSB > _U16_MAX:
        bad(
            where,
            "kp_nm_per_rad",
            f"<= {_U16_MAX * KP_NM_PER_RAD_PER_LSB:g} (u16 on the wire)",
            raw["kp_nm_per_rad"],
        )
    if kd is not None and kd / KD_NM_S_PER_RAD_PER_LSB > _U16_MAX:
        bad(
            where,
            "kd_nm_s_per_rad",
            f"<= {_U16_MAX * KD_NM_S_PER_RAD_PER_LSB:g} (u16 on the wire)",
            raw["kd_nm_s_per_rad"],
        )
    if tlim is not None and kt is not None and gear is not None and kt > 0 and gear > 0:
        peak_ma = tlim / (kt * gear) * 1000.0
        if peak_ma > _I16_MAX:
            bad(where, "torque_limit_nm", f"a current <= {_I16_MAX} mA (i16), needs {peak_ma:.0f} mA", tlim)
    if None not in (ticks, gear, offset, qmin, qmax) and ticks and gear and ticks > 0 and gear > 0:
        assert ticks is not None and gear is not None and offset is not None
        assert qmin is not None and qmax is not None
        per_rad = ticks * gear / TWO_PI
        extreme = abs(offset) + max(abs(qmin), abs(qmax)) * per_rad
        if extreme > _I32_MAX:
            bad(where, "zero_offset_ticks", "position limits that fit i32 ticks", f"{extreme:.0f} ticks")
    if len(problems) > problems_before:
        return None
    return JointCalibration(
        name=str(raw["name"]),
        ticks_per_rev=int(raw["ticks_per_rev"]),
        gear_ratio=float(raw["gear_ratio"]),
        direction=int(raw["direction"]),
        zero_offset_ticks=int(raw["zero_offset_ticks"]),
        position_min_rad=float(raw["position_min_rad"]),
        position_max_rad=float(raw["position_max_rad"]),
        velocity_limit_rad_s=float(raw["velocity_limit_rad_s"]),
        torque_limit_nm=float(raw["torque_limit_nm"]),
        torque_constant_nm_per_a=float(raw["torque_constant_nm_per_a"]),
        max_step_rad=float(raw["max_step_rad"]),
        default_pos_rad=float(raw["default_pos_rad"]),
        kp_nm_per_rad=float(raw["kp_nm_per_rad"]),
        kd_nm_s_per_rad=float(raw["kd_nm_s_per_rad"]),
    )


# --- hash ---------------------------------------------------------------------------------------------


def canonical_json(cal: Calibration) -> str:
    """The calibration's content as canonical JSON: sorted keys, no whitespace, floats as `repr` (exact).

    Numbers are normalised by the loader (ints for integer keys, floats for the rest), so `gear_ratio = 9`
    and `gear_ratio = 9.0` hash alike; `source` is left out so copying a file does not change its hash.
    """
    content = {
        "robot": cal.robot,
        "format_version": cal.format_version,
        "control_dt_s": cal.control_dt_s,
        "watchdog_timeout_s": cal.watchdog_timeout_s,
        "joints": [asdict(j) for j in cal.joints],
    }
    return json.dumps(content, sort_keys=True, separators=(",", ":"), allow_nan=False)


def calibration_hash(cal: Calibration) -> str:
    """sha256 (64 hex digits) of `canonical_json(cal)`: the value every log manifest records.

    Stable across key order, whitespace, comments and int/float spelling in the TOML; changes with any value.
    """
    return hashlib.sha256(canonical_json(cal).encode("utf-8")).hexdigest()


# --- conversions (pure, vectorised over joints) -------------------------------------------------------


def _per_joint(cal: Calibration, x: npt.ArrayLike, what: str) -> FloatArray:
    a = np.asarray(x, dtype=np.float64)
    if a.shape[-1:] != (cal.n_joints,):
        raise ValueError(
            f"{what}: last axis must be {cal.n_joints} joints ({cal.robot}), got shape {a.shape}"
        )
    return a


def _to_int(cal: Calibration, x: FloatArray, what: str, limit: int) -> IntArray:
    """Round to the nearest integer; ValueError on NaN/inf or values outside +-limit (never silently wrap)."""
    r = np.rint(x)
    # One reduction checks both (a NaN maximum fails the comparison); the messages are worked out after.
    if not np.abs(r).max(initial=0.0) <= limit:
        if not np.isfinite(x).all():
            raise ValueError(f"{what}: non-finite values {x.tolist()} ({cal.robot})")
        raise ValueError(f"{what}: {r.tolist()} outside +-{limit} ({cal.robot})")
    return r.astype(np.int64)


def ticks_to_rad(cal: Calibration, ticks: npt.ArrayLike) -> FloatArray:
    """Encoder ticks (..., n) -> joint angle rad (..., n)."""
    a = cal.arrays
    t = _per_joint(cal, ticks, "ticks")
    return a.direction * (t - a.zero_offset_ticks) * a.rad_per_tick


def rad_to_ticks(cal: Calibration, q_rad: npt.ArrayLike) -> IntArray:
    """Joint angle rad (..., n) -> encoder ticks (..., n) int64, rounded; ValueError on NaN/inf/overflow."""
    a = cal.arrays
    q = _per_joint(cal, q_rad, "q_rad")
    return _to_int(cal, a.zero_offset_ticks + a.direction * q / a.rad_per_tick, "ticks", _I32_MAX)


def ticks_per_s_to_rad_s(cal: Calibration, ticks_per_s: npt.ArrayLike) -> FloatArray:
    """Encoder velocity ticks/s (..., n) -> joint velocity rad/s (..., n)."""
    a = cal.arrays
    return a.direction * _per_joint(cal, ticks_per_s, "ticks_per_s") * a.rad_per_tick


def rad_s_to_ticks_per_s(cal: Calibration, qd_rad_s: npt.ArrayLike) -> IntArray:
    """Joint velocity rad/s (..., n) -> encoder ticks/s (..., n) int64, rounded."""
    a = cal.arrays
    qd = _per_joint(cal, qd_rad_s, "qd_rad_s")
    return _to_int(cal, a.direction * qd / a.rad_per_tick, "ticks/s", _I32_MAX)


def sensor_block_to_si(cal: Calibration, block: npt.ArrayLike) -> FloatArray:
    """(3, n) rows [position ticks, velocity ticks/s, current mA] -> (3, n) rows [rad, rad/s, N m].

    Bit for bit the rows of `ticks_to_rad`, `ticks_per_s_to_rad_s` and `current_ma_to_torque_nm` (same
    operations in the same order), in three array operations instead of seven: the bridge converts every
    SENSOR_STATE with it.
    """
    a = cal.arrays
    b = np.asarray(block, dtype=np.float64)
    if b.shape != (3, cal.n_joints):
        raise ValueError(f"sensor block: expected shape (3, {cal.n_joints}) ({cal.robot}), got {b.shape}")
    return a.direction * (b - a.sensor_offset) * a.sensor_rate


def current_ma_to_torque_nm(cal: Calibration, current_ma: npt.ArrayLike) -> FloatArray:
    """Motor current mA (..., n) -> joint torque N m (..., n)."""
    a = cal.arrays
    return a.direction * _per_joint(cal, current_ma, "current_ma") * a.nm_per_ma


def torque_nm_to_current_ma(cal: Calibration, tau_nm: npt.ArrayLike) -> IntArray:
    """Joint torque N m (..., n) -> motor current mA (..., n) int64, rounded; ValueError outside i16."""
    a = cal.arrays
    tau = _per_joint(cal, tau_nm, "tau_nm")
    return _to_int(cal, a.direction * tau / a.nm_per_ma, "current_ma", _I16_MAX)


def gains_to_wire(cal: Calibration) -> tuple[IntArray, IntArray]:
    """The calibration's kp, kd as the u16 wire values of JOINT_COMMAND (1e-2 N m/rad, 1e-3 N m s/rad)."""
    a = cal.arrays
    kp = _to_int(cal, a.kp_nm_per_rad / KP_NM_PER_RAD_PER_LSB, "kp", _U16_MAX)
    kd = _to_int(cal, a.kd_nm_s_per_rad / KD_NM_S_PER_RAD_PER_LSB, "kd", _U16_MAX)
    return kp, kd
