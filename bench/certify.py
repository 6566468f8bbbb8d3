"""Certification speed: Monte Carlo episodes of a smoothed policy, the bound, and the attack.

Rows (one process, one thread; best of ``--repeats`` timed runs for the CartPole rows):

    cartpole        10,000 episodes of vec:CartPole-v0 (200 steps, numpy, all episodes in one batch) with the
                    reference agent of ALGORITHMS.md 4.7 (3 noisy frames), sigma 0.2: wall seconds for the
                    episodes, for the certificate (Clopper-Pearson + Bonferroni over 200 levels, 6 budgets),
                    and env steps/s. Target (issue 7): at most 2 s on 2 cores.
    quadruped       the main job's H2O policy (bench/results/hybrid/full/h2o/seed0/policy.npz) smoothed with
                    sigma 0.2 on robot_rl/Quadruped-v0 (MuJoCo), episodes capped at --quad-steps (the run's
                    evaluation cap, 500), --quad-episodes episodes in one batch: episodes/s and env steps/s,
                    beside the same env stepped with zero actions and no policy (the physics' own rate).
    attack          the PGD attack at budget 1.0: CartPole (300 episodes, 64 draws) and the quadruped (16
                    episodes, 16 draws): attacked episodes/s.

Usage: python bench/certify.py [--repeats 3] [--quad-episodes 64] [--quad-steps 500] [--no-attack]
       [--out bench/results/certify.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
# bench/onnx.py would shadow the onnx package (imported by robot_rl.export): search this folder last (it still
# provides bench/machine.py), the repository first.
_HERE = str(Path(__file__).resolve().parent)
REPO = Path(__file__).resolve().parents[1]
sys.path[:] = [str(REPO)] + [p for p in sys.path if p not in (_HERE, "")] + [_HERE]

import numpy as np  # noqa: E402
from machine import machine_info  # noqa: E402  (bench/machine.py)

MAIN_POLICY = REPO / "bench" / "results" / "hybrid" / "full" / "h2o" / "seed0" / "policy.npz"
BUDGETS = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]


def bench_cartpole(repeats: int) -> dict[str, Any]:
    from robot_rl.certify import bounds
    from robot_rl.certify.evaluate import evaluate_smoothed, noise_rng, resolve_env
    from robot_rl.certify.policies import cartpole_controller
    from robot_rl.certify.smoothing import SmoothedPolicy

    spec = resolve_env("vec:CartPole-v0")
    runs: list[dict[str, float]] = []
    for r in range(repeats):
        policy = SmoothedPolicy(cartpole_controller(), 0.2, noise_rng(r))
        t0 = time.perf_counter()
        res = evaluate_smoothed(spec, policy, 10_000, seed=r)
        t1 = time.perf_counter()
        tail = bounds.cp_tail(res.returns, 0, 200, survival=True)
        certified = bounds.certified_bound(tail, BUDGETS, 0.2)
        t2 = time.perf_counter()
        runs.append(
            {
                "episodes_s": t1 - t0,
                "bound_s": t2 - t1,
                "steps": float(res.lengths.sum()),
                "clean_mean": res.mean,
                "certified": [round(float(c), 2) for c in certified],
            }
        )
    best = min(runs, key=lambda x: x["episodes_s"])
    return {
        "episodes": 10_000,
        "cap_steps": 200,
        "sigma": 0.2,
        "policy": "reference agent (ALGORITHMS.md 4.7, 3 noisy frames)",
        "best_episodes_s": best["episodes_s"],
        "all_episodes_s": [x["episodes_s"] for x in runs],
        "bound_s": best["bound_s"],
        "env_steps_per_s": best["steps"] / best["episodes_s"],
        "clean_mean": best["clean_mean"],
        "certified": best["certified"],
        "target_s": 2.0,
        "met": best["episodes_s"] + best["bound_s"] <= 2.0,
    }


def bench_quadruped(episodes: int, steps: int) -> dict[str, Any]:
    from robot_rl.certify.evaluate import evaluate_smoothed, noise_rng, resolve_env
    from robot_rl.certify.policies import load_policy
    from sim.env import RobotEnv

    base = load_policy(MAIN_POLICY).base
    spec = resolve_env("robot_rl/Quadruped-v0", max_episode_steps=steps)
    from robot_rl.certify.smoothing import SmoothedPolicy

    res = evaluate_smoothed(spec, SmoothedPolicy(base, 0.2, noise_rng(0)), episodes, batch_size=episodes)
    n_steps = int(res.lengths.sum())
    # The physics' own rate for comparison: one env, zero actions, same number of steps.
    env = RobotEnv("quadruped", max_episode_steps=steps)
    env.reset(seed=0)
    zero = np.zeros(8, np.float32)
    t0 = time.perf_counter()
    for _ in range(min(n_steps, 20_000)):
        _, _, terminated, truncated, _ = env.step(zero)
        if terminated or truncated:
            env.reset()
    raw_rate = min(n_steps, 20_000) / (time.perf_counter() - t0)
    env.close()
    return {
        "episodes": episodes,
        "cap_steps": steps,
        "sigma": 0.2,
        "policy": str(MAIN_POLICY.relative_to(REPO)),
        "seconds": res.seconds,
        "episodes_per_s": episodes / res.seconds,
        "env_steps_per_s": n_steps / res.seconds,
        "mean_length": float(res.lengths.mean()),
        "clean_mean": res.mean,
        "env_only_steps_per_s": raw_rate,
    }


def bench_attack() -> dict[str, Any]:
    import torch

    from robot_rl.certify.attack import AttackConfig, attack_smoothed
    from robot_rl.certify.evaluate import resolve_env
    from robot_rl.certify.policies import cartpole_controller, load_policy

    torch.set_num_threads(1)
    out: dict[str, Any] = {}
    cart = attack_smoothed(
        resolve_env("vec:CartPole-v0"), cartpole_controller(), 0.2, AttackConfig(budget=1.0, draws=64), 300
    )
    out["cartpole"] = {
        "episodes": 300,
        "draws": 64,
        "budget": 1.0,
        "seconds": cart.seconds,
        "episodes_per_s": 300 / cart.seconds,
        "attacked_mean": cart.mean,
    }
    quad = attack_smoothed(
        resolve_env("robot_rl/Quadruped-v0", max_episode_steps=500),
        load_policy(MAIN_POLICY).base,
        0.2,
        AttackConfig(budget=1.0, draws=16),
        16,
        batch_size=16,
    )
    out["quadruped"] = {
        "episodes": 16,
        "draws": 16,
        "budget": 1.0,
        "cap_steps": 500,
        "seconds": quad.seconds,
        "episodes_per_s": 16 / quad.seconds,
        "env_steps_per_s": float(quad.lengths.sum()) / quad.seconds,
        "attacked_mean": quad.mean,
    }
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--quad-episodes", type=int, default=64)
    p.add_argument("--quad-steps", type=int, default=500)
    p.add_argument("--no-attack", action="store_true")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "certify.json")
    args = p.parse_args()
    result: dict[str, Any] = {"machine": machine_info("numpy", "scipy", "torch", "mujoco")}
    result["cartpole"] = bench_cartpole(args.repeats)
    c = result["cartpole"]
    print(
        f"cartpole: 10,000 episodes x 200 steps in {c['best_episodes_s']:.2f} s "
        f"(runs {c['all_episodes_s']}), bound {c['bound_s'] * 1e3:.1f} ms, "
        f"{c['env_steps_per_s']:,.0f} env steps/s; target <= 2 s: {'met' if c['met'] else 'NOT met'}",
        flush=True,
    )
    result["quadruped"] = bench_quadruped(args.quad_episodes, args.quad_steps)
    q = result["quadruped"]
    print(
        f"quadruped: {q['episodes']} episodes (cap {q['cap_steps']}, mean length {q['mean_length']:.0f}) in "
        f"{q['seconds']:.1f} s: {q['episodes_per_s']:.2f} episodes/s, "
        f"{q['env_steps_per_s']:,.0f} env steps/s (env alone {q['env_only_steps_per_s']:,.0f} steps/s)",
        flush=True,
    )
    if not args.no_attack:
        result["attack"] = bench_attack()
        for name, a in result["attack"].items():
            print(
                f"attack {name}: {a['episodes']} episodes in {a['seconds']:.1f} s "
                f"({a['episodes_per_s']:.2f}/s)"
            )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
