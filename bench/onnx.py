"""Onboard inference: single-observation latency of torch eager, onnxruntime and numpy for the shipped
policy sizes, model size, cold start, and the deploy loop's period jitter at 50 Hz on the emulated robot.

Latency rows (one process, one thread each, interleaved over repeats so load changes hit every row):

    torch    the training actor (``TanhGaussianActor``) in eager mode under ``torch.inference_mode``:
             ``q0 + scale * tanh(mean)`` for one observation, numpy in and out (what a torch deploy loop does)
    ort      ``robot_rl.export.runtime.OnnxPolicy`` on the exported ``policy.onnx`` (the deploy path)
    numpy    ``robot_rl.nets.NumpyPolicy`` (the sim workers' copy), for reference

Sizes: 128-128 (``robot-rl train``'s default) and 256-256 (the behaviour policy in calib/behaviour), obs 34,
act 8; the exported model is checked against torch (max abs difference printed) before timing.

Cold start: a fresh ``python`` process that imports the runtime, opens the model and computes one action
(process wall time, and the part after the imports).

Deploy loop: ``robot-rl deploy`` against the firmware emulator for ``--deploy-seconds`` of policy time at the
manifest's 50 Hz; the runner's own report gives the period p50/p99 and the jitter |period - 20 ms|.

Deployed return: a trained policy (``--return-policy``, bench/hybrid's H2O seed 0 by default) exported to
ONNX and its torch reference, alternately through the same deploy runner on the emulator, ``--return-pairs``
episodes each of ``--return-steps`` steps at one command, the robot reset before each (target: within 5 %).

Targets (issue 6): onnxruntime p50 at least 3x faster than torch eager; deploy-loop jitter p99 <= 1 ms.

Usage: python bench/onnx.py [--calls 5000] [--repeats 5] [--deploy-seconds 30] [--no-deploy]
       [--out bench/results/onnx.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
# This file is named onnx.py: with its folder first on sys.path, `import onnx` would find this script
# instead of the package. Search the folder last (it still provides bench/machine.py).
_HERE = str(Path(__file__).resolve().parent)
sys.path[:] = [p for p in sys.path if p not in (_HERE, "")] + [_HERE]

import numpy as np  # noqa: E402
from machine import machine_info  # noqa: E402  (bench/machine.py)

REPO = Path(__file__).resolve().parents[1]
SIZES: dict[str, tuple[int, ...]] = {"128-128": (128, 128), "256-256": (256, 256)}
ROBOT = "quadruped"


def _percentiles(samples_s: list[float]) -> dict[str, float]:
    a = np.asarray(samples_s) * 1e6
    return {"p50_us": float(np.percentile(a, 50)), "p99_us": float(np.percentile(a, 99)), "n": len(a)}


def _time_calls(fn: Callable[[np.ndarray], Any], obs: np.ndarray, calls: int) -> list[float]:
    out: list[float] = []
    clock = time.perf_counter
    for i in range(calls):
        o = obs[i % len(obs)]
        t0 = clock()
        fn(o)
        out.append(clock() - t0)
    return out


def latency(calls: int, repeats: int, workdir: Path) -> dict[str, Any]:
    import onnx
    import torch

    from robot_rl.export.graph import DEFAULT_OPSET, build_model
    from robot_rl.export.onnx_export import build_manifest, load_npz_source
    from robot_rl.export.runtime import OnnxPolicy
    from robot_rl.nets.numpy_policy import NumpyPolicy, save_npz
    from robot_rl.nets.torch_nets import TanhGaussianActor
    from sim.robots import get_robot
    from sim.tasks import default_task

    torch.set_num_threads(1)
    robot = get_robot(ROBOT)
    obs_dim, act_dim = len(default_task(robot).obs_layout), len(robot.joint_names)
    q0 = torch.tensor(robot.default_joint_pos_rad, dtype=torch.float32)
    scale = float(robot.action_scale_rad)
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(1024, obs_dim)).astype(np.float32)
    results: dict[str, Any] = {}
    for label, hidden in SIZES.items():
        actor = TanhGaussianActor(obs_dim, act_dim, hidden, torch.Generator().manual_seed(0))
        actor.eval()
        with torch.no_grad():  # move the mean head off its near-zero init so tanh is not trivially linear
            actor.head.weight.mul_(100.0)
        weights = actor.policy_weights()
        # The manifest robot-rl export writes for this policy file (robot model + calib/quadruped.toml).
        source = load_npz_source(save_npz(workdir / f"policy-{label}.npz", weights), robot_override=ROBOT)
        manifest, _, _ = build_manifest(source, None, False, DEFAULT_OPSET)
        path = workdir / f"policy-{label}.onnx"
        onnx.save(build_model(weights, manifest), path)
        ort_policy = OnnxPolicy(path)
        np_policy = NumpyPolicy.from_weights(weights)

        def torch_act(o: np.ndarray, actor: TanhGaussianActor = actor) -> np.ndarray:
            with torch.inference_mode():
                mean, _ = actor(torch.from_numpy(o).unsqueeze(0))
                out: np.ndarray = (q0 + scale * torch.tanh(mean[0])).numpy()
            return out

        q0_np = np.asarray(manifest.default_joint_pos_rad, np.float32)

        def numpy_act(o: np.ndarray, p: NumpyPolicy = np_policy, q0_np: np.ndarray = q0_np) -> np.ndarray:
            out: np.ndarray = q0_np + scale * p.act(o[None, :], deterministic=True)[0]
            return out

        ref = np.stack([torch_act(o) for o in obs[:256]])
        parity = float(np.abs(ort_policy.batch(obs[:256]) - ref).max())
        rows: dict[str, Callable[[np.ndarray], Any]] = {
            "torch": torch_act,
            "ort": ort_policy,
            "numpy": numpy_act,
        }
        for fn in rows.values():  # warm-up: allocator, onnxruntime's first-run planning
            _time_calls(fn, obs, 300)
        samples: dict[str, list[float]] = {name: [] for name in rows}
        per_repeat: dict[str, list[float]] = {name: [] for name in rows}
        for _ in range(repeats):
            for name, fn in rows.items():
                s = _time_calls(fn, obs, calls)
                samples[name] += s
                per_repeat[name].append(float(np.percentile(s, 50)) * 1e6)
        stats = {name: _percentiles(s) for name, s in samples.items()}
        results[label] = {
            "hidden": list(hidden),
            "parity_max_abs": parity,
            "model_bytes": path.stat().st_size,
            **{name: {**stats[name], "p50_per_repeat_us": per_repeat[name]} for name in rows},
            "torch_over_ort_p50": stats["torch"]["p50_us"] / stats["ort"]["p50_us"],
            "torch_over_ort_p99": stats["torch"]["p99_us"] / stats["ort"]["p99_us"],
        }
        print(
            f"{label}: torch p50 {stats['torch']['p50_us']:.1f} us p99 {stats['torch']['p99_us']:.1f} | "
            f"ort p50 {stats['ort']['p50_us']:.1f} p99 {stats['ort']['p99_us']:.1f} | "
            f"numpy p50 {stats['numpy']['p50_us']:.1f} p99 {stats['numpy']['p99_us']:.1f} | "
            f"torch/ort p50 {results[label]['torch_over_ort_p50']:.2f}x | "
            f"{path.stat().st_size / 1024:.0f} KiB | parity {parity:.1e}",
            flush=True,
        )
    return results


_COLD = """
import time
t0 = time.perf_counter()
import numpy as np
from robot_rl.export.runtime import OnnxPolicy
t1 = time.perf_counter()
p = OnnxPolicy({path!r})
p(np.zeros(p.manifest.obs_dim, np.float32))
t2 = time.perf_counter()
import sys
print(t1 - t0, t2 - t1, "torch" in sys.modules)
"""


def cold_start(path: Path, repeats: int) -> dict[str, Any]:
    """Wall time of a fresh process to its first action, and the part after the imports (median)."""
    total, imports, session = [], [], []
    torch_loaded = False
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = subprocess.run(
            [sys.executable, "-c", _COLD.format(path=str(path))],
            capture_output=True,
            text=True,
            check=True,
            cwd=REPO,
        )
        total.append(time.perf_counter() - t0)
        imp, ses, loaded = out.stdout.split()
        imports.append(float(imp))
        session.append(float(ses))
        torch_loaded |= loaded == "True"
    res = {
        "process_to_first_action_s": statistics.median(total),
        "imports_s": statistics.median(imports),
        "session_and_first_action_s": statistics.median(session),
        "torch_imported": torch_loaded,
        "repeats": repeats,
    }
    print(
        f"cold start: process -> first action {res['process_to_first_action_s'] * 1e3:.0f} ms "
        f"(imports {res['imports_s'] * 1e3:.0f} ms, session + first action "
        f"{res['session_and_first_action_s'] * 1e3:.1f} ms); torch imported: {torch_loaded}",
        flush=True,
    )
    return res


def deploy_loop(path: Path, seconds: float, workdir: Path) -> dict[str, Any]:
    """``robot-rl deploy`` on the emulated robot for ``seconds`` of policy time; the runner's report."""
    from robot_rl.envs.rig import RealRig

    report = workdir / "deploy-report.json"
    steps = round(seconds / 0.02)
    with RealRig(ROBOT) as rig:
        t0 = time.perf_counter()
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "robot_rl.deploy",
                str(path),
                "--bus",
                rig.bus,
                "--start",
                "auto",
                "--steps",
                str(steps),
                "--log-dir",
                str(workdir / "deploy-logs"),
                "--report",
                str(report),
            ],
            capture_output=True,
            text=True,
            cwd=REPO,
        )
        wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"deploy exited {proc.returncode}: {proc.stderr[-2000:]}")
    res: dict[str, Any] = json.loads(report.read_text())
    res["wall_s"] = wall
    print(f"deploy loop: {json.dumps(res, indent=None)[:600]}", flush=True)
    return res


def deploy_returns(
    policy_npz: Path, pairs: int, steps: int, command_mps: float, workdir: Path
) -> dict[str, Any]:
    """A trained policy exported to ONNX and its torch reference, alternately through the same deploy loop on
    the emulated robot (reset before each episode, same command and length): per-episode returns."""
    import onnx

    from robot_rl.deploy.observation import ObservationBuilder
    from robot_rl.deploy.runner import DeployRunner, RunnerConfig
    from robot_rl.envs.rig import RealRig
    from robot_rl.export.graph import DEFAULT_OPSET, build_model
    from robot_rl.export.onnx_export import build_manifest, load_npz_source, reference_policy
    from robot_rl.export.runtime import OnnxPolicy
    from sim.robots import get_robot
    from sim.tasks import default_task

    source = load_npz_source(policy_npz, robot_override=ROBOT)
    manifest, _, _ = build_manifest(source, None, False, DEFAULT_OPSET)
    path = workdir / "trained.onnx"
    onnx.save(build_model(source.weights, manifest), path)
    policies = {"onnx": OnnxPolicy(path), "torch": reference_policy(source, manifest)}
    robot = get_robot(ROBOT)
    cfg = RunnerConfig(steps=steps, reset=True, commands_mps=(command_mps,), max_overruns=1000)
    returns: dict[str, list[float]] = {name: [] for name in policies}
    reasons: dict[str, list[str]] = {name: [] for name in policies}
    with RealRig(ROBOT) as rig:
        for i in range(pairs):
            order = list(policies.items())
            for name, policy in order if i % 2 == 0 else order[::-1]:  # neither always goes first
                runner = DeployRunner(
                    policy, manifest, ObservationBuilder(robot, default_task(robot)), rig.bus, cfg
                )
                try:
                    report = runner.run()
                finally:
                    runner.close()
                returns[name].append(report.episodes[0].episode_return if report.episodes else float("nan"))
                reasons[name].append(report.reason)
                print(f"returns pair {i}: {name} {returns[name][-1]:.1f} ({report.reason})", flush=True)
    mean = {name: float(np.mean(r)) for name, r in returns.items()}
    res = {
        "policy": str(policy_npz.relative_to(REPO) if policy_npz.is_relative_to(REPO) else policy_npz),
        "pairs": pairs,
        "steps": steps,
        "command_mps": command_mps,
        "returns": returns,
        "reasons": reasons,
        "mean": mean,
        "std": {name: float(np.std(r)) for name, r in returns.items()},
        "relative_difference": abs(mean["onnx"] - mean["torch"]) / abs(mean["torch"]),
    }
    print(
        f"deployed return: onnx {mean['onnx']:.1f} vs torch {mean['torch']:.1f} "
        f"({100 * res['relative_difference']:.2f} % apart, target <= 5 %)",
        flush=True,
    )
    return res


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--calls", type=int, default=5000)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--cold-repeats", type=int, default=5)
    p.add_argument("--deploy-seconds", type=float, default=30.0)
    p.add_argument("--no-deploy", action="store_true")
    p.add_argument("--return-pairs", type=int, default=6, help="ONNX/torch episode pairs (0: skip)")
    p.add_argument("--return-steps", type=int, default=500)
    p.add_argument("--return-command", type=float, default=0.65)
    p.add_argument(
        "--return-policy",
        type=Path,
        default=REPO / "bench" / "results" / "hybrid" / "full" / "h2o" / "seed0" / "policy.npz",
        help="a trained policy.npz inside its run folder (default: bench/hybrid's H2O, seed 0)",
    )
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "onnx.json")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="rrl-bench-onnx-") as tmp:
        work = Path(tmp)
        result: dict[str, Any] = {
            "machine": machine_info("torch", "onnxruntime", "onnx", "numpy"),
            "latency": latency(args.calls, args.repeats, work),
        }
        result["cold_start"] = cold_start(work / "policy-128-128.onnx", args.cold_repeats)
        if not args.no_deploy:
            result["deploy_loop"] = deploy_loop(work / "policy-128-128.onnx", args.deploy_seconds, work)
            if args.return_pairs > 0:
                result["deploy_returns"] = deploy_returns(
                    args.return_policy, args.return_pairs, args.return_steps, args.return_command, work
                )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
