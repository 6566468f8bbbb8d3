"""Example messages of every type, shared by the protocol tests and the worked example in the docs."""

from __future__ import annotations

import random

from firmware_bridge.protocol import (
    Ack,
    AckResult,
    Capability,
    ClearFault,
    ControlMode,
    Estop,
    EstopReason,
    Fault,
    FaultReport,
    GripperState,
    Heartbeat,
    Hello,
    JointCommand,
    Message,
    MessageType,
    ResetRequest,
    Role,
    SensorState,
)


def example_messages() -> list[Message]:
    """One hand-written instance of every message type, with non-trivial values in every field."""
    return [
        Hello(
            robot_name="quadruped",
            n_joints=8,
            role=Role.EMULATOR,
            capabilities=Capability.IMU | Capability.FOOT_CONTACTS,
            sensor_period_us=10_000,
            watchdog_timeout_us=60_000,
        ),
        Heartbeat(sender_time_us=4_000_000_123, mode=ControlMode.DAMPING, faults=Fault.WATCHDOG),
        SensorState(
            firmware_time_us=123_456_789,
            position_ticks=(5123, -20411, 61800, 1207, -3344, 40960, -77001, 2**31 - 1),
            velocity_ticks_s=(0, 1, -1, 470_000, -470_000, 12, -(2**31), 99),
            current_ma=(0, 1500, -1500, 32767, -32768, 7, -7, 18500),
            motor_temp_c=(25, 31, 40, 41, 127, -128, 0, 33),
            last_cmd_seq=65535,
            mode=ControlMode.POSITION_PD,
            faults=Fault.OVER_TEMPERATURE,
            foot_contacts=0b1011,
            gripper_state=GripperState.NONE,
            gripper_opening=0,
            gyro=(12, -345, 32767),
            accel=(-3, 17, 981),
            quat_wxyz=(16384, -1, 2, -32768),
        ),
        JointCommand(
            mode=ControlMode.POSITION_PD,
            target_ticks=(1000, -56354, 110092, -12666),
            kp=(8000, 8000, 8000, 2000),
            kd=(4000, 4000, 4000, 500),
            current_ma=(0, -120, 35, 0),
        ),
        Estop(reason=EstopReason.SAFETY_LIMIT),
        ClearFault(mask=Fault.ESTOP | Fault.WATCHDOG),
        ResetRequest(),
        Ack(acked_type=MessageType.ESTOP, acked_seq=0x1234, result=AckResult.OK),
        FaultReport(
            active=Fault.OVER_CURRENT, latched=Fault.OVER_CURRENT | Fault.ESTOP, firmware_time_us=7, joint=3
        ),
    ]


def random_message(rng: random.Random, tag: int) -> Message:
    """A random valid message whose content is unique per `tag` (so a corrupted copy cannot pass as another).

    The tag goes into a 32-bit field every type has room for where possible; for the short types it is folded
    into the fields they do have, and uniqueness comes from the sequence number instead (see the fuzz test).
    """
    kind = rng.randrange(4)
    if kind == 0:
        n = rng.randint(1, 12)
        return SensorState(
            firmware_time_us=tag & 0xFFFFFFFF,
            position_ticks=tuple(rng.randint(-(2**31), 2**31 - 1) for _ in range(n)),
            velocity_ticks_s=tuple(rng.randint(-(2**31), 2**31 - 1) for _ in range(n)),
            current_ma=tuple(rng.randint(-32768, 32767) for _ in range(n)),
            motor_temp_c=tuple(rng.randint(-128, 127) for _ in range(n)),
            last_cmd_seq=rng.randrange(65536),
            mode=rng.choice(list(ControlMode)),
            faults=Fault(rng.randrange(32)),
            foot_contacts=rng.randrange(256),
            gripper_state=rng.choice(list(GripperState)),
            gripper_opening=rng.randrange(65536),
            gyro=(rng.randint(-32768, 32767), rng.randint(-32768, 32767), rng.randint(-32768, 32767)),
            accel=(rng.randint(-32768, 32767), rng.randint(-32768, 32767), rng.randint(-32768, 32767)),
            quat_wxyz=(rng.randint(-32768, 32767), 0, rng.randint(-32768, 32767), 1),
        )
    if kind == 1:
        n = rng.randint(1, 12)
        return JointCommand(
            mode=rng.choice([ControlMode.POSITION_PD, ControlMode.TORQUE, ControlMode.DAMPING]),
            target_ticks=(tag & 0x7FFFFFFF, *(rng.randint(-(2**31), 2**31 - 1) for _ in range(n - 1))),
            kp=tuple(rng.randrange(65536) for _ in range(n)),
            kd=tuple(rng.randrange(65536) for _ in range(n)),
            current_ma=tuple(rng.randint(-32768, 32767) for _ in range(n)),
        )
    if kind == 2:
        return Heartbeat(sender_time_us=tag & 0xFFFFFFFF, mode=rng.choice(list(ControlMode)))
    return FaultReport(
        active=Fault(rng.randrange(32)),
        latched=Fault(rng.randrange(32)),
        firmware_time_us=tag & 0xFFFFFFFF,
        joint=rng.randrange(256),
    )
