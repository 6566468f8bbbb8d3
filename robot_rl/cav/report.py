"""What ``robot-rl cav test`` writes: results.json, junit.xml, estimate.png and crash pictures.

Pass/fail (JUnit and exit code): with a threshold ``--max-crash-rate`` r, the test case fails when the
one-sided 95 % upper bound of the crash rate exceeds r: μ̂ + z s/√n with z = 1.645 (the upper end of the 90 %
interval whose relative half-width the run reports) when at least one crash was seen; with none, 3.0/n
(-ln 0.05 / n: the exact one-sided 95 % Clopper-Pearson bound for NDE; for importance sampling, where a run
without crash says less, the same number is a heuristic).
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import sys
import xml.etree.ElementTree as ET
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

import robot_rl
from robot_rl.cav.campaign import Campaign, CampaignResult, run_campaign, train_dense
from robot_rl.cav.dense import EpsilonPolicy, PpoConfig
from robot_rl.cav.drivers import CAV_UNDER_TEST, IdmCav, OnnxCav
from robot_rl.cav.scenario import SCENARIOS, CavModel, ScenarioConfig, replay
from robot_rl.cav.stats import RHW_TARGET, Z_90, SparseRecord, analytic_nde_tests

if TYPE_CHECKING:
    from robot_rl.cav.commands import CavTest

ZERO_CRASH_UPPER = -math.log(0.05)


def upper_bound(record: SparseRecord) -> float:
    """One-sided 95 % upper bound of the crash rate (module docstring)."""
    n = record.n_tests
    if record.n_nonzero == 0:
        return ZERO_CRASH_UPPER / n
    return record.mean() + Z_90 * record.sample_std() / math.sqrt(n)


def summary(result: CampaignResult, bootstrap: int = 0, seed: int = 0) -> dict[str, Any]:
    """The numbers of a campaign (estimate, RHW, interval, tests needed, NDE comparison)."""
    rec = result.record
    mu, sd, rhw = rec.mean(), rec.sample_std(), rec.rhw()
    half = Z_90 * sd / math.sqrt(rec.n_tests)
    n_star = rec.tests_needed(RHW_TARGET)
    nde_n = analytic_nde_tests(mu) if mu > 0 else math.inf
    out: dict[str, Any] = {
        "n_tests": rec.n_tests,
        "n_crash_tests": result.n_crash_tests,
        "estimate": mu,
        "sample_std": sd,
        "rhw": _finite(rhw),
        "ci90": [mu - half, mu + half],
        "upper_bound_95": upper_bound(rec),
        "tests_needed": n_star,
        "tests_needed_target_rhw": RHW_TARGET,
        "nde_tests_needed_analytic": _finite(nde_n),
        "speedup_vs_nde_analytic": _finite(nde_n / n_star) if n_star else None,
        "wall_s": result.wall_s,
        "tests_per_s": result.tests_per_s,
        "critical_steps": result.critical_steps,
    }
    if bootstrap and rec.n_nonzero:
        draws = rec.bootstrap_tests_needed(bootstrap, np.random.default_rng(seed + 7919))
        reached = np.array([d for d in draws if d is not None], np.float64)
        out["tests_needed_bootstrap"] = {
            "resamples": bootstrap,
            "not_reached_fraction": 1.0 - len(reached) / bootstrap,
            **({f"p{q}": float(np.percentile(reached, q)) for q in (5, 50, 95)} if len(reached) else {}),
        }
    return out


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def write_junit(
    path: Path, name: str, props: dict[str, Any], threshold: float | None, upper: float, wall_s: float
) -> bool:
    """JUnit XML with one test case, crash_rate_below_threshold; returns passed (True without a threshold:
    the case is then marked skipped)."""
    suites = ET.Element("testsuites", name="robot-rl cav")
    suite = ET.SubElement(suites, "testsuite", name=name, tests="1", time=f"{wall_s:.3f}")
    p = ET.SubElement(suite, "properties")
    for k, v in props.items():
        ET.SubElement(p, "property", name=k, value=json.dumps(v) if not isinstance(v, str) else v)
    case = ET.SubElement(
        suite,
        "testcase",
        classname=f"robot_rl.cav.{name}",
        name="crash_rate_below_threshold",
        time=f"{wall_s:.3f}",
    )
    passed = True
    failures = skipped = 0
    if threshold is None:
        ET.SubElement(case, "skipped", message="no --max-crash-rate given")
        skipped = 1
    elif upper > threshold:
        passed = False
        failures = 1
        f = ET.SubElement(
            case,
            "failure",
            type="CrashRateExceeded",
            message=f"crash-rate upper bound {upper:.3e} > threshold {threshold:.3e}",
        )
        f.text = json.dumps(props, indent=1)
    out = ET.SubElement(case, "system-out")
    out.text = f"estimate {props.get('estimate')}, 95% upper bound {upper:.4e}, threshold {threshold}"
    for el in (suites, suite):
        el.set("tests", "1")
        el.set("failures", str(failures))
        el.set("errors", "0")
        el.set("skipped", str(skipped))
    ET.ElementTree(suites).write(path, encoding="utf-8", xml_declaration=True)
    return passed


def build_cav(cmd: CavTest) -> CavModel:
    if cmd.cav == "idm":
        if (cmd.idm_headway_s, cmd.idm_accept_gap_m, cmd.lane_change) == (1.0, 6.0, "gap"):
            return CAV_UNDER_TEST
        return IdmCav(
            headway_s=cmd.idm_headway_s, accept_gap_m=cmd.idm_accept_gap_m, lane_change=cmd.lane_change
        )
    path = Path(cmd.cav)
    if not path.is_file():
        raise FileNotFoundError(f"--cav {path}: no such file")
    return OnnxCav(path)


def scenario_of(cmd: CavTest) -> ScenarioConfig:
    if cmd.scenario == "multi":
        return ScenarioConfig(n_decisions=cmd.decisions)
    return SCENARIOS[cmd.scenario]


class _Bar:
    """A rich progress bar on stderr (tests, estimate, RHW), or nothing."""

    def __init__(self, enabled: bool, total: int, label: str) -> None:
        self.progress: Any = None
        if not enabled:
            return
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.progress = Progress(
            TextColumn(label),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[stats]}"),
            TimeRemainingColumn(),
            console=Console(stderr=True),
        )
        self.task = self.progress.add_task(label, total=total, stats="")
        self.progress.start()

    def __call__(self, n: int, rec: SparseRecord) -> None:
        if self.progress is None:
            return
        rhw = rec.rhw()
        stats = f"estimate {rec.mean():.3e}  RHW {rhw:.3f}" if math.isfinite(rhw) else "no crash yet"
        self.progress.update(self.task, completed=n, stats=stats)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()


def run_test_command(cmd: CavTest) -> int:
    """``robot-rl cav test`` (robot_rl.cav.commands.CavTest)."""
    cfg = scenario_of(cmd)
    cav = build_cav(cmd)
    out = cmd.out or Path("runs") / (
        f"{_dt.datetime.now(_dt.UTC).strftime('%Y%m%dT%H%M%SZ')}-cav-{cmd.method}-{cmd.scenario}"
    )
    if out.exists() and any(out.iterdir()) and not cmd.overwrite:
        raise FileExistsError(f"--out {out}: exists and is not empty (use --overwrite)")
    campaign = Campaign(
        cfg,
        cmd.method,
        cmd.n_tests,
        seed=cmd.seed,
        surrogates=tuple(cmd.surrogates),
        epsilon=cmd.epsilon,
        refit_every=cmd.refit_every,
        lookahead_decisions=cmd.lookahead,
        batch_size=cmd.batch_size,
        keep_crashes=max(cmd.render_crashes, 8),
    )
    policy: EpsilonPolicy | None = None
    dense_info: dict[str, Any] = {}
    if cmd.method == "dense" and cmd.epsilon_policy is not None:
        policy = EpsilonPolicy.load(cmd.epsilon_policy)
        dense_info = {"epsilon_policy": str(cmd.epsilon_policy)}
    out.mkdir(parents=True, exist_ok=True)
    if cmd.method == "dense" and policy is None:
        print(f"training the epsilon policy on {cmd.behaviour_tests:,} behaviour tests ...", file=sys.stderr)
        policy, dense_info = train_dense(
            cfg,
            cav,
            tuple(cmd.surrogates),
            cmd.behaviour_tests,
            cmd.seed,
            PpoConfig(iterations=cmd.ppo_iterations, seed=cmd.seed),
            cmd.lookahead,
        )
        policy.save(out / "epsilon_policy.npz")
        dense_info["epsilon_policy"] = str(out / "epsilon_policy.npz")
    bar = _Bar(cmd.progress, campaign.n_tests, f"{cmd.method} {cav.name}")
    try:
        result = run_campaign(campaign, cav, epsilon_policy=policy, progress=bar)
    finally:
        bar.close()
    result.extra["dense"] = dense_info
    stats = summary(result, cmd.bootstrap, cmd.seed)
    from robot_rl.cav.render import animate_test, plot_estimate, plot_test, save_gif

    plot_estimate(
        [(f"{cmd.method}", result.record)],
        out / "estimate.png",
        title=f"{cav.name}, {cmd.scenario} ({cfg.n_decisions} decision(s)), {cmd.method}",
    )
    crashes: list[dict[str, Any]] = []
    hw_env: Any = None
    for k, ex in enumerate(result.crashes[: cmd.render_crashes]):
        rp = replay(cfg, ex.initial, ex.actions, cav)
        item: dict[str, Any] = {
            "test_index": ex.test_index,
            "weight": ex.weight,
            "crash_time_s": None if rp.crash_substep is None else rp.crash_substep * cfg.dt_s,
            "initial": {
                "x_m": ex.initial.x_m[0].tolist(),
                "v_mps": ex.initial.v_mps[0].tolist(),
                "lane": ex.initial.lane[0].tolist(),
            },
            "background_accel_mps2": rp.accel_bg_mps2.tolist(),
        }
        title = f"test {ex.test_index}, weight {ex.weight:.3g}"
        item["png"] = str(plot_test(rp, out / f"crash-{k}.png", title=title).name)
        item["gif"] = str(animate_test(rp, out / f"crash-{k}.gif", title=f"test {ex.test_index}").name)
        if cmd.highway_replay:
            from robot_rl.cav.highway import make_replay_env, replay_in_highway_env

            if hw_env is None:
                hw_env = make_replay_env(render=True)
            hw = replay_in_highway_env(cfg, ex.initial, ex.actions, cav, env=hw_env, render=True)
            item["highway_env"] = {"crashed": hw.crashed, "crash_time_s": hw.crash_time_s}
            item["highway_gif"] = str(
                save_gif(hw.frames, out / f"crash-{k}-highway.gif", hw.frames_per_s).name
            )
            idm = replay_in_highway_env(cfg, ex.initial, ex.actions, None, cav_mode="highway-idm", env=hw_env)
            item["highway_env_idm_vehicle"] = {"crashed": idm.crashed, "crash_time_s": idm.crash_time_s}
        crashes.append(item)
    if hw_env is not None:
        hw_env.close()
    ns = np.unique(np.geomspace(2, result.record.n_tests, 200).astype(np.int64))
    mu_curve, rhw_curve = result.record.curve(ns)
    passed = write_junit(
        out / "junit.xml",
        f"{cmd.scenario}.{cmd.method}",
        {
            "cav": cav.name,
            "method": cmd.method,
            "scenario": cmd.scenario,
            **{k: stats[k] for k in ("estimate", "rhw", "n_tests", "tests_needed")},
        },
        cmd.max_crash_rate,
        stats["upper_bound_95"],
        result.wall_s,
    )
    results = {
        "robot_rl_version": robot_rl.__version__,
        "created_utc": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "argv": sys.argv,
        "cav": {
            "name": cav.name,
            "source": cmd.cav,
            **({"onnx_batched": cav.batched} if isinstance(cav, OnnxCav) else {}),
        },
        "scenario": {"name": cmd.scenario, **asdict(cfg)},
        "method": cmd.method,
        "settings": {
            "epsilon": cmd.epsilon if cmd.method in ("nade", "adaptive") else None,
            "surrogates": list(cmd.surrogates) if cmd.method != "nde" else [],
            "refit_every": cmd.refit_every if cmd.method == "adaptive" else None,
            "lookahead_decisions": cmd.lookahead,
            "seed": cmd.seed,
            "batch_size": campaign.batch,
        },
        **stats,
        "threshold": {"max_crash_rate": cmd.max_crash_rate, "passed": passed},
        "theta_history": result.theta_history,
        "dense": dense_info,
        "crashes": crashes,
        "curve": {"n": ns.tolist(), "estimate": mu_curve.tolist(), "rhw": [_finite(r) for r in rhw_curve]},
        "files": {"junit": "junit.xml", "estimate_png": "estimate.png"},
    }
    (out / "results.json").write_text(json.dumps(results, indent=1, allow_nan=False) + "\n")
    line = (
        f"{cav.name} {cmd.scenario} {cmd.method}: {stats['n_tests']:,} tests in {result.wall_s:.1f} s, "
        f"crash rate {stats['estimate']:.3e} (90% CI {stats['ci90'][0]:.3e} - {stats['ci90'][1]:.3e}, "
        f"RHW {stats['rhw'] if stats['rhw'] is not None else 'inf'}), tests needed to RHW 0.3: "
        f"{stats['tests_needed'] if stats['tests_needed'] is not None else 'not reached'}"
    )
    print(line)
    if cmd.max_crash_rate is not None:
        verdict = "PASS" if passed else "FAIL"
        print(
            f"{verdict}: upper bound {stats['upper_bound_95']:.3e} vs --max-crash-rate "
            f"{cmd.max_crash_rate:.3e}"
        )
    print(f"results: {out}/results.json, {out}/junit.xml, {out}/estimate.png")
    return 0 if passed else 1
