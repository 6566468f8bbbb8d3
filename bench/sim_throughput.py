"""Simulation throughput: our `RobotEnv.step` against the raw physics limit measured in the same run.

For every (robot, backend) pair:
- env:  `env.step(a)` steps/s with uniformly random actions in [-1, 1], auto-reset on terminated/truncated
        (the resets are part of the cost, as in training);
- raw:  the bare engine from the env's reset state with the PD targets at the default pose, nothing but the
        loop in Python: `mujoco.mj_step(model, data, nstep=n_substeps)` (mujoco), `physics.step(n_substeps)`
        (dmcontrol), `p.stepSimulation()` x n_substeps (pybullet);
- efficiency = env / raw (1.0 means the environment adds no cost over the engine);
- engine share: a second env run with the engine call wrapped by a timer (mj_step / physics.step /
  stepSimulation): time inside the engine / total env time. It compares like with like (the states the env
  actually visits, resets included), where the raw loop holds one pose; the timer's own cost (~0.3 us per
  wrapped call) is charged to the env, so the share is slightly pessimistic.
Every rate is the best of --repeats timed runs (as timeit does), which filters out scheduler noise.
The same ratio is measured for Gymnasium's `Ant-v5` (`env.step` vs `mj_step(model, data, nstep=frame_skip)`).

Usage: python bench/sim_throughput.py [--seconds 3] [--out bench/results/sim_throughput.json]
"""

from __future__ import annotations

import argparse
import json
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from machine import machine_info  # bench/machine.py: the script's own folder is on sys.path

ROBOTS = ("quadruped", "manipulator")
BACKENDS = ("mujoco", "dmcontrol", "pybullet")


REPEATS = 3


def _rate(fn: Callable[[int], None], seconds: float) -> float:
    """Steps/s of `fn(n)` (which performs n steps): best of REPEATS runs of about `seconds` each."""
    n = 50
    while True:
        t0 = time.perf_counter()
        fn(n)
        dt = time.perf_counter() - t0
        if dt > 0.2:
            break
        n *= 4
    n = max(n, int(n * seconds / dt))
    best = 0.0
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        fn(n)
        best = max(best, n / (time.perf_counter() - t0))
    return best


class _EngineTimer:
    """Wraps an engine entry point (module or object attribute) and accumulates the time spent inside it."""

    def __init__(self, owner: Any, attr: str) -> None:
        self.owner, self.attr, self.total_s = owner, attr, 0.0
        self.original = getattr(owner, attr)

    def __enter__(self) -> _EngineTimer:
        original, clock = self.original, time.perf_counter

        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = clock()
            out = original(*args, **kwargs)
            self.total_s += clock() - t0
            return out

        setattr(self.owner, self.attr, timed)
        return self

    def __exit__(self, *exc: object) -> None:
        setattr(self.owner, self.attr, self.original)


def _env_runner(env: Any, n_act: int) -> Callable[[int], None]:
    """`run(n)`: n `env.step` calls with fixed uniform random actions, auto-reset included."""
    actions = np.random.default_rng(0).uniform(-1, 1, size=(4096, n_act)).astype(np.float32)

    def run_env(n: int) -> None:
        env.reset(seed=0)
        step = env.step
        for i in range(n):
            _, _, terminated, truncated, _ = step(actions[i & 4095])
            if terminated or truncated:
                env.reset()

    return run_env


def bench_ours(robot: str, backend: str, seconds: float) -> dict[str, Any]:
    from sim import make_env

    env = make_env(robot, backend)
    run_env = _env_runner(env, len(env.robot.joints))

    env_rate = _rate(run_env, seconds)
    if backend == "mujoco":
        import mujoco

        timer = _EngineTimer(mujoco, "mj_step")
    elif backend == "dmcontrol":
        timer = _EngineTimer(env.backend.physics, "step")  # type: ignore[attr-defined]
    else:
        import pybullet

        timer = _EngineTimer(pybullet, "stepSimulation")
    n_share = max(1000, int(env_rate * seconds))
    with timer:
        t0 = time.perf_counter()
        run_env(n_share)
        engine_share = timer.total_s / (time.perf_counter() - t0)

    env.reset(seed=0)
    env.backend.step(np.asarray(env.robot.default_joint_pos_rad))  # ctrl = default-pose targets
    n_sub = env.n_substeps
    if backend == "mujoco":
        import mujoco

        model, data = env.model, env.data

        def run_raw(n: int) -> None:
            for _ in range(n):
                mujoco.mj_step(model, data, nstep=n_sub)

        raw_what = "mujoco.mj_step(model, data, nstep=n_substeps)"
    elif backend == "dmcontrol":
        physics = env.backend.physics  # type: ignore[attr-defined]

        def run_raw(n: int) -> None:
            for _ in range(n):
                physics.step(n_sub)

        raw_what = "physics.step(n_substeps)"
    else:
        import pybullet as p

        client = env.backend.client_id  # type: ignore[attr-defined]

        def run_raw(n: int) -> None:
            for _ in range(n * n_sub):
                p.stepSimulation(physicsClientId=client)

        raw_what = "p.stepSimulation() x n_substeps (PD torques held from the last env step)"

    raw_rate = _rate(run_raw, seconds)
    env.close()
    return {
        "robot": robot,
        "backend": backend,
        "n_substeps": n_sub,
        "env_steps_per_s": env_rate,
        "raw_control_steps_per_s": raw_rate,
        "raw": raw_what,
        "efficiency": env_rate / raw_rate,
        "engine_share": engine_share,
    }


def bench_ant(seconds: float) -> dict[str, Any]:
    import gymnasium as gym
    import mujoco

    env = gym.make("Ant-v5")
    run_env = _env_runner(env, int(np.prod(env.action_space.shape or (0,))))

    env_rate = _rate(run_env, seconds)
    u: Any = env.unwrapped
    u.reset(seed=0)
    model, data, frame_skip = u.model, u.data, u.frame_skip

    def run_raw(n: int) -> None:
        for _ in range(n):
            mujoco.mj_step(model, data, nstep=frame_skip)

    raw_rate = _rate(run_raw, seconds)
    with _EngineTimer(mujoco, "mj_step") as timer:
        n_share = max(1000, int(env_rate * seconds))
        t0 = time.perf_counter()
        run_env(n_share)
        engine_share = timer.total_s / (time.perf_counter() - t0)
    env.close()
    return {
        "robot": "Ant-v5 (gymnasium)",
        "backend": "mujoco",
        "n_substeps": frame_skip,
        "env_steps_per_s": env_rate,
        "raw_control_steps_per_s": raw_rate,
        "raw": "mujoco.mj_step(model, data, nstep=frame_skip)",
        "efficiency": env_rate / raw_rate,
        "engine_share": engine_share,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=3.0, help="timed duration per measurement (s)")
    parser.add_argument("--robots", nargs="+", default=list(ROBOTS), choices=ROBOTS)
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per rate; the best one counts")
    parser.add_argument("--no-ant", action="store_true", help="skip the Gymnasium Ant-v5 reference")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "sim_throughput.json")
    args = parser.parse_args()

    global REPEATS
    REPEATS = max(1, args.repeats)

    from rich.console import Console
    from rich.table import Table

    machine = machine_info("mujoco", "numpy", "gymnasium")
    rows: list[dict[str, Any]] = []
    errors: list[dict[str, str]] = []
    for robot in args.robots:
        for backend in args.backends:
            try:
                rows.append(bench_ours(robot, backend, args.seconds))
            except Exception as e:  # a missing optional backend must not hide the others' numbers
                errors.append({"robot": robot, "backend": backend, "error": f"{type(e).__name__}: {e}"})
                traceback.print_exc()
    if not args.no_ant:
        rows.append(bench_ant(args.seconds))

    table = Table(
        title=f"Simulation throughput — {machine['cpu']}, {machine['cores']} cores, "
        f"Python {machine['python']}, MuJoCo {machine['mujoco']}"
    )
    cols = (
        "robot",
        "backend",
        "substeps",
        "env steps/s",
        "raw control steps/s",
        "efficiency",
        "engine share",
    )
    for col in cols:
        table.add_column(col, justify="left" if col in ("robot", "backend") else "right")
    for r in rows:
        table.add_row(
            r["robot"],
            r["backend"],
            str(r["n_substeps"]),
            f"{r['env_steps_per_s']:,.0f}",
            f"{r['raw_control_steps_per_s']:,.0f}",
            f"{r['efficiency']:.3f}",
            f"{r['engine_share']:.3f}",
        )
    console = Console(width=150)
    console.print(table)
    for err in errors:
        console.print(f"[red]skipped {err['robot']}/{err['backend']}: {err['error']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": machine, "results": rows, "errors": errors}, indent=2) + "\n")
    console.print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
