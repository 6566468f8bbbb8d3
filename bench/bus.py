"""Bus benchmarks.

Part (a), ``latency``: round-trip time of a 256-byte observation (64 float32) through our bus --
stamp + encode + send, receive + decode + validate in an echo thread, which builds a *new*
Observation from the received one and sends it back, receive + decode in the main thread -- versus
a raw pyzmq ping-pong of the same 256 bytes. Both use the same socket type (PAIR), the same socket
options (made by the same ``BusContext.socket``), the same transports (inproc, ipc, tcp loopback)
and the same thread layout (main thread + echo thread, one process). Round trips are timed one by
one with ``perf_counter_ns``; raw and bus runs are interleaved in blocks so that drift in machine
load hits both alike. Overhead = bus / raw at p50 and p99; the target is <= 1.3x.

Part (b), ``rollout``: environment steps per second *reaching the learner* (counted by a
``RolloutReceiver`` in this process, which also copies every transition into a replay buffer), for 1
and 2 sim worker processes (``python -m sim.worker``), each running ``--envs-per-worker`` quadruped
MuJoCo envs and acting with a 256-256 MLP in numpy; versus Stable-Baselines3's ``SubprocVecEnv``
with the same total number of envs (one process per env, as SubprocVecEnv works) stepped by this
process, which runs the same 256-256 network in torch (``torch.set_num_threads(1)``, an
``nn.Sequential`` forward + tanh + Gaussian noise, no grad); and the in-process rate: one process,
``--envs-per-worker`` envs, the numpy policy, no bus (the per-core reference for the "80% of the
in-process rate per core" target), plus, for 2 workers, two such processes at once (what two
simulator processes can do on this machine with no bus at all). Each rate is measured over
``--seconds`` after a warm-up and is the best of ``--repeats`` runs (other load only slows a run).

Usage: python bench/bus.py [--part latency|rollout|all] [--round-trips 20000] [--warmup 2000]
       [--seconds 8] [--envs-per-worker 8] [--repeats 2] [--out-dir bench/results]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

# One BLAS thread in every process here and in the workers: the MLP calls are small (N x 256), and
# on a 2-core machine extra BLAS threads only fight the simulators for the cores. Must be set before
# numpy loads OpenBLAS.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import numpy as np
import zmq
from machine import machine_info  # bench/machine.py: the script's own folder is on sys.path

from robot_rl.bus.messages import Observation
from robot_rl.bus.sockets import BusContext, Receiver, Sender, Socket, make_pair

OBS_DIM = 64  # 64 float32 = 256 bytes
BLOCKS = 4  # raw and bus alternate in this many blocks per transport
TRANSPORTS = ("inproc", "ipc", "tcp")
ECHO_POLL_MS = 100  # the echo thread wakes this often to check its stop flag


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


# ------------------------------------------------------------------------------ part (b): rollouts

ROBOT, BACKEND = "quadruped", "mujoco"
HIDDEN = (256, 256)
ROOT = Path(__file__).resolve().parents[1]


def _policy_weights(seed: int = 0) -> Any:
    import sim
    from robot_rl.nets.numpy_policy import random_init

    env = sim.make_env(ROBOT, BACKEND)
    obs_dim, act_dim = env.observation_space.shape[0], env.action_space.shape[0]  # type: ignore[index]
    env.close()
    return random_init(obs_dim, act_dim, HIDDEN, seed=seed, policy_version=1)


def bench_in_process(n_envs: int, seconds: float, warmup_s: float) -> dict[str, Any]:
    """One process, ``n_envs`` envs, the numpy policy, auto-reset; no bus, no chunk building."""
    import sim
    from robot_rl.nets.numpy_policy import NumpyPolicy

    policy = NumpyPolicy.from_weights(_policy_weights())
    envs = [sim.make_env(ROBOT, BACKEND) for _ in range(n_envs)]
    obs = np.stack([e.reset(seed=i)[0] for i, e in enumerate(envs)]).astype(np.float32)
    rng = np.random.default_rng(0)

    def run(duration: float) -> tuple[int, float]:
        steps, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < duration:
            action = policy.act(obs, rng)
            for i, env in enumerate(envs):
                o, _, terminated, truncated, _ = env.step(action[i])
                obs[i] = env.reset()[0] if terminated or truncated else o
            steps += n_envs
        return steps, time.perf_counter() - t0

    run(warmup_s)
    steps, dt = run(seconds)
    for env in envs:
        env.close()
    return {"envs": n_envs, "env_steps_per_s": steps / dt, "seconds": dt}


def bench_in_process_parallel(n_procs: int, n_envs: int, seconds: float, warmup_s: float) -> dict[str, Any]:
    """``n_procs`` copies of :func:`bench_in_process` at once, in separate processes (no bus): the
    most that ``n_procs`` simulator processes can step on this machine, whatever the bus does."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(n_procs, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(bench_in_process, n_envs, seconds, warmup_s) for _ in range(n_procs)]
        rates = [f.result()["env_steps_per_s"] for f in futures]
    return {
        "processes": n_procs,
        "envs": n_procs * n_envs,
        "env_steps_per_s": sum(rates),
        "per_process": rates,
    }


def bench_bus_rollout(
    n_workers: int, envs_per_worker: int, seconds: float, warmup_s: float
) -> dict[str, Any]:
    """Sim worker processes -> PUSH/PULL over ipc -> RolloutReceiver + replay in this process."""
    from robot_rl.bus.topics import WEIGHTS, endpoints_from_base
    from robot_rl.data.replay import SourceMixer
    from robot_rl.runners.receiver import RolloutReceiver
    from robot_rl.schema import Source

    weights = _policy_weights()
    obs_dim = weights.obs_mean.shape[0]
    act_dim = weights.params["mean.bias"].shape[0]
    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory(prefix="rrl-bench-") as tmp, BusContext() as ctx:
        ep = endpoints_from_base(f"ipc://{tmp}/rrl-b")
        weights_tx = Sender(make_pub_weights(ctx, ep.weights), "bench-learner")
        mixer = SourceMixer(obs_dim, act_dim, {Source.SIM: 1_000_000})
        rx = RolloutReceiver(ctx, ep, mixer, robot=ROBOT, expected_obs_dim=obs_dim, expected_act_dim=act_dim)
        try:
            for w in range(1, n_workers + 1):
                procs.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "sim.worker", "--connect", f"ipc://{tmp}/rrl-b",
                         "--robot", ROBOT, "--backend", BACKEND, "--num-envs", str(envs_per_worker),
                         "--worker-id", f"sim-{w}", "--seed", str(w)],
                        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                    )
                )  # fmt: skip
            deadline = time.monotonic() + 120
            next_pub = 0.0
            while len([k for k in rx.counters if k.startswith("received/chunks/w")]) < n_workers:
                if time.monotonic() > deadline:
                    raise RuntimeError("workers did not start delivering within 120 s")
                if time.monotonic() >= next_pub:
                    weights_tx.send(WEIGHTS, weights)
                    next_pub = time.monotonic() + 0.2
                rx.poll(50)
            t_end = time.monotonic() + warmup_s
            while time.monotonic() < t_end:
                rx.poll(50)
            start = rx.counters["received/transitions"]
            cpu0 = time.process_time()
            worker_cpu0 = [_cpu_s(p.pid) for p in procs]
            t0 = time.perf_counter()
            while time.perf_counter() - t0 < seconds:
                rx.poll(50)
            dt = time.perf_counter() - t0
            got = rx.counters["received/transitions"] - start
            receiver_cpu = (time.process_time() - cpu0) / dt
            worker_cpu = [(_cpu_s(p.pid) - c0) / dt for p, c0 in zip(procs, worker_cpu0, strict=True)]
            rejected = {k: v for k, v in rx.all_counters().items() if k.startswith("rejected/") and v}
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
    return {
        "workers": n_workers,
        "envs": n_workers * envs_per_worker,
        "env_steps_per_s": got / dt,
        "seconds": dt,
        "rejected": rejected,
        "cpu_cores_used": {"receiver": receiver_cpu, "workers": worker_cpu},
    }


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def make_pub_weights(ctx: BusContext, endpoint: str) -> Socket:
    from robot_rl.bus.sockets import make_pub

    return make_pub(ctx, endpoint, sndhwm=2)


def _make_sim_env() -> Any:
    import sim

    return sim.make_env(ROBOT, BACKEND)


def bench_subproc_vec_env(n_envs: int, seconds: float, warmup_s: float) -> dict[str, Any]:
    """SB3 SubprocVecEnv (one process per env) stepped by this process, torch 256-256 MLP inference."""
    import torch
    from stable_baselines3.common.vec_env import SubprocVecEnv
    from torch import nn

    torch.set_num_threads(1)
    weights = _policy_weights()
    obs_dim = weights.obs_mean.shape[0]
    act_dim = weights.params["mean.bias"].shape[0]
    trunk = nn.Sequential(
        nn.Linear(obs_dim, HIDDEN[0]), nn.ReLU(), nn.Linear(HIDDEN[0], HIDDEN[1]), nn.ReLU()
    )
    mean_head, log_std_head = nn.Linear(HIDDEN[1], act_dim), nn.Linear(HIDDEN[1], act_dim)
    venv = SubprocVecEnv([_make_sim_env for _ in range(n_envs)])
    try:
        obs = venv.reset()

        def run(duration: float) -> tuple[int, float]:
            nonlocal obs
            steps, t0 = 0, time.perf_counter()
            while time.perf_counter() - t0 < duration:
                with torch.no_grad():
                    h = trunk(torch.as_tensor(obs, dtype=torch.float32))
                    std = torch.exp(torch.clamp(log_std_head(h), -20.0, 2.0))
                    action = torch.tanh(mean_head(h) + std * torch.randn_like(std)).numpy()
                obs, _, _, _ = venv.step(action)
                steps += n_envs
            return steps, time.perf_counter() - t0

        run(warmup_s)
        steps, dt = run(seconds)
    finally:
        venv.close()
    return {"envs": n_envs, "env_steps_per_s": steps / dt, "seconds": dt}


def _best(measure: Callable[[], dict[str, Any]], repeats: int) -> dict[str, Any]:
    """The run with the highest rate of ``repeats`` runs (as timeit and bench/sim_throughput.py do:
    other load on the machine only ever slows a run down), with every run's rate kept."""
    runs = [measure() for _ in range(repeats)]
    best = max(runs, key=lambda r: float(r["env_steps_per_s"]))
    return {**best, "all_runs_env_steps_per_s": [r["env_steps_per_s"] for r in runs]}


def bench_rollout(envs_per_worker: int, seconds: float, repeats: int = 2) -> dict[str, Any]:
    """Part (b): in-process, bus with 1 and 2 workers, SubprocVecEnv with the same env counts;
    each rate the best of ``repeats`` runs."""
    warmup_s = min(2.0, seconds / 2)
    cores = os.cpu_count() or 1
    in_proc = _best(lambda: bench_in_process(envs_per_worker, seconds, warmup_s), repeats)
    print(
        f"in-process   {envs_per_worker:>3} envs        {in_proc['env_steps_per_s']:>9.0f} env steps/s",
        flush=True,
    )
    rows = []
    for n_workers in (1, 2):
        bus = _best(partial(bench_bus_rollout, n_workers, envs_per_worker, seconds, warmup_s), repeats)
        print(
            f"bus          {bus['envs']:>3} envs, {n_workers} wkr {bus['env_steps_per_s']:>9.0f} env steps/s"
            f"  (CPU cores: receiver {bus['cpu_cores_used']['receiver']:.2f}, "
            f"workers {[round(c, 2) for c in bus['cpu_cores_used']['workers']]})",
            flush=True,
        )
        svec = _best(partial(bench_subproc_vec_env, n_workers * envs_per_worker, seconds, warmup_s), repeats)
        print(
            f"SubprocVecEnv {svec['envs']:>2} envs        {svec['env_steps_per_s']:>9.0f} env steps/s",
            flush=True,
        )
        cores_used = min(n_workers, cores)
        ceiling = (
            in_proc
            if n_workers == 1
            else _best(
                partial(bench_in_process_parallel, n_workers, envs_per_worker, seconds, warmup_s), repeats
            )
        )
        if n_workers > 1:
            print(
                f"in-process x{n_workers} {ceiling['envs']:>3} envs        "
                f"{ceiling['env_steps_per_s']:>9.0f} env steps/s",
                flush=True,
            )
        rows.append(
            {
                "workers": n_workers,
                "envs": bus["envs"],
                "bus": bus,
                "subproc_vec_env": svec,
                "speedup_vs_subproc": bus["env_steps_per_s"] / svec["env_steps_per_s"],
                "per_core_vs_in_process": bus["env_steps_per_s"] / cores_used / in_proc["env_steps_per_s"],
                "cores_for_workers": cores_used,
                "in_process_same_processes": ceiling,
                "vs_in_process_same_processes": bus["env_steps_per_s"] / ceiling["env_steps_per_s"],
            }
        )
    return {"in_process": in_proc, "rows": rows}


def print_rollout(results: dict[str, Any]) -> None:
    ip = results["in_process"]["env_steps_per_s"]
    print(
        f"{'workers':>7}{'envs':>6}{'bus/s':>10}{'subproc/s':>11}{'x subproc':>11}{'per core/in-proc':>18}"
        f"{'vs same # in-proc processes':>29}"
    )
    for r in results["rows"]:
        print(
            f"{r['workers']:>7}{r['envs']:>6}{r['bus']['env_steps_per_s']:>10.0f}"
            f"{r['subproc_vec_env']['env_steps_per_s']:>11.0f}{r['speedup_vs_subproc']:>11.2f}"
            f"{r['per_core_vs_in_process']:>18.2f}{r['vs_in_process_same_processes']:>29.2f}"
        )
    print(
        f"(env steps/s reaching the learner; in-process reference {ip:.0f}/s on one core; "
        "targets: x subproc >= 1.5, per core >= 0.8)"
    )


PARTS: dict[str, str] = {"latency": "bus_latency.json", "rollout": "bus_rollout.json"}
"""Benchmark part -> result file under bench/results/."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--part", choices=(*PARTS, "all"), default="all")
    parser.add_argument("--round-trips", type=int, default=20_000)
    parser.add_argument("--warmup", type=int, default=2_000)
    parser.add_argument("--seconds", type=float, default=8.0, help="measuring time per rollout configuration")
    parser.add_argument("--envs-per-worker", type=int, default=8)
    parser.add_argument(
        "--repeats", type=int, default=2, help="rollout runs per configuration; the best counts"
    )
    parser.add_argument("--out-dir", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args(argv)
    machine = {**machine_info("pyzmq", "msgspec", "numpy"), "libzmq": zmq.zmq_version()}
    print(f"machine: {machine}")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    if args.part in ("latency", "all"):
        results = bench_latency(args.round_trips, args.warmup)
        print_latency(results)
        payload = {
            "benchmark": "bus round-trip latency, 256-byte observation (64 float32), PAIR sockets",
            "round_trips": args.round_trips,
            "warmup": args.warmup,
            "machine": machine,
            "results": results,
        }
        out = args.out_dir / PARTS["latency"]
        out.write_text(json.dumps(payload, indent=2) + "\n")
        print(f"wrote {out}")
    if args.part in ("rollout", "all"):
        # Other processes on the machine change these numbers a lot (2 cores): record the load.
        load_before = os.getloadavg()
        rollout = bench_rollout(args.envs_per_worker, args.seconds, args.repeats)
        print_rollout(rollout)
        payload = {
            "loadavg_1_5_15_before": load_before,
            "loadavg_1_5_15_after": os.getloadavg(),
            "benchmark": f"rollout env steps/s reaching the learner, {ROBOT}/{BACKEND}, MLP {HIDDEN}, ipc",
            "envs_per_worker": args.envs_per_worker,
            "seconds": args.seconds,
            "repeats": args.repeats,
            "machine": machine,
            "results": rollout,
        }
        out = args.out_dir / PARTS["rollout"]
        out.write_text(json.dumps(payload, indent=2) + "\n")
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
