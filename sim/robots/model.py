"""Backend-neutral robot descriptions.

A robot is written once as data (`RobotModel`) and compiled to each simulator's format: MJCF for MuJoCo and
dm_control (`sim.robots.mjcf.to_mjcf`), URDF for PyBullet (`sim.robots.urdf.to_urdf`). That is what makes
"the same robot on three backends" true: same bodies, masses, joint axes, limits, PD gains and default pose.

Conventions (SI units throughout):
- Positions in metres, relative to the parent body's frame; bodies carry no rotation of their own (every
  body frame is aligned with its parent's at zero joint angle), which keeps MJCF and URDF trivially
  consistent.
- Joints are hinges (revolute) about `axis` in the body frame, with the joint at the body's origin.
- Every actuated joint is driven by a PD law closed at the physics rate inside the substeps:
  tau = clip(kp * (q_target - q) - kd * qdot, -torque_limit, torque_limit).
- z is up, x is the robot's forward direction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Vec3 = tuple[float, float, float]


@dataclass(frozen=True)
class Geom:
    """A collision-and-inertia primitive attached to a body.

    kind "box": `size` = half-extents (hx, hy, hz), centred at `pos`.
    kind "sphere": `size` = (radius,), centred at `pos`.
    kind "capsule": `size` = (radius,), axis from `fromto[:3]` to `fromto[3:]` (body frame); `pos` ignored.
    Mass is distributed uniformly over the primitive's volume.
    """

    name: str
    kind: Literal["box", "sphere", "capsule"]
    size: tuple[float, ...]
    mass_kg: float
    pos: Vec3 = (0.0, 0.0, 0.0)
    fromto: tuple[float, float, float, float, float, float] | None = None
    friction: float = 1.0  # sliding friction coefficient
    rgba: tuple[float, float, float, float] = (0.7, 0.7, 0.7, 1.0)
    contact: bool = True


@dataclass(frozen=True)
class Joint:
    """A hinge joint at the origin of its body, actuated by a PD motor."""

    name: str
    axis: Vec3
    range_rad: tuple[float, float]
    kp_nm_per_rad: float
    kd_nm_s_per_rad: float
    torque_limit_nm: float
    damping_nm_s_per_rad: float = 0.0  # passive joint damping
    armature_kg_m2: float = 0.0  # reflected rotor inertia


@dataclass(frozen=True)
class Body:
    name: str
    parent: str | None  # None only for the root body
    pos: Vec3  # origin relative to the parent's origin (world for the root)
    geoms: tuple[Geom, ...]
    joint: Joint | None = None  # None for the root (floating or fixed)


@dataclass(frozen=True)
class Site:
    """A named point on a body (end effector, foot), used for observations and rewards."""

    name: str
    body: str
    pos: Vec3


@dataclass(frozen=True)
class RobotModel:
    """One robot, backend-neutral.

    `bodies` are listed parents-first. `actuated joints` are, in order, the joints of `bodies` that have one;
    that order is the action and joint-observation order on every backend.
    """

    name: str
    floating_base: bool  # True: free 6-DoF root (quadruped); False: root welded to the world (manipulator)
    bodies: tuple[Body, ...]
    default_joint_pos_rad: tuple[float, ...]
    base_init_pos: Vec3
    physics_dt_s: float
    control_dt_s: float
    action_scale_rad: float  # q_target = q_default + action_scale_rad * action, action in [-1, 1]
    sites: tuple[Site, ...] = ()
    foot_geoms: tuple[str, ...] = ()  # geoms whose ground contact is reported as a foot contact
    ground_friction: float = 1.0
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def joints(self) -> tuple[Joint, ...]:
        return tuple(b.joint for b in self.bodies if b.joint is not None)

    @property
    def joint_names(self) -> tuple[str, ...]:
        return tuple(j.name for j in self.joints)

    @property
    def n_substeps(self) -> int:
        n = round(self.control_dt_s / self.physics_dt_s)
        if abs(n * self.physics_dt_s - self.control_dt_s) > 1e-9:
            raise ValueError(
                f"{self.name}: control_dt_s={self.control_dt_s} is not a multiple of "
                f"physics_dt_s={self.physics_dt_s}"
            )
        return n

    def body(self, name: str) -> Body:
        for b in self.bodies:
            if b.name == name:
                return b
        raise KeyError(f"{self.name}: no body {name!r}; bodies: {[b.name for b in self.bodies]}")
