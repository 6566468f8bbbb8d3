"""Compile a backend-neutral `RobotModel` to URDF (for PyBullet).

Mapping (see `sim.robots.model` for the conventions it relies on):
- one URDF link per body, named after the body; the root body is the root link. A floating base has no world
  joint: PyBullet loads it free with `useFixedBase=False`, and welds it with `useFixedBase=True`.
- one revolute joint per body joint, named after it, with origin = body position (bodies are unrotated, so
  rpy is always 0), `axis`, `limit` (lower/upper, effort = torque limit, a large velocity that never binds),
  `dynamics damping` = passive damping.
- armature (reflected rotor inertia) has no URDF/PyBullet equivalent. By default the child link carries it as
  a thin-disc rotor at its centre of mass: axial inertia a about the joint axis, a/2 about the two transverse
  axes. In joint space that adds `a` to the joint's own diagonal mass-matrix entry, exactly like MuJoCo's
  armature, but it also adds to ancestor joints and to the floating base's rotational inertia, which MuJoCo
  does not: an overestimate, accepted because without it the light links (a 0.2 kg hand, a 0.25 kg shin) make
  the explicit PD at 500 Hz unstable (kd dt / I close to 2). `include_armature=False` leaves it out.
- each link's `inertial` is computed from its geoms (uniform density per geom, the geom's mass as given),
  combined about the link's centre of mass with the parallel-axis theorem. The full tensor is written;
  PyBullet diagonalises it itself and reports the principal frame as the link's inertial frame.
- every geom gets a `visual`; only geoms with `contact=True` get a `collision`. Capsules are written as URDF
  `<capsule radius length>` (PyBullet's loader accepts it; `length` is the cylinder between the two sphere
  centres, z-aligned), placed at the midpoint of `fromto` and rotated so z lies along the segment.
"""

from __future__ import annotations

import math
from xml.sax.saxutils import quoteattr

import numpy as np

from sim.robots.model import Body, Geom, RobotModel

# URDF needs a velocity limit; PyBullet only uses it in its own position/velocity motors, which we disable,
# so it must simply never bind.
_JOINT_VELOCITY_LIMIT_RADPS = 1000.0


def geom_inertia(geom: Geom) -> tuple[np.ndarray, np.ndarray]:
    """Centre of mass and inertia tensor of one geom, uniform density, in the body frame.

    Returns (com_m: (3,), inertia_kg_m2: (3, 3) about the geom's own centre of mass, body-frame axes).
    Capsule = cylinder of length L (between the sphere centres) + two hemispheres of radius r, mass split by
    volume: I_axis = m_cyl r^2/2 + 2/5 m_sph r^2,
    I_perp = m_cyl (r^2/4 + L^2/12) + m_sph (2/5 r^2 + L^2/4 + 3 L r / 8).
    """
    m = float(geom.mass_kg)
    if m < 0.0:
        raise ValueError(f"geom {geom.name!r}: mass_kg={m} must be >= 0")
    if geom.kind == "box":
        if len(geom.size) != 3 or min(geom.size) <= 0.0:
            raise ValueError(f"box geom {geom.name!r}: size must be 3 positive half-extents, got {geom.size}")
        # Full extents a, b, c = 2 * half-extents: I_xx = m (b^2 + c^2) / 12.
        a, b, c = (2.0 * s for s in geom.size)
        inertia = np.diag(
            [m * (b * b + c * c) / 12.0, m * (a * a + c * c) / 12.0, m * (a * a + b * b) / 12.0]
        )
        return np.asarray(geom.pos, dtype=np.float64), inertia
    if geom.kind == "sphere":
        if len(geom.size) != 1 or geom.size[0] <= 0.0:
            raise ValueError(f"sphere geom {geom.name!r}: size must be (radius,) > 0, got {geom.size}")
        r = geom.size[0]
        return np.asarray(geom.pos, dtype=np.float64), np.eye(3) * (0.4 * m * r * r)
    if geom.kind == "capsule":
        p0, p1, r = _capsule_segment(geom)
        length = float(np.linalg.norm(p1 - p0))
        v_cyl = math.pi * r * r * length
        v_sph = 4.0 / 3.0 * math.pi * r**3
        m_cyl = m * v_cyl / (v_cyl + v_sph)
        m_sph = m * v_sph / (v_cyl + v_sph)
        i_axis = m_cyl * r * r / 2.0 + 0.4 * m_sph * r * r
        i_perp = m_cyl * (r * r / 4.0 + length * length / 12.0) + m_sph * (
            0.4 * r * r + length * length / 4.0 + 3.0 * length * r / 8.0
        )
        d = (p1 - p0) / length if length > 0.0 else np.array([0.0, 0.0, 1.0])
        # Axisymmetric about d: I = I_perp * 1 + (I_axis - I_perp) d d^T.
        inertia = i_perp * np.eye(3) + (i_axis - i_perp) * np.outer(d, d)
        return (p0 + p1) / 2.0, inertia
    raise ValueError(
        f"geom {geom.name!r}: kind {geom.kind!r} cannot be expressed in URDF (box, sphere, capsule)"
    )


def body_inertial(body: Body) -> tuple[float, np.ndarray, np.ndarray]:
    """Mass, centre of mass and inertia of a body from its geoms (parallel-axis theorem).

    Returns (mass_kg, com_m: (3,) body frame, inertia_kg_m2: (3, 3) about com_m). A body with no geoms or zero
    total mass returns (0, zeros, zeros).
    """
    parts = [(g.mass_kg, *geom_inertia(g)) for g in body.geoms]
    total = float(sum(m for m, _, _ in parts))
    if total <= 0.0:
        return 0.0, np.zeros(3), np.zeros((3, 3))
    com = sum((m * c for m, c, _ in parts), np.zeros(3)) / total
    inertia = np.zeros((3, 3))
    for m, c, i_own in parts:
        r = c - com
        inertia += i_own + m * (float(r @ r) * np.eye(3) - np.outer(r, r))
    return total, com, inertia


def capsule_pose(geom: Geom) -> tuple[np.ndarray, tuple[float, float, float], float]:
    """Origin (midpoint, (3,) m), URDF rpy (rad) rotating +z onto the segment, and cylinder length (m)."""
    p0, p1, _ = _capsule_segment(geom)
    seg = p1 - p0
    length = float(np.linalg.norm(seg))
    if length == 0.0:
        return (p0 + p1) / 2.0, (0.0, 0.0, 0.0), 0.0
    d = seg / length
    # R = Rz(yaw) Ry(pitch) maps z to (sin p cos y, sin p sin y, cos p): pitch = acos(dz), yaw = atan2(dy,dx).
    pitch = math.acos(max(-1.0, min(1.0, float(d[2]))))
    yaw = math.atan2(float(d[1]), float(d[0])) if math.hypot(d[0], d[1]) > 1e-12 else 0.0
    return (p0 + p1) / 2.0, (0.0, pitch, yaw), length


def to_urdf(robot: RobotModel, include_armature: bool = True) -> str:
    """The URDF text of `robot` (links from bodies, revolute joints, inertials computed from geoms).

    include_armature: fold each joint's armature into its child link's inertia (see the module docstring).
    """
    _validate(robot)
    lines = ['<?xml version="1.0"?>', f"<robot name={quoteattr(robot.name)}>"]
    for body in robot.bodies:
        lines += _link_xml(robot, body, include_armature)
    for body in robot.bodies:
        if body.parent is None:
            continue
        joint = body.joint
        if joint is None:
            # A rigid attachment: legal in the model's data types and expressible in URDF.
            lines.append(f'  <joint name={quoteattr(body.name + "_fixed")} type="fixed">')
        else:
            lines.append(f'  <joint name={quoteattr(joint.name)} type="revolute">')
        lines.append(f"    <parent link={quoteattr(body.parent)}/>")
        lines.append(f"    <child link={quoteattr(body.name)}/>")
        lines.append(f'    <origin xyz="{_fmt(body.pos)}" rpy="0 0 0"/>')
        if joint is not None:
            lo, hi = joint.range_rad
            lines.append(f'    <axis xyz="{_fmt(joint.axis)}"/>')
            lines.append(
                f'    <limit lower="{_num(lo)}" upper="{_num(hi)}" effort="{_num(joint.torque_limit_nm)}" '
                f'velocity="{_num(_JOINT_VELOCITY_LIMIT_RADPS)}"/>'
            )
            lines.append(f'    <dynamics damping="{_num(joint.damping_nm_s_per_rad)}" friction="0"/>')
        lines.append("  </joint>")
    lines.append("</robot>")
    return "\n".join(lines) + "\n"


def _link_xml(robot: RobotModel, body: Body, include_armature: bool) -> list[str]:
    mass, com, inertia = body_inertial(body)
    if mass <= 0.0 and (body.parent is not None or robot.floating_base):
        raise ValueError(
            f"{robot.name}: body {body.name!r} has no mass; "
            "only the root of a fixed-base robot may be massless"
        )
    if include_armature and body.joint is not None and body.joint.armature_kg_m2 > 0.0:
        axis = np.asarray(body.joint.axis, dtype=np.float64)
        axis /= np.linalg.norm(axis)
        # A thin-disc rotor (axial a, transverse a/2): a * axis axis^T alone violates the triangle inequality
        # on thin links, and PyBullet then silently zeroes the whole inertia.
        along = np.outer(axis, axis)
        a = body.joint.armature_kg_m2
        inertia = inertia + a * along + 0.5 * a * (np.eye(3) - along)
    out = [f"  <link name={quoteattr(body.name)}>", "    <inertial>"]
    out.append(f'      <origin xyz="{_fmt(com)}" rpy="0 0 0"/>')
    out.append(f'      <mass value="{_num(mass)}"/>')
    i = inertia
    out.append(
        f'      <inertia ixx="{_num(i[0, 0])}" ixy="{_num(i[0, 1])}" ixz="{_num(i[0, 2])}" '
        f'iyy="{_num(i[1, 1])}" iyz="{_num(i[1, 2])}" izz="{_num(i[2, 2])}"/>'
    )
    out.append("    </inertial>")
    for geom in body.geoms:
        origin, rpy, shape = _geom_xml(geom)
        rgba = _fmt(geom.rgba)
        out.append(f"    <visual name={quoteattr(geom.name)}>")
        out.append(f'      <origin xyz="{origin}" rpy="{rpy}"/>')
        out.append(f"      <geometry>{shape}</geometry>")
        out.append(f'      <material name={quoteattr(geom.name + "_mat")}><color rgba="{rgba}"/></material>')
        out.append("    </visual>")
        if geom.contact:
            out.append(f"    <collision name={quoteattr(geom.name)}>")
            out.append(f'      <origin xyz="{origin}" rpy="{rpy}"/>')
            out.append(f"      <geometry>{shape}</geometry>")
            out.append("    </collision>")
    out.append("  </link>")
    return out


def _geom_xml(geom: Geom) -> tuple[str, str, str]:
    """(origin xyz, origin rpy, geometry element) of one geom."""
    geom_inertia(geom)  # validates kind and size with a clear message
    if geom.kind == "box":
        full = tuple(2.0 * s for s in geom.size)
        return _fmt(geom.pos), "0 0 0", f'<box size="{_fmt(full)}"/>'
    if geom.kind == "sphere":
        return _fmt(geom.pos), "0 0 0", f'<sphere radius="{_num(geom.size[0])}"/>'
    origin, rpy, length = capsule_pose(geom)
    return _fmt(origin), _fmt(rpy), f'<capsule radius="{_num(geom.size[0])}" length="{length!r}"/>'


def _capsule_segment(geom: Geom) -> tuple[np.ndarray, np.ndarray, float]:
    if geom.fromto is None or len(geom.fromto) != 6:
        raise ValueError(
            f"capsule geom {geom.name!r}: needs fromto=(x0, y0, z0, x1, y1, z1), got {geom.fromto}"
        )
    if len(geom.size) != 1 or geom.size[0] <= 0.0:
        raise ValueError(f"capsule geom {geom.name!r}: size must be (radius,) > 0, got {geom.size}")
    ft = np.asarray(geom.fromto, dtype=np.float64)
    return ft[:3], ft[3:], float(geom.size[0])


def _validate(robot: RobotModel) -> None:
    seen: set[str] = set()
    roots = [b.name for b in robot.bodies if b.parent is None]
    if len(roots) != 1 or robot.bodies[0].parent is not None:
        raise ValueError(f"{robot.name}: need exactly one root body, listed first; roots: {roots}")
    if robot.bodies[0].joint is not None:
        raise ValueError(f"{robot.name}: root body {roots[0]!r} must not have a joint")
    for b in robot.bodies:
        if b.name in seen:
            raise ValueError(f"{robot.name}: duplicate body name {b.name!r}")
        if b.parent is not None and b.parent not in seen:
            raise ValueError(f"{robot.name}: body {b.name!r} lists parent {b.parent!r} before it is defined")
        seen.add(b.name)
        if b.joint is not None:
            lo, hi = b.joint.range_rad
            if not lo < hi:
                raise ValueError(f"{robot.name}: joint {b.joint.name!r} range {b.joint.range_rad} is empty")
            if float(np.linalg.norm(b.joint.axis)) == 0.0:
                raise ValueError(f"{robot.name}: joint {b.joint.name!r} has a zero axis")
    names = robot.joint_names
    if len(set(names)) != len(names):
        raise ValueError(f"{robot.name}: duplicate joint names {names}")
    geom_names = [g.name for b in robot.bodies for g in b.geoms]
    if len(set(geom_names)) != len(geom_names):
        raise ValueError(f"{robot.name}: duplicate geom names")


def _num(x: float) -> str:
    # repr of a Python float round-trips exactly; numpy 2 scalars would print as np.float64(...).
    return repr(float(x))


def _fmt(v: tuple[float, ...] | np.ndarray) -> str:
    return " ".join(_num(x) for x in v)
