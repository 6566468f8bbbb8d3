"""Firmware emulator: the `Firmware` state machine without a pty, then the process over a pseudo-terminal.

Over the pty, the test side speaks docs/serial-protocol.md with `firmware_bridge.protocol` through pyserial,
as the bridge will. Timing tolerances (test-side `time.monotonic`, 2 shared CPU cores):

- Watchdog: the timeout is 60 ms (3 control periods) after the last valid command. The firmware checks it at
  every 2 ms physics step and sends FAULT_REPORT at once (not at the 10 ms sensor period), so the report is
  due 60-62 ms after the last command. "Within 3 control periods of the stop" is measured from when the
  first missing command was due (last command + 20 ms): the report must arrive by last command + 80 ms, plus
  `SCHED_SLACK_S` for process scheduling on a loaded machine. It must not arrive before 55 ms (no early trip).
- E-stop: the ACK round trip (write -> ACK decoded) must be under 10 ms.
"""

from __future__ import annotations

import itertools
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import serial

from firmware_bridge.calibration import (
    Calibration,
    gains_to_wire,
    load_calibration,
    rad_to_ticks,
    ticks_to_rad,
)
from firmware_bridge.protocol import (
    Ack,
    AckResult,
    ClearFault,
    ControlMode,
    Estop,
    EstopReason,
    Fault,
    FaultReport,
    FrameReader,
    Hello,
    JointCommand,
    Message,
    MessageType,
    ResetRequest,
    Role,
    SensorState,
    SequenceCounter,
    encode_message,
)

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]
CAL_PATH = REPO / "calib" / "quadruped.toml"
CONTROL_DT_S = 0.02
SCHED_SLACK_S = 0.02


@pytest.fixture(scope="module")
def cal() -> Calibration:
    return load_calibration(CAL_PATH, "quadruped")


def pd_command(cal: Calibration, q_rad: np.ndarray) -> JointCommand:
    kp, kd = gains_to_wire(cal)
    return JointCommand(
        ControlMode.POSITION_PD,
        tuple(int(x) for x in rad_to_ticks(cal, q_rad)),
        tuple(int(x) for x in kp),
        tuple(int(x) for x in kd),
        (0,) * cal.n_joints,
    )


# --- Firmware state machine, no pty ----------------------------------------------------------------------


def test_firmware_state_machine_watchdog_estop_clear(cal: Calibration) -> None:
    from firmware_bridge.emulator.firmware import Firmware
    from sim.profile import load_profile
    from sim.robots import get_robot

    fw = Firmware(get_robot("quadruped"), cal, load_profile("nominal"))
    reader, seq = FrameReader(), SequenceCounter()

    def send(msg: Message, now: float) -> list[Message]:
        return [r.message for r in reader.feed(fw.feed(encode_message(msg, seq.next(msg.MSG_TYPE)), now))]

    def run_to(now: float) -> list[Message]:
        out: list[Message] = []
        t = fw._t_phys  # advance in sensor-period steps, as the real-time loop does
        while t < now - 1e-9:
            t = min(now, t + 0.01)
            out += [r.message for r in reader.feed(fw.tick(t))]
        return out

    assert isinstance(reader.feed(fw.boot(0.0))[0].message, Hello)
    run_to(0.5)
    assert fw.mode == ControlMode.IDLE
    cmd = pd_command(cal, cal.arrays.default_pos_rad)
    t = 0.5
    for k in range(50):
        # Accepted commands are not ACKed; each is answered by one SENSOR_STATE reporting it applied.
        (reply,) = send(cmd, t)
        assert isinstance(reply, SensorState)
        assert (reply.last_cmd_seq, reply.mode) == (k, ControlMode.POSITION_PD)
        t += CONTROL_DT_S
        run_to(t)
    assert fw.mode == ControlMode.POSITION_PD
    np.testing.assert_allclose(fw.joint_pos_rad, cal.arrays.default_pos_rad, atol=0.25)
    last = t - CONTROL_DT_S
    out = run_to(last + 0.058)
    assert fw.faults == Fault.NONE, "watchdog tripped before its 60 ms timeout"
    out = run_to(last + 0.064)
    assert fw.mode == ControlMode.DAMPING and fw.faults == Fault.WATCHDOG
    assert any(isinstance(m, FaultReport) and m.latched == Fault.WATCHDOG for m in out)
    # Latched: commands rejected, an e-stop is still ACKed OK, and clear-fault leaves it IDLE.
    # (The physics due by then runs first, so periodic states may come along; none reports it applied.)
    replies = send(cmd, last + 0.07)
    (ack,) = [m for m in replies if isinstance(m, Ack)]
    assert ack.result == AckResult.REJECTED_FAULT_LATCHED
    assert all(m.last_cmd_seq == 49 for m in replies if isinstance(m, SensorState))
    replies = send(Estop(EstopReason.TEST), last + 0.08)
    assert any(
        isinstance(m, Ack) and m.acked_type == MessageType.ESTOP and m.result == AckResult.OK for m in replies
    )
    assert fw.faults == Fault.WATCHDOG | Fault.ESTOP
    replies = send(ClearFault(Fault.WATCHDOG), last + 0.09)
    assert fw.faults == Fault.ESTOP and fw.mode == ControlMode.DAMPING
    send(ClearFault(), last + 0.1)
    assert fw.faults == Fault.NONE and fw.mode == ControlMode.IDLE
    # A wrong joint count latches BAD_COMMAND.
    bad = JointCommand(ControlMode.POSITION_PD, (0,), (0,), (0,), (0,))
    replies = send(bad, last + 0.2)
    assert [m.result for m in replies if isinstance(m, Ack)] == [AckResult.BAD_COMMAND]
    assert fw.faults == Fault.BAD_COMMAND and fw.mode == ControlMode.DAMPING
    assert any(isinstance(m, FaultReport) and m.latched == Fault.BAD_COMMAND for m in replies)


def test_firmware_replies_to_each_applied_command_with_a_newer_state(cal: Calibration) -> None:
    from firmware_bridge.emulator.commands import REAL_PROFILE
    from firmware_bridge.emulator.firmware import Firmware
    from sim.profile import load_profile
    from sim.robots import get_robot

    cmd = pd_command(cal, cal.arrays.default_pos_rad)
    # Nominal profile (no command latency): the reply comes in the same feed call. It is the newest sample,
    # the state of the last physics step (2 ms steps), at that step's time, or 1 us after the state before
    # it if that one has the same time: firmware times increase strictly.
    fw = Firmware(get_robot("quadruped"), cal, load_profile("nominal"))
    reader, seqs = FrameReader(), SequenceCounter()
    states: list[SensorState] = []

    def command(now: float) -> SensorState:
        seq = seqs.next(MessageType.JOINT_COMMAND)
        got = [r.message for r in reader.feed(fw.feed(encode_message(cmd, seq), now))]
        assert len(got) == 1 and isinstance(got[0], SensorState), got  # no ACK, one state
        assert (got[0].last_cmd_seq, got[0].mode) == (seq, ControlMode.POSITION_PD)
        states.append(got[0])
        return got[0]

    def tick(now: float) -> None:
        states.extend(r.message for r in reader.feed(fw.tick(now)) if isinstance(r.message, SensorState))

    reader.feed(fw.boot(0.0))
    for k in range(1, 21):
        t_us = 10_000 * k  # the periodic stream (10 ms) has a state at every 10 ms step
        tick(t_us * 1e-6)
        # The periodic state reports the last command applied: seq 2k - 3 (two commands per round, from 0).
        assert states[-1].firmware_time_us == t_us and states[-1].last_cmd_seq == max(0, 2 * k - 3)
        assert command(t_us * 1e-6 + 0.0013).firmware_time_us == t_us + 1  # same step as the periodic one
        tick(t_us * 1e-6 + 0.005)  # steps at +2 and +4 ms, no periodic state
        assert command(t_us * 1e-6 + 0.0051).firmware_time_us == t_us + 4000  # the +4 ms step's sample
    times = [m.firmware_time_us for m in states]
    assert all(b > a for a, b in itertools.pairwise(times)), "firmware times must increase strictly"
    # A command during a latched fault is not applied: ACK, no state reply.
    fw.feed(encode_message(Estop(EstopReason.TEST), 0), 0.3)
    out = [r.message for r in reader.feed(fw.feed(encode_message(cmd, seqs.next(cmd.MSG_TYPE)), 0.301))]
    assert not any(isinstance(m, SensorState) for m in out)
    assert any(isinstance(m, Ack) and m.result == AckResult.REJECTED_FAULT_LATCHED for m in out)

    # Hidden "real" profile (one control period of command latency): the reply is sent at the physics step
    # that applies the command, 20 ms later, not when it arrives.
    fw = Firmware(get_robot("quadruped"), cal, load_profile(str(REAL_PROFILE)))
    reader, seqs = FrameReader(), SequenceCounter()
    fw.boot(0.0)
    fw.tick(0.1)
    assert not [
        r for r in reader.feed(fw.feed(encode_message(cmd, 5), 0.1)) if isinstance(r.message, SensorState)
    ]
    # 0.1 + 0.02 = 0.12 s: the step at 0.12 applies it; the periodic stream has a state there too (10 ms).
    got = [r.message for r in reader.feed(fw.tick(0.125)) if isinstance(r.message, SensorState)]
    applied = [m for m in got if m.last_cmd_seq == 5]
    assert applied and applied[0].firmware_time_us == 120_000
    # Off the periodic grid (applied at 0.134 s, sensor period 10 ms): an extra state is the reply.
    fw.feed(encode_message(cmd, 6), 0.1143)
    got = [r.message for r in reader.feed(fw.tick(0.1365)) if isinstance(r.message, SensorState)]
    assert next(m.firmware_time_us for m in got if m.last_cmd_seq == 6) == 136_000


# --- the emulator process over a pty --------------------------------------------------------------------


class Link:
    """The test's end of the serial line: pyserial + FrameReader + sequence numbers."""

    def __init__(self, port: serial.Serial) -> None:
        self.port = port
        self.reader = FrameReader()
        self.seq = SequenceCounter()

    def send(self, msg: Message) -> int:
        s = self.seq.next(msg.MSG_TYPE)
        self.port.write(encode_message(msg, s))
        return s

    def poll(self) -> list[Message]:
        data = self.port.read(max(1, self.port.in_waiting))
        return [r.message for r in self.reader.feed(data)]

    def collect(self, seconds: float) -> list[tuple[float, Message]]:
        end = time.monotonic() + seconds
        out: list[tuple[float, Message]] = []
        while time.monotonic() < end:
            out += [(time.monotonic(), m) for m in self.poll()]
        return out

    def wait_for(self, pred: object, timeout: float) -> tuple[float, Message]:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for m in self.poll():
                if pred(m):  # type: ignore[operator]
                    return time.monotonic(), m
        raise AssertionError(f"no matching message within {timeout} s")

    def latest_state(self, timeout: float = 0.5) -> SensorState:
        self.port.reset_input_buffer()
        self.reader = FrameReader()
        _, m = self.wait_for(lambda m: isinstance(m, SensorState), timeout)
        assert isinstance(m, SensorState)
        return m

    def stream_commands(self, cmd: JointCommand, seconds: float) -> list[Message]:
        """Send `cmd` every control period for `seconds`; return everything received meanwhile."""
        out: list[Message] = []
        next_t = time.monotonic()
        end = next_t + seconds
        while next_t < end:
            self.send(cmd)
            next_t += CONTROL_DT_S
            while time.monotonic() < next_t:
                out += self.poll()
        return out


@pytest.fixture
def link() -> Iterator[Link]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "firmware_bridge.emulator", "--robot", "quadruped", "--seed", "1"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        assert proc.stdout is not None
        path = proc.stdout.readline().strip()
        assert path.startswith("/dev/"), path
        port = serial.Serial(path, timeout=0.002)
        try:
            yield Link(port)
        finally:
            port.close()
        proc.terminate()
        assert proc.wait(timeout=10) == 0, "emulator did not exit cleanly on SIGTERM"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def stand(link: Link, cal: Calibration, seconds: float = 1.0) -> JointCommand:
    cmd = pd_command(cal, cal.arrays.default_pos_rad)
    link.stream_commands(cmd, seconds)
    return cmd


def test_hello_stream_rate_and_calibrated_pose(link: Link, cal: Calibration) -> None:
    link.send(Hello("quadruped", cal.n_joints, Role.HOST, watchdog_timeout_us=60_000))
    _, hello = link.wait_for(lambda m: isinstance(m, Hello), 1.0)
    assert isinstance(hello, Hello)
    assert (hello.robot_name, hello.n_joints, hello.role) == ("quadruped", 8, Role.EMULATOR)
    assert (hello.sensor_period_us, hello.watchdog_timeout_us) == (10_000, 60_000)
    link.collect(0.3)  # warm-up: the first physics steps after start-up are slower than real time
    got = link.collect(1.0)
    states = [m for _, m in got if isinstance(m, SensorState)]
    assert 80 <= len(states) <= 120, f"{len(states)} SENSOR_STATE in 1 s, expected ~100"
    assert link.reader.stats.dropped_total == 0
    cmd = pd_command(cal, cal.arrays.default_pos_rad)
    # Read the pose from the states received while commanding (afterwards the watchdog trips in 60 ms).
    streamed = [m for m in link.stream_commands(cmd, 1.5) if isinstance(m, SensorState)]
    st = streamed[-1]
    assert st.mode == ControlMode.POSITION_PD and st.faults == Fault.NONE
    raw = np.array(st.position_ticks)
    q = ticks_to_rad(cal, raw)
    # Raw ticks are far from the angle (offsets, mirrored motors); calibrated they give the default pose.
    assert np.all(np.abs(raw - cal.arrays.default_pos_rad) > 100)
    np.testing.assert_allclose(q, cal.arrays.default_pos_rad, atol=0.25)
    assert st.foot_contacts == 0b1111
    assert 8.0 < st.accel[2] * 0.01 < 11.5  # standing still: ~g on body z


def test_watchdog_trips_to_damping_within_three_control_periods(link: Link, cal: Calibration) -> None:
    cmd = stand(link, cal, 0.5)
    link.send(cmd)  # the last command; the watchdog latency is measured from this write
    t_last = time.monotonic()
    t_report, _ = link.wait_for(
        lambda m: (
            (isinstance(m, FaultReport) and bool(m.latched & Fault.WATCHDOG))
            or (isinstance(m, SensorState) and m.mode == ControlMode.DAMPING)
        ),
        1.0,
    )
    latency = t_report - t_last
    assert 0.055 <= latency <= 3 * CONTROL_DT_S + CONTROL_DT_S + SCHED_SLACK_S, f"{latency * 1e3:.1f} ms"
    st = link.latest_state()
    assert st.mode == ControlMode.DAMPING and st.faults & Fault.WATCHDOG
    # Latched: commands are rejected and nothing resumes until CLEAR_FAULT.
    got = link.stream_commands(cmd, 0.2)
    rejects = [m for m in got if isinstance(m, Ack) and m.result == AckResult.REJECTED_FAULT_LATCHED]
    assert len(rejects) >= 8
    assert link.latest_state().mode == ControlMode.DAMPING
    s = link.send(ClearFault())
    _, ack = link.wait_for(lambda m: isinstance(m, Ack) and m.acked_type == MessageType.CLEAR_FAULT, 0.5)
    assert isinstance(ack, Ack) and ack.acked_seq == s and ack.result == AckResult.OK
    st = link.latest_state()
    assert st.mode == ControlMode.IDLE and st.faults == Fault.NONE


def test_estop_acked_fast_latched_and_cleared_only_by_clear_fault(link: Link, cal: Calibration) -> None:
    cmd = stand(link, cal, 1.0)
    # Lift the hips a little so that "motion resumes" would be visible as a return to this target.
    q_up = np.array(cal.arrays.default_pos_rad) + np.tile([0.3, 0.0], 4)
    up = pd_command(cal, q_up)
    link.stream_commands(up, 0.5)
    link.port.reset_input_buffer()
    t0 = time.monotonic()
    s = link.send(Estop(EstopReason.TEST))
    t_ack, ack = link.wait_for(lambda m: isinstance(m, Ack) and m.acked_type == MessageType.ESTOP, 0.5)
    rtt = t_ack - t0
    assert isinstance(ack, Ack) and ack.acked_seq == s and ack.result == AckResult.OK
    assert rtt < 0.010, f"e-stop ACK round trip {rtt * 1e3:.2f} ms"
    # Idempotent: a second e-stop is ACKed OK too.
    link.send(Estop(EstopReason.TEST))
    link.wait_for(
        lambda m: isinstance(m, Ack) and m.acked_type == MessageType.ESTOP and m.result == AckResult.OK, 0.5
    )
    # Keep sending the default-pose command for 0.5 s: every one rejected, the robot never goes back to it.
    time.sleep(0.3)  # let the damped robot come to rest
    before = ticks_to_rad(cal, link.latest_state().position_ticks)
    got = link.stream_commands(cmd, 0.5)
    rejects = [m for m in got if isinstance(m, Ack) and m.result == AckResult.REJECTED_FAULT_LATCHED]
    assert len(rejects) >= 20
    states = [m for m in got if isinstance(m, SensorState)]
    assert states and all(m.mode == ControlMode.DAMPING and m.faults & Fault.ESTOP for m in states)
    after = ticks_to_rad(cal, link.latest_state().position_ticks)
    default = np.array(cal.arrays.default_pos_rad)
    # No motion towards the commanded target: the distance to it does not shrink beyond sensor noise.
    assert np.linalg.norm(after - default) > np.linalg.norm(before - default) - 0.05
    # Cleared only by CLEAR_FAULT, and then IDLE (the old target is not resumed).
    link.send(ClearFault())
    link.wait_for(lambda m: isinstance(m, Ack) and m.acked_type == MessageType.CLEAR_FAULT, 0.5)
    st = link.latest_state()
    assert st.mode == ControlMode.IDLE and st.faults == Fault.NONE


def test_reset_request_returns_to_start_pose(link: Link, cal: Calibration) -> None:
    time.sleep(1.0)  # IDLE after boot: the passive legs fold under the torso
    folded = ticks_to_rad(cal, link.latest_state().position_ticks)
    default = np.array(cal.arrays.default_pos_rad)
    assert np.max(np.abs(folded - default)) > 0.5
    s = link.send(ResetRequest())
    _, ack = link.wait_for(lambda m: isinstance(m, Ack) and m.acked_type == MessageType.RESET_REQUEST, 1.0)
    assert isinstance(ack, Ack) and ack.acked_seq == s and ack.result == AckResult.OK
    st = link.latest_state()
    assert st.mode == ControlMode.IDLE
    np.testing.assert_allclose(ticks_to_rad(cal, st.position_ticks), default, atol=0.2)
    assert 0.9 * 16384 < st.quat_wxyz[0] <= 16384  # upright
