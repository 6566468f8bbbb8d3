"""A small planar-legged quadruped: box torso, four legs with hip-pitch and knee-pitch hinges.

Chosen to be easy to learn on 2 CPU cores (no hip abduction, so 8 actuated joints) while still needing a real
gait to move forward. Geometry (SI units, body frame x forward, z up):

- torso: box 0.50 x 0.25 x 0.10 m, 5.0 kg; hips at (+-0.20, +-0.10, 0) m from the torso origin.
- thigh: capsule 0.20 m long (radius 0.025 m), 0.5 kg, hanging along -z at zero joint angle.
- shin:  capsule 0.20 m long (radius 0.02 m), 0.2 kg; sphere foot (radius 0.025 m, 0.05 kg) at its end.

Joint sign convention (hinges about +y): a positive hip angle swings the foot backwards (-x), a negative knee
angle folds the shin forwards. The default stance hip 0.8 rad / knee -1.5 rad puts each foot 0.014 m behind
and 0.292 m below its hip, so the torso origin stands at 0.292 + 0.025 (foot radius) = 0.317 m.
Standing load per knee is about 2 kg * 9.81 m/s^2 * 0.129 m = 2.5 N m, i.e. < 0.1 rad PD sag at kp = 40.
"""

from __future__ import annotations

from sim.robots.model import Body, Geom, Joint, RobotModel

_LEGS = ("FL", "FR", "RL", "RR")
_HIP_XY = {"FL": (0.20, 0.10), "FR": (0.20, -0.10), "RL": (-0.20, 0.10), "RR": (-0.20, -0.10)}
_THIGH_M = 0.20
_SHIN_M = 0.20
_FOOT_RADIUS_M = 0.025
_HIP_DEFAULT_RAD = 0.8
_KNEE_DEFAULT_RAD = -1.5

# Gains: kp 40 N m/rad holds the stance within 0.1 rad; kd 1.0 N m s/rad damps the shin (about 0.015 kg m^2
# including armature) without being stiff at 500 Hz. 15 N m is a small-hobby-quadruped torque limit.
_KP = 40.0
_KD = 1.0
_TORQUE_LIMIT_NM = 15.0
_ARMATURE = 0.01  # reflected rotor inertia, kg m^2: also keeps the light shin numerically well behaved
_DAMPING = 0.05  # passive joint damping, N m s/rad


def _leg_bodies(leg: str) -> tuple[Body, ...]:
    x, y = _HIP_XY[leg]
    thigh = Body(
        name=f"{leg}_thigh",
        parent="torso",
        pos=(x, y, 0.0),
        geoms=(
            Geom(
                name=f"{leg}_thigh",
                kind="capsule",
                size=(0.025,),
                mass_kg=0.5,
                fromto=(0.0, 0.0, 0.0, 0.0, 0.0, -_THIGH_M),
                rgba=(0.3, 0.5, 0.8, 1.0),
            ),
        ),
        joint=Joint(
            name=f"{leg}_hip",
            axis=(0.0, 1.0, 0.0),
            range_rad=(-0.5, 2.0),
            kp_nm_per_rad=_KP,
            kd_nm_s_per_rad=_KD,
            torque_limit_nm=_TORQUE_LIMIT_NM,
            damping_nm_s_per_rad=_DAMPING,
            armature_kg_m2=_ARMATURE,
        ),
    )
    shin = Body(
        name=f"{leg}_shin",
        parent=f"{leg}_thigh",
        pos=(0.0, 0.0, -_THIGH_M),
        geoms=(
            Geom(
                name=f"{leg}_shin",
                kind="capsule",
                size=(0.02,),
                mass_kg=0.2,
                fromto=(0.0, 0.0, 0.0, 0.0, 0.0, -_SHIN_M),
                rgba=(0.3, 0.5, 0.8, 1.0),
            ),
            Geom(
                name=f"{leg}_foot",
                kind="sphere",
                size=(_FOOT_RADIUS_M,),
                mass_kg=0.05,
                pos=(0.0, 0.0, -_SHIN_M),
                rgba=(0.2, 0.2, 0.2, 1.0),
            ),
        ),
        joint=Joint(
            name=f"{leg}_knee",
            axis=(0.0, 1.0, 0.0),
            range_rad=(-2.6, -0.3),
            kp_nm_per_rad=_KP,
            kd_nm_s_per_rad=_KD,
            torque_limit_nm=_TORQUE_LIMIT_NM,
            damping_nm_s_per_rad=_DAMPING,
            armature_kg_m2=_ARMATURE,
        ),
    )
    return thigh, shin


QUADRUPED = RobotModel(
    name="quadruped",
    floating_base=True,
    bodies=(
        Body(
            name="torso",
            parent=None,
            pos=(0.0, 0.0, 0.0),
            geoms=(
                Geom(
                    name="torso",
                    kind="box",
                    size=(0.25, 0.125, 0.05),
                    mass_kg=5.0,
                    rgba=(0.8, 0.6, 0.3, 1.0),
                ),
            ),
        ),
        *(b for leg in _LEGS for b in _leg_bodies(leg)),
    ),
    default_joint_pos_rad=(_HIP_DEFAULT_RAD, _KNEE_DEFAULT_RAD) * 4,
    base_init_pos=(0.0, 0.0, 0.317),
    physics_dt_s=0.002,
    control_dt_s=0.02,
    action_scale_rad=0.4,
    foot_geoms=tuple(f"{leg}_foot" for leg in _LEGS),
    ground_friction=1.0,
)
