"""A fixed-base 4-DoF arm: base yaw (about z), shoulder, elbow and wrist pitch (about y), "ee" site at the
tip.

Geometry (SI units): base box on the ground; yaw link 0.10 m; upper arm 0.30 m; forearm 0.25 m; hand 0.08 m,
with the "ee" site 0.10 m beyond the wrist. At zero joint angles the arm points straight up; a positive pitch
angle tilts the next link towards +x. The default pose (0, 0.5, 1.0, 0.5) rad holds the hand forward and down
in front of the base, in the middle of the reachable workspace.

Gravity load on the shoulder is at most about (1.0*0.15 + 0.6*0.425 + 0.2*0.6) kg m * 9.81 m/s^2 = 5.2 N m,
so kp = 80 N m/rad keeps the static error below 0.07 rad and the 30 N m limit leaves room to accelerate.
"""

from __future__ import annotations

from sim.robots.model import Body, Geom, Joint, RobotModel, Site


def _joint(name: str, axis: tuple[float, float, float], lo: float, hi: float, kp: float, kd: float) -> Joint:
    return Joint(
        name=name,
        axis=axis,
        range_rad=(lo, hi),
        kp_nm_per_rad=kp,
        kd_nm_s_per_rad=kd,
        torque_limit_nm=30.0 if kp >= 50.0 else 10.0,
        damping_nm_s_per_rad=0.1,
        armature_kg_m2=0.01,
    )


_GREY = (0.6, 0.6, 0.65, 1.0)

MANIPULATOR = RobotModel(
    name="manipulator",
    floating_base=False,
    bodies=(
        Body(
            name="base",
            parent=None,
            pos=(0.0, 0.0, 0.0),
            geoms=(
                Geom(name="base", kind="box", size=(0.08, 0.08, 0.025), mass_kg=2.0, pos=(0.0, 0.0, 0.025)),
            ),
        ),
        Body(
            name="yaw_link",
            parent="base",
            pos=(0.0, 0.0, 0.05),
            geoms=(
                Geom(
                    name="yaw_link",
                    kind="capsule",
                    size=(0.04,),
                    mass_kg=0.8,
                    fromto=(0.0, 0.0, 0.0, 0.0, 0.0, 0.10),
                    rgba=_GREY,
                ),
            ),
            joint=_joint("base_yaw", (0.0, 0.0, 1.0), -2.6, 2.6, 80.0, 4.0),
        ),
        Body(
            name="upper_arm",
            parent="yaw_link",
            pos=(0.0, 0.0, 0.10),
            geoms=(
                Geom(
                    name="upper_arm",
                    kind="capsule",
                    size=(0.03,),
                    mass_kg=1.0,
                    fromto=(0.0, 0.0, 0.0, 0.0, 0.0, 0.30),
                    rgba=_GREY,
                ),
            ),
            joint=_joint("shoulder", (0.0, 1.0, 0.0), -1.6, 1.6, 80.0, 4.0),
        ),
        Body(
            name="forearm",
            parent="upper_arm",
            pos=(0.0, 0.0, 0.30),
            geoms=(
                Geom(
                    name="forearm",
                    kind="capsule",
                    size=(0.025,),
                    mass_kg=0.6,
                    fromto=(0.0, 0.0, 0.0, 0.0, 0.0, 0.25),
                    rgba=_GREY,
                ),
            ),
            joint=_joint("elbow", (0.0, 1.0, 0.0), -2.4, 2.4, 80.0, 4.0),
        ),
        Body(
            name="hand",
            parent="forearm",
            pos=(0.0, 0.0, 0.25),
            geoms=(
                Geom(
                    name="hand",
                    kind="capsule",
                    size=(0.02,),
                    mass_kg=0.2,
                    fromto=(0.0, 0.0, 0.0, 0.0, 0.0, 0.08),
                    rgba=(0.3, 0.5, 0.8, 1.0),
                ),
            ),
            joint=_joint("wrist", (0.0, 1.0, 0.0), -2.0, 2.0, 20.0, 0.5),
        ),
    ),
    default_joint_pos_rad=(0.0, 0.5, 1.0, 0.5),
    base_init_pos=(0.0, 0.0, 0.0),
    physics_dt_s=0.002,
    control_dt_s=0.02,
    action_scale_rad=0.5,
    sites=(Site(name="ee", body="hand", pos=(0.0, 0.0, 0.10)),),
)
