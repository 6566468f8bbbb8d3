"""The bridge end to end over a real pseudo-terminal and real ZeroMQ sockets, against a small fake firmware.

The fake firmware (a thread on the master side of `pty.openpty()`) answers HELLO, streams SENSOR_STATE at
100 Hz from positions the test sets, ACKs ESTOP, records every JOINT_COMMAND, and can inject corrupt bytes.
It does not depend on the firmware emulator.
"""

from __future__ import annotations

import contextlib
import json
import os
import pty
import select
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import tty
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from firmware_bridge.bridge import Bridge, BridgeConfig, command_sent_topic
from firmware_bridge.calibration import load_calibration, rad_to_ticks, ticks_to_rad
from firmware_bridge.protocol import (
    Ack,
    AckResult,
    Capability,
    ClearFault,
    Estop,
    Fault,
    FrameReader,
    Hello,
    JointCommand,
    MessageType,
    Role,
    SensorState,
    SequenceCounter,
    encode_message,
)
from firmware_bridge.protocol.messages import Message
from firmware_bridge.safety import clamp_command
from robot_rl.bus.messages import CommandSent, JointState, JointTarget, Status
from robot_rl.bus.sockets import BusContext, Receiver, Requester, Sender, make_pub, make_sub
from robot_rl.bus.topics import STATUS, Endpoints, endpoints_from_base, obs_topic

pytestmark = pytest.mark.integration

CALIB = Path(__file__).resolve().parents[3] / "calib" / "quadruped.toml"
CAL = load_calibration(CALIB)


class FakeFirmware:
    """Speaks the serial protocol on a pty master fd from a thread."""

    def __init__(self, master_fd: int, *, period_s: float = 0.01) -> None:
        self.fd = master_fd
        self.period_s = period_s
        self.position_ticks = [j.zero_offset_ticks + 1000 * (i + 1) for i, j in enumerate(CAL.joints)]
        self.commands: list[tuple[int, JointCommand]] = []
        self.host_hellos = 0
        self.estops_seen = 0
        self.ack_estop = True
        self.faults = Fault.NONE
        self.inject: list[bytes] = []
        self._seqs = SequenceCounter()
        self._reader = FrameReader()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> FakeFirmware:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def state_msg(self) -> SensorState:
        n = CAL.n_joints
        return SensorState(
            firmware_time_us=int(time.monotonic() * 1e6) & 0xFFFFFFFF,
            position_ticks=tuple(self.position_ticks),
            velocity_ticks_s=tuple(100 * (i + 1) for i in range(n)),
            current_ma=tuple(50 * (i + 1) for i in range(n)),
            motor_temp_c=(30,) * n,
            last_cmd_seq=self.commands[-1][0] if self.commands else 0,
            faults=self.faults,
            foot_contacts=0b1001,
            gyro=(10, -20, 30),
            accel=(0, 0, 981),
            quat_wxyz=(16384, 0, 0, 0),
        )

    def _send(self, msg: Message) -> None:
        with contextlib.suppress(OSError):  # the test may close the master under us
            os.write(self.fd, encode_message(msg, self._seqs.next(msg.MSG_TYPE)))

    def _hello(self) -> Hello:
        return Hello(
            robot_name="quadruped",
            n_joints=CAL.n_joints,
            role=Role.FIRMWARE,
            capabilities=Capability.IMU | Capability.FOOT_CONTACTS,
            sensor_period_us=int(self.period_s * 1e6),
            watchdog_timeout_us=60_000,
        )

    def _run(self) -> None:
        self._send(self._hello())  # at boot, like real firmware
        next_state = time.monotonic()
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select([self.fd], [], [], 0.002)
                data = os.read(self.fd, 4096) if ready else b""
            except OSError:
                data = b""  # no slave open yet (EIO): keep streaming into the void, like a powered board
            for rec in self._reader.feed(data):
                self._on_host(rec.seq, rec.message)
            now = time.monotonic()
            if now >= next_state:
                next_state = now + self.period_s
                self._send(self.state_msg())
                while self.inject:
                    with contextlib.suppress(OSError):
                        os.write(self.fd, self.inject.pop(0))

    def _on_host(self, seq: int, msg: Message) -> None:
        if isinstance(msg, Hello):
            self.host_hellos += 1
            self._send(self._hello())
        elif isinstance(msg, JointCommand):
            with self._lock:
                self.commands.append((seq, msg))
        elif isinstance(msg, Estop):
            self.estops_seen += 1
            if not self.ack_estop:
                return  # a firmware that never answers: the bridge must not report "stopped"
            self.faults |= Fault.ESTOP
            self._send(Ack(acked_type=MessageType.ESTOP, acked_seq=seq, result=AckResult.OK))
        elif isinstance(msg, ClearFault):
            self.faults = Fault.NONE
            self._send(Ack(acked_type=MessageType.CLEAR_FAULT, acked_seq=seq, result=AckResult.OK))


def open_pty() -> tuple[int, int, str]:
    master, slave = pty.openpty()
    tty.setraw(slave)  # no echo or line editing before pyserial configures the port
    return master, slave, os.ttyname(slave)


def wait_for(cond: Callable[[], Any], timeout_s: float = 5.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what or cond}")


class Harness:
    """A bridge thread on inproc sockets plus the test's own bus sockets."""

    def __init__(self, port_path: str, run: str) -> None:
        self.ctx = BusContext()
        self.ep: Endpoints = endpoints_from_base(f"inproc://rrl-{run}")
        # The test binds the telemetry SUB (the launcher's role) before the bridge connects to it.
        self.telemetry = Receiver(make_sub(self.ctx, self.ep.telemetry, topics=[STATUS], bind=True))
        self.bridge = Bridge(
            BridgeConfig(
                port=port_path,
                robot="quadruped",
                calib=CALIB,
                endpoints=self.ep,
                status_interval_s=0.2,
                backoff_initial_s=0.05,
                backoff_max_s=0.4,
                handshake_timeout_s=0.5,
            ),
            ctx=self.ctx,
        )
        self.error: BaseException | None = None
        started = threading.Event()

        def serve() -> None:
            try:
                self.bridge.start()
                started.set()
                self.bridge.run()
            except BaseException as exc:  # surfaced by close()
                self.error = exc
                started.set()

        self.thread = threading.Thread(target=serve, daemon=True)
        self.thread.start()
        started.wait(5)
        self.obs = Receiver(make_sub(self.ctx, self.ep.obs, topics=[obs_topic("quadruped")]))
        self.sent = Receiver(make_sub(self.ctx, self.ep.obs, topics=[command_sent_topic("quadruped")]))
        self.cmd = Sender(make_pub(self.ctx, self.ep.command, bind=False), "policy", single_part=True)

    def next_msg(self, rx: Receiver, kind: type, timeout_s: float = 3.0) -> Any:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            d = rx.recv(50)
            if d is not None and isinstance(d.msg, kind):
                return d.msg
        raise AssertionError(f"no {kind.__name__} within {timeout_s} s")

    def status_until(self, cond: Callable[[dict[str, int]], bool], timeout_s: float = 5.0) -> dict[str, int]:
        deadline = time.monotonic() + timeout_s
        last: dict[str, int] = {}
        while time.monotonic() < deadline:
            d = self.telemetry.recv(100)
            if d is not None and isinstance(d.msg, Status):
                last = d.msg.counters
                if cond(last):
                    return last
        raise AssertionError(f"status never matched; last counters {last}")

    def close(self) -> None:
        self.bridge.request_stop()
        self.thread.join(timeout=5)
        self.bridge.close()
        self.ctx.close()
        if self.error is not None:
            raise self.error


@pytest.fixture
def rig(request: pytest.FixtureRequest) -> Iterator[tuple[Harness, FakeFirmware, int]]:
    master, slave, path = open_pty()
    fw = FakeFirmware(master).start()
    h = Harness(path, run=request.node.name[:40].replace("[", "-").replace("]", ""))
    try:
        yield h, fw, master
    finally:
        h.close()
        fw.stop()
        for fd in (master, slave):
            with contextlib.suppress(OSError):
                os.close(fd)


def test_handshake_and_joint_state_in_si(rig: tuple[Harness, FakeFirmware, int]) -> None:
    h, fw, _ = rig
    wait_for(lambda: h.bridge.state == "running", what="handshake")
    assert fw.host_hellos >= 1
    state = h.next_msg(h.obs, JointState)
    raw = fw.state_msg()
    np.testing.assert_allclose(state.joint_pos_rad, ticks_to_rad(CAL, raw.position_ticks), atol=1e-12)
    np.testing.assert_allclose(state.gyro_radps, [0.01, -0.02, 0.03])
    np.testing.assert_allclose(state.accel_mps2, [0.0, 0.0, 9.81])
    assert state.foot_contact.tolist() == [True, False, False, True]
    assert state.robot == "quadruped" and state.mode == "IDLE"


def test_target_is_clamped_and_command_sent_equals_what_the_firmware_got(
    rig: tuple[Harness, FakeFirmware, int],
) -> None:
    h, fw, _ = rig
    wait_for(lambda: h.bridge.measured_q is not None, what="first state")
    measured = ticks_to_rad(CAL, fw.state_msg().position_ticks)
    far = CAL.arrays.position_max_rad.copy()  # far from the measured pose: the step limit must bite
    h.cmd.send(b"", JointTarget(robot="quadruped", q_target_rad=far))
    sent: CommandSent = h.next_msg(h.sent, CommandSent)
    expected = clamp_command(far, measured, CAL)
    assert expected.clipped_step.any()
    np.testing.assert_allclose(sent.q_rad, expected.command, atol=1e-12)
    assert sent.clipped_step.tolist() == expected.clipped_step.tolist() and not sent.rejected
    seq, got = wait_for(lambda: fw.commands[-1] if fw.commands else None, what="command at the firmware")
    assert seq == sent.seq
    assert list(got.target_ticks) == sent.target_ticks.tolist() == rad_to_ticks(CAL, sent.q_rad).tolist()
    np.testing.assert_allclose(np.array(got.kp) * 0.01, sent.kp)
    np.testing.assert_allclose(np.array(got.kd) * 0.001, sent.kd)
    # The firmware reports the applied command's seq back; and without new targets nothing more is sent.
    n = len(fw.commands)
    time.sleep(0.2)
    assert len(fw.commands) == n, "the bridge must not resend stale targets"
    assert h.bridge.sent_log[-1].seq == sent.seq


def test_corrupt_bytes_are_counted_and_the_stream_continues(rig: tuple[Harness, FakeFirmware, int]) -> None:
    h, fw, _ = rig
    wait_for(lambda: h.bridge.state == "running", what="handshake")
    good = encode_message(fw.state_msg(), 0)
    flipped = bytearray(good)
    flipped[10] ^= 0x01 if flipped[10] not in (0x00, 0x01) else 0x02  # a payload bit: CRC mismatch
    fw.inject += [bytes(flipped), b"\x07\x00", b"\x05\x01\x02\x00"]  # crc, then a bad COBS frame or two
    counters = h.status_until(lambda c: c.get("serial/dropped/crc", 0) >= 1)
    assert counters.get("serial/dropped/cobs", 0) + counters.get("serial/dropped/length", 0) >= 1
    before = counters["serial/frames_ok"]
    h.status_until(lambda c: c["serial/frames_ok"] > before + 10)  # the stream went on
    h.next_msg(h.obs, JointState)


def test_estop_is_acknowledged_and_blocks_commands_until_clear(
    rig: tuple[Harness, FakeFirmware, int],
) -> None:
    h, fw, _ = rig
    wait_for(lambda: h.bridge.measured_q is not None, what="first state")
    req = Requester(h.ctx, h.ep.control(h.bridge.config.control_index), "operator", timeout_s=2.0, attempts=1)
    try:
        reply = req.request("estop")
        assert reply.ok, reply.error
        assert fw.faults & Fault.ESTOP
        h.cmd.send(b"", JointTarget(robot="quadruped", q_target_rad=CAL.arrays.default_pos_rad.copy()))
        h.status_until(lambda c: c.get("commands/dropped_estop", 0) >= 1)
        assert fw.commands == []
        assert req.request("clear_fault").ok
    finally:
        req.close()


def test_estop_without_ack_is_retried_and_reported_as_failed(rig: tuple[Harness, FakeFirmware, int]) -> None:
    h, fw, _ = rig
    fw.ack_estop = False
    wait_for(lambda: h.bridge.measured_q is not None, what="first state")
    req = Requester(h.ctx, h.ep.control(h.bridge.config.control_index), "operator", timeout_s=3.0, attempts=1)
    try:
        t0 = time.monotonic()
        reply = req.request("estop")
        assert not reply.ok and "no ACK" in reply.error
        assert time.monotonic() - t0 >= h.bridge.config.ack_timeout_s * 0.9
        assert fw.estops_seen >= 10  # every 20 ms for 1 s
        h.status_until(lambda c: c.get("estop/failed", 0) == 1)
    finally:
        req.close()


def test_watchdog_trip_is_counted(rig: tuple[Harness, FakeFirmware, int]) -> None:
    h, fw, _ = rig
    wait_for(lambda: h.bridge.state == "running", what="handshake")
    fw.faults = Fault.WATCHDOG  # what the firmware latches when commands stop
    counters = h.status_until(lambda c: c.get("watchdog/trips", 0) == 1)
    assert counters["faults"] == int(Fault.WATCHDOG)
    # The SUB may hold states from before the trip; the fault bits must show up in a later one.
    wait_for(lambda: h.next_msg(h.obs, JointState).faults == int(Fault.WATCHDOG), what="faults in JointState")


def test_lost_port_is_reported_and_the_bridge_reconnects(tmp_path: Path) -> None:
    master, slave, path = open_pty()
    link = tmp_path / "ttyFW"
    link.symlink_to(path)
    fw = FakeFirmware(master).start()
    h = Harness(str(link), run="reconnect")
    fw2: FakeFirmware | None = None
    fds = [master, slave]
    try:
        wait_for(lambda: h.bridge.state == "running", what="first handshake")
        fw.stop()
        link.unlink()
        os.close(slave)
        os.close(master)  # the firmware "unplugged": the bridge's reads fail
        fds = []
        counters = h.status_until(lambda c: c.get("port/lost", 0) >= 1 and c.get("port/open_failed", 0) >= 2)
        assert h.bridge.state == "disconnected"
        # Plug in again (a new pty behind the same path): the bridge reconnects with a fresh handshake.
        master2, slave2, path2 = open_pty()
        fds = [master2, slave2]
        fw2 = FakeFirmware(master2).start()
        link.symlink_to(path2)
        wait_for(lambda: h.bridge.state == "running", timeout_s=5.0, what="reconnect")
        assert fw2.host_hellos >= 1
        counters = h.status_until(lambda c: c.get("port/opened", 0) >= 2)
        assert counters["port/lost"] >= 1
        # The first command after the reconnect is clamped against the new measured positions.
        wait_for(lambda: h.bridge.measured_q is not None, what="state after reconnect")
        assert h.bridge.prev_sent is None
        h.cmd.send(b"", JointTarget(robot="quadruped", q_target_rad=CAL.arrays.default_pos_rad.copy()))
        wait_for(lambda: fw2.commands, what="command after reconnect")
    finally:
        h.close()
        fw.stop()
        if fw2 is not None:
            fw2.stop()
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)


def test_cli_process_logs_sent_commands_and_stops_on_request(tmp_path: Path) -> None:
    master, slave, path = open_pty()
    fw = FakeFirmware(master).start()
    ipc_dir = Path(tempfile.mkdtemp(prefix="rrl", dir="/tmp"))  # ipc paths must stay short
    base = f"ipc://{ipc_dir}/rrl-cli"
    log_path = tmp_path / "sent.jsonl"
    cmd = [sys.executable, "-m", "firmware_bridge.bridge", "--port", path, "--robot", "quadruped"]
    cmd += ["--calib", str(CALIB), "--bus", base, "--log", str(log_path)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    ep = endpoints_from_base(base)
    ctx = BusContext()
    try:
        obs = Receiver(make_sub(ctx, ep.obs, topics=[obs_topic("quadruped")]))
        assert wait_for(lambda: obs.recv(100), timeout_s=10.0, what="joint_state from the process")
        pub = Sender(make_pub(ctx, ep.command, bind=False), "policy", single_part=True)
        target = CAL.arrays.default_pos_rad.copy()

        def sent_once() -> bool:
            pub.send(b"", JointTarget(robot="quadruped", q_target_rad=target))
            time.sleep(0.05)
            return bool(fw.commands)

        wait_for(sent_once, what="a command at the firmware")
        wait_for(lambda: log_path.exists() and log_path.read_text().strip(), what="the JSONL log")
        record = json.loads(log_path.read_text().splitlines()[0])
        assert record["target_ticks"] == list(fw.commands[0][1].target_ticks)
        req = Requester(ctx, ep.control(50), "operator", timeout_s=2.0, attempts=1)
        assert req.request("stop").ok
        req.close()
        out, _ = proc.communicate(timeout=10)
        assert proc.returncode == 0, out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        ctx.close()
        fw.stop()
        for fd in (master, slave):
            with contextlib.suppress(OSError):
                os.close(fd)
        shutil.rmtree(ipc_dir, ignore_errors=True)
