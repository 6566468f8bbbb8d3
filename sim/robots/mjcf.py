"""Compile a backend-neutral `RobotModel` to an MJCF string (MuJoCo and dm_control).

What the compiled model contains:
- a ground plane named "floor" with sliding friction `robot.ground_friction`;
- the robot's bodies; the root gets a free joint named "root" when `robot.floating_base`, otherwise it is
  welded to the world at `robot.base_init_pos`;
- one hinge per `Joint` with its range, passive damping and armature;
- one `<position>` actuator per joint, in `RobotModel.joints` order, with kp, kv and a force limit, so that
  MuJoCo closes tau = clip(kp (ctrl - q) - kv qdot, +-limit) at every physics substep inside `mj_step`
  (`ctrl` is the joint target in rad);
- every geom with an explicit mass (MuJoCo derives the inertia for a uniform density from the shape);
- the robot's sites, and for fixed-base robots a mocap body "target" carrying a visual-only sphere;
- per foot geom, a site "<geom>_touch" enclosing it and a `<touch>` sensor "<geom>_touch" (N): MuJoCo sums the
  foot's normal contact force in C during the step, so the backend reads foot contact as one array compare
  instead of scanning `data.contact` in Python every control step.

Robot geoms collide with the floor only (contype 1 / conaffinity 0 against a floor with conaffinity 1):
self-collision is left out on purpose, it costs simulation time and the robots here cannot reach themselves
in their joint ranges in a way that matters for learning.
"""

from __future__ import annotations

from xml.sax.saxutils import quoteattr

from sim.robots.model import Geom, RobotModel

FLOOR_GEOM = "floor"
ROOT_JOINT = "root"
TARGET_BODY = "target"
TOUCH_SUFFIX = "_touch"


def _f(values: tuple[float, ...] | list[float]) -> str:
    return " ".join(f"{v:.9g}" for v in values)


def _geom_xml(g: Geom) -> str:
    attrs = [f"name={quoteattr(g.name)}", f'mass="{g.mass_kg:.9g}"', f'rgba="{_f(g.rgba)}"']
    if g.kind == "box":
        attrs += ['type="box"', f'size="{_f(g.size)}"', f'pos="{_f(g.pos)}"']
    elif g.kind == "sphere":
        attrs += ['type="sphere"', f'size="{g.size[0]:.9g}"', f'pos="{_f(g.pos)}"']
    elif g.kind == "capsule":
        if g.fromto is None:
            raise ValueError(f"capsule geom {g.name!r} needs `fromto`")
        attrs += ['type="capsule"', f'size="{g.size[0]:.9g}"', f'fromto="{_f(g.fromto)}"']
    else:
        raise ValueError(f"geom {g.name!r}: unknown kind {g.kind!r}; valid: box, sphere, capsule")
    # MuJoCo friction = (sliding, torsional, rolling); only sliding is part of the backend-neutral model.
    attrs.append(f'friction="{g.friction:.9g} 0.005 0.0001"')
    if g.contact:
        attrs.append('contype="1" conaffinity="0"')
    else:
        attrs.append('contype="0" conaffinity="0"')
    return f"<geom {' '.join(attrs)}/>"


def to_mjcf(robot: RobotModel) -> str:
    """The MJCF XML (str) of `robot` on a ground plane, ready for `mujoco.MjModel.from_xml_string`."""
    children: dict[str | None, list[str]] = {}
    for b in robot.bodies:
        children.setdefault(b.parent, []).append(b.name)
    roots = children.get(None, [])
    if len(roots) != 1:
        raise ValueError(f"{robot.name}: expected exactly one root body (parent=None), got {roots}")
    sites_by_body: dict[str, list[str]] = {}
    for s in robot.sites:
        robot.body(s.body)  # raises KeyError naming the valid bodies
        sites_by_body.setdefault(s.body, []).append(
            f'<site name={quoteattr(s.name)} pos="{_f(s.pos)}" size="0.01" rgba="0 1 0 1"/>'
        )

    for foot in robot.foot_geoms:
        owner = next((b for b in robot.bodies for g in b.geoms if g.name == foot), None)
        if owner is None:
            raise ValueError(f"{robot.name}: foot geom {foot!r} is not a geom of any body")
        g = next(g for g in owner.geoms if g.name == foot)
        # A sphere 20 % larger than the foot's bounding radius, centred on it, catches all its contacts.
        centre = g.pos if g.kind != "capsule" or g.fromto is None else g.fromto[3:]
        radius = 1.2 * max(g.size)
        sites_by_body.setdefault(owner.name, []).append(
            f'<site name={quoteattr(foot + TOUCH_SUFFIX)} type="sphere" pos="{_f(centre)}" '
            f'size="{radius:.9g}" rgba="0 0 0 0"/>'
        )
    sensors = [
        f"    <touch name={quoteattr(foot + TOUCH_SUFFIX)} site={quoteattr(foot + TOUCH_SUFFIX)}/>"
        for foot in robot.foot_geoms
    ]

    def body_xml(name: str, depth: int) -> list[str]:
        b = robot.body(name)
        ind = "  " * depth
        pos = robot.base_init_pos if b.parent is None else b.pos
        lines = [f'{ind}<body name={quoteattr(b.name)} pos="{_f(pos)}">']
        if b.parent is None and robot.floating_base:
            lines.append(f"{ind}  <freejoint name={quoteattr(ROOT_JOINT)}/>")
        if b.joint is not None:
            j = b.joint
            lines.append(
                f'{ind}  <joint name={quoteattr(j.name)} type="hinge" axis="{_f(j.axis)}" '
                f'range="{_f(j.range_rad)}" limited="true" damping="{j.damping_nm_s_per_rad:.9g}" '
                f'armature="{j.armature_kg_m2:.9g}"/>'
            )
        lines += [f"{ind}  {_geom_xml(g)}" for g in b.geoms]
        lines += [f"{ind}  {s}" for s in sites_by_body.get(b.name, [])]
        for c in children.get(b.name, []):
            lines += body_xml(c, depth + 1)
        lines.append(f"{ind}</body>")
        return lines

    actuators = [
        f'    <position name={quoteattr(j.name)} joint={quoteattr(j.name)} kp="{j.kp_nm_per_rad:.9g}" '
        f'kv="{j.kd_nm_s_per_rad:.9g}" forcelimited="true" '
        f'forcerange="{-j.torque_limit_nm:.9g} {j.torque_limit_nm:.9g}"/>'
        for j in robot.joints
    ]
    target = (
        []
        if robot.floating_base
        else [
            f'    <body name="{TARGET_BODY}" mocap="true" pos="0.3 0 0.3">',
            '      <geom name="target" type="sphere" size="0.02" rgba="1 0.2 0.2 0.6" '
            'contype="0" conaffinity="0" mass="0.001"/>',
            "    </body>",
        ]
    )
    xml = [
        f"<mujoco model={quoteattr(robot.name)}>",
        '  <compiler angle="radian" inertiafromgeom="true"/>',
        # implicitfast integrates the PD damping (kv) and joint damping implicitly: stable at 500 Hz even for
        # the light distal links, at no extra cost over Euler for these small models.
        f'  <option timestep="{robot.physics_dt_s:.9g}" integrator="implicitfast"/>',
        '  <visual><global offwidth="640" offheight="480"/></visual>',
        "  <asset>",
        '    <texture name="grid" type="2d" builtin="checker" rgb1=".2 .3 .4" rgb2=".1 .15 .2" '
        'width="256" height="256"/>',
        '    <material name="grid" texture="grid" texrepeat="8 8" reflectance=".1"/>',
        "  </asset>",
        "  <worldbody>",
        '    <light name="sun" pos="0 0 3" dir="0 0 -1" directional="true"/>',
        f'    <geom name="{FLOOR_GEOM}" type="plane" size="0 0 0.05" material="grid" '
        f'friction="{robot.ground_friction:.9g} 0.005 0.0001" contype="1" conaffinity="1"/>',
        '    <camera name="track" pos="0 -2.0 1.0" xyaxes="1 0 0 0 0.45 0.9" mode="trackcom"/>',
        *body_xml(roots[0], 2),
        *target,
        "  </worldbody>",
        "  <actuator>",
        *actuators,
        "  </actuator>",
        *(["  <sensor>", *sensors, "  </sensor>"] if sensors else []),
        "</mujoco>",
    ]
    return "\n".join(xml) + "\n"
