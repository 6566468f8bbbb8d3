"""Bus benchmarks.

Part (a), ``latency``: round-trip time of a 256-byte observation (64 float32) through our bus --
stamp + encode + send, receive + decode + validate in an echo thread, which builds a *new*
Observation from the received one and sends it back, receive + decode in the main thread -- versus
a raw pyzmq ping-pong of the same 256 bytes. Both use the same socket type (PAIR), the same socket
options (made by the same ``BusContext.socket``), the same transports (inproc, ipc, tcp loopback)
and the same thread layout (main thread + echo thread, one process). Round trips are timed one by
one with ``perf_counter_ns``; raw and bus runs are interleaved in blocks so that drift in machine
load hits both alike. Overhead = bus / raw at p50 and p99; the target is <= 1.3x.

More parts (rollout throughput versus SubprocVecEnv) are added as functions next to
``bench_latency`` and registered in ``PARTS``.

Usage: python bench/bus.py [--round-trips 20000] [--warmup 2000] [--out bench/results/bus_latency.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import zmq

from robot_rl.bus.messages import Observation
from robot_rl.bus.sockets import BusContext, Receiver, Sender, Socket, make_pair

OBS_DIM = 64  # 64 float32 = 256 bytes
BLOCKS = 4  # raw and bus alternate in this many blocks per transport
TRANSPORTS = ("inproc", "ipc", "tcp")
ECHO_POLL_MS = 100  # the echo thread wakes this often to check its stop flag


def machine_info() -> dict[str, Any]:
    """CPU model, core count, Python, pyzmq and libzmq versions."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    import msgspec

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "pyzmq": zmq.pyzmq_version(),
        "libzmq": zmq.zmq_version(),
        "msgspec": msgspec.__version__,
        "numpy": np.__version__,
    }


def _endpoint(transport: str, name: str, tmp: Path) -> str:
    if transport == "inproc":
        return f"inproc://bench-{name}"
    if transport == "ipc":
        return f"ipc://{tmp}/{name}"
    return "tcp://127.0.0.1:*"


def _pair(ctx: BusContext, transport: str, name: str, tmp: Path) -> tuple[Socket, Socket]:
    """(main, echo) PAIR sockets connected over ``transport``."""
    a = make_pair(ctx, _endpoint(transport, name, tmp), bind=True)
    b = make_pair(ctx, a.last_endpoint.decode(), bind=False)
    return a, b


def _raw_echo(sock: Socket, stop: threading.Event) -> None:
    sock.rcvtimeo = ECHO_POLL_MS
    while not stop.is_set():
        try:
            data = sock.recv()
        except zmq.Again:
            continue
        sock.send(data)


def _bus_echo(sock: Socket, stop: threading.Event) -> None:
    rx = Receiver(sock)
    tx = Sender(sock, "echo")
    while not stop.is_set():
        got = rx.recv(ECHO_POLL_MS)
        if got is None:
            continue
        msg = got.msg
        assert isinstance(msg, Observation)
        tx.send(got.topic, Observation(robot=msg.robot, obs=msg.obs), t_src_ns=got.env.t_src_ns)


def _time_raw(sock: Socket, n: int) -> list[int]:
    payload = np.arange(OBS_DIM, dtype=np.float32).tobytes()
    sock.rcvtimeo = 5000
    out = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        sock.send(payload)
        reply = sock.recv()
        out.append(time.perf_counter_ns() - t0)
    assert reply == payload
    return out


def _time_bus(sock: Socket, n: int) -> list[int]:
    tx = Sender(sock, "bench")
    rx = Receiver(sock)
    obs = np.arange(OBS_DIM, dtype=np.float32)
    topic = b"obs/bench"
    out = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        tx.send(topic, Observation(robot="bench", obs=obs))
        got = rx.recv(5000)
        out.append(time.perf_counter_ns() - t0)
        if got is None:
            raise RuntimeError("echo timed out")
    assert got is not None and isinstance(got.msg, Observation)
    assert np.array_equal(got.msg.obs, obs) and rx.counters.get("received/ok") == n
    return out


def _run(
    transport: str,
    name: str,
    echo: Callable[[Socket, threading.Event], None],
    timed: Callable[[Socket, int], list[int]],
    n: int,
    warmup: int,
    tmp: Path,
) -> list[int]:
    with BusContext() as ctx:
        main, other = _pair(ctx, transport, name, tmp)
        stop = threading.Event()
        thread = threading.Thread(target=echo, args=(other, stop), daemon=True)
        thread.start()
        try:
            timed(main, warmup)
            return timed(main, n)
        finally:
            stop.set()
            thread.join(timeout=5)


def _stats(samples_ns: list[int]) -> dict[str, float]:
    us = np.asarray(samples_ns, dtype=np.float64) / 1000.0
    return {
        "p50_us": float(np.percentile(us, 50)),
        "p99_us": float(np.percentile(us, 99)),
        "mean_us": float(us.mean()),
        "n": len(samples_ns),
    }


def bench_latency(round_trips: int, warmup: int) -> dict[str, Any]:
    """Part (a): per transport, raw and bus round-trip p50/p99 and the bus/raw ratios."""
    results: dict[str, Any] = {}
    per_block = max(1, round_trips // BLOCKS)
    with tempfile.TemporaryDirectory(prefix="rrl-bench-") as tmp_s:
        tmp = Path(tmp_s)
        for transport in TRANSPORTS:
            raw: list[int] = []
            bus: list[int] = []
            for block in range(BLOCKS):
                raw += _run(transport, f"raw{block}", _raw_echo, _time_raw, per_block, warmup, tmp)
                bus += _run(transport, f"bus{block}", _bus_echo, _time_bus, per_block, warmup, tmp)
            r, b = _stats(raw), _stats(bus)
            results[transport] = {
                "raw": r,
                "bus": b,
                "ratio_p50": b["p50_us"] / r["p50_us"],
                "ratio_p99": b["p99_us"] / r["p99_us"],
            }
    return results


def print_latency(results: dict[str, Any]) -> None:
    cols = ("raw p50", "raw p99", "bus p50", "bus p99")
    print(f"{'transport':<10}" + "".join(f"{c:>10}" for c in cols) + f"{'x p50':>8}{'x p99':>8}")
    for transport, r in results.items():
        print(
            f"{transport:<10}{r['raw']['p50_us']:>10.1f}{r['raw']['p99_us']:>10.1f}"
            f"{r['bus']['p50_us']:>10.1f}{r['bus']['p99_us']:>10.1f}"
            f"{r['ratio_p50']:>8.2f}{r['ratio_p99']:>8.2f}"
        )
    print("(microseconds per round trip; x = bus / raw; target x <= 1.3)")


PARTS: dict[str, str] = {"latency": "bus_latency.json"}
"""Benchmark part -> result file under bench/results/."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--round-trips", type=int, default=20_000)
    parser.add_argument("--warmup", type=int, default=2_000)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / PARTS["latency"])
    args = parser.parse_args(argv)
    machine = machine_info()
    print(f"machine: {machine}")
    results = bench_latency(args.round_trips, args.warmup)
    print_latency(results)
    payload = {
        "benchmark": "bus round-trip latency, 256-byte observation (64 float32), PAIR sockets",
        "round_trips": args.round_trips,
        "warmup": args.warmup,
        "machine": machine,
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
