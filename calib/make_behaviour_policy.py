"""Train the behaviour policy that calib/run1 is recorded with, and save it as a torch-free `.npz`.

Recipe (ALGORITHMS.md "Datasets": a behaviour policy of middling quality, neither random nor expert):
Stable-Baselines3 SAC trained for a short budget in the *nominal* simulator (the learner's sim, not the
emulated robot), one torch thread, fixed seed. On the emulated "real" robot its quality is middling by
construction: it never saw the hidden dynamics gap.

The SAC actor (latent_pi 256-256 ReLU, mu and log_std heads, tanh squashing) is written as a
`robot_rl.nets.numpy_policy` `.npz` with SB3's own parameter names, so `robot-rl record --policy FILE.npz`
runs it with numpy alone.

Usage (the full generator of calib/run1, about 8 + 7 minutes on 2 cores):
    python calib/make_behaviour_policy.py --steps 30000 --seed 0 --out calib/behaviour/quadruped_sac.npz
    robot-rl record --robot quadruped --policy calib/behaviour/quadruped_sac.npz --episodes 40 \\
        --max-episode-steps 500 --seed 0 --out calib/run1
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=30_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("calib/behaviour/quadruped_sac.npz"))
    parser.add_argument(
        "--profile", default="nominal", help="sim gap profile trained in (sim/profiles/<name>.toml or a path)"
    )
    parser.add_argument(
        "--snapshot-every", type=int, default=0, help="also write <stem>_<steps>.npz every N steps"
    )
    args = parser.parse_args()

    import gymnasium as gym
    import torch
    from stable_baselines3 import SAC

    import sim  # noqa: F401 -- registers robot_rl/Quadruped-v0

    torch.set_num_threads(1)
    env = gym.make("robot_rl/Quadruped-v0", backend="mujoco", profile=args.profile)
    model = SAC("MlpPolicy", env, ent_coef="auto_0.1", seed=args.seed, device="cpu", verbose=0)
    done = 0
    chunk = args.snapshot_every if args.snapshot_every > 0 else args.steps
    while done < args.steps:
        n = min(chunk, args.steps - done)
        model.learn(total_timesteps=n, progress_bar=False, reset_num_timesteps=False)
        done += n
        if done < args.steps:
            _write(model, env, args.out.with_name(f"{args.out.stem}_{done}.npz"), args.seed)
    _write(model, env, args.out, args.seed)
    print(f"wrote {args.out} (SAC {args.steps} steps in profile {args.profile!r}, seed {args.seed})")
    return 0


def _write(model: Any, env: Any, out: Path, seed: int) -> None:
    """The SB3 actor as a torch-free NumpyPolicy .npz, after a parity check against torch."""
    import torch

    from robot_rl.bus.messages import PolicyWeights
    from robot_rl.nets.numpy_policy import ARCH_KIND, NumpyPolicy, save_npz

    actor = model.policy.actor
    state = {k: v.detach().cpu().numpy().astype(np.float32) for k, v in actor.state_dict().items()}
    obs_dim = int(env.observation_space.shape[0])  # type: ignore[index]
    act_dim = int(env.action_space.shape[0])  # type: ignore[index]
    arch = {
        "kind": ARCH_KIND,
        "obs_dim": obs_dim,
        "act_dim": act_dim,
        "hidden": [256, 256],
        "activation": "relu",
        "log_std": "layer",
        "log_std_bounds": [-20.0, 2.0],
        "names": {"hidden": ["latent_pi.0", "latent_pi.2"], "mean": "mu", "log_std": "log_std"},
    }
    params = {k: state[k] for k in state if k.split(".")[0] in ("latent_pi", "mu", "log_std")}
    weights = PolicyWeights(
        policy_version=1,
        arch=json.dumps(arch),
        obs_mean=np.zeros(obs_dim, np.float32),
        obs_std=np.ones(obs_dim, np.float32),
        params=params,
    )
    # Parity with the torch actor on random observations before anything is written.
    policy = NumpyPolicy.from_weights(weights)
    obs = np.random.default_rng(seed).normal(size=(256, obs_dim)).astype(np.float32)
    with torch.no_grad():
        ref = actor(torch.as_tensor(obs), deterministic=True).numpy()
    err = float(np.abs(policy.act(obs, deterministic=True) - ref).max())
    if err > 1e-5:
        raise SystemExit(f"numpy/torch parity failed: max |diff| {err:.2e}")
    out.parent.mkdir(parents=True, exist_ok=True)
    save_npz(out, weights)
    print(f"wrote {out} (numpy/torch parity {err:.1e})", flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
