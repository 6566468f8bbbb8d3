"""The statistical checks of issue 8 (robot_rl.cav), each a part of this script; JSON to bench/results/.

    unbiased    single-decision scenario: NDE (--nde-tests) gives a 90 % interval; every importance-sampling
                estimate of the efficiency part (run first when both are asked for) is compared with it; the
                exact value by enumerating the 49 joint actions of --exact-states initial states beside it
    formula     the RHW formula and the analytic NDE sample size z^2 (1 - p) / (0.09 p) against simulation:
                Bernoulli streams, and independent NDE runs of the single-decision scenario
    efficiency  single decision: tests to RHW 0.3 per method and surrogate (--seeds), the bootstrap of n*,
                speed-up over NDE (measured in the unbiased part when run together, else analytic)
    multi       T = 2: fixed epsilon in {0.1, 0.5, 0.9, 0.99} against the learned (D2RL) epsilon(s), oracle
                surrogate, --multi-tests tests per run; NDE of the same scenario for reference

Usage: python bench/cav_experiments.py --parts efficiency unbiased formula multi [--seeds 3] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
_HERE = str(Path(__file__).resolve().parent)
sys.path[:] = [p for p in sys.path if p not in (_HERE, "")] + [_HERE]

import numpy as np  # noqa: E402
from machine import machine_info  # noqa: E402  (bench/machine.py)

from robot_rl.cav.campaign import Campaign, CampaignResult, run_campaign, train_dense  # noqa: E402
from robot_rl.cav.dense import PpoConfig  # noqa: E402
from robot_rl.cav.drivers import CAV_UNDER_TEST  # noqa: E402
from robot_rl.cav.estimators import enumerate_single_decision  # noqa: E402
from robot_rl.cav.scenario import MULTI, SINGLE, ScenarioConfig, sample_initial  # noqa: E402
from robot_rl.cav.stats import Z_90, SparseRecord, analytic_nde_tests, rhw_curve, tests_needed  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
ALL4 = ("s1", "s2", "s3", "s4")


def stats_of(rec: SparseRecord, bootstrap: int = 0, seed: int = 0) -> dict[str, Any]:
    n = rec.n_tests
    mu, sd = rec.mean(), rec.sample_std()
    half = Z_90 * sd / math.sqrt(n)
    out: dict[str, Any] = {
        "n_tests": n,
        "crash_tests": rec.n_nonzero,
        "estimate": mu,
        "ci90": [mu - half, mu + half],
        "rhw": rec.rhw() if math.isfinite(rec.rhw()) else None,
        "tests_needed": rec.tests_needed(),
    }
    if bootstrap and rec.n_nonzero:
        draws = rec.bootstrap_tests_needed(bootstrap, np.random.default_rng(seed))
        reached = np.array([d for d in draws if d is not None], float)
        out["bootstrap"] = {
            "not_reached": 1.0 - len(reached) / bootstrap,
            **({f"p{q}": float(np.percentile(reached, q)) for q in (5, 50, 95)} if len(reached) else {}),
        }
    return out


def campaign(cfg: ScenarioConfig, method: str, n: int, seed: int, **kw: Any) -> CampaignResult:
    t0 = time.perf_counter()
    res = run_campaign(
        Campaign(cfg, method, n, seed=seed, **{k: v for k, v in kw.items() if k != "policy"}),
        CAV_UNDER_TEST,
        epsilon_policy=kw.get("policy"),
    )
    print(
        f"    {method:<9} {kw.get('surrogates', '')} eps={kw.get('epsilon', '')} seed {seed}: "
        f"{res.record.mean():.4e} RHW {res.record.rhw():.3f} n* {res.record.tests_needed()} "
        f"({n:,} tests, {time.perf_counter() - t0:.1f} s)",
        flush=True,
    )
    return res


def part_unbiased(args: argparse.Namespace, out: dict[str, Any]) -> None:
    print("unbiased: NDE reference", flush=True)
    nde = campaign(SINGLE, "nde", args.nde_tests, seed=12345)
    out["nde"] = stats_of(nde.record) | {"wall_s": nde.wall_s, "tests_per_s": nde.tests_per_s}
    lo, hi = out["nde"]["ci90"]
    states = sample_initial(SINGLE, args.exact_states, np.random.default_rng(777))
    mu_s = enumerate_single_decision(SINGLE, CAV_UNDER_TEST, states)
    out["exact"] = {
        "states": args.exact_states,
        "estimate": float(mu_s.mean()),
        "ci90": [
            float(mu_s.mean() - Z_90 * mu_s.std(ddof=1) / math.sqrt(len(mu_s))),
            float(mu_s.mean() + Z_90 * mu_s.std(ddof=1) / math.sqrt(len(mu_s))),
        ],
    }
    print(f"  NDE {out['nde']['estimate']:.4e} CI [{lo:.4e}, {hi:.4e}]; exact {out['exact']['estimate']:.4e}")
    rows = []
    for r in EFFICIENCY_ROWS or _efficiency_rows(args):
        row = {
            k: r[k] for k in ("label", "method", "surrogates", "seed", "n_tests", "estimate", "ci90", "rhw")
        }
        row["inside_nde_ci90"] = bool(lo <= r["estimate"] <= hi)
        row["converged_rhw_below_0.3"] = r["rhw"] is not None and r["rhw"] <= 0.3
        rows.append(row)
    out["is_estimates"] = rows


def part_formula(args: argparse.Namespace, out: dict[str, Any]) -> None:
    print("formula", flush=True)
    bern = {}
    for p in (0.01, 1e-3):
        n_stars = []
        for seed in range(20):
            x = (np.random.default_rng(seed).random(int(1000 / p)) < p).astype(float)
            n_stars.append(tests_needed(rhw_curve(x)))
        got = np.array([s for s in n_stars if s is not None], float)
        bern[str(p)] = {
            "analytic": analytic_nde_tests(p),
            "median": float(np.median(got)),
            "p10": float(np.percentile(got, 10)),
            "p90": float(np.percentile(got, 90)),
            "draws_per_stream": int(1000 / p),
            "seeds": 20,
        }
        print(f"  Bernoulli({p}): median n* {np.median(got):,.0f} vs analytic {analytic_nde_tests(p):,.0f}")
    out["bernoulli"] = bern
    runs = []
    for seed in range(args.nde_runs):
        rec = campaign(SINGLE, "nde", args.nde_run_tests, seed=1000 + seed).record
        mu = rec.mean()
        runs.append(
            {
                "seed": 1000 + seed,
                "estimate": mu,
                "tests_needed": rec.tests_needed(),
                "rhw_final": rec.rhw(),
                "rhw_formula_at_final": Z_90 * math.sqrt((1 - mu) / (rec.n_tests * mu)) if mu > 0 else None,
                "analytic_at_own_estimate": analytic_nde_tests(mu) if mu > 0 else None,
            }
        )
    pooled = float(np.mean([r["estimate"] for r in runs]))
    reached = [r["tests_needed"] for r in runs if r["tests_needed"] is not None]
    out["nde_runs"] = {
        "runs": runs,
        "tests_per_run": args.nde_run_tests,
        "pooled_estimate": pooled,
        "analytic_at_pooled": analytic_nde_tests(pooled),
        "median_tests_needed": float(np.median(reached)) if reached else None,
        "reached": len(reached),
    }
    print(
        f"  NDE runs: median n* {out['nde_runs']['median_tests_needed']} vs analytic "
        f"{analytic_nde_tests(pooled):,.0f} at the pooled p {pooled:.3e}"
    )


EFFICIENCY_ROWS: list[dict[str, Any]] = []
"""The efficiency part's rows, reused by the unbiased part when both run in one process."""


def part_efficiency(args: argparse.Namespace, out: dict[str, Any]) -> None:
    out["rows"] = _efficiency_rows(args)


def _efficiency_rows(args: argparse.Namespace) -> list[dict[str, Any]]:
    print("efficiency (single decision)", flush=True)
    settings = [
        ("nade oracle", "nade", ("oracle",), args.is_tests),
        ("nade s2 (0.8 s, 4 m)", "nade", ("s2",), args.is_tests),
        ("nade s4 (2.0 s, 3 m)", "nade", ("s4",), args.is_tests),
        ("nade s3 (1.2 s, 8 m)", "nade", ("s3",), args.is_tests_slow),
        ("nade s1 (1.5 s, 10 m), mis-specified", "nade", ("s1",), args.is_tests_slow),
        ("adaptive s1-s4", "adaptive", ALL4, args.is_tests),
        ("adaptive s1, s3, s4 + oracle", "adaptive", ("s1", "oracle", "s3", "s4"), args.is_tests),
    ]
    rows = []
    for label, method, surrogates, n in settings:
        for seed in range(args.seeds):
            res = campaign(SINGLE, method, n, seed, surrogates=surrogates)
            rows.append(
                {
                    "label": label,
                    "method": method,
                    "surrogates": list(surrogates),
                    "seed": seed,
                    "wall_s": res.wall_s,
                    "tests_per_s": res.tests_per_s,
                    "theta_final": (res.theta_history or [[0, []]])[-1][1],
                    **stats_of(res.record, bootstrap=1000, seed=seed),
                }
            )
    EFFICIENCY_ROWS[:] = rows
    return rows


def part_multi(args: argparse.Namespace, out: dict[str, Any]) -> None:
    cfg = ScenarioConfig(n_decisions=args.decisions) if args.decisions != 2 else MULTI
    print(f"multi (T = {cfg.n_decisions}, lookahead {args.lookahead})", flush=True)
    nde = campaign(cfg, "nde", args.multi_nde_tests, seed=4242)
    out["nde"] = stats_of(nde.record)
    rows = []
    for seed in range(args.seeds):
        for eps in (0.1, 0.5, 0.9, 0.99):
            res = campaign(
                cfg,
                "nade",
                args.multi_tests,
                seed,
                surrogates=("oracle",),
                epsilon=eps,
                lookahead_decisions=args.lookahead,
            )
            rows.append({"label": f"fixed eps {eps}", "seed": seed, **stats_of(res.record, 1000, seed)})
        t0 = time.perf_counter()
        policy, info = train_dense(
            cfg,
            CAV_UNDER_TEST,
            ("oracle",),
            args.behaviour_tests,
            seed,
            PpoConfig(iterations=args.ppo_iterations, seed=seed),
            args.lookahead,
        )
        info["train_s"] = time.perf_counter() - t0
        print(f"    dense policy seed {seed}: {info}", flush=True)
        res = campaign(
            cfg,
            "dense",
            args.multi_tests,
            seed,
            surrogates=("oracle",),
            policy=policy,
            lookahead_decisions=args.lookahead,
        )
        rows.append(
            {
                "label": "learned eps(s) (D2RL)",
                "seed": seed,
                "training": info,
                **stats_of(res.record, 1000, seed),
            }
        )
    out["rows"] = rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parts", nargs="+", default=["efficiency", "unbiased", "formula", "multi"])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--nde-tests", type=int, default=50_000_000)
    ap.add_argument("--exact-states", type=int, default=200_000)
    ap.add_argument("--is-tests", type=int, default=30_000)
    ap.add_argument("--is-tests-slow", type=int, default=300_000)
    ap.add_argument("--nde-runs", type=int, default=10)
    ap.add_argument("--nde-run-tests", type=int, default=8_000_000)
    ap.add_argument("--decisions", type=int, default=2)
    ap.add_argument("--lookahead", type=int, default=1)
    ap.add_argument("--multi-tests", type=int, default=500_000)
    ap.add_argument("--multi-nde-tests", type=int, default=20_000_000)
    ap.add_argument("--behaviour-tests", type=int, default=1_000_000)
    ap.add_argument("--ppo-iterations", type=int, default=150)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    ap.add_argument("--tag", default="")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    parts = {
        "unbiased": part_unbiased,
        "formula": part_formula,
        "efficiency": part_efficiency,
        "multi": part_multi,
    }
    for name in args.parts:
        out: dict[str, Any] = {
            "machine": machine_info("numpy", "scipy"),
            "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        }
        t0 = time.perf_counter()
        parts[name](args, out)
        out["wall_s"] = time.perf_counter() - t0
        path = args.out / f"cav_{name}{args.tag}.json"
        path.write_text(json.dumps(out, indent=1, default=float) + "\n")
        print(f"written: {path} ({out['wall_s']:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
