"""Learning benchmark (issue 5): H2O against its baselines on the emulated real quadruped.

    python bench/hybrid.py                                  # everything: 3 seeds, full run1 and a 5k subset
    python bench/hybrid.py --methods h2o sac --seeds 0      # a part (finished runs are skipped on a rerun)
    python bench/hybrid.py --summarise-only                 # tables and curves from the runs already there

Methods (ALGORITHMS.md section 6, same updates, network sizes, seeds and evaluation protocol):

    h2o        `robot-rl train --algo h2o`   (real logs + nominal sim)
    naive-mix  `robot-rl train --algo naive-mix` (H2O with w = 1 and no regulariser)
    sac        `robot-rl train --algo sac`   (nominal sim only; independent of the real data setting)
    cql, iql   `robot-rl train --algo cql|iql` (real logs only)
    oracle     SAC trained online on the emulated real robot itself (through bridge and emulator, in real
               time: one robot step per update), the upper bound and the normaliser

Data settings: `full` (all of --real-logs) and `5k` (whole episodes drawn in a seeded order until 5,000
transitions; written once to <out>/data/run1_5k). Every run evaluates on the emulated real robot through
bridge and firmware emulator (its own rig), deterministic actions, --eval-episodes episodes every
--eval-every updates, capped at the logs' episode length. Score per seed: mean of the last three real
evaluations (ALGORITHMS.md section 7); reported as mean +- std over seeds, raw and oracle-normalised.

Outputs under --out (default bench/results/hybrid): one run folder per (setting, method, seed), summary.json,
curves.png, and the table in docs/results.md (between the markers) with the machine and budgets.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.machine import machine_info  # noqa: E402

TRAIN_METHODS = ("h2o", "naive-mix", "sac", "cql", "iql")
METHODS = (*TRAIN_METHODS, "oracle")
SETTINGS = ("full", "5k")
SUBSET_TRANSITIONS = 5_000
RESULTS_BEGIN = "<!-- hybrid-results:begin -->"
RESULTS_END = "<!-- hybrid-results:end -->"


def make_subset(src: Path, dst: Path, transitions: int, seed: int) -> Path:
    """Whole episodes of `src` in a seeded order until `transitions`; written once to `dst`."""
    from robot_rl.data.reader import open_run
    from robot_rl.data.writer import EpisodeWriter

    if (dst / "manifest.json").is_file():
        return dst
    reader = open_run(src)
    episodes = reader.load_episodes()
    order = np.random.default_rng(seed).permutation(len(episodes))
    manifest = reader.manifest
    extra = {**manifest.extra, "subset_of": str(src), "subset_seed": str(seed)}
    tmp = dst.with_name(dst.name + ".tmp")
    with EpisodeWriter(tmp, type(manifest)(**{**manifest.__dict__, "extra": extra})) as writer:
        total = 0
        for i in order:
            writer.write_episode(episodes[int(i)], journal=False)
            total += episodes[int(i)].n_steps
            if total >= transitions:
                break
    tmp.rename(dst)
    return dst


def _finished(run: Path) -> bool:
    return (run / "report.md").is_file() or (run / "oracle_done.json").is_file()


def train_cmd(args: argparse.Namespace, method: str, logs: Path, seed: int, run: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "robot_rl.runners.train",
        "--sim",
        "mujoco",
        "--real-logs",
        str(logs),
        "--algo",
        method,
        "--updates",
        str(args.updates),
        "--seed",
        str(seed),
        "--hidden",
        *[str(h) for h in args.hidden],
        "--init-alpha",
        repr(args.init_alpha),
        "--eval-every",
        str(args.eval_every),
        "--eval-episodes-real",
        str(args.eval_episodes),
        "--eval-episodes-final",
        str(args.eval_episodes),
        "--eval-episodes-sim",
        "3",
        "--no-baseline",
        "--quiet",
        "--out",
        str(run),
    ]


def run_one(args: argparse.Namespace, method: str, logs: Path, seed: int, run: Path) -> tuple[str, float]:
    """One (method, seed) run in a subprocess; returns (run folder, wall seconds)."""
    if _finished(run):
        return str(run), 0.0
    run.parent.mkdir(parents=True, exist_ok=True)
    if method == "oracle":
        cmd = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--oracle-worker",
            str(run),
            "--seed",
            str(seed),
        ]
        cmd += ["--updates", str(args.updates), "--hidden", *[str(h) for h in args.hidden]]
        cmd += ["--init-alpha", repr(args.init_alpha), "--eval-every", str(args.eval_every)]
        cmd += ["--eval-episodes", str(args.eval_episodes), "--real-logs", str(logs)]
    else:
        cmd = train_cmd(args, method, logs, seed, run)
    t0 = time.monotonic()
    log = run.with_suffix(".log")
    with open(log, "wb") as out:
        rc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT).returncode
    wall = time.monotonic() - t0
    print(f"{run.relative_to(args.out)}: exit {rc} in {wall:.0f} s", flush=True)
    if rc != 0:
        print(log.read_text(errors="replace")[-2000:], file=sys.stderr)
    return str(run), wall


# ----------------------------------------------------------------------------------- the oracle


def oracle_worker(run: Path, args: argparse.Namespace) -> int:
    """SAC online on the emulated robot (one real step per update), evaluations on the same robot."""
    import torch

    from robot_rl.algos.base import to_torch
    from robot_rl.algos.sac import SAC, SACConfig
    from robot_rl.data.reader import open_run
    from robot_rl.data.replay import ReplayBuffer
    from robot_rl.envs.real_robot import RealRobotEnv
    from robot_rl.envs.rig import RealRig
    from robot_rl.nets.numpy_policy import NumpyPolicy, save_npz
    from robot_rl.runners.evaluate import EvalResult, evaluation_options, run_episodes
    from robot_rl.schema import Source, TransitionBatch

    torch.set_num_threads(1)
    cap = int(open_run(args.real_logs).manifest.extra.get("max_episode_steps", "500"))
    run.mkdir(parents=True, exist_ok=True)
    warmup = 1_000
    rng = np.random.default_rng(args.seed)
    with RealRig("quadruped", seed=args.seed, log_dir=run / "rig") as rig:
        env = RealRobotEnv("quadruped", bus=rig.bus, max_episode_steps=cap)
        obs_dim, act_dim = env.observation_space.shape[0], env.action_space.shape[0]  # type: ignore[index]
        cfg = SACConfig(
            hidden=tuple(args.hidden), source=Source.REAL, init_log_alpha=math.log(args.init_alpha)
        )
        sac = SAC(obs_dim, act_dim, seed=args.seed, config=cfg)
        buf = ReplayBuffer(obs_dim, act_dim, warmup + args.updates)
        evals = open(run / "evals.jsonl", "a")  # noqa: SIM115 -- one line per evaluation, closed below
        t0 = time.monotonic()
        obs, _ = env.reset(seed=args.seed * 100_000)
        episode = 0
        for step in range(warmup + args.updates):
            if step < warmup:
                action = rng.uniform(-1.0, 1.0, act_dim).astype(np.float32)
            else:
                action = sac.act(np.asarray(obs, np.float32)[None, :])[0]
            nobs, reward, term, trunc, info = env.step(action)
            row = TransitionBatch(
                obs=np.asarray(obs, np.float32)[None],
                action=np.asarray(info["action_sent"], np.float32)[None],
                reward=np.array([reward]),
                next_obs=np.asarray(nobs, np.float32)[None],
                terminated=np.array([term]),
                truncated=np.array([trunc]),
            )
            buf.add_batch(row, 0)
            obs = nobs
            if term or trunc:
                episode += 1
                obs, _ = env.reset(seed=args.seed * 100_000 + episode)
            update = step - warmup + 1
            if update >= 1:
                sac.update({"real": to_torch(buf.sample(cfg.batch_size, rng))})
            if update >= 1 and (update % args.eval_every == 0 or update == args.updates):
                policy = NumpyPolicy.from_weights(sac.policy_weights())
                te = time.monotonic()
                opts = evaluation_options("quadruped", args.seed, args.eval_episodes)
                returns, lengths, falls = run_episodes(env, policy, seed=args.seed, options=opts)
                res = EvalResult.summarise(
                    policy="oracle",
                    where="real",
                    update=update,
                    returns=returns,
                    lengths=lengths,
                    falls=falls,
                    max_episode_steps=cap,
                    wall_s=time.monotonic() - te,
                )
                evals.write(json.dumps(res.to_json_dict()) + "\n")
                evals.flush()
                print(f"oracle seed {args.seed} update {update}: real return {res.mean:.1f}", flush=True)
                episode += 1
                obs, _ = env.reset(seed=args.seed * 100_000 + episode)
        save_npz(run / "policy.npz", sac.policy_weights())
        env.close()
    (run / "oracle_done.json").write_text(
        json.dumps({"wall_s": time.monotonic() - t0, "updates": args.updates})
    )
    return 0


# ----------------------------------------------------------------------------------- summary


def real_evals(run: Path, policy: str) -> list[dict[str, Any]]:
    path = run / "evals.jsonl"
    if not path.is_file():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if r["where"] == "real" and r["policy"] == policy]
    return sorted(rows, key=lambda r: r["update"])


def summarise(out: Path, seeds: Sequence[int]) -> dict[str, Any]:
    """Per (setting, method): per-seed scores (mean of the last 3 real evaluations) and curves."""
    table: dict[str, dict[str, Any]] = {}
    for setting in SETTINGS:
        for method in METHODS:
            folder = "shared" if method in ("sac", "oracle") else setting
            scores, finals, curves = [], [], []
            for seed in seeds:
                rows = real_evals(out / folder / method / f"seed{seed}", method)
                if len(rows) >= 1:
                    last = rows[-3:]
                    scores.append(float(np.mean([r["mean"] for r in last])))
                    finals.append(float(rows[-1]["mean"]))
                    curves.append([(r["update"], r["mean"]) for r in rows])
            table.setdefault(setting, {})[method] = {
                "scores": scores,
                "mean": float(np.mean(scores)) if scores else None,
                "std": float(np.std(scores)) if scores else None,
                "finals": finals,
                "final_mean": float(np.mean(finals)) if finals else None,
                "final_std": float(np.std(finals)) if finals else None,
                "curves": curves,
            }
    behaviour = None
    for run in sorted(out.glob("full/h2o/seed*")):
        rows = real_evals(run, "behaviour")
        if rows:
            behaviour = float(rows[0]["mean"])
            break
    return {"table": table, "behaviour_return": behaviour}


def plot(summary: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(SETTINGS), figsize=(6 * len(SETTINGS), 4), sharey=True)
    for ax, setting in zip(np.atleast_1d(axes), SETTINGS, strict=True):
        for method, row in summary["table"][setting].items():
            for i, curve in enumerate(row["curves"]):
                if curve:
                    x, y = zip(*curve, strict=True)
                    ax.plot(
                        x, y, color=f"C{METHODS.index(method)}", alpha=0.8, label=method if i == 0 else None
                    )
        if summary["behaviour_return"] is not None:
            ax.axhline(summary["behaviour_return"], color="k", ls="--", lw=1, label="behaviour (logs)")
        ax.set_title(f"real data: {setting}")
        ax.set_xlabel("gradient updates")
        ax.grid(alpha=0.3)
    np.atleast_1d(axes)[0].set_ylabel("return on the emulated real robot")
    np.atleast_1d(axes)[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def markdown(summary: dict[str, Any], args: argparse.Namespace, machine: dict[str, Any]) -> str:
    def cell(row: dict[str, Any], norm: float | None) -> str:
        if row["mean"] is None:
            return "not run"
        text = f"{row['mean']:.1f} +- {row['std']:.1f} (n={len(row['scores'])})"
        if norm:
            text += f" [{100 * row['mean'] / norm:.0f}]"
        return text

    hidden = " ".join(map(str, args.hidden))
    seeds = ", ".join(map(str, args.seeds))
    lines = [
        RESULTS_BEGIN,
        f"Command: `python bench/hybrid.py --updates {args.updates} --hidden {hidden} "
        f"--init-alpha {args.init_alpha} --eval-every {args.eval_every} "
        f"--eval-episodes {args.eval_episodes}`. Seeds {seeds}. Machine: {machine.get('cpu')}, "
        f"{machine.get('cores')} cores, torch {machine.get('torch')}, one torch thread per run, "
        f"{args.parallel} runs in parallel.",
        "",
        "Return on the emulated real robot (mean +- std over seeds of each seed's mean of its last three "
        "evaluations; [oracle-normalised, %]):",
        "",
        "| method | " + " | ".join(f"real data: {s}" for s in SETTINGS) + " |",
        "|---|" + "---|" * len(SETTINGS),
    ]
    oracle = {s: summary["table"][s]["oracle"]["mean"] for s in SETTINGS}
    for method in METHODS:
        cells = [cell(summary["table"][s][method], oracle[s]) for s in SETTINGS]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    if summary["behaviour_return"] is not None:
        lines.append(f"| behaviour (logs) | {summary['behaviour_return']:.1f} | - |")
    lines += ["", "The saved (final) policy's return, mean +- std over seeds of its last evaluation:", ""]
    lines += ["| method | " + " | ".join(f"real data: {s}" for s in SETTINGS) + " |", "|---|" + "---|" * 2]
    for method in METHODS:
        cells = []
        for s in SETTINGS:
            row = summary["table"][s][method]
            ok = row["final_mean"] is not None
            cells.append(f"{row['final_mean']:.1f} +- {row['final_std']:.1f}" if ok else "not run")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "H2O / the better of sim-only (SAC) and real-only (CQL, IQL) among the methods run; the paper's "
        "shape "
        "is >= 1.1:",
        "",
    ]
    for s in SETTINGS:
        t = summary["table"][s]
        ref = [v for v in (t["sac"]["mean"], t["cql"]["mean"], t["iql"]["mean"]) if v is not None]
        if t["h2o"]["mean"] is not None and ref and max(ref) > 0:
            lines.append(f"- {s}: {t['h2o']['mean'] / max(ref):.2f}")
        else:
            lines.append(f"- {s}: not enough runs")
    lines += ["", "![curves](../bench/results/hybrid/curves.png)", RESULTS_END]
    return "\n".join(lines)


def write_docs(text: str) -> None:
    doc = ROOT / "docs" / "results.md"
    body = doc.read_text() if doc.is_file() else "# Results\n\n"
    if RESULTS_BEGIN in body:
        head, rest = body.split(RESULTS_BEGIN, 1)
        tail = rest.split(RESULTS_END, 1)[1] if RESULTS_END in rest else ""
        body = head + text + tail
    else:
        body = body.rstrip() + "\n\n## H2O and baselines (bench/hybrid.py)\n\n" + text + "\n"
    doc.write_text(body)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    p.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=SETTINGS)
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--updates", type=int, default=40_000)
    p.add_argument("--hidden", nargs="+", type=int, default=[128, 128])
    p.add_argument("--init-alpha", type=float, default=0.1)
    p.add_argument("--eval-every", type=int, default=10_000)
    p.add_argument("--eval-episodes", type=int, default=5)
    p.add_argument("--parallel", type=int, default=2)
    p.add_argument("--real-logs", type=Path, default=ROOT / "calib" / "run1")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "hybrid")
    p.add_argument("--summarise-only", action="store_true")
    p.add_argument("--oracle-worker", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.oracle_worker is not None:
        return oracle_worker(args.oracle_worker, args)

    args.out.mkdir(parents=True, exist_ok=True)
    if not args.summarise_only:
        logs = {"full": args.real_logs}
        if "5k" in args.settings:
            logs["5k"] = make_subset(args.real_logs, args.out / "data" / "run1_5k", SUBSET_TRANSITIONS, 0)
        jobs = []
        for method in args.methods:
            for seed in args.seeds:
                if method in ("sac", "oracle"):  # independent of the real data setting
                    jobs.append((method, logs["full"], seed, args.out / "shared" / method / f"seed{seed}"))
                    continue
                for setting in args.settings:
                    jobs.append((method, logs[setting], seed, args.out / setting / method / f"seed{seed}"))
        print(f"{len(jobs)} runs, {args.parallel} at a time", flush=True)
        with ThreadPoolExecutor(args.parallel) as pool:
            list(pool.map(lambda j: run_one(args, *j), jobs))
    summary = summarise(args.out, args.seeds)
    machine = machine_info("torch", "mujoco")
    (args.out / "summary.json").write_text(
        json.dumps(
            {"machine": machine, "args": {k: str(v) for k, v in vars(args).items()}, **summary}, indent=1
        )
    )
    plot(summary, args.out / "curves.png")
    text = markdown(summary, args, machine)
    write_docs(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
