"""Firmware-bridge benchmark: command-to-state round trip at 500 Hz, next to raw references, in one run.

Setup (all on this machine, private ipc directory under a tempdir):

- emulator: ``python -m firmware_bridge.emulator --robot quadruped --profile nominal``, started by this script
  as a child process. The emulated firmware answers every accepted JOINT_COMMAND with one SENSOR_STATE as
  soon as it has applied it (docs/serial-protocol.md section 6.3), besides its 10 ms periodic stream. The
  ``nominal`` profile has no command latency and no action noise; the emulator's default hidden ``real``
  profile delays every command by one 20 ms control period (``latency_steps = 1``), so ``last_cmd_seq``
  would show a command 20 ms after it arrived whatever the bridge does. The stock defaults are measured
  too, in the same run.
- bridge: ``python -m firmware_bridge.bridge --port PTY --robot quadruped --calib calib/quadruped.toml
  --bus ipc://TMP/rrl-bench``, unmodified.
- this process: PUB connected to the bridge's CONFLATE command link, SUB on ``obs/quadruped`` and
  ``command_sent/quadruped``. It sends one ``JointTarget`` every 2 ms (500 Hz), each one distinct (joint 0
  moves by 1 microradian per command, far below the 0.3 rad step clamp, so none is clipped).

Round trips, per command i (``time.perf_counter_ns`` in this process; t0 taken just before encoding):

- ``command_sent``: t0 -> receipt of the ``CommandSent`` whose ``q_rad[0]`` equals command i's. Covers:
  encode, ipc to the bridge, decode, clamp, JOINT_COMMAND framing, the write into the pty, CommandSent
  encode, ipc back, decode. The firmware is not in this path.
- ``state`` (the headline number): t0 -> receipt of the first ``JointState`` whose ``last_cmd_seq`` is the
  firmware sequence number of command i (taken from its CommandSent) or of a later command (a command that
  is superseded before any state reports it counts as done when a state shows the newer one). A state only
  carries that number once the firmware has received and applied the command, so it was emitted after the
  command arrived: an earlier periodic state can never be matched. Covers the ``command_sent`` path minus
  the CommandSent return, plus: the pty to the emulator, the emulator reading the frame, applying it and
  building its SENSOR_STATE reply, the pty back, the bridge decoding, calibrating and publishing the
  JointState, ipc, decode here. ``state_exact_seq`` counts the commands whose own seq was reported.
  Commands the CONFLATE link dropped (a newer target arrived before the bridge read it) have no CommandSent
  and are counted, not timed. The firmware times (``t_us``) of all JointStates received are checked to
  increase strictly (``states_t_us_not_increasing``).

Raw references, same run, same 500 Hz pacing, same machine load:

- ``pty_echo``: a child process echoes every byte it reads on a pty master back to it; this process opens
  the slave with pyserial (as the bridge does) and times write + read of one JOINT_COMMAND-frame-sized
  payload.
- ``zmq_ipc``: a child process echoes on a PAIR socket bound at ipc; this process times send + recv of the
  same payload with raw pyzmq (no bus codec).

Bridge CPU: utime + stime from ``/proc/<pid>/stat`` of the bridge process over the measured window, as a
percentage of one core; per thread too (``/proc/<pid>/task/*/stat``: the Python main thread and libzmq's
I/O thread). The emulator's and this process's CPU are reported too, and ``other_processes``: what the rest
of the machine ran in the same window (``/proc/stat`` busy time minus those three), because a shared
machine changes both the latency tail and the CPU figures.

Stock emulator phase (``--stock-seconds``, default 6; 0 skips it): the same measurement with the unmodified
``python -m firmware_bridge.emulator --robot quadruped`` (real.toml's 20 ms command latency), for the
command -> state time a real-firmware-like setup gives. ``--sensor-period-s`` changes the main phase's
periodic stream (default 0.01 s, the emulator's own; 0.002 streams a state at every physics step on top of
the replies). ``--bridge-profile FILE`` runs the bridge under cProfile (stopped with SIGINT so the profile
is written); its CPU figures are then inflated.

Usage: python bench/bridge.py [--seconds 12] [--ref-seconds 4] [--warmup-s 1.5] [--sensor-period-s 0.01]
       [--profile nominal] [--stock-seconds 6] [--bridge-profile FILE] [--out bench/results/bridge.json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import pty
import select
import signal
import subprocess
import sys
import tempfile
import time
import tty
from pathlib import Path
from typing import Any

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import zmq
from machine import machine_info  # bench/machine.py: the script's own folder is on sys.path

REPO = Path(__file__).resolve().parents[1]
ROBOT = "quadruped"
CALIB = REPO / "calib" / f"{ROBOT}.toml"
RATE_HZ = 500.0
TARGET_P99_MS = 2.0
TARGET_CPU_PCT = 25.0
CLK_TCK = os.sysconf("SC_CLK_TCK")


# ------------------------------------------------------------------------------------------ children


def child_pty_echo(argv: list[str]) -> int:
    """Open a pty, print the slave path, echo everything read on the master back, until SIGTERM."""
    stop = False

    def on_term(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    master, slave = pty.openpty()
    tty.setraw(slave)
    print(os.ttyname(slave), flush=True)
    while not stop:
        ready, _, _ = select.select([master], [], [], 0.1)
        if ready:
            try:
                data = os.read(master, 4096)
            except OSError:
                continue
            view = memoryview(data)
            while view:
                view = view[os.write(master, view) :]
    return 0


def child_zmq_echo(argv: list[str]) -> int:
    """PAIR bound at argv[0]; echo every message back until the message b'' arrives."""
    ctx = zmq.Context()
    sock = ctx.socket(zmq.PAIR)
    sock.linger = 0
    sock.bind(argv[0])
    print("ready", flush=True)
    while True:
        msg = sock.recv(copy=False)
        if len(msg) == 0:
            break
        sock.send(msg, copy=False)
    sock.close()
    ctx.term()
    return 0


# ------------------------------------------------------------------------------------------ helpers


def loadavg() -> list[float]:
    with open("/proc/loadavg") as f:
        return [float(x) for x in f.read().split()[:3]]


def machine_busy_s() -> float:
    """CPU seconds all cores ran something since boot (/proc/stat: user, nice, system, irq, softirq)."""
    with open("/proc/stat") as f:
        ticks = [int(x) for x in f.readline().split()[1:]]
    return sum(ticks[i] for i in (0, 1, 2, 5, 6)) / CLK_TCK


def cpu_s(pid: int) -> float:
    """utime + stime of `pid` in seconds (fields 14 and 15 of /proc/<pid>/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def thread_cpu_s(pid: int) -> dict[str, float]:
    """utime + stime in seconds per thread name of `pid` (threads of the same name summed)."""
    out: dict[str, float] = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                raw = f.read()
        except FileNotFoundError:  # the thread ended meanwhile
            continue
        name = raw[raw.index("(") + 1 : raw.rindex(")")]
        fields = raw.rsplit(")", 1)[1].split()
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / CLK_TCK
    return out


def stats_ms(samples_ns: list[int]) -> dict[str, float]:
    if not samples_ns:
        return {"n": 0}
    a = np.asarray(samples_ns, dtype=np.float64) / 1e6
    return {
        "n": int(a.size),
        "p50_ms": float(np.percentile(a, 50)),
        "p90_ms": float(np.percentile(a, 90)),
        "p99_ms": float(np.percentile(a, 99)),
        "max_ms": float(a.max()),
        "mean_ms": float(a.mean()),
    }


def spawn(args: list[str], log_path: Path | None = None) -> subprocess.Popen[str]:
    out = open(log_path, "w") if log_path else subprocess.DEVNULL  # noqa: SIM115
    return subprocess.Popen(
        args,
        stdout=subprocess.PIPE if log_path is None else out,
        stderr=subprocess.STDOUT if log_path else None,
        text=True,
        cwd=REPO,
    )


def first_line(proc: subprocess.Popen[str], timeout_s: float, what: str) -> str:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout_s)
    if not ready:
        raise RuntimeError(f"{what}: no output within {timeout_s} s")
    line = proc.stdout.readline().strip()
    if not line:
        raise RuntimeError(f"{what}: exited (rc={proc.poll()}) before printing its first line")
    return line


def stop_proc(proc: subprocess.Popen[str] | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(3)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(3)


def frame_payload() -> bytes:
    """A JOINT_COMMAND frame of the quadruped as the bridge writes it (the size both references use)."""
    from firmware_bridge.calibration import load_calibration
    from firmware_bridge.protocol import ControlMode, JointCommand, encode_message

    n = load_calibration(CALIB, expected_robot=ROBOT).n_joints
    cmd = JointCommand(
        mode=ControlMode.POSITION_PD,
        target_ticks=(12345,) * n,
        kp=(1000,) * n,
        kd=(100,) * n,
        current_ma=(0,) * n,
    )
    return encode_message(cmd, 1234)


def paced(seconds: float, fn: Any) -> list[int]:
    """Call fn() (one timed round trip, returns ns) every 2 ms for `seconds`; sleep between calls."""
    period = 1.0 / RATE_HZ
    out: list[int] = []
    next_t = time.perf_counter()
    end = next_t + seconds
    while next_t < end:
        delay = next_t - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        out.append(fn())
        next_t += period
        if time.perf_counter() - next_t > period:
            next_t = time.perf_counter()
    return out


# ------------------------------------------------------------------------------------ raw references


def bench_pty_echo(seconds: float, payload: bytes) -> dict[str, Any]:
    import serial

    proc = spawn([sys.executable, __file__, "_pty_echo"])
    try:
        path = first_line(proc, 10.0, "pty echo")
        port = serial.Serial(path, baudrate=115200, timeout=1.0)
        n = len(payload)

        def one() -> int:
            t0 = time.perf_counter_ns()
            port.write(payload)
            got = port.read(n)
            t1 = time.perf_counter_ns()
            if len(got) != n:
                raise RuntimeError(f"pty echo: got {len(got)} of {n} bytes")
            return t1 - t0

        for _ in range(200):
            one()
        samples = paced(seconds, one)
        port.close()
    finally:
        stop_proc(proc)
    return {"payload_bytes": len(payload), **stats_ms(samples)}


def bench_zmq_ipc(seconds: float, payload: bytes, tmp: Path) -> dict[str, Any]:
    endpoint = f"ipc://{tmp}/raw-echo"
    proc = spawn([sys.executable, __file__, "_zmq_echo", endpoint])
    ctx = zmq.Context()
    sock = ctx.socket(zmq.PAIR)
    sock.linger = 0
    try:
        first_line(proc, 10.0, "zmq echo")
        sock.connect(endpoint)
        sock.rcvtimeo = 1000

        def one() -> int:
            t0 = time.perf_counter_ns()
            sock.send(payload)
            sock.recv()
            return time.perf_counter_ns() - t0

        for _ in range(200):
            one()
        samples = paced(seconds, one)
        sock.send(b"")
        proc.wait(3)
    finally:
        sock.close()
        ctx.term()
        stop_proc(proc)
    return {"payload_bytes": len(payload), **stats_ms(samples)}


# ------------------------------------------------------------------------------------ bridge round trip


def bench_bridge(
    args: argparse.Namespace,
    tmp: Path,
    *,
    emulator_cmd: list[str],
    emulator_desc: dict[str, Any],
    seconds: float,
    profile_out: Path | None = None,
) -> dict[str, Any]:
    """The bridge round trips and CPU use with the emulator started by `emulator_cmd`."""
    from firmware_bridge.bridge import command_sent_topic
    from robot_rl.bus.codec import encode_single
    from robot_rl.bus.messages import CommandSent, JointState, JointTarget
    from robot_rl.bus.sockets import BusContext, Receiver, Sender, make_pub, make_sub
    from robot_rl.bus.topics import endpoints_from_base, obs_topic

    base = f"ipc://{tmp}/rrl-bench"
    ep = endpoints_from_base(base)
    emu = bridge = None
    ctx = BusContext()
    try:
        emu = spawn(emulator_cmd)
        pty_path = first_line(emu, 60.0, "emulator")
        bridge_log = tmp / "bridge.log"
        prof = ["-m", "cProfile", "-o", str(profile_out)] if profile_out else []
        bridge = spawn(
            [
                sys.executable,
                *prof,
                "-m",
                "firmware_bridge.bridge",
                "--port",
                pty_path,
                "--robot",
                ROBOT,
                "--calib",
                str(CALIB),
                "--bus",
                base,
            ],
            log_path=bridge_log,
        )
        cmd = Sender(make_pub(ctx, ep.command, bind=False), "bench", single_part=True)
        sub = Receiver(
            make_sub(ctx, ep.obs, topics=(obs_topic(ROBOT), command_sent_topic(ROBOT)), rcvhwm=10_000)
        )
        deadline = time.monotonic() + 30.0
        first: JointState | None = None
        while first is None:
            if time.monotonic() > deadline or bridge.poll() is not None:
                raise RuntimeError(f"no JointState from the bridge; log:\n{bridge_log.read_text()[-2000:]}")
            d = sub.recv(200)
            if d is not None and isinstance(d.msg, JointState):
                first = d.msg
        q_base = first.joint_pos_rad.copy()
        target_topic = b"cmd/" + ROBOT.encode()
        topic_cs = command_sent_topic(ROBOT)

        period_ns = int(1e9 / RATE_HZ)
        n_warm = int(args.warmup_s * RATE_HZ)
        n_total = n_warm + int(seconds * RATE_HZ)
        t_send = [0] * n_total
        t_cs = [0] * n_total
        t_state = [0] * n_total
        exact = [False] * n_total
        key_to_i: dict[float, int] = {}
        seq_to_i: dict[int, int] = {}
        pending: list[int] = []  # indices with a CommandSent and no state yet, in send order
        late_sends = 0
        states_seen = 0
        t_us_not_increasing = 0
        last_t_us = -1

        def handle(now: int) -> None:
            nonlocal states_seen, t_us_not_increasing, last_t_us
            while True:
                d = sub.recv(0)
                if d is None:
                    return
                m = d.msg
                if d.topic == topic_cs and isinstance(m, CommandSent):
                    i = key_to_i.pop(float(m.q_rad[0]), -1)
                    if i >= 0:
                        t_cs[i] = now
                        seq_to_i[m.seq] = i
                        pending.append(i)
                elif isinstance(m, JointState):
                    states_seen += 1
                    if last_t_us >= 0 and not 0 < (m.t_us - last_t_us) % (1 << 32) < (1 << 31):
                        t_us_not_increasing += 1
                    last_t_us = m.t_us
                    j = seq_to_i.get(m.last_cmd_seq, -1)
                    if j < 0 or not pending or pending[0] > j:
                        continue
                    k = 0
                    while k < len(pending) and pending[k] <= j:
                        t_state[pending[k]] = now
                        k += 1
                    exact[j] = t_state[j] == now
                    del pending[:k]
                now = time.perf_counter_ns()

        cpu0: dict[str, float] = {}
        t_win0 = 0.0
        next_t = time.perf_counter_ns()
        for i in range(n_total):
            if i == n_warm:
                threads0 = thread_cpu_s(bridge.pid)
                cpu0 = {"bridge": cpu_s(bridge.pid), "emulator": cpu_s(emu.pid), "bench": time.process_time()}
                busy0 = machine_busy_s()
                t_win0 = time.monotonic()
            while True:
                now = time.perf_counter_ns()
                remaining = next_t - now
                if remaining <= 0:
                    break
                if sub.sock.poll(math.ceil(remaining / 1e6)):
                    handle(time.perf_counter_ns())
            q = q_base.copy()
            q[0] += 1e-6 * (i + 1)
            key_to_i[float(q[0])] = i
            t0 = time.perf_counter_ns()
            cmd.send(target_topic, JointTarget(robot=ROBOT, q_target_rad=q))
            t_send[i] = t0
            next_t += period_ns
            if time.perf_counter_ns() - next_t > period_ns:
                late_sends += 1
                next_t = time.perf_counter_ns()
        window_s = time.monotonic() - t_win0
        threads1 = thread_cpu_s(bridge.pid)
        cpu1 = {"bridge": cpu_s(bridge.pid), "emulator": cpu_s(emu.pid), "bench": time.process_time()}
        busy1 = machine_busy_s()
        end = time.perf_counter_ns() + 100_000_000
        while time.perf_counter_ns() < end:
            if sub.sock.poll(10):
                handle(time.perf_counter_ns())
        cpu_pct = {k: 100.0 * (cpu1[k] - cpu0[k]) / window_s for k in cpu1}
        # What the rest of the machine ran meanwhile (other users of these cores), in % of one core.
        cpu_pct["other_processes"] = 100.0 * (busy1 - busy0) / window_s - sum(cpu_pct.values())
        thread_pct = {k: 100.0 * (v - threads0.get(k, 0.0)) / window_s for k, v in threads1.items()}
        meas = range(n_warm, n_total)
        cs = [t_cs[i] - t_send[i] for i in meas if t_cs[i]]
        st = [t_state[i] - t_send[i] for i in meas if t_state[i]]
        over = sum(1 for x in st if x > TARGET_P99_MS * 1e6)
        no_cs = sum(1 for i in meas if not t_cs[i])
        no_state = sum(1 for i in meas if t_cs[i] and not t_state[i])
        sample = JointTarget(robot=ROBOT, q_target_rad=q_base)
        encoded = encode_single(target_topic, cmd.stamp(target_topic), sample)
        return {
            "commands": len(meas),
            "window_s": window_s,
            "late_sends": late_sends,
            "dropped_by_conflate": no_cs,
            "state_never_seen": no_state,
            "state_exact_seq": sum(1 for i in meas if exact[i]),
            "joint_states_received": states_seen,
            "states_t_us_not_increasing": t_us_not_increasing,
            "joint_target_bytes": len(encoded),
            "command_sent": stats_ms(cs),
            "state": {**stats_ms(st), "fraction_over_target": over / max(1, len(st))},
            "cpu_pct_of_one_core": cpu_pct,
            "bridge_threads_cpu_pct_of_one_core": thread_pct,
            "emulator": emulator_desc,
        }
    finally:
        if profile_out and bridge is not None and bridge.poll() is None:
            bridge.send_signal(signal.SIGINT)  # the bridge stops cleanly, so cProfile writes its file
            with contextlib.suppress(subprocess.TimeoutExpired):
                bridge.wait(10)
        stop_proc(bridge)
        stop_proc(emu)
        ctx.close()


# ------------------------------------------------------------------------------------------ main


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1].startswith("_"):
        child = {"_pty_echo": child_pty_echo, "_zmq_echo": child_zmq_echo}
        return child[sys.argv[1]](sys.argv[2:])
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=12.0, help="measured window of the bridge round trip")
    p.add_argument("--ref-seconds", type=float, default=4.0, help="measured window of each raw reference")
    p.add_argument("--warmup-s", type=float, default=1.5, help="bridge commands sent before measuring")
    p.add_argument(
        "--sensor-period-s", type=float, default=0.01, help="period of the emulator's SENSOR_STATE stream"
    )
    p.add_argument("--profile", default="nominal", help="emulator dynamics profile (name or TOML path)")
    p.add_argument(
        "--stock-seconds",
        type=float,
        default=6.0,
        help="also measure with the stock emulator (real.toml: 20 ms command latency); 0 skips it",
    )
    p.add_argument("--bridge-profile", type=Path, default=None, help="run the bridge under cProfile to here")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "bridge.json")
    args = p.parse_args()

    info = {
        **machine_info("pyzmq", "msgspec", "numpy", "pyserial", "google-crc32c"),
        "libzmq": zmq.zmq_version(),
    }
    load_before = loadavg()
    payload = frame_payload()
    with tempfile.TemporaryDirectory(prefix="rrl-bench-bridge-") as tmp_s:
        tmp = Path(tmp_s)
        pty_res = bench_pty_echo(args.ref_seconds, payload)
        zmq_res = bench_zmq_ipc(args.ref_seconds, payload, tmp)
        fast_cmd = [sys.executable, "-m", "firmware_bridge.emulator", "--robot", ROBOT]
        fast_cmd += ["--sensor-period-s", str(args.sensor_period_s), "--profile", args.profile]
        bridge_res = bench_bridge(
            args,
            tmp,
            emulator_cmd=fast_cmd,
            emulator_desc={
                "command": "python -m firmware_bridge.emulator --sensor-period-s S --profile P",
                "sensor_period_s": args.sensor_period_s,
                "replies_to_commands": True,
                "profile": args.profile,
            },
            seconds=args.seconds,
            profile_out=args.bridge_profile,
        )
        stock_res = None
        if args.stock_seconds > 0:
            stock_res = bench_bridge(
                args,
                tmp,
                emulator_cmd=[sys.executable, "-m", "firmware_bridge.emulator", "--robot", ROBOT],
                emulator_desc={
                    "command": f"python -m firmware_bridge.emulator --robot {ROBOT}",
                    "sensor_period_s": 0.01,
                    "replies_to_commands": True,
                    "profile": "firmware_bridge/emulator/profiles/real.toml (latency_steps = 1)",
                },
                seconds=args.stock_seconds,
            )
    load_after = loadavg()

    cpu = bridge_res["cpu_pct_of_one_core"]
    p99 = bridge_res["state"].get("p99_ms", float("inf"))
    result: dict[str, Any] = {
        "benchmark": "bridge",
        "command": "python " + " ".join([str(Path(sys.argv[0])), *sys.argv[1:]]),
        "machine": info,
        "loadavg_before": load_before,
        "loadavg_after": load_after,
        "rate_hz": RATE_HZ,
        "targets": {"state_p99_ms_max": TARGET_P99_MS, "bridge_cpu_pct_max": TARGET_CPU_PCT},
        "met": {"state_p99": p99 <= TARGET_P99_MS, "bridge_cpu": cpu["bridge"] <= TARGET_CPU_PCT},
        "pty_echo": pty_res,
        "zmq_ipc": zmq_res,
        "bridge": bridge_res,
        "bridge_stock_emulator": stock_res,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")

    print(f"machine: {info['cpu']}, {info['cores']} cores, kernel {info['kernel']}")
    print(
        f"python {info['python']}, pyzmq {info['pyzmq']} (libzmq {info['libzmq']}), "
        f"pyserial {info['pyserial']}, msgspec {info['msgspec']}, numpy {info['numpy']}"
    )
    print(f"load average before {load_before}, after {load_after}")
    print(
        f"500 Hz; emulator replies to each command, periodic sensor period "
        f"{args.sensor_period_s * 1e3:g} ms, profile {args.profile}"
    )
    print(f"{'round trip':<42} {'n':>6} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    rows = [
        (f"raw pty echo ({pty_res['payload_bytes']} B, pyserial)", pty_res),
        (f"raw pyzmq ipc PAIR ({zmq_res['payload_bytes']} B)", zmq_res),
        ("bus+bridge: command -> CommandSent", bridge_res["command_sent"]),
        ("bus+bridge+pty+emulator: command -> state", bridge_res["state"]),
    ]
    if stock_res is not None:
        rows += [
            ("stock emulator: command -> CommandSent", stock_res["command_sent"]),
            ("stock emulator: command -> state", stock_res["state"]),
        ]
    for name, r in rows:
        if r.get("n"):
            print(
                f"{name:<42} {r['n']:>6} {r['p50_ms']:>8.3f} {r['p90_ms']:>8.3f} "
                f"{r['p99_ms']:>8.3f} {r['max_ms']:>8.3f}"
            )
        else:
            print(f"{name:<42} {0:>6} (no samples)")
    print(
        f"commands {bridge_res['commands']}, dropped by CONFLATE {bridge_res['dropped_by_conflate']}, "
        f"state never seen {bridge_res['state_never_seen']}, late sends {bridge_res['late_sends']}, "
        f"JointStates {bridge_res['joint_states_received']} "
        f"(t_us not increasing: {bridge_res['states_t_us_not_increasing']})"
    )
    print(
        "CPU % of one core: "
        + ", ".join(f"{k} {v:.1f}" for k, v in cpu.items())
        + f" (window {bridge_res['window_s']:.1f} s); bridge threads: "
        + ", ".join(f"{k} {v:.1f}" for k, v in bridge_res["bridge_threads_cpu_pct_of_one_core"].items())
    )
    if stock_res is not None:
        print(
            "stock emulator (20 ms command latency), CPU % of one core: "
            + ", ".join(f"{k} {v:.1f}" for k, v in stock_res["cpu_pct_of_one_core"].items())
        )
    ok = {True: "met", False: "MISSED"}
    over = 100.0 * bridge_res["state"].get("fraction_over_target", 0.0)
    print(
        f"target state p99 <= {TARGET_P99_MS} ms: {p99:.3f} ms -> {ok[result['met']['state_p99']]} "
        f"({over:.2f}% of round trips over {TARGET_P99_MS} ms)"
    )
    print(
        f"target bridge CPU <= {TARGET_CPU_PCT}% of one core: {cpu['bridge']:.1f}% -> "
        f"{ok[result['met']['bridge_cpu']]}"
    )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
