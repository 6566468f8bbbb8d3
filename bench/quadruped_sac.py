"""Learnability check: Stable-Baselines3 SAC on robot_rl/Quadruped-v0 against a zero-action policy.

Trains SAC (one torch thread) for --steps environment steps, then evaluates the deterministic policy and the
zero-action policy (stand still in the default pose) on the same seeds and fixed commands, reporting the mean
per-step tracking reward exp(-(vx - cmd)^2 / 0.25), the mean forward velocity, the episode return and length.
Writes bench/results/quadruped_sac.json.

Usage: python bench/quadruped_sac.py [--steps 30000] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np


def evaluate(
    policy: Callable[[np.ndarray], np.ndarray], commands: list[float], episode_steps: int, seed: int
) -> dict[str, float]:
    from sim import make_env

    env = make_env("quadruped", "mujoco", max_episode_steps=episode_steps)
    track, vx, returns, lengths = [], [], [], []
    for i, cmd in enumerate(commands):
        obs, _ = env.reset(seed=seed + i, options={"command_mps": cmd})
        ret, t = 0.0, 0
        while True:
            obs, r, terminated, truncated, info = env.step(policy(obs))
            ret += r
            t += 1
            track.append(info["reward_tracking"])
            vx.append(info["base_forward_vel_mps"] - cmd)
            if terminated or truncated:
                break
        returns.append(ret)
        lengths.append(t)
    return {
        "tracking_reward_per_step": float(np.mean(track)),
        "vx_minus_cmd_mean_mps": float(np.mean(vx)),
        "vx_tracking_rmse_mps": float(np.sqrt(np.mean(np.square(vx)))),
        "episode_return": float(np.mean(returns)),
        "episode_length": float(np.mean(lengths)),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=30_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--ent-coef",
        default="auto_0.1",
        help="SAC entropy coefficient (SB3 syntax; auto_0.1 = learned, init 0.1)",
    )
    parser.add_argument("--episode-steps", type=int, default=500, help="training/eval episode length")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "quadruped_sac.json")
    args = parser.parse_args()

    import gymnasium as gym
    import torch
    from stable_baselines3 import SAC

    import sim

    torch.set_num_threads(1)
    env = gym.make(sim.ENV_IDS["quadruped"], max_episode_steps=args.episode_steps)
    model = SAC(
        "MlpPolicy",
        env,
        seed=args.seed,
        learning_starts=2000,
        ent_coef=args.ent_coef,
        verbose=0,
        device="cpu",
    )
    t0 = time.perf_counter()
    model.learn(total_timesteps=args.steps)
    train_s = time.perf_counter() - t0

    commands = [0.3, 0.5, 0.7, 0.9, 1.0]
    trained = evaluate(lambda o: model.predict(o, deterministic=True)[0], commands, args.episode_steps, 1000)
    zero = evaluate(lambda o: np.zeros(8, dtype=np.float32), commands, args.episode_steps, 1000)
    result: dict[str, Any] = {
        "steps": args.steps,
        "seed": args.seed,
        "ent_coef": args.ent_coef,
        "train_seconds": train_s,
        "commands_mps": commands,
        "sac": trained,
        "zero_action": zero,
    }
    print(json.dumps(result, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
