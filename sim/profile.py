"""Dynamics-gap profiles: data files that turn a nominal simulator into a "real" robot.

A profile is a TOML file; every key is optional and an absent key means "nominal". Scales multiply the nominal
value; offsets add to it. Only `DynamicsProfile` (below) is applied by the physics backend; `latency_steps`,
`action_noise_std` and the sensor noise entries are applied by `sim.env.RobotEnv` and so behave identically on
every backend.
"""

from __future__ import annotations

from dataclasses import dataclass

Vec3 = tuple[float, float, float]


@dataclass(frozen=True)
class DynamicsProfile:
    """Physical parameters a backend applies to its compiled model (relative to nominal).

    friction_scale:        multiplies the sliding friction of every geom and of the ground (> 0)
    mass_scale:            multiplies every link mass and inertia (> 0)
    base_mass_offset_kg:   added to the root body's mass (payload); the root's mass must stay > 0
    motor_strength_scale:  multiplies the PD torque and its limit: tau = s * clip(kp e - kd qdot, +-limit) (> 0)
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
