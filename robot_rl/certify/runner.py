"""What ``robot-rl certify`` does (:class:`robot_rl.certify.commands.Certify`), in order:

1. Loads the policy (:mod:`robot_rl.certify.policies`) and the environment (:mod:`robot_rl.certify.evaluate`)
   and checks that they fit (observation size per frame, action kind and size).
2. Runs N clean episodes of the smoothed policy (``sigma``, fresh noise every step).
3. Bounds the clean return's tail (Clopper-Pearson + Bonferroni, or DKW: :mod:`robot_rl.certify.bounds`) and
   turns it into the certified lower bound C(B) at every budget of the grid (total or per-step budgets).
4. With ``--attack``: attacks the smoothed policy (:mod:`robot_rl.certify.attack`) at every budget > 0 with
   ``--attack-episodes`` episodes (and the undefended policy with ``--attack-undefended``).
5. Writes the JSON (every number with its confidence level, N, sigma and method) and the PNG (certified bound
   against budget, the clean smoothed mean, the attacked means), and prints a table.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from robot_rl.certify import bounds
from robot_rl.certify.attack import AttackConfig, AttackInputError, attack_smoothed
from robot_rl.certify.evaluate import (
    EnvInputError,
    EnvSpec,
    EpisodeResult,
    check_fit,
    evaluate_smoothed,
    noise_rng,
    resolve_env,
)
from robot_rl.certify.policies import LoadedPolicy, PolicyInputError, load_policy
from robot_rl.certify.smoothing import SmoothedPolicy

if TYPE_CHECKING:
    from robot_rl.certify.commands import Certify

Z95 = 1.959963984540054
"""Two-sided 95% normal quantile, for the Monte Carlo means' intervals."""
INPUT_ERRORS = (PolicyInputError, EnvInputError, bounds.BoundInputError, AttackInputError)


def default_out(cfg: Certify, kind: str, policy_path: str) -> Path:
    """``certify-<env>-sigma<S>.json`` in the run folder, beside a policy file, or in the current folder."""
    slug = re.sub(r"[^A-Za-z0-9.-]+", "-", cfg.env).strip("-")
    name = (
        f"certify-{slug}-sigma{cfg.sigma:g}"
        + ("-per-step" if cfg.budget_kind == "per-step" else "")
        + ".json"
    )
    if kind == "reference":
        return Path(name)
    path = Path(policy_path)
    if path.is_file():
        return path.parent / name
    if kind == "checkpoint" and path.parent.name == "checkpoints":
        return path.parent.parent / name
    return path / name


def command_line(cfg: Certify) -> str:
    """The ``robot-rl certify`` command that reproduces ``cfg`` (non-default options only)."""
    import dataclasses
    import shlex

    from robot_rl.certify.commands import Certify

    defaults = {f.name: f.default for f in dataclasses.fields(Certify)}
    parts = ["robot-rl", "certify", shlex.quote(cfg.policy)]
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        always = f.name in ("env", "sigma", "episodes", "budgets")
        if f.name == "policy" or (not always and value == defaults[f.name]):
            continue
        flag = "--" + f.name.replace("_", "-")
        if isinstance(value, bool):
            parts.append(flag if value else "--no-" + f.name.replace("_", "-"))
        else:
            parts += [flag, shlex.quote(str(value))]
    return " ".join(parts)


def _log(cfg: Certify, msg: str) -> None:
    if not cfg.quiet:
        print(msg, file=sys.stderr, flush=True)


def _mean_entry(returns: np.ndarray, sigma: float, what: str) -> dict[str, Any]:
    n = int(returns.size)
    mean = float(returns.mean())
    se = float(returns.std(ddof=1) / math.sqrt(n)) if n > 1 else None  # one episode: no spread to estimate
    return {
        "what": what,
        "mean": mean,
        "std_err": se,
        "ci95": [mean - Z95 * se, mean + Z95 * se] if se is not None else None,
        "confidence": 0.95,
        "interval": "normal approximation, mean +- 1.96 standard errors",
        "episodes": n,
        "sigma": sigma,
        "min": float(returns.min()),
        "max": float(returns.max()),
    }


def _tail(cfg: Certify, spec: EnvSpec, clean: EpisodeResult) -> tuple[bounds.TailBounds, dict[str, Any]]:
    """The tail bounds and a record of the method, range and certified quantity."""
    can_cp = spec.integer_returns and spec.return_range is not None
    method = cfg.method or ("cp" if can_cp else "dkw")
    horizon = spec.max_episode_steps
    if method == "cp":
        if not can_cp or spec.return_range is None:
            raise bounds.BoundInputError(
                f"method: cp needs integer returns with a known range (CartPole); {spec.env_id} has neither: "
                "use --method dkw"
            )
        if cfg.return_low is not None:
            raise bounds.BoundInputError("return_low: applies to dkw only (cp uses the env's range)")
        lo, hi = spec.return_range
        tail = bounds.cp_tail(
            clean.returns, int(lo), int(hi), cfg.alpha, horizon=horizon, survival=spec.survival
        )
        record = {
            "method": "cp",
            "method_name": bounds.METHOD_NAMES["cp"],
            "return_range": [lo, hi],
            "range_source": f"{spec.env_id}: integer returns in [{lo:g}, {hi:g}]",
            "levels": int(hi - lo),
            "per_level_alpha": tail.level,
            "certified_quantity": "E[F]",
        }
        return tail, record
    if spec.return_range is not None and cfg.return_low is None:
        low, source, quantity = (
            spec.return_range[0],
            f"{spec.env_id}: returns >= {spec.return_range[0]:g}",
            "E[F]",
        )
    elif cfg.return_low is not None:
        low, source, quantity = cfg.return_low, "--return-low", "E[F] (if no return can fall below a)"
    else:
        low = float(clean.returns.min())
        source = "the smallest clean return (the env declares no lower bound)"
        quantity = (
            f"E[max(F, a)] with a = {low:g}: the return floored at a; a bound on E[F] needs --return-low"
        )
    tail = bounds.dkw_tail(clean.returns, low, cfg.alpha, horizon=horizon)
    record = {
        "method": "dkw",
        "method_name": bounds.METHOD_NAMES["dkw"],
        "return_range": [low, tail.upper],
        "range_source": source,
        "dkw_band": tail.band,
        "certified_quantity": quantity,
    }
    return tail, record


def _attack(
    cfg: Certify,
    spec: EnvSpec,
    loaded: LoadedPolicy,
    sigma: float,
    budgets: np.ndarray,
    what: str,
    floor: float,
) -> list[dict[str, Any] | None]:
    """The attack at every budget > 0. ``floor``: the certificate's lower end a; ``floored`` holds the mean of
    max(F, a), the quantity the certificate bounds (the plain mean when no return falls below a)."""
    rows: list[dict[str, Any] | None] = []
    batch = cfg.batch_size or (1000 if spec.env_id.startswith("vec:") else 100)
    for b in budgets.tolist():
        if b == 0.0:
            rows.append(None)
            continue
        acfg = AttackConfig(budget=b, per_step=cfg.budget_kind == "per-step", draws=cfg.attack_draws)
        res = attack_smoothed(
            spec, loaded.base, sigma, acfg, cfg.attack_episodes, seed=cfg.seed, batch_size=batch
        )
        entry = _mean_entry(res.returns, sigma, f"{what} under attack")
        entry.update(
            budget=b,
            budget_kind=cfg.budget_kind,
            draws=acfg.draws,
            allocation="per-step" if acfg.per_step else ("greedy" if loaded.base.discrete else "even"),
            largest_spent_l2=float(res.spent.max()),
            mean_attacked_steps=float(res.attacked_steps.mean()),
            seconds=round(res.seconds, 2),
            floored=_mean_entry(np.maximum(res.returns, floor), sigma, f"max(F, {floor:g}) under attack"),
        )
        rows.append(entry)
        _log(
            cfg,
            f"  attack {what}, budget {b:g}: mean {res.mean:.2f} +- {res.std_err:.2f} ({res.seconds:.0f} s)",
        )
    return rows


def certify(cfg: Certify) -> dict[str, Any]:
    """Run :class:`Certify` (module docstring) and return the JSON record (nothing written)."""
    t0 = time.monotonic()
    budgets = bounds.parse_budgets(cfg.budgets)
    loaded = load_policy(cfg.policy, cfg.frames)
    spec = resolve_env(
        cfg.env,
        max_episode_steps=cfg.max_episode_steps,
        backend=cfg.sim_backend,
        profile=cfg.sim_profile,
        seed=cfg.seed,
    )
    base = loaded.base
    check_fit(spec, base.obs_dim, base.frames, base.n_actions, base.act_dim)
    if cfg.attack and base.scores is None:
        raise AttackInputError(
            f"attack: {base.name} has no torch twin to differentiate; attack its run folder, checkpoint "
            "or .npz"
        )
    if spec.realtime:
        episodes = cfg.episodes + (cfg.attack_episodes * budgets.size * (2 if cfg.attack_undefended else 1))
        seconds = episodes * (spec.max_episode_steps * 0.02 + 1.0)  # 50 Hz, about 1 s per reset
        _log(cfg, f"{spec.env_id} runs in real time: up to {seconds / 60:.1f} min for {episodes} episodes")
    if cfg.attack:
        import torch

        torch.set_num_threads(cfg.torch_threads)
    batch = cfg.batch_size or (10_000 if spec.env_id.startswith("vec:") else 100)
    _log(cfg, f"certify: {cfg.episodes} clean episodes of {base.name} on {spec.env_id}, sigma {cfg.sigma:g}")

    def progress(done: int) -> None:
        if done < cfg.episodes:
            _log(cfg, f"  {done}/{cfg.episodes} episodes ({time.monotonic() - t0:.0f} s)")

    policy = SmoothedPolicy(base, cfg.sigma, noise_rng(cfg.seed))
    clean = evaluate_smoothed(spec, policy, cfg.episodes, seed=cfg.seed, batch_size=batch, progress=progress)
    tail, method = _tail(cfg, spec, clean)
    if cfg.budget_kind == "per-step":
        certified = bounds.certified_bound_per_step(tail, budgets, cfg.sigma)
    else:
        certified = bounds.certified_bound(tail, budgets, cfg.sigma)
    attacked: list[dict[str, Any] | None] = [None] * budgets.size
    undefended: list[dict[str, Any] | None] = [None] * budgets.size
    if cfg.attack:
        what = f"smoothed policy (sigma {cfg.sigma:g})"
        attacked = _attack(cfg, spec, loaded, cfg.sigma, budgets, what, tail.lower)
        if cfg.attack_undefended:
            undefended = _attack(cfg, spec, loaded, 0.0, budgets, "undefended policy (sigma 0)", tail.lower)
    confidence = 1.0 - cfg.alpha
    rows: list[dict[str, Any]] = []
    for i, b in enumerate(budgets.tolist()):
        row: dict[str, Any] = {
            "budget": b,
            "budget_kind": cfg.budget_kind,
            "certified_return": float(certified[i]),
            "confidence": confidence,
            "episodes": clean.episodes,
            "sigma": cfg.sigma,
            "method": method["method"],
        }
        att = attacked[i]
        if att is not None:
            row["attacked"] = att
            # The attacked mean is itself an estimate: it is consistent with the certificate when its 95%
            # interval reaches C(B) (for the quantity the certificate bounds, max(F, a)).
            floored = att["floored"]
            reach = floored["ci95"][1] if floored["ci95"] is not None else floored["mean"]
            row["attack_above_certificate"] = bool(reach >= certified[i])
        if undefended[i] is not None:
            row["undefended_attacked"] = undefended[i]
        rows.append(row)
    return {
        "command": command_line(cfg),
        "policy": {
            "path": loaded.path,
            "kind": loaded.kind,
            "name": base.name,
            "frames": base.frames,
            **loaded.info,
        },
        "env": spec.describe(),
        "sigma": cfg.sigma,
        "episodes": clean.episodes,
        "seed": cfg.seed,
        "alpha": cfg.alpha,
        "confidence": confidence,
        **method,
        "budget_kind": cfg.budget_kind,
        "horizon_steps": spec.max_episode_steps,
        "clean": {
            **_mean_entry(clean.returns, cfg.sigma, "clean smoothed return (empirical mean)"),
            "mean_length": float(clean.lengths.mean()),
            "seconds": round(clean.seconds, 3),
            "episodes_per_s": clean.episodes / clean.seconds if clean.seconds > 0 else None,
        },
        "lower_bounded_mean": {
            "value": tail.lower_bounded_mean,
            "confidence": confidence,
            "episodes": clean.episodes,
            "sigma": cfg.sigma,
            "method": method["method"],
            "note": "C(0): lower confidence bound of the clean smoothed mean",
        },
        "rows": rows,
        "reference": "Kumar, Levine, Feizi: Policy Smoothing for Provably Robust RL (ICLR 2022); "
        "ALGORITHMS.md 4",
        "seconds": round(time.monotonic() - t0, 2),
    }


def write_json(result: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(result, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def plot(result: dict[str, Any], path: Path) -> None:
    """The certified bound against budget, the clean smoothed mean and the attacked means, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["rows"]
    b = np.array([r["budget"] for r in rows])
    c = np.array([r["certified_return"] for r in rows])
    pct = round(100 * result["confidence"])
    fig, ax = plt.subplots(figsize=(7.0, 4.5))
    clean = result["clean"]
    ax.axhline(
        clean["mean"],
        color="0.4",
        ls="--",
        lw=1.2,
        label=f"clean smoothed mean ({clean['episodes']} episodes)",
    )
    ax.plot(b, c, "o-", color="C0", lw=2, label=f"certified lower bound ({pct}%, {result['method']})")
    for key, color, label in (
        ("attacked", "C3", f"attacked, sigma {result['sigma']:g}"),
        ("undefended_attacked", "C1", "attacked, undefended (sigma 0)"),
    ):
        pts = [(r["budget"], r[key]) for r in rows if key in r]
        if pts:
            xs = [p[0] for p in pts]
            ys = [p[1]["mean"] for p in pts]
            err = [Z95 * (p[1]["std_err"] or 0.0) for p in pts]
            n = pts[0][1]["episodes"]
            ax.errorbar(
                xs, ys, yerr=err, fmt="s-", color=color, capsize=3, label=f"{label} ({n} episodes, 95% CI)"
            )
    kind = "per-step l2 budget" if result["budget_kind"] == "per-step" else "total l2 budget over the episode"
    ax.set_xlabel(f"attack budget B ({kind}, observation units)")
    ax.set_ylabel("return")
    ax.set_title(f"{result['env']['id']}: sigma {result['sigma']:g}, N = {result['episodes']}", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def format_table(result: dict[str, Any]) -> str:
    """The plain-text table ``robot-rl certify`` prints (Markdown-compatible)."""
    pct = round(100 * result["confidence"])
    rows = result["rows"]
    attack = any("attacked" in r for r in rows)
    undef = any("undefended_attacked" in r for r in rows)
    head = ["budget" + (" (per step)" if result["budget_kind"] == "per-step" else ""), f"certified ({pct}%)"]
    if attack:
        head.append(f"attacked (sigma {result['sigma']:g})")
    if undef:
        head.append("attacked (sigma 0)")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def mean(entry: dict[str, Any] | None) -> str:
        if entry is None:
            return ""
        se = entry["std_err"]
        return f"{entry['mean']:.2f}" + ("" if se is None else f" +- {se:.2f}")

    for r in rows:
        cells = [f"{r['budget']:g}", f"{r['certified_return']:.2f}"]
        if attack:
            cells.append(mean(r.get("attacked")))
        if undef:
            cells.append(mean(r.get("undefended_attacked")))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def summary_lines(result: dict[str, Any], json_path: Path, png_path: Path) -> list[str]:
    clean, lbm = result["clean"], result["lower_bounded_mean"]
    out = [
        f"robot-rl certify: {result['policy']['name']}",
        f"  env {result['env']['id']} (cap {result['horizon_steps']} steps), sigma {result['sigma']:g}, "
        f"N = {result['episodes']} clean episodes, {result['method_name']} at alpha {result['alpha']:g} "
        f"({round(100 * result['confidence'])}% confidence)",
        f"  clean smoothed mean {clean['mean']:.2f} +- {clean['std_err'] or math.nan:.2f} (SE); "
        f"C(0) = {lbm['value']:.2f}; certified quantity {result['certified_quantity']}",
    ]
    attack_rows = [r for r in result["rows"] if "attacked" in r]
    if attack_rows:
        n = attack_rows[0]["attacked"]["episodes"]
        ok = all(r["attack_above_certificate"] for r in attack_rows)
        out.append(
            f"  attack: {n} episodes per budget; attacked mean "
            + ("within or above the certificate at every budget (95% CI)" if ok else "BELOW the certificate")
        )
    out.append(f"  {json_path}  {png_path}  ({result['seconds']:.1f} s)")
    return out


def run_certify(cfg: Certify) -> int:
    """``robot-rl certify``: 0 written, 2 bad input (one line on stderr, nothing written)."""
    try:
        result = certify(cfg)
    except INPUT_ERRORS as err:
        print(f"robot-rl certify: error: {err}", file=sys.stderr)
        return 2
    policy = result["policy"]
    json_path = cfg.out if cfg.out is not None else default_out(cfg, policy["kind"], policy["path"])
    png_path = json_path.with_suffix(".png")
    write_json(result, json_path)
    plot(result, png_path)
    print(format_table(result))
    print("\n".join(summary_lines(result, json_path, png_path)), flush=True)
    return 0
