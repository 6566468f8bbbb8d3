"""URDF compilation and the PyBullet backend: analytic inertias, PD, gravity, frames, gap profiles, and
agreement with MuJoCo on the shipped robots."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import pybullet as p
import pytest

from sim.backends.pybullet_backend import PyBulletBackend
from sim.profile import DynamicsProfile
from sim.robots.model import Body, Geom, Joint, RobotModel, Site
from sim.robots.urdf import body_inertial, capsule_pose, geom_inertia, to_urdf

IDENTITY_WXYZ = np.array([1.0, 0.0, 0.0, 0.0])


def _joint(name: str, axis: tuple[float, float, float], kp: float = 200.0, kd: float = 5.0) -> Joint:
    return Joint(
        name=name,
        axis=axis,
        range_rad=(-2.0, 2.0),
        kp_nm_per_rad=kp,
        kd_nm_s_per_rad=kd,
        torque_limit_nm=40.0,
        damping_nm_s_per_rad=0.05,
    )


def two_link_arm() -> RobotModel:
    """Fixed base; shoulder about y at 0.1 m, elbow about y 0.3 m above it; 1 kg and 0.5 kg capsules."""
    return RobotModel(
        name="arm2",
        floating_base=False,
        bodies=(
            Body(
                "base", None, (0.0, 0.0, 0.0), (Geom("base", "box", (0.05, 0.05, 0.05), 1.0, contact=False),)
            ),
            Body(
                "upper",
                "base",
                (0.0, 0.0, 0.1),
                (Geom("upper", "capsule", (0.03,), 1.0, fromto=(0.0, 0.0, 0.0, 0.0, 0.0, 0.3)),),
                _joint("shoulder", (0.0, 1.0, 0.0)),
            ),
            Body(
                "lower",
                "upper",
                (0.0, 0.0, 0.3),
                (Geom("lower", "capsule", (0.025,), 0.5, fromto=(0.0, 0.0, 0.0, 0.0, 0.0, 0.25)),),
                _joint("elbow", (0.0, 1.0, 0.0), kp=100.0, kd=2.0),
            ),
        ),
        default_joint_pos_rad=(0.0, 0.0),
        base_init_pos=(0.0, 0.0, 0.0),
        physics_dt_s=0.002,
        control_dt_s=0.02,
        action_scale_rad=0.5,
        sites=(Site("ee", "lower", (0.0, 0.0, 0.25)),),
    )


def legged_box() -> RobotModel:
    """Floating 2 kg box plus a 0.5 kg sphere "head" 0.2 m ahead on the same root body, so the root's CoM is
    off its origin: com_x = 0.5 * 0.2 / 2.5 = 0.04 m; two 0.3 kg sphere "legs" on hips about y.
    Leg inertia about the hip = 0.3 * 0.1^2 + 0.4 * 0.3 * 0.03^2 = 0.0031 kg m^2, so kd = 0.5 keeps the
    explicit PD stable at 2 ms (kd dt / I = 0.32 < 2)."""
    legs = tuple(
        Body(
            f"leg{i}",
            "box",
            (0.2, y, 0.0),
            (Geom(f"foot{i}", "sphere", (0.03,), 0.3, pos=(0.0, 0.0, -0.1)),),
            _joint(f"hip{i}", (0.0, 1.0, 0.0), kp=50.0, kd=0.5),
        )
        for i, y in enumerate((0.1, -0.1))
    )
    return RobotModel(
        name="legged_box",
        floating_base=True,
        bodies=(
            Body(
                "box",
                None,
                (0.0, 0.0, 0.0),
                (
                    Geom("box", "box", (0.1, 0.1, 0.05), 2.0),
                    Geom("head", "sphere", (0.05,), 0.5, pos=(0.2, 0, 0)),
                ),
            ),
            *legs,
        ),
        default_joint_pos_rad=(0.0, 0.0),
        base_init_pos=(0.0, 0.0, 2.0),
        physics_dt_s=0.002,
        control_dt_s=0.02,
        action_scale_rad=0.5,
        sites=(Site("nose", "box", (0.1, 0.0, 0.0)),),
        foot_geoms=("foot0", "foot1"),
    )


@pytest.fixture
def arm() -> Iterator[PyBulletBackend]:
    backend = PyBulletBackend(two_link_arm())
    yield backend
    backend.close()


@pytest.fixture
def box() -> Iterator[PyBulletBackend]:
    backend = PyBulletBackend(legged_box())
    yield backend
    backend.close()


# ------------------------------------------------------------------ URDF inertia (analytic)


def test_box_inertia_is_analytic() -> None:
    # Full extents 0.2 x 0.4 x 0.6 m, m = 2 kg: Ixx = 2 (0.4^2 + 0.6^2) / 12 = 2 * 0.52 / 12 = 0.0866667,
    # Iyy = 2 (0.04 + 0.36) / 12 = 0.0666667, Izz = 2 (0.04 + 0.16) / 12 = 0.0333333.
    com, inertia = geom_inertia(Geom("b", "box", (0.1, 0.2, 0.3), 2.0, pos=(0.1, 0.0, 0.0)))
    np.testing.assert_allclose(com, [0.1, 0.0, 0.0])
    np.testing.assert_allclose(inertia, np.diag([0.0866667, 0.0666667, 0.0333333]), atol=1e-7)


def test_sphere_inertia_is_analytic() -> None:
    # 2/5 m r^2 = 0.4 * 3 * 0.01 = 0.012 kg m^2.
    _, inertia = geom_inertia(Geom("s", "sphere", (0.1,), 3.0))
    np.testing.assert_allclose(inertia, 0.012 * np.eye(3), atol=1e-12)


def test_capsule_inertia_is_analytic_and_follows_its_axis() -> None:
    # r = 0.05, L = 0.2, m = 1: V_cyl = pi r^2 L = 5e-4 pi, V_sph = 4/3 pi r^3 = 1.6667e-4 pi -> m_cyl = 0.75,
    # m_sph = 0.25. I_axis = 0.75 * 0.0025 / 2 + 0.4 * 0.25 * 0.0025 = 0.0009375 + 0.00025 = 0.0011875.
    # I_perp = 0.75 (0.0025/4 + 0.04/12) + 0.25 (0.4 * 0.0025 + 0.04/4 + 3 * 0.2 * 0.05 / 8)
    #        = 0.75 * 0.00395833 + 0.25 * 0.01475 = 0.00296875 + 0.0036875 = 0.00665625.
    along_x = Geom("c", "capsule", (0.05,), 1.0, fromto=(-0.1, 0.0, 0.3, 0.1, 0.0, 0.3))
    com, inertia = geom_inertia(along_x)
    np.testing.assert_allclose(com, [0.0, 0.0, 0.3], atol=1e-12)
    np.testing.assert_allclose(inertia, np.diag([0.0011875, 0.00665625, 0.00665625]), atol=1e-9)
    # URDF capsules are z-aligned: rpy must rotate z onto +x (pitch pi/2), length the cylinder part.
    origin, rpy, length = capsule_pose(along_x)
    np.testing.assert_allclose(origin, [0.0, 0.0, 0.3], atol=1e-12)
    np.testing.assert_allclose(rpy, [0.0, math.pi / 2, 0.0], atol=1e-12)
    assert length == pytest.approx(0.2)


def test_parallel_axis_combines_geoms() -> None:
    # Two 1 kg spheres (r = 0.1) at x = +-0.5: CoM at 0; Ixx = 2 * 0.4 * 0.01 = 0.008;
    # Iyy = Izz = 0.008 + 2 * 1 * 0.5^2 = 0.508.
    body = Body(
        "b",
        None,
        (0.0, 0.0, 0.0),
        (
            Geom("l", "sphere", (0.1,), 1.0, pos=(-0.5, 0, 0)),
            Geom("r", "sphere", (0.1,), 1.0, pos=(0.5, 0, 0)),
        ),
    )
    mass, com, inertia = body_inertial(body)
    assert mass == 2.0
    np.testing.assert_allclose(com, 0.0, atol=1e-12)
    np.testing.assert_allclose(inertia, np.diag([0.008, 0.508, 0.508]), atol=1e-12)


def test_pybullet_reads_the_urdf_inertia(arm: PyBulletBackend) -> None:
    # "upper" link: capsule r = 0.03, L = 0.3, 1 kg along z, CoM 0.15 m up the link.
    _, _, expected = body_inertial(two_link_arm().body("upper"))
    info = p.getDynamicsInfo(arm.robot_id, arm.joint_indices[0], physicsClientId=arm.client_id)
    assert info[0] == pytest.approx(1.0)
    np.testing.assert_allclose(info[2], np.diag(expected), rtol=1e-6)
    np.testing.assert_allclose(info[3], [0.0, 0.0, 0.15], atol=1e-9)


def test_bad_geom_is_rejected_with_its_name() -> None:
    bad = Geom("weird", "cylinder", (0.1,), 1.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="weird"):
        geom_inertia(bad)
    no_fromto = Geom("cap", "capsule", (0.1,), 1.0)
    with pytest.raises(ValueError, match="fromto"):
        geom_inertia(no_fromto)


def test_non_contact_geom_has_no_collision_element() -> None:
    urdf = to_urdf(two_link_arm())
    base_link = urdf[urdf.index('<link name="base">') : urdf.index('<link name="upper">')]
    assert "<visual" in base_link
    assert "<collision" not in base_link
    upper_link = urdf[urdf.index('<link name="upper">') : urdf.index('<link name="lower">')]
    assert "<capsule" in upper_link and "<collision" in upper_link


# ------------------------------------------------------------------ loading, PD, gravity, frames


def test_urdf_loads_with_joint_names_order_and_limits(arm: PyBulletBackend) -> None:
    infos = [p.getJointInfo(arm.robot_id, j, physicsClientId=arm.client_id) for j in arm.joint_indices]
    assert [i[1].decode() for i in infos] == ["shoulder", "elbow"]
    assert all(i[2] == p.JOINT_REVOLUTE for i in infos)
    assert [(i[8], i[9], i[10]) for i in infos] == [(-2.0, 2.0, 40.0), (-2.0, 2.0, 40.0)]
    np.testing.assert_allclose(infos[0][13], [0.0, 1.0, 0.0])
    assert arm.name == "pybullet" and arm.n_substeps == 10


def test_pd_holds_fixed_base_arm_at_target(arm: PyBulletBackend) -> None:
    target = np.array([0.4, -0.6])
    for _ in range(50):  # 1 s
        arm.step(target)
    s = arm.state()
    # Static gravity load on the shoulder <= (1.0 * 0.15 + 0.5 * 0.425) m kg * 9.81 = 3.6 N m -> 0.018 rad
    # at kp = 200; elbow <= 0.5 * 0.125 * 9.81 / 100 = 0.006 rad.
    np.testing.assert_allclose(s.joint_pos_rad, target, atol=0.025)
    np.testing.assert_allclose(s.joint_vel_radps, 0.0, atol=0.01)
    # Without gravity the PD has nothing to fight: the error must vanish.
    arm.apply_dynamics(DynamicsProfile(gravity_mps2=(0.0, 0.0, 0.0)))
    for _ in range(50):
        arm.step(target)
    np.testing.assert_allclose(arm.state().joint_pos_rad, target, atol=1e-3)


def test_state_torque_is_the_clipped_pd_torque(arm: PyBulletBackend) -> None:
    arm.apply_dynamics(DynamicsProfile(gravity_mps2=(0.0, 0.0, 0.0)))
    # Shoulder: kp * 1.5 = 300 N m >> 40 N m, and 40 N m on ~0.1 kg m^2 moves it only ~0.08 rad in 20 ms, so
    # it is still saturated at the last substep. The light elbow may already be near its target.
    arm.step(np.array([1.5, -1.5]))
    tau = arm.state().joint_torque_nm
    assert tau[0] == 40.0
    assert abs(tau[1]) <= 40.0


def test_free_body_falls_half_g_t_squared(box: PyBulletBackend) -> None:
    z0 = box.state().base_pos_m[2]
    for _ in range(25):  # 0.5 s
        box.step(np.zeros(2))
    s = box.state()
    # 0.5 * 9.81 * 0.5^2 = 1.22625 m; semi-implicit Euler adds g dt t / 2 = 0.005 m.
    assert z0 - s.base_pos_m[2] == pytest.approx(1.22625, abs=0.01)
    assert s.base_linvel_world_mps[2] == pytest.approx(-9.81 * 0.5, abs=0.02)
    assert not s.foot_contact.any()


def test_quaternion_is_wxyz_and_root_origin_not_com(box: PyBulletBackend) -> None:
    # Yaw by +90 deg: (w, x, y, z) = (cos 45, 0, 0, sin 45). The root's CoM is 0.04 m ahead of its origin,
    # so reading back the exact origin proves the CoM <-> origin conversion in both directions.
    quat = np.array([math.cos(math.pi / 4), 0.0, 0.0, math.sin(math.pi / 4)])
    box.reset(np.array([1.0, 2.0, 3.0]), quat, np.zeros(2), np.zeros(2))
    s = box.state()
    np.testing.assert_allclose(s.base_quat_wxyz, [0.7071068, 0.0, 0.0, 0.7071068], atol=1e-6)
    np.testing.assert_allclose(s.base_pos_m, [1.0, 2.0, 3.0], atol=1e-9)
    # The "nose" site 0.1 m along body x now points along world +y.
    np.testing.assert_allclose(s.site_pos_world_m, [[1.0, 2.1, 3.0]], atol=1e-9)


def test_angular_velocity_is_body_frame_and_linvel_is_at_origin(box: PyBulletBackend) -> None:
    quat = np.array([math.cos(math.pi / 4), 0.0, 0.0, math.sin(math.pi / 4)])  # yaw +90 deg
    box.reset(np.array([0.0, 0.0, 2.0]), quat, np.zeros(2), np.zeros(2))
    # Body x is world +y and body y is world -x, so world omega (1, 0, 1) reads (0, -1, 1) in the body frame.
    p.resetBaseVelocity(box.robot_id, (0.0, 0.0, 0.0), (1.0, 0.0, 1.0), physicsClientId=box.client_id)
    s = box.state()
    np.testing.assert_allclose(s.base_angvel_body_radps, [0.0, -1.0, 1.0], atol=1e-9)
    # CoM at rest; origin = CoM - R (0.04, 0, 0) = CoM - (0, 0.04, 0) in world.
    # v_origin = omega x (origin - com) = (1, 0, 1) x (0, -0.04, 0) = (0.04, 0, -0.04).
    np.testing.assert_allclose(s.base_linvel_world_mps, [0.04, 0.0, -0.04], atol=1e-9)


def test_joint_damping_decays_velocity_like_exp_minus_d_over_i() -> None:
    # One yaw joint (no gravity torque, no PD): I = 2/5 * 1 * 0.05^2 + 1 * 0.2^2 = 0.041 kg m^2.
    # PyBullet applies -d qd explicitly, so qd_k = qd_0 (1 - d dt / I)^k: d = 0.1, 100 steps of 2 ms ->
    # (1 - 0.004878)^100 = 0.6134 (continuous exp(-0.4878) = 0.6140); damping scale 3 -> 0.2290.
    joint = Joint("yaw", (0.0, 0.0, 1.0), (-3.0, 3.0), 0.0, 0.0, 10.0, damping_nm_s_per_rad=0.1)
    robot = RobotModel(
        "yaw",
        False,
        (
            Body("base", None, (0.0, 0.0, 0.0), (Geom("b", "box", (0.05, 0.05, 0.05), 1.0, contact=False),)),
            Body("l", "base", (0.0, 0.0, 0.2), (Geom("s", "sphere", (0.05,), 1.0, pos=(0.2, 0, 0)),), joint),
        ),
        (0.0,),
        (0.0, 0.0, 0.0),
        0.002,
        0.02,
        0.5,
    )
    backend = PyBulletBackend(robot)
    try:
        for scale, expected in (
            (1.0, (1 - 0.1 * 0.002 / 0.041) ** 100),
            (3.0, (1 - 0.3 * 0.002 / 0.041) ** 100),
        ):
            backend.apply_dynamics(DynamicsProfile(joint_damping_scale=scale))
            backend.reset(np.zeros(3), IDENTITY_WXYZ, np.zeros(1), np.ones(1))
            for _ in range(10):
                backend.step(np.zeros(1))
            assert backend.state().joint_vel_radps[0] == pytest.approx(expected, rel=1e-4)
    finally:
        backend.close()


# ------------------------------------------------------------------ gap profiles


def _masses(b: PyBulletBackend) -> np.ndarray:
    links = [-1, *range(p.getNumJoints(b.robot_id, physicsClientId=b.client_id))]
    return np.array([p.getDynamicsInfo(b.robot_id, i, physicsClientId=b.client_id)[0] for i in links])


def _frictions(b: PyBulletBackend) -> np.ndarray:
    links = [-1, *range(p.getNumJoints(b.robot_id, physicsClientId=b.client_id))]
    return np.array([p.getDynamicsInfo(b.robot_id, i, physicsClientId=b.client_id)[1] for i in links])


def test_mass_scale_doubles_masses_and_nominal_restores_them(box: PyBulletBackend) -> None:
    nominal = _masses(box)
    np.testing.assert_allclose(nominal, [2.5, 0.3, 0.3])
    inertia0 = p.getDynamicsInfo(box.robot_id, -1, physicsClientId=box.client_id)[2]
    box.apply_dynamics(DynamicsProfile(mass_scale=2.0))
    np.testing.assert_allclose(_masses(box), [5.0, 0.6, 0.6])
    inertia = p.getDynamicsInfo(box.robot_id, -1, physicsClientId=box.client_id)[2]
    np.testing.assert_allclose(inertia, 2.0 * np.array(inertia0))
    box.apply_dynamics(DynamicsProfile(mass_scale=2.0))  # relative to nominal, not compounding
    np.testing.assert_allclose(_masses(box), [5.0, 0.6, 0.6])
    box.apply_dynamics(DynamicsProfile(base_mass_offset_kg=1.5))
    np.testing.assert_allclose(_masses(box), [4.0, 0.3, 0.3])
    box.apply_dynamics(DynamicsProfile())
    np.testing.assert_allclose(_masses(box), nominal)
    with pytest.raises(ValueError, match="root"):
        box.apply_dynamics(DynamicsProfile(base_mass_offset_kg=-5.0))


def test_motor_strength_halves_the_torque_limit(arm: PyBulletBackend) -> None:
    arm.apply_dynamics(DynamicsProfile(motor_strength_scale=0.5, gravity_mps2=(0.0, 0.0, 0.0)))
    np.testing.assert_allclose(arm.torque_limit_nm, [20.0, 20.0])
    arm.step(np.array([1.5, -1.5]))
    tau = arm.state().joint_torque_nm
    assert tau[0] == 20.0  # saturated at half the 40 N m limit
    assert abs(tau[1]) <= 20.0
    arm.apply_dynamics(DynamicsProfile())
    np.testing.assert_allclose(arm.torque_limit_nm, [40.0, 40.0])


def test_friction_scale_changes_link_friction(box: PyBulletBackend) -> None:
    # Geom friction 1.0, ground 1.0 -> each link max(1, 1) = 1; ground kept at 1 (Bullet multiplies them).
    np.testing.assert_allclose(_frictions(box), [1.0, 1.0, 1.0])
    box.apply_dynamics(DynamicsProfile(friction_scale=0.4))
    np.testing.assert_allclose(_frictions(box), [0.4, 0.4, 0.4])
    ground = p.getDynamicsInfo(box.ground_id, -1, physicsClientId=box.client_id)[1]
    assert ground == 1.0
    box.apply_dynamics(DynamicsProfile())
    np.testing.assert_allclose(_frictions(box), [1.0, 1.0, 1.0])


def test_two_backends_coexist_in_one_process() -> None:
    a, b = PyBulletBackend(legged_box()), PyBulletBackend(legged_box())
    try:
        assert a.client_id != b.client_id
        a.apply_dynamics(DynamicsProfile(gravity_mps2=(0.0, 0.0, 0.0)))
        for _ in range(10):
            a.step(np.zeros(2))
            b.step(np.zeros(2))
        assert a.state().base_pos_m[2] == pytest.approx(2.0, abs=1e-6)  # weightless: did not move
        assert b.state().base_pos_m[2] < 1.9  # b fell, unaffected by a's gravity
    finally:
        a.close()
        b.close()


def test_marker_and_render(arm: PyBulletBackend) -> None:
    assert arm.marker_id is not None
    arm.set_marker(np.array([0.3, 0.1, 0.4]))
    pos, _ = p.getBasePositionAndOrientation(arm.marker_id, physicsClientId=arm.client_id)
    np.testing.assert_allclose(pos, [0.3, 0.1, 0.4])
    img = arm.render_rgb(32, 24)
    assert img.shape == (24, 32, 3) and img.dtype == np.uint8
    assert img.std() > 0.0  # not a blank frame


# ------------------------------------------------------------------ agreement with MuJoCo


def _mujoco_model(robot: RobotModel) -> tuple[Any, Any]:
    """(mujoco module, MjModel of `robot`)."""
    import mujoco

    from sim.robots import mjcf

    return mujoco, mujoco.MjModel.from_xml_string(mjcf.to_mjcf(robot))


def _shipped_robots() -> list[RobotModel]:
    from sim.robots.manipulator import MANIPULATOR
    from sim.robots.quadruped import QUADRUPED

    return [QUADRUPED, MANIPULATOR]


def test_shipped_robots_match_mujoco_joints_pose_masses_and_sites() -> None:
    for robot in _shipped_robots():
        mujoco, model = _mujoco_model(robot)
        hinges = [
            mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_JOINT, j)
            for j in range(model.njnt)
            if model.jnt_type[j] == mujoco.mjtJoint.mjJNT_HINGE
        ]
        backend = PyBulletBackend(robot)
        try:
            names = [
                p.getJointInfo(backend.robot_id, j, physicsClientId=backend.client_id)[1].decode()
                for j in backend.joint_indices
            ]
            assert names == hinges == list(robot.joint_names)
            s = backend.state()
            np.testing.assert_allclose(s.joint_pos_rad, robot.default_joint_pos_rad, atol=1e-12)

            # Same default pose -> same site positions (forward kinematics agree).
            data = mujoco.MjData(model)
            for name, q in zip(robot.joint_names, robot.default_joint_pos_rad, strict=True):
                data.qpos[model.jnt_qposadr[mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, name)]] = q
            mujoco.mj_forward(model, data)
            for i, site in enumerate(robot.sites):
                sid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, site.name)
                np.testing.assert_allclose(s.site_pos_world_m[i], data.site_xpos[sid], atol=1e-9)

            # Masses, CoMs and the principal inertias derived from the geoms agree with MuJoCo's.
            for body in robot.bodies:
                bid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, body.name)
                mass, com, inertia = body_inertial(body)
                assert model.body_mass[bid] == pytest.approx(mass, rel=1e-9)
                np.testing.assert_allclose(model.body_ipos[bid], com, atol=1e-9)
                np.testing.assert_allclose(
                    np.sort(model.body_inertia[bid]), np.sort(np.linalg.eigvalsh(inertia)), rtol=1e-6
                )
        finally:
            backend.close()


def test_quadruped_stands_like_mujoco_for_two_seconds() -> None:
    quadruped = _shipped_robots()[0]
    mujoco, model = _mujoco_model(quadruped)
    data = mujoco.MjData(model)
    mujoco.mj_resetData(model, data)
    default = np.array(quadruped.default_joint_pos_rad)
    for name, q in zip(quadruped.joint_names, default, strict=True):
        data.qpos[model.jnt_qposadr[mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, name)]] = q
    data.ctrl[:] = default  # actuators are in RobotModel joint order
    mujoco.mj_step(model, data, nstep=1000)  # 2 s at 2 ms
    root = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, quadruped.bodies[0].name)
    z_mujoco = float(data.xpos[root][2])

    backend = PyBulletBackend(quadruped)
    try:
        heights = []
        for _ in range(100):  # 2 s of zero action = holding the default targets
            backend.step(default)
            heights.append(backend.state().base_pos_m[2])
        s = backend.state()
        assert min(heights) > 0.25  # never collapsed (nominal 0.317 m)
        assert s.base_pos_m[2] == pytest.approx(z_mujoco, abs=0.01)  # measured: equal to 0.1 mm
        assert s.base_quat_wxyz[0] > 0.99  # upright: tilt < 16 deg
        assert s.foot_contact.all()
        np.testing.assert_allclose(s.joint_pos_rad, default, atol=0.15)
    finally:
        backend.close()


def test_manipulator_sags_under_gravity_like_mujoco() -> None:
    manipulator = _shipped_robots()[1]
    mujoco, model = _mujoco_model(manipulator)
    data = mujoco.MjData(model)
    default = np.array(manipulator.default_joint_pos_rad)
    for name, q in zip(manipulator.joint_names, default, strict=True):
        data.qpos[model.jnt_qposadr[mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, name)]] = q
    data.ctrl[:] = default
    mujoco.mj_step(model, data, nstep=500)  # 1 s
    ee = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, "ee")

    backend = PyBulletBackend(manipulator)
    try:
        for _ in range(50):
            backend.step(default)
        s = backend.state()
        # The static PD sag (about 0.04 rad at the shoulder) and the torque holding it are set by the masses,
        # the geometry and kp alone, so both simulators must agree closely.
        np.testing.assert_allclose(s.joint_pos_rad, data.qpos[: len(default)], atol=2e-3)
        np.testing.assert_allclose(s.joint_torque_nm, data.actuator_force, atol=0.05)
        np.testing.assert_allclose(s.site_pos_world_m[0], data.site_xpos[ee], atol=2e-3)
        assert (
            abs(s.joint_pos_rad[1] - default[1]) > 0.02
        )  # the sag is real, so the comparison means something
    finally:
        backend.close()
