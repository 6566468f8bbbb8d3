"""Learner speed: gradient updates per second of Stable-Baselines3's SAC and of robot-rl's algorithms,
side by side in one process, plus the memory of a 1M-transition replay buffer.

Every row uses the quadruped's sizes (obs 34, act 8), 256-256 networks, one torch thread, and draws
its batches from a filled replay buffer of random transitions on every update (SB3: its own buffer
via ``model.train(gradient_steps, batch_size=256)``; robot-rl: ``robot_rl.data.replay.ReplayBuffer``
per source, ``to_torch``, then ``algo.update``), so sampling is inside the timing for both. Rows run
interleaved, one after the other in each repeat, so a load change on a shared machine hits all of
them; each repeat reports updates per wall-clock second and per CPU second of this process. Ratios
are against SB3's SAC of the same repeat; the table shows medians over repeats.

Targets (issue 5): robot-rl SAC >= 2x SB3 SAC, robot-rl H2O >= 1x SB3 SAC, replay <= 2 GB.

Usage: python bench/learner.py [--seconds 5] [--repeats 3] [--rows sb3-sac sac h2o ...]
       [--out bench/results/learner.json]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from machine import machine_info  # bench/machine.py: the script's own folder is on sys.path

OBS_DIM, ACT_DIM = 34, 8
HIDDEN = (256, 256)
BATCH = 256
BUFFER_ROWS = 100_000
REPLAY_1M = 1_000_000
ROWS = ("sb3-sac", "sac", "h2o", "naive-mix", "cql", "iql")
CHUNK = 5
"""Updates between clock reads."""


def _fwd(sizes: tuple[int, ...]) -> int:
    """Per-row multiply-accumulates of an MLP's forward pass (layer widths ``sizes``); the weight
    gradient costs the same, the input gradient the same without the first layer (``_dx``)."""
    return sum(a * b for a, b in itertools.pairwise(sizes))


def _dx(sizes: tuple[int, ...]) -> int:
    return _fwd(sizes[1:])


def matmul_macs(b: int = BATCH, k: int = 2, n_cql: int = 10, n_gap: int = 10) -> dict[str, int]:
    """Multiply-accumulates in one update's matrix products, the work every implementation of the
    same algorithm does (SB3 SAC additionally takes weight gradients of the critics in the actor's
    loss). ``b`` transitions per RL update, ``k`` critics; H2O's classifier batch is 256 + 256 and
    its gap estimate uses ``n_gap`` perturbed next states of the 128 sim transitions."""
    d, a, (h1, h2) = OBS_DIM, ACT_DIM, HIDDEN
    actor, critic, value = (d, h1, h2, 2 * a), (d + a, h1, h2, 1), (d, h1, h2, 1)
    d_sa, d_sas = (d + a, h1, h2, 2), (2 * d + a, h1, h2, 2)

    def train(sizes: tuple[int, ...]) -> int:  # forward, weight gradient, input gradient past layer 1
        return 2 * _fwd(sizes) + _dx(sizes)

    actor_work = b * _fwd(actor) + b * train(actor)  # a' at s' (no grad), a~ at s (with grad)

    def ours_critics(train_rows: int, frozen_rows: int) -> int:
        """Target Q at s'; one pass over the training rows and the actor's (frozen) rows; weight
        gradients of the training rows; input gradients past layer 1 for all rows and through layer 1
        for the frozen rows."""
        rows = train_rows + frozen_rows
        per_member = (
            b * _fwd(critic)
            + rows * _fwd(critic)
            + train_rows * _fwd(critic)
            + rows * _dx(critic)
            + frozen_rows * (d + a) * h1
        )
        return k * per_member

    sac = actor_work + ours_critics(b, b)
    # SB3: target; Q(s, a) trained; Q(s, a~) with weight and full input gradients (weights discarded).
    sb3 = actor_work + k * b * (_fwd(critic) + train(critic) + 3 * _fwd(critic))
    classifier = 2 * 256 * (train(d_sa) + train(d_sas)) + 128 * _fwd(d_sa) + (n_gap + 1) * 128 * _fwd(d_sas)
    cql_rows = b * (1 + 3 * n_cql)
    return {
        "sb3-sac": sb3,
        "sac": sac,
        "h2o": sac + classifier,
        "naive-mix": sac + classifier,
        "cql": actor_work + ours_critics(cql_rows, b),
        "iql": k * b * _fwd(critic)  # target Q(s, a) for V's target and the advantage
        + b * train(value)
        + 2 * b * _fwd(value)  # V(s), V(s') after the value step
        + b * train(actor)  # log pi(a|s) of dataset actions
        + k * b * train(critic),
    }


def matmul_gflops(seconds: float = 1.0) -> float:
    """This machine's fp32 matrix-product rate now, one thread: (512, 256) @ (256, 256) repeated."""
    import torch

    x, w = torch.randn(512, 256), torch.randn(256, 256)
    n, start = 0, time.process_time()
    while time.process_time() - start < seconds:
        for _ in range(20):
            x @ w
        n += 20
    return 2 * 512 * 256 * 256 * n / (time.process_time() - start) / 1e9


def random_transitions(rng: np.random.Generator, n: int) -> Any:
    from robot_rl.schema import TransitionBatch

    return TransitionBatch(
        obs=rng.standard_normal((n, OBS_DIM), dtype=np.float32),
        action=rng.uniform(-1.0, 1.0, (n, ACT_DIM)).astype(np.float32),
        reward=rng.standard_normal(n),
        next_obs=rng.standard_normal((n, OBS_DIM), dtype=np.float32),
        terminated=rng.random(n) < 0.01,
        truncated=np.zeros(n, np.bool_),
    )


def sb3_sac() -> Callable[[int], None]:
    """SB3 SAC (net_arch [256, 256], batch 256) whose replay holds BUFFER_ROWS random transitions."""
    import gymnasium as gym
    from stable_baselines3 import SAC
    from stable_baselines3.common.utils import configure_logger

    class QuadrupedSized(gym.Env[np.ndarray, np.ndarray]):
        observation_space = gym.spaces.Box(-np.inf, np.inf, (OBS_DIM,), np.float32)
        action_space = gym.spaces.Box(-1.0, 1.0, (ACT_DIM,), np.float32)

        def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> Any:
            return np.zeros(OBS_DIM, np.float32), {}

        def step(self, action: np.ndarray) -> Any:
            return np.zeros(OBS_DIM, np.float32), 0.0, False, False, {}

    model = SAC(
        "MlpPolicy",
        QuadrupedSized(),
        buffer_size=BUFFER_ROWS,
        batch_size=BATCH,
        learning_starts=0,
        policy_kwargs={"net_arch": list(HIDDEN)},
        device="cpu",
        seed=0,
    )
    rb = model.replay_buffer
    data = random_transitions(np.random.default_rng(0), BUFFER_ROWS)
    rb.observations[:, 0] = data.obs
    rb.next_observations[:, 0] = data.next_obs
    rb.actions[:, 0] = data.action
    rb.rewards[:, 0] = data.reward
    rb.dones[:, 0] = data.terminated
    rb.full = True
    model._logger = configure_logger(None, None, "", False)

    def run(n: int) -> None:
        model.train(gradient_steps=n, batch_size=BATCH)

    return run


def ours(name: str) -> Callable[[int], None]:
    """robot-rl's ``name`` fed from one filled ReplayBuffer per source it samples."""
    from robot_rl.algos import make_algo
    from robot_rl.algos.base import to_torch
    from robot_rl.data.replay import ReplayBuffer

    rng = np.random.default_rng(0)
    algo = make_algo(
        name, obs_dim=OBS_DIM, act_dim=ACT_DIM, seed=0, real_obs_std=np.ones(OBS_DIM), hidden=HIDDEN
    )
    buffers = {}
    for spec in algo.batch_spec.values():
        if spec.source not in buffers:
            buffers[spec.source] = ReplayBuffer(OBS_DIM, ACT_DIM, BUFFER_ROWS)
            buffers[spec.source].add_batch(random_transitions(rng, BUFFER_ROWS), 0)
    specs = list(algo.batch_spec.items())

    def run(n: int) -> None:
        for _ in range(n):
            algo.update({key: to_torch(buffers[s.source].sample(s.size, rng)) for key, s in specs})

    return run


def measure(run: Callable[[int], None], seconds: float) -> tuple[float, float]:
    """(updates per wall second, updates per CPU second) over at least ``seconds`` of wall time."""
    updates = 0
    wall0, cpu0 = time.perf_counter(), time.process_time()
    while time.perf_counter() - wall0 < seconds:
        run(CHUNK)
        updates += CHUNK
    return updates / (time.perf_counter() - wall0), updates / (time.process_time() - cpu0)


def peak_rss_bytes() -> int:
    """This process's peak resident set since it started (``VmHWM``). Not ``ru_maxrss``: Linux carries
    the parent's high-water mark across fork + exec into it, so a child of a big process starts high."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def replay_memory_child(capacity: int) -> None:
    """(Run in a fresh process.) Fill a ReplayBuffer of ``capacity`` rows; print peak-RSS growth."""
    from robot_rl.data.replay import ReplayBuffer

    rng = np.random.default_rng(0)
    random_transitions(rng, 10_000)  # allocate a chunk's temporaries once before the baseline
    before = peak_rss_bytes()
    buffer = ReplayBuffer(OBS_DIM, ACT_DIM, capacity)
    for _ in range(capacity // 10_000):
        # Fresh rows each time, like real data (and no identical pages a kernel could merge).
        buffer.add_batch(random_transitions(rng, 10_000), 0)
    growth = peak_rss_bytes() - before
    print(json.dumps({"rows": len(buffer), "nbytes": buffer.nbytes, "peak_rss_delta_bytes": growth}))


def replay_memory(capacity: int) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--memory-child", str(capacity)],
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=5.0, help="timed seconds per row and repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=ROWS)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "learner.json")
    parser.add_argument("--memory-child", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        replay_memory_child(args.memory_child)
        return 0

    import torch

    torch.set_num_threads(1)
    memory = replay_memory(REPLAY_1M)
    gflops = [matmul_gflops()]
    runners = {row: sb3_sac() if row == "sb3-sac" else ours(row) for row in args.rows}
    for run in runners.values():
        run(2 * CHUNK)  # warm-up: allocator, optimiser state
    wall: dict[str, list[float]] = {row: [] for row in args.rows}
    cpu: dict[str, list[float]] = {row: [] for row in args.rows}
    for repeat in range(args.repeats):
        for row, run in runners.items():
            w, c = measure(run, args.seconds)
            wall[row].append(w)
            cpu[row].append(c)
            print(f"repeat {repeat}: {row:10s} {w:7.1f} updates/s wall {c:7.1f} per CPU s", flush=True)

    gflops.append(matmul_gflops())
    rate = statistics.mean(gflops) * 1e9
    macs = matmul_macs()
    results: dict[str, Any] = {}
    for row in args.rows:
        entry: dict[str, Any] = {
            "updates_per_s_wall": wall[row],
            "updates_per_s_cpu": cpu[row],
            "median_wall": statistics.median(wall[row]),
            "median_cpu": statistics.median(cpu[row]),
            "matmul_macs": macs[row],
            "matmul_floor_updates_per_s": rate / (2 * macs[row]),
        }
        if "sb3-sac" in wall:
            entry["ratio_vs_sb3_wall"] = [a / b for a, b in zip(wall[row], wall["sb3-sac"], strict=True)]
            entry["ratio_vs_sb3_cpu"] = [a / b for a, b in zip(cpu[row], cpu["sb3-sac"], strict=True)]
            entry["median_ratio_wall"] = statistics.median(entry["ratio_vs_sb3_wall"])
            entry["median_ratio_cpu"] = statistics.median(entry["ratio_vs_sb3_cpu"])
        results[row] = entry

    machine = machine_info("torch", "stable-baselines3", "numpy")
    load = os.getloadavg()
    print(
        f"\nLearner updates/s, {machine['cpu']}, {machine['cores']} cores, torch {machine['torch']}, 1 thread"
    )
    print(f"matrix products at {rate / 1e9:.0f} GFLOP/s (floor: updates/s if nothing else took time)")
    print(f"{'row':10s} {'wall/s':>8s} {'CPU/s':>8s} {'x SB3 wall':>11s} {'x SB3 CPU':>10s} {'floor/s':>8s}")
    for row, e in results.items():
        ratio_w = f"{e['median_ratio_wall']:.2f}" if "median_ratio_wall" in e else "-"
        ratio_c = f"{e['median_ratio_cpu']:.2f}" if "median_ratio_cpu" in e else "-"
        print(
            f"{row:10s} {e['median_wall']:8.1f} {e['median_cpu']:8.1f} {ratio_w:>11s} {ratio_c:>10s}"
            f" {e['matmul_floor_updates_per_s']:8.1f}"
        )
    print(
        f"replay buffer, {REPLAY_1M:,} transitions: {memory['nbytes'] / 1e6:.0f} MB allocated, "
        f"peak RSS +{memory['peak_rss_delta_bytes'] / 1e6:.0f} MB"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "machine": machine,
        "settings": {
            "obs_dim": OBS_DIM,
            "act_dim": ACT_DIM,
            "hidden": list(HIDDEN),
            "batch": BATCH,
            "buffer_rows": BUFFER_ROWS,
            "torch_threads": 1,
            "seconds": args.seconds,
            "repeats": args.repeats,
            "command": "python bench/learner.py " + " ".join(sys.argv[1:]),
            "load_average_1_5_15min_at_end": list(load),
        },
        "results": results,
        "replay_memory_1m": memory,
        "matmul_gflops_start_end": gflops,
        "targets": {"sac_vs_sb3": 2.0, "h2o_vs_sb3": 1.0, "replay_1m_bytes": 2 * 1024**3},
    }
    args.out.write_text(json.dumps(payload, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
