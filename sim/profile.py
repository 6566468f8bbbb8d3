"""Dynamics-gap profiles: data files that turn a nominal simulator into a "real" robot.

A profile is a TOML file; every key is optional and an absent key means "nominal". Scales multiply the nominal
value; offsets add to it. Only `DynamicsProfile` (below) is applied by the physics backend; `latency_steps`,
`action_noise_std` and the sensor noise entries are applied by `sim.env.RobotEnv` and so behave identically on
every backend.

File layout (sectioned; every section and key optional; nothing else is accepted)::

    name = "example_gap"              # defaults to the file stem
    description = "free text"

    [dynamics]                        # -> DynamicsProfile, applied by the backend
    friction_scale = 0.6              # > 0
    mass_scale = 1.1                  # > 0
    base_mass_offset_kg = 1.0         # root mass must stay > 0
    motor_strength_scale = 0.8        # > 0
    joint_damping_scale = 2.0         # >= 0
    joint_damping_offset_nm_s_per_rad = 0.0   # >= 0
    gravity_mps2 = [0.0, 0.0, -9.81]  # 3 finite numbers

    [actuation]                       # applied by RobotEnv
    latency_steps = 1                 # integer >= 0, in control steps
    action_noise_std = 0.02           # >= 0, Gaussian, in normalised action units ([-1, 1])

    [sensors]                         # Gaussian noise stds, applied by RobotEnv per observation group, >= 0
    joint_pos_noise_rad = 0.01
    joint_vel_noise_radps = 1.5
    gyro_noise_radps = 0.2
    linvel_noise_mps = 0.1
    gravity_noise = 0.05              # on the projected gravity unit vector (dimensionless)
    ee_pos_noise_m = 0.005

`load_profile("nominal")` resolves a bare name to `sim/profiles/nominal.toml`; anything containing a path
separator or ending in ".toml" is read as a path.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

PROFILES_DIR = Path(__file__).resolve().parent / "profiles"

Vec3 = tuple[float, float, float]


@dataclass(frozen=True)
class DynamicsProfile:
    """Physical parameters a backend applies to its compiled model (relative to nominal).

    friction_scale:        multiplies the sliding friction of every geom and of the ground (> 0)
    mass_scale:            multiplies every link mass and inertia (> 0)
    base_mass_offset_kg:   added to the root body's mass (payload); the root's mass must stay > 0
    motor_strength_scale:  multiplies the PD torque and its limit (> 0):
                           tau = s * clip(kp e - kd qdot, +-limit)
    joint_damping_scale:   multiplies passive joint damping (>= 0)
    joint_damping_offset_nm_s_per_rad: added to passive joint damping (>= 0 after adding)
    gravity_mps2:          world gravity vector, nominal (0, 0, -9.81)
    """

    friction_scale: float = 1.0
    mass_scale: float = 1.0
    base_mass_offset_kg: float = 0.0
    motor_strength_scale: float = 1.0
    joint_damping_scale: float = 1.0
    joint_damping_offset_nm_s_per_rad: float = 0.0
    gravity_mps2: Vec3 = (0.0, 0.0, -9.81)


def _check(ok: bool, key: str, expected: str, got: object) -> None:
    if not ok:
        raise ValueError(f"{key}: expected {expected}, got {got!r}")


def _is_number(x: object) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(float(x))


def validate_dynamics(d: DynamicsProfile) -> None:
    """ValueError naming the key, its valid range and the bad value when `d` is out of range."""
    for key in (
        "friction_scale",
        "mass_scale",
        "base_mass_offset_kg",
        "motor_strength_scale",
        "joint_damping_scale",
        "joint_damping_offset_nm_s_per_rad",
    ):
        v = getattr(d, key)
        _check(_is_number(v), f"dynamics.{key}", "a finite number", v)
    _check(d.friction_scale > 0, "dynamics.friction_scale", "> 0", d.friction_scale)
    _check(d.mass_scale > 0, "dynamics.mass_scale", "> 0", d.mass_scale)
    _check(d.motor_strength_scale > 0, "dynamics.motor_strength_scale", "> 0", d.motor_strength_scale)
    _check(d.joint_damping_scale >= 0, "dynamics.joint_damping_scale", ">= 0", d.joint_damping_scale)
    _check(
        d.joint_damping_offset_nm_s_per_rad >= 0,
        "dynamics.joint_damping_offset_nm_s_per_rad",
        ">= 0",
        d.joint_damping_offset_nm_s_per_rad,
    )
    g = d.gravity_mps2
    _check(
        isinstance(g, tuple | list) and len(g) == 3 and all(_is_number(x) for x in g),
        "dynamics.gravity_mps2",
        "3 finite numbers (m/s^2)",
        g,
    )


@dataclass(frozen=True)
class GapProfile:
    """A complete sim-to-real gap: dynamics (backend) + actuation and sensor imperfections (environment).

    latency_steps:        the PD target reaches the motors this many control steps late (FIFO), >= 0
    action_noise_std:     Gaussian noise added to the action in [-1, 1] units before it becomes a PD target;
                          the environment still reports the clean action as `info["action_sent"]`
    joint_pos_noise_rad:  std of the noise on joint positions (rad)
    joint_vel_noise_radps: std of the noise on joint velocities (rad/s)
    gyro_noise_radps:     std of the noise on the base angular velocity (rad/s)
    linvel_noise_mps:     std of the noise on the base linear velocity estimate (m/s)
    gravity_noise:        std of the noise on the projected gravity unit vector (dimensionless)
    ee_pos_noise_m:       std of the noise on end-effector positions (m)
    """

    name: str = "nominal"
    description: str = ""
    dynamics: DynamicsProfile = DynamicsProfile()
    latency_steps: int = 0
    action_noise_std: float = 0.0
    joint_pos_noise_rad: float = 0.0
    joint_vel_noise_radps: float = 0.0
    gyro_noise_radps: float = 0.0
    linvel_noise_mps: float = 0.0
    gravity_noise: float = 0.0
    ee_pos_noise_m: float = 0.0

    def __post_init__(self) -> None:
        validate_dynamics(self.dynamics)
        _check(
            isinstance(self.latency_steps, int)
            and not isinstance(self.latency_steps, bool)
            and self.latency_steps >= 0,
            "actuation.latency_steps",
            "an integer >= 0 (control steps)",
            self.latency_steps,
        )
        _check(
            _is_number(self.action_noise_std) and self.action_noise_std >= 0,
            "actuation.action_noise_std",
            "a finite number >= 0",
            self.action_noise_std,
        )
        for key in _SENSOR_KEYS:
            v = getattr(self, key)
            _check(_is_number(v) and v >= 0, f"sensors.{key}", "a finite number >= 0", v)

    def sensor_noise(self) -> dict[str, float]:
        """Noise std per observation group: joint_pos, joint_vel, gyro, linvel, gravity, ee_pos."""
        return {
            "joint_pos": self.joint_pos_noise_rad,
            "joint_vel": self.joint_vel_noise_radps,
            "gyro": self.gyro_noise_radps,
            "linvel": self.linvel_noise_mps,
            "gravity": self.gravity_noise,
            "ee_pos": self.ee_pos_noise_m,
        }


_SENSOR_KEYS = (
    "joint_pos_noise_rad",
    "joint_vel_noise_radps",
    "gyro_noise_radps",
    "linvel_noise_mps",
    "gravity_noise",
    "ee_pos_noise_m",
)
_SECTIONS: dict[str, tuple[str, ...]] = {
    "dynamics": tuple(f.name for f in fields(DynamicsProfile)),
    "actuation": ("latency_steps", "action_noise_std"),
    "sensors": _SENSOR_KEYS,
}
_TOP_LEVEL = ("name", "description")


def available_profiles() -> list[str]:
    """Names of the profiles shipped in `sim/profiles/`."""
    return sorted(p.stem for p in PROFILES_DIR.glob("*.toml"))


def _resolve(path_or_name: str | Path) -> Path:
    s = str(path_or_name)
    if isinstance(path_or_name, Path) or "/" in s or "\\" in s or s.endswith(".toml"):
        path = Path(path_or_name)
        if not path.is_file():
            raise ValueError(f"profile file {path} does not exist")
        return path
    path = PROFILES_DIR / f"{s}.toml"
    if not path.is_file():
        raise ValueError(
            f"unknown profile {s!r}; valid choices: {available_profiles()} (or a path to a .toml)"
        )
    return path


def load_profile(path_or_name: str | Path) -> GapProfile:
    """Read a gap profile from a TOML file or a shipped profile name (layout: see the module docstring).

    ValueError names the file, the offending key, the valid keys or range, and the value found.
    """
    path = _resolve(path_or_name)
    try:
        raw: dict[str, Any] = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"{path}: not valid TOML: {e}") from None
    for key, value in raw.items():
        if key in _SECTIONS:
            if not isinstance(value, dict):
                raise ValueError(f"{path}: [{key}] must be a table, got {value!r}")
            unknown = sorted(set(value) - set(_SECTIONS[key]))
            if unknown:
                raise ValueError(
                    f"{path}: unknown key(s) {unknown} in [{key}]; valid keys: {list(_SECTIONS[key])}"
                )
        elif key not in _TOP_LEVEL:
            raise ValueError(
                f"{path}: unknown key or section {key!r}; valid top-level keys: {list(_TOP_LEVEL)}, "
                f"valid sections: {list(_SECTIONS)}"
            )
    dyn_raw = dict(raw.get("dynamics", {}))
    if "gravity_mps2" in dyn_raw:
        g = dyn_raw["gravity_mps2"]
        if not (isinstance(g, list) and len(g) == 3 and all(_is_number(x) for x in g)):
            raise ValueError(f"{path}: dynamics.gravity_mps2: expected 3 finite numbers (m/s^2), got {g!r}")
        dyn_raw["gravity_mps2"] = tuple(float(x) for x in g)
    try:
        return GapProfile(
            name=str(raw.get("name", path.stem)),
            description=str(raw.get("description", "")),
            dynamics=DynamicsProfile(**dyn_raw),
            **raw.get("actuation", {}),
            **raw.get("sensors", {}),
        )
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
