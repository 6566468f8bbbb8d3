"""Bridge pieces without sockets or a pty: raw -> SI, NaN handling, calibration and HELLO refusal."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from firmware_bridge.bridge import Bridge, BridgeConfig, HandshakeError, run_bridge, sensor_to_joint_state
from firmware_bridge.calibration import CalibrationError, load_calibration, rad_to_ticks
from firmware_bridge.protocol import (
    Capability,
    ControlMode,
    Fault,
    FrameReader,
    Hello,
    JointCommand,
    Role,
    SensorState,
    encode_message,
)
from firmware_bridge.safety import clamp_command
from robot_rl.bus.messages import JointTarget
from robot_rl.bus.topics import endpoints_from_base

CALIB = Path(__file__).resolve().parents[3] / "calib" / "quadruped.toml"
CAL = load_calibration(CALIB)
TICKS_PER_JOINT_REV = 16384 * 9  # encoder ticks per joint revolution (9:1 gear)


class FakePort:
    """In-memory port: the test puts firmware bytes in `inbox`; `written` collects what the bridge wrote."""

    def __init__(self) -> None:
        self.inbox = bytearray()
        self.written = bytearray()
        self.closed = False

    def read(self, n: int) -> bytes:
        data = bytes(self.inbox[:n])
        del self.inbox[:n]
        return data

    def write(self, data: bytes) -> int:
        self.written += data
        return len(data)

    def close(self) -> None:
        self.closed = True

    def commands(self) -> list[JointCommand]:
        return [
            r.message for r in FrameReader().feed(bytes(self.written)) if isinstance(r.message, JointCommand)
        ]


class RecordingFactory:
    def __init__(self) -> None:
        self.opened: list[str] = []
        self.port = FakePort()

    def __call__(self, path: str) -> FakePort:
        self.opened.append(path)
        return self.port


def config(calib: Path = CALIB, robot: str = "quadruped") -> BridgeConfig:
    return BridgeConfig(
        port="/dev/fake", robot=robot, calib=calib, endpoints=endpoints_from_base("inproc://rrl-unit")
    )


def sensor(position_ticks: tuple[int, ...], **kw: object) -> SensorState:
    n = len(position_ticks)
    return SensorState(
        firmware_time_us=kw.pop("t", 1000),  # type: ignore[arg-type]
        position_ticks=position_ticks,
        velocity_ticks_s=kw.pop("vel", (0,) * n),  # type: ignore[arg-type]
        current_ma=kw.pop("cur", (0,) * n),  # type: ignore[arg-type]
        motor_temp_c=(30,) * n,
        **kw,  # type: ignore[arg-type]
    )


def zero_pose_ticks() -> tuple[int, ...]:
    return tuple(j.zero_offset_ticks for j in CAL.joints)


def test_sensor_state_to_si_matches_hand_computed_values() -> None:
    quarter = TICKS_PER_JOINT_REV // 4  # a quarter joint revolution = pi/2 rad
    pos = list(zero_pose_ticks())
    vel = [0] * 8
    cur = [0] * 8
    pos[0] += quarter  # FL_hip, direction +1 -> +pi/2
    pos[2] += quarter  # FR_hip, direction -1 (mirrored motor) -> -pi/2
    vel[0] = TICKS_PER_JOINT_REV  # one joint revolution per second = 2 pi rad/s
    vel[2] = TICKS_PER_JOINT_REV
    cur[0] = 1000  # 1 A * 0.09 N m/A * 9 = 0.81 N m at the joint
    cur[2] = 1000
    msg = sensor(
        tuple(pos),
        vel=tuple(vel),
        cur=tuple(cur),
        t=777,
        last_cmd_seq=12,
        mode=ControlMode.POSITION_PD,
        faults=Fault.WATCHDOG,
        foot_contacts=0b0101,
        gyro=(1000, -250, 0),
        accel=(0, 10, 981),
        quat_wxyz=(8192, 0, 16384, -16384),
    )
    s = sensor_to_joint_state(CAL, msg)
    expected_q = np.zeros(8)
    expected_q[0], expected_q[2] = math.pi / 2, -math.pi / 2
    np.testing.assert_allclose(s.joint_pos_rad, expected_q, atol=1e-12)
    np.testing.assert_allclose(s.joint_vel_radps[[0, 2]], [2 * math.pi, -2 * math.pi], rtol=1e-12)
    np.testing.assert_allclose(s.joint_torque_nm[[0, 2]], [0.81, -0.81], rtol=1e-12)
    assert not s.joint_vel_radps[[1, 3, 4, 5, 6, 7]].any()
    np.testing.assert_allclose(s.gyro_radps, [1.0, -0.25, 0.0])
    np.testing.assert_allclose(s.accel_mps2, [0.0, 0.1, 9.81])
    np.testing.assert_allclose(s.quat_wxyz, [0.5, 0.0, 1.0, -1.0])
    assert s.foot_contact.tolist() == [True, False, True, False]
    assert (s.mode, s.faults, s.t_us, s.last_cmd_seq, s.robot) == ("POSITION_PD", 1, 777, 12, "quadruped")
    assert sensor_to_joint_state(CAL, msg, n_feet=0).foot_contact.shape == (0,)


def firmware_hello(robot: str = "quadruped", n: int = 8) -> bytes:
    hello = Hello(
        robot_name=robot,
        n_joints=n,
        role=Role.EMULATOR,
        capabilities=Capability.IMU | Capability.FOOT_CONTACTS,
        sensor_period_us=10_000,
        watchdog_timeout_us=60_000,
    )
    return encode_message(hello, 0)


def running_bridge(factory: RecordingFactory, ticks: tuple[int, ...]) -> Bridge:
    bridge = Bridge(config(), port_factory=factory)
    bridge.step(0)  # opens the port and sends HELLO
    factory.port.inbox += firmware_hello() + encode_message(sensor(ticks), 0)
    bridge.step(0)
    assert bridge.state == "running" and bridge.measured_q is not None
    return bridge


def test_nan_target_is_rejected_and_the_previous_command_held() -> None:
    factory = RecordingFactory()
    bridge = running_bridge(factory, zero_pose_ticks())
    good = np.full(8, 0.1)
    np.clip(good, CAL.arrays.position_min_rad, CAL.arrays.position_max_rad, out=good)
    first = bridge.apply_target(JointTarget(robot="quadruped", q_target_rad=good))
    assert first is not None and not first.rejected
    bad = good.copy()
    bad[3] = np.nan
    second = bridge.apply_target(JointTarget(robot="quadruped", q_target_rad=bad))
    assert second is not None and second.rejected
    expected = clamp_command(bad, first.q_rad, CAL)
    assert expected.rejected
    np.testing.assert_array_equal(second.q_rad, expected.command)
    np.testing.assert_array_equal(second.q_rad, first.q_rad)  # held: exactly what was sent before
    sent = factory.port.commands()
    assert len(sent) == 2
    assert sent[1].target_ticks == sent[0].target_ticks == tuple(rad_to_ticks(CAL, first.q_rad).tolist())
    assert bridge.status_counters()["commands/rejected"] == 1


def test_first_command_is_step_limited_against_the_measured_position() -> None:
    factory = RecordingFactory()
    bridge = running_bridge(factory, zero_pose_ticks())  # every joint measured at 0 rad
    far = np.clip(np.full(8, 1.5), CAL.arrays.position_min_rad, CAL.arrays.position_max_rad)
    sent = bridge.apply_target(JointTarget(robot="quadruped", q_target_rad=far))
    assert sent is not None and sent.clipped_step.any()
    expected = clamp_command(far, np.zeros(8), CAL).command
    np.testing.assert_array_equal(sent.q_rad, expected)
    assert np.all(np.abs(sent.q_rad - np.clip(0.0, CAL.arrays.position_min_rad, CAL.arrays.position_max_rad))
                  <= CAL.arrays.max_step_rad + 1e-12)  # fmt: skip


def test_no_command_before_the_handshake_and_none_for_another_robot() -> None:
    factory = RecordingFactory()
    bridge = Bridge(config(), port_factory=factory)
    bridge.step(0)
    assert bridge.apply_target(JointTarget(robot="quadruped", q_target_rad=np.zeros(8))) is None
    assert factory.port.commands() == []
    assert bridge.status_counters()["commands/dropped_not_ready"] == 1


def test_hello_for_another_robot_is_refused_before_any_command() -> None:
    factory = RecordingFactory()
    bridge = Bridge(config(), port_factory=factory)
    bridge.step(0)
    factory.port.inbox += firmware_hello(robot="manipulator", n=4)
    with pytest.raises(HandshakeError, match="manipulator"):
        bridge.step(0)
    assert factory.port.commands() == []


def _write_calib(tmp_path: Path, edit: str) -> Path:
    text = CALIB.read_text()
    if edit == "missing_joint":
        head, _sep, rest = text.partition("[[joint]]")
        _, sep2, rest2 = rest.partition("[[joint]]")  # drop the first [[joint]] table (FL_hip)
        text = head + sep2 + rest2
    elif edit == "min_above_max":
        text = text.replace("position_min_rad = -0.45", "position_min_rad = 2.5", 1)
    elif edit == "wrong_robot":
        text = text.replace('robot = "quadruped"', 'robot = "manipulator"', 1)
    path = tmp_path / f"{edit}.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("edit", "needle"),
    [("missing_joint", "FL_hip"), ("min_above_max", "position_min_rad"), ("wrong_robot", "wrong robot")],
)
def test_bad_calibration_fails_before_the_port_is_opened(tmp_path: Path, edit: str, needle: str) -> None:
    factory = RecordingFactory()
    path = _write_calib(tmp_path, edit)
    with pytest.raises(CalibrationError, match=needle):
        Bridge(config(calib=path), port_factory=factory)
    assert factory.opened == []
    assert run_bridge(config(calib=path), port_factory=factory) == 2
    assert factory.opened == []
