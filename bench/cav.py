"""NDE throughput of the numpy overtaking engine (robot_rl.cav) next to highway-env's step rate, in one run.

Rows (each the best of ``--repeats`` timed runs of about ``--seconds`` s, interleaved so load changes hit
all of them):

    engine NDE, 1 process     single-decision tests/s (T = 1: 3 sub-steps of 1 s), batches of 100,000
    engine NDE, 2 processes   the same in two processes at once (the machine's 2 cores), summed
    engine NDE multi          T = 2 (6 sub-steps), 1 process
    engine NADE               importance sampling, oracle surrogate / the 4 surrogates (T = 1), 1 process
    engine ONNX CAV           NDE with an ONNX CAV policy (random 16-unit MLP, CAV manifest): the whole
                              batch in one onnxruntime call (symbolic batch dimension), and row by row
    highway-env two-way-v0    ``env.step`` with random actions, the environment's own configuration
                              (policy_frequency 1 Hz, simulation 15 Hz: one step = 1 s), auto-reset
    highway-env scenario      the engine's single-decision tests replayed in two-way-v0 (robot_rl.cav.highway,
                              engine CAV, no rendering): tests/s and 1-s steps/s

Target (issue 8): at least 1e5 single-decision NDE tests/s on 2 cores.

Usage: python bench/cav.py [--seconds 3] [--repeats 3] [--out bench/results/cav.json]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
# bench/onnx.py would shadow the onnx package with this folder first on sys.path: search it last.
_HERE = str(Path(__file__).resolve().parent)
sys.path[:] = [p for p in sys.path if p not in (_HERE, "")] + [_HERE]

import numpy as np  # noqa: E402
from machine import machine_info  # noqa: E402  (bench/machine.py)

from robot_rl.cav.drivers import CAV_UNDER_TEST  # noqa: E402
from robot_rl.cav.estimators import Importance, run_batch  # noqa: E402
from robot_rl.cav.scenario import MULTI, SINGLE, CavModel, ScenarioConfig  # noqa: E402
from robot_rl.cav.surrogate import SURROGATES  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def _timed(fn: Callable[[], int], seconds: float) -> float:
    """Units per second of ``fn`` (returns units done per call), called until ``seconds`` have passed."""
    fn()  # warm-up
    done, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        done += fn()
    return done / (time.perf_counter() - t0)


def nde_rate(cfg: ScenarioConfig, cav: CavModel, seconds: float, batch: int, seed: int = 0) -> float:
    rng = np.random.default_rng(seed)

    def one() -> int:
        run_batch(cfg, cav, batch, rng)
        return batch

    return _timed(one, seconds)


def nade_rate(cfg: ScenarioConfig, names: tuple[str, ...], seconds: float) -> float:
    rng = np.random.default_rng(0)
    imp = Importance(tuple(SURROGATES[s] for s in names), epsilon=0.1)

    def one() -> int:
        run_batch(cfg, CAV_UNDER_TEST, 5_000, rng, imp)
        return 5_000

    return _timed(one, seconds)


def _worker(args: tuple[float, int, int]) -> tuple[int, float]:
    seconds, batch, seed = args
    rng = np.random.default_rng(seed)
    run_batch(SINGLE, CAV_UNDER_TEST, batch, rng)
    done, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        run_batch(SINGLE, CAV_UNDER_TEST, batch, rng)
        done += batch
    return done, time.perf_counter() - t0


def nde_rate_processes(n_proc: int, seconds: float, batch: int, pool: Any) -> float:
    results = pool.map(_worker, [(seconds, batch, 100 + i) for i in range(n_proc)])
    return float(sum(d / t for d, t in results))


def onnx_cav(workdir: Path) -> tuple[Any, Any] | None:
    try:
        import onnx
    except ImportError:
        return None
    from robot_rl.bus.messages import PolicyWeights
    from robot_rl.cav.drivers import CAV_OBS_NAMES, OnnxCav, cav_manifest
    from robot_rl.export.graph import build_model
    from robot_rl.nets.numpy_policy import PolicyArch

    arch = PolicyArch(obs_dim=len(CAV_OBS_NAMES), act_dim=2, hidden=(16,), activation="tanh")
    rng = np.random.default_rng(0)
    params = {k: rng.normal(0, 1, s).astype(np.float32) for k, s in arch.param_shapes().items()}
    mean = np.array([30.0, 0.5, 40.0, -5.0, 100.0, 0.0, 60.0, 2.0])
    std = np.array([2.0, 0.5, 30.0, 3.0, 80.0, 3.0, 60.0, 3.0])
    w = PolicyWeights(
        policy_version=0,
        arch=arch.to_json(),
        obs_mean=mean.astype(np.float32),
        obs_std=std.astype(np.float32),
        params=params,
    )
    path = workdir / "cav.onnx"
    onnx.save(build_model(w, cav_manifest(mean, std)), str(path))
    batched = OnnxCav(path)
    rowwise = OnnxCav(path)
    rowwise._session = None  # force the batch-1 path
    rowwise.batched = False
    return batched, rowwise


def highway_env_step_rate(seconds: float) -> float:
    import gymnasium as gym
    import highway_env  # noqa: F401

    env = gym.make("two-way-v0")
    env.reset(seed=0)
    n_actions = env.action_space.n  # type: ignore[attr-defined]
    rng = np.random.default_rng(0)

    def one() -> int:
        _, _, term, trunc, _ = env.step(int(rng.integers(n_actions)))
        if term or trunc:
            env.reset()
        return 1

    rate = _timed(one, seconds)
    env.close()
    return rate


def highway_scenario_rate(seconds: float) -> tuple[float, float]:
    """(tests/s, 1-s steps/s) of single-decision engine tests replayed in two-way-v0."""
    from robot_rl.cav.highway import make_replay_env, replay_in_highway_env

    env = make_replay_env()
    b = run_batch(SINGLE, CAV_UNDER_TEST, 2_000, np.random.default_rng(5))
    i = [0]
    steps = [0]

    def one() -> int:
        j = i[0] % 2_000
        i[0] += 1
        hw = replay_in_highway_env(
            SINGLE, b.initial.take(np.array([j])), b.actions[j], CAV_UNDER_TEST, env=env
        )
        steps[0] += len(hw.x_m) - 1
        return 1

    t0 = time.perf_counter()
    tests = _timed(one, seconds)
    wall = time.perf_counter() - t0
    env.close()
    return tests, steps[0] / wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "cav.json")
    args = ap.parse_args()
    rows: dict[str, list[float]] = {}

    def add(name: str, value: float) -> None:
        rows.setdefault(name, []).append(value)
        print(f"  {name:<44} {value:>14,.0f}", flush=True)

    ctx = mp.get_context("fork")
    with tempfile.TemporaryDirectory() as tmp, ctx.Pool(2) as pool:
        onnx_pair = onnx_cav(Path(tmp))
        for rep in range(args.repeats):
            print(f"repeat {rep + 1}/{args.repeats}", flush=True)
            add(
                "engine_nde_single_1proc_tests_per_s", nde_rate(SINGLE, CAV_UNDER_TEST, args.seconds, 100_000)
            )
            add("engine_nde_single_2proc_tests_per_s", nde_rate_processes(2, args.seconds, 100_000, pool))
            add(
                "engine_nde_multi_T2_1proc_tests_per_s",
                nde_rate(MULTI, CAV_UNDER_TEST, args.seconds, 100_000),
            )
            add("engine_nade_oracle_1proc_tests_per_s", nade_rate(SINGLE, ("oracle",), args.seconds))
            add(
                "engine_nade_4surrogates_1proc_tests_per_s",
                nade_rate(SINGLE, ("s1", "s2", "s3", "s4"), args.seconds),
            )
            if onnx_pair is not None:
                add(
                    "engine_nde_onnx_cav_batched_tests_per_s",
                    nde_rate(SINGLE, onnx_pair[0], args.seconds, 20_000),
                )
                add(
                    "engine_nde_onnx_cav_rowwise_tests_per_s",
                    nde_rate(SINGLE, onnx_pair[1], args.seconds, 200),
                )
            add("highway_env_two_way_env_steps_per_s", highway_env_step_rate(args.seconds))
            tests, steps = highway_scenario_rate(args.seconds)
            add("highway_env_scenario_tests_per_s", tests)
            add("highway_env_scenario_steps_per_s", steps)
    best = {k: max(v) for k, v in rows.items()}
    engine_steps = best["engine_nde_single_1proc_tests_per_s"] * SINGLE.substeps_per_decision
    result = {
        "machine": machine_info("numpy", "highway-env", "gymnasium", "onnxruntime"),
        "load_avg_start": os.getloadavg(),
        "seconds": args.seconds,
        "repeats": args.repeats,
        "runs": rows,
        "best": best,
        "ratios": {
            "engine_vs_highway_env_scenario_tests": best["engine_nde_single_1proc_tests_per_s"]
            / best["highway_env_scenario_tests_per_s"],
            "engine_substeps_vs_highway_env_steps": engine_steps
            / best["highway_env_two_way_env_steps_per_s"],
        },
        "target_single_nde_tests_per_s_2_cores": 1e5,
        "target_met": best["engine_nde_single_2proc_tests_per_s"] >= 1e5,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result["best"], indent=1))
    print(json.dumps(result["ratios"], indent=1))
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
