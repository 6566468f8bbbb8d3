"""The report of a training run: ``run_dir/report.md`` and ``run_dir/curves.png``.

    write_report(run_dir)                          (the training runner calls it at the end)
    python -m robot_rl.runners.report RUN_DIR [--title TITLE]

Inputs (formats agreed with robot_rl.runners.train):

- ``metrics.jsonl``: one object per logging step, ``{"update": int, "wall_s": float, "sim_steps": int,
  "<slash/namespaced>": float, ...}`` (``loss/critic``, ``loss/actor``, ``alpha``, ``h2o/w_mean``, ...);
- ``evals.jsonl``: one :class:`robot_rl.runners.evaluate.EvalResult` per line; policy names ``"behaviour"``
  (the recorded logs' episodes, robot_rl.runners.evaluate.evaluate_logs) and ``"sac-sim-only"`` (the SAC
  baseline trained only in the simulator) are the two baselines, every other name is a trained policy;
- ``config.json`` (optional): the resolved run config. The "Run" table shows algo (``algo``), sim (``sim``,
  ``backend``), sim profile (``sim_profile``), real logs (``real_logs``, ``logs``), updates (``updates``),
  seed (``seed``), wall time (``wall_s``, else the last metrics line's), threads (``threads``,
  ``torch_threads``, ``resolved.torch_threads``): first key present wins (CONFIG_FIELDS). The whole file
  is reproduced at the end of the report.

The trained ("main") policy is the config's ``policy`` or ``algo`` if evals.jsonl has that name, else the
non-baseline name with the most evaluations. The headline is each policy's *final* real-robot evaluation
(the one with the highest update); the score (ALGORITHMS.md section 7) is the mean of the main policy's
last 3 real evaluations' means. A missing file, evaluation or baseline is stated in the report, never an
exception; a malformed line is a ValueError naming the file and the line number.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from robot_rl.runners.evaluate import EvalResult

BEHAVIOUR = "behaviour"
SIM_ONLY = "sac-sim-only"
BASELINES = (BEHAVIOUR, SIM_ONLY)
SCORE_LAST_N = 3
"""Evaluations averaged into the score (ALGORITHMS.md section 7)."""
CONFIG_FIELDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("algo", ("algo",)),
    ("sim", ("sim", "backend")),
    ("sim profile", ("sim_profile",)),
    ("real logs", ("real_logs", "logs")),
    ("updates", ("updates",)),
    ("seed", ("seed",)),
    ("wall time", ("wall_s",)),
    ("threads", ("threads", "torch_threads", "resolved.torch_threads")),
)
"""Report column -> config.json keys, first present wins; a dotted key looks into a nested object."""

Metrics = dict[str, float]


# -------------------------------------------------------------------------------------------- reading


def _numbered(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """(line number, object) of each non-blank line of a JSON-lines file; ValueError naming ``path:line``."""
    rows: list[tuple[int, dict[str, Any]]] = []
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError as err:
                raise ValueError(f"{path}:{lineno}: not JSON: {err}") from None
            if not isinstance(obj, dict):
                raise ValueError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
            rows.append((lineno, obj))
    return rows


def read_metrics(path: Path) -> list[Metrics]:
    """metrics.jsonl rows: an integer ``update`` and numbers only; ValueError naming ``path:line``."""
    rows: list[Metrics] = []
    for lineno, obj in _numbered(path):
        update = obj.get("update")
        if isinstance(update, bool) or not isinstance(update, int):
            raise ValueError(f"{path}:{lineno}: 'update': expected an integer, got {update!r}")
        row: Metrics = {}
        for key, value in obj.items():
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{path}:{lineno}: {key!r}: expected a number, got {value!r}")
            row[key] = float(value)
        rows.append(row)
    return rows


def read_evals(path: Path) -> list[EvalResult]:
    """evals.jsonl rows as EvalResult; ValueError naming ``path:line`` and the bad key."""
    out: list[EvalResult] = []
    for lineno, obj in _numbered(path):
        try:
            out.append(EvalResult.from_json_dict(obj))
        except (ValueError, TypeError) as err:
            raise ValueError(f"{path}:{lineno}: {err}") from None
    return out


@dataclass
class RunData:
    """What a run directory holds, and what it lacks (``missing``: one sentence per absent thing)."""

    run_dir: Path
    metrics: list[Metrics] = field(default_factory=list)
    evals: list[EvalResult] = field(default_factory=list)
    config: dict[str, Any] | None = None
    missing: list[str] = field(default_factory=list)

    def real(self, policy: str) -> list[EvalResult]:
        """Real-robot evaluations of ``policy``, by update (file order among equal updates)."""
        return sorted(
            (e for e in self.evals if e.policy == policy and e.where == "real"), key=lambda e: e.update
        )

    def sim(self, policy: str) -> list[EvalResult]:
        """Simulator evaluations of ``policy``, by update."""
        return sorted(
            (e for e in self.evals if e.policy == policy and e.where == "sim"), key=lambda e: e.update
        )

    def main_policy(self) -> str | None:
        """The trained policy's name (module docstring), None if evals.jsonl has none."""
        counts: dict[str, int] = {}
        for e in self.evals:
            if e.policy not in BASELINES:
                counts[e.policy] = counts.get(e.policy, 0) + 1
        for key in ("policy", "algo"):
            name = (self.config or {}).get(key)
            if isinstance(name, str) and name in counts:
                return name
        if not counts:
            return None
        return max(counts, key=lambda name: counts[name])  # first seen among ties (dicts keep order)


def load_run(run_dir: Path) -> RunData:
    """Read metrics.jsonl, evals.jsonl and config.json, noting what is missing."""
    data = RunData(run_dir)
    metrics_path, evals_path, config_path = (
        run_dir / n for n in ("metrics.jsonl", "evals.jsonl", "config.json")
    )
    if metrics_path.is_file():
        data.metrics = read_metrics(metrics_path)
    else:
        data.missing.append(f"`metrics.jsonl` is missing: no losses, budgets or sim steps from {run_dir}.")
    if evals_path.is_file():
        data.evals = read_evals(evals_path)
    else:
        data.missing.append(f"`evals.jsonl` is missing: no evaluation results in {run_dir}.")
    if config_path.is_file():
        try:
            config = json.loads(config_path.read_text(encoding="utf-8"))
        except ValueError as err:
            raise ValueError(f"{config_path}: not JSON: {err}") from None
        if not isinstance(config, dict):
            raise ValueError(f"{config_path}: expected a JSON object, got {type(config).__name__}")
        data.config = config
    else:
        data.missing.append("`config.json` is missing: the run's settings are not shown.")
    return data


# ----------------------------------------------------------------------------------------- formatting


def _ret(e: EvalResult) -> str:
    return f"{e.mean:.2f} ± {e.std:.2f}"


def _mean_len(e: EvalResult) -> str:
    return f"{float(np.mean(e.lengths)):.1f}" if e.lengths else "-"


def _duration(seconds: float) -> str:
    s = round(seconds)
    return f"{seconds:.0f} s ({s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d})"


def _value(v: Any) -> str:
    if isinstance(v, dict | list):
        return f"`{json.dumps(v, sort_keys=True)}`"
    return str(v)


def _lookup(config: Mapping[str, Any], key: str) -> tuple[bool, Any]:
    node: Any = config
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return False, None
        node = node[part]
    return True, node


def _config_value(
    config: Mapping[str, Any], keys: Sequence[str], label: str, fallback: str | None = None
) -> str:
    for key in keys:
        found, v = _lookup(config, key)
        if not found:
            continue
        if label == "wall time" and isinstance(v, int | float) and not isinstance(v, bool):
            return _duration(float(v))
        if isinstance(v, dict) and isinstance(v.get("name"), str):
            return f"{v['name']} `{json.dumps(v, sort_keys=True)}`"
        return _value(v)
    return fallback if fallback is not None else "not in config.json"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _score(evals: Sequence[EvalResult]) -> tuple[float, list[EvalResult]]:
    last = list(evals[-SCORE_LAST_N:])
    return float(np.mean([e.mean for e in last])), last


def _comparison(main: str | None, x: EvalResult | None, y: EvalResult | None, z: EvalResult | None) -> str:
    if main is None or x is None:
        return "No real-robot evaluation of a trained policy in evals.jsonl: no comparison is possible."
    who = f"The trained policy ({main})"
    if y is not None and z is not None:
        beats_y, beats_z = x.mean > y.mean, x.mean > z.mean
        verb = "beats" if beats_y and beats_z else "does not beat"
        text = (
            f"{who} {verb} the behaviour policy and SAC trained only in the simulator: "
            f"{x.mean:.2f} vs {y.mean:.2f} vs {z.mean:.2f} (final real-robot return, mean over episodes)."
        )
        if beats_y != beats_z:
            text += (
                " It beats the behaviour policy but not SAC sim-only."
                if beats_y
                else " It beats SAC sim-only but not the behaviour policy."
            )
        return text
    if y is None and z is None:
        return (
            f"{who} reaches {x.mean:.2f} on the real robot; both baselines are missing, "
            "so it cannot be said whether it beats them."
        )
    other, name, missing = (
        (y, "the behaviour policy", "SAC sim-only")
        if y is not None
        else (z, "SAC trained only in the simulator", "behaviour")
    )
    assert other is not None
    verb = "beats" if x.mean > other.mean else "does not beat"
    return (
        f"{who} {verb} {name}: {x.mean:.2f} vs {other.mean:.2f} (final real-robot return, mean over "
        f"episodes); the {missing} baseline is missing."
    )


def render_markdown(data: RunData, *, title: str | None = None, curves: str | None = "curves.png") -> str:
    """The report text (see the module docstring)."""
    main = data.main_policy()
    missing = list(data.missing)
    lines = [f"# {title or f'Training report: {data.run_dir.name}'}", ""]

    # Run settings.
    if data.config is not None:
        lines += ["## Run", ""]
        final = data.metrics[-1] if data.metrics else {}
        wall = _duration(final["wall_s"]) + " (metrics)" if "wall_s" in final else None
        lines += _table(
            [label for label, _ in CONFIG_FIELDS],
            [
                [
                    _config_value(data.config, keys, label, wall if label == "wall time" else None)
                    for label, keys in CONFIG_FIELDS
                ]
            ],
        )
        lines.append("")

    # Headline.
    main_real = data.real(main) if main is not None else []
    behaviour_real = data.real(BEHAVIOUR)
    sim_only_real = data.real(SIM_ONLY)
    x = main_real[-1] if main_real else None
    y = behaviour_real[-1] if behaviour_real else None
    z = sim_only_real[-1] if sim_only_real else None
    if main is None:
        missing.append("No trained policy in evals.jsonl (only baselines, or no evaluations).")
    elif x is None:
        missing.append(f"No real-robot evaluation of the trained policy `{main}` in evals.jsonl.")
    if y is None:
        missing.append(f"Behaviour policy: no `{BEHAVIOUR}` real result in evals.jsonl (the logs' episodes).")
    if z is None:
        missing.append(f"SAC sim-only baseline: no `{SIM_ONLY}` real evaluation in evals.jsonl.")
    rows: list[list[str]] = []
    for role, name, e in (
        ("trained", main or "-", x),
        ("behaviour (real logs)", BEHAVIOUR, y),
        ("SAC trained only in sim", SIM_ONLY, z),
    ):
        if e is None:
            rows.append([role, f"`{name}`", "-", "missing", "-", "-", "-", "-"])
        else:
            update = "-" if name == BEHAVIOUR else str(e.update)
            cap = f"{e.max_episode_steps} (logs)" if name == BEHAVIOUR else str(e.max_episode_steps)
            rows.append(
                [role, f"`{name}`", update, _ret(e), str(e.episodes), str(e.falls), _mean_len(e), cap]
            )
    lines += ["## Headline: final real-robot return", ""]
    lines += _table(
        [
            "policy",
            "name",
            "update",
            "return (mean ± std)",
            "episodes",
            "falls",
            "mean length",
            "episode cap",
        ],
        rows,
    )
    lines += ["", _comparison(main, x, y, z), ""]
    notes = [
        "Real-robot returns are measured through the firmware bridge and the emulator (its hidden profile), "
        "with deterministic actions tanh(mean); std is over episodes (population, ddof 0); a fall is an "
        "episode that ended terminated. Every number here is our measurement on this run, none a reference "
        "figure."
    ]
    if y is not None:
        caps = sorted({e.max_episode_steps for e in (x, z) if e is not None})
        if caps and caps != [y.max_episode_steps]:
            notes.append(
                f"The behaviour row holds the {y.episodes} recorded episodes of the logs, capped at "
                f"{y.max_episode_steps} steps, while the evaluations are capped at "
                f"{', '.join(map(str, caps))} steps: returns are comparable only up to the shorter cap."
            )
        else:
            notes.append(
                f"The behaviour row holds the {y.episodes} recorded episodes of the logs, per episode, under "
                f"the same {y.max_episode_steps}-step cap as the evaluations."
            )
    lines += [f"- {n}" for n in notes] + [""]

    # Score.
    lines += ["## Score (ALGORITHMS.md section 7: mean of the last 3 real evaluations)", ""]
    score_rows: list[list[str]] = []
    for name in [n for n in dict.fromkeys([*(m for m in [main] if m), SIM_ONLY]) if data.real(n)]:
        score, last = _score(data.real(name))
        used = ", ".join(f"{e.mean:.2f} @ {e.update}" for e in last)
        note = "" if len(last) == SCORE_LAST_N else f" (only {len(last)} evaluation(s))"
        score_rows.append([f"`{name}`", f"{score:.2f}{note}", used])
    if score_rows:
        lines += _table(["policy", "score", "evaluations used (mean @ update)"], score_rows)
    else:
        lines.append("No real evaluations to score.")
    lines.append("")

    # Budgets.
    lines += ["## Budgets", ""]
    if data.metrics:
        final = data.metrics[-1]
        updates = f"{int(max(m['update'] for m in data.metrics))}"
        sim_steps = f"{int(final['sim_steps'])}" if "sim_steps" in final else "not logged"
        wall = _duration(final["wall_s"]) if "wall_s" in final else "not logged"
    else:
        updates = sim_steps = wall = "metrics.jsonl missing"
    planned = (data.config or {}).get("updates")
    if isinstance(planned, int) and not isinstance(planned, bool):
        updates += f" (config: {planned})"
    real_evals = [e for e in data.evals if e.where == "real" and e.policy != BEHAVIOUR]
    real_steps = sum(sum(e.lengths) for e in real_evals)
    real_time = sum(e.wall_s for e in real_evals)
    threads = _config_value(data.config or {}, dict(CONFIG_FIELDS)["threads"], "threads")
    lines += _table(
        ["gradient updates", "sim steps", "wall time", "real-robot evaluation steps", "threads"],
        [
            [
                updates,
                sim_steps,
                wall,
                f"{real_steps} ({len(real_evals)} evaluations, {real_time:.0f} s)",
                threads,
            ]
        ],
    )
    lines.append("")

    # Every evaluation.
    if data.evals:
        lines += ["## Evaluations", ""]
        lines += _table(
            [
                "policy",
                "where",
                "update",
                "return (mean ± std)",
                "episodes",
                "falls",
                "mean length",
                "cap",
                "wall s",
            ],
            [
                [
                    f"`{e.policy}`",
                    e.where,
                    str(e.update),
                    _ret(e),
                    str(e.episodes),
                    str(e.falls),
                    _mean_len(e),
                    str(e.max_episode_steps),
                    f"{e.wall_s:.1f}",
                ]
                for e in sorted(data.evals, key=lambda e: (e.policy, e.where, e.update))
            ],
        )
        lines.append("")

    if curves is not None:
        lines += ["## Curves", "", f"![returns and losses]({curves})", ""]
    if missing:
        lines += ["## Missing", ""] + [f"- {m}" for m in missing] + [""]
    if data.config is not None:
        dump = json.dumps(data.config, indent=2, sort_keys=True)
        lines += ["## config.json", "", "<details><summary>the run's config</summary>", "", "```json", dump]
        lines += ["```", "", "</details>", ""]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ plot


def plot_curves(data: RunData, path: Path) -> Path:
    """curves.png: returns vs updates (top), losses and H2O diagnostics (bottom). Agg, no pyplot state."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9.0, 7.5), layout="constrained")
    FigureCanvasAgg(fig)
    ax_ret, ax_loss = fig.subplots(2, 1, sharex=True)
    main = data.main_policy()
    drew = False
    if main is not None:
        for evals, where, color in (
            (data.real(main), "real robot", "C0"),
            (data.sim(main), "nominal sim", "C1"),
        ):
            if not evals:
                continue
            u = np.array([e.update for e in evals], dtype=np.float64)
            m = np.array([e.mean for e in evals])
            s = np.array([e.std for e in evals])
            ax_ret.plot(u, m, "o-", color=color, label=f"{main}, {where}")
            ax_ret.fill_between(u, m - s, m + s, color=color, alpha=0.2, linewidth=0)
            drew = True
    for name, label, style, color in (
        (BEHAVIOUR, "behaviour policy (real logs)", "--", "0.4"),
        (SIM_ONLY, "SAC sim-only, final real", ":", "C3"),
    ):
        evals = data.real(name)
        if evals:
            ax_ret.axhline(
                evals[-1].mean, linestyle=style, color=color, label=f"{label}: {evals[-1].mean:.1f}"
            )
            drew = True
    ax_ret.set_ylabel("return per episode (mean ± std)")
    ax_ret.set_title(f"Evaluation returns: {main or 'no trained policy'}")
    if drew:
        ax_ret.legend(loc="best", fontsize="small")
    else:
        ax_ret.text(0.5, 0.5, "no evaluations", ha="center", va="center", transform=ax_ret.transAxes)

    keys = list(dict.fromkeys(k for m in data.metrics for k in m))
    loss_keys = [k for k in keys if k.startswith("loss/")]
    diag_keys = [k for k in keys if k.startswith("h2o/")]
    for i, key in enumerate(loss_keys):
        u, v = _series(data.metrics, key)
        ax_loss.plot(u, v, color=f"C{i}", label=key)
    if loss_keys:
        ax_loss.set_yscale("symlog")
        ax_loss.legend(loc="upper left", fontsize="small")
    else:
        ax_loss.text(0.5, 0.5, "no losses logged", ha="center", va="center", transform=ax_loss.transAxes)
    ax_loss.set_ylabel("loss (symlog)")
    ax_loss.set_xlabel("gradient updates")
    if diag_keys:
        ax_diag = ax_loss.twinx()
        for i, key in enumerate(diag_keys):
            u, v = _series(data.metrics, key)
            ax_diag.plot(u, v, color=f"C{len(loss_keys) + i}", linestyle="--", label=key)
        ax_diag.set_ylabel("H2O diagnostics (dashed)")
        ax_diag.legend(loc="upper right", fontsize="small")
    ax_loss.set_title("Training losses" + (" and H2O diagnostics" if diag_keys else ""))
    fig.savefig(path, dpi=100)
    return path


def _series(metrics: Sequence[Metrics], key: str) -> tuple[np.ndarray, np.ndarray]:
    rows = [(m["update"], m[key]) for m in metrics if key in m and math.isfinite(m[key])]
    arr = np.array(rows, dtype=np.float64).reshape(-1, 2)
    return arr[:, 0], arr[:, 1]


# -------------------------------------------------------------------------------------------------- API


def write_report(run_dir: Path, *, title: str | None = None) -> Path:
    """Write ``run_dir/curves.png`` and ``run_dir/report.md``; returns the report's path.

    Missing inputs are named in the report; a malformed line raises ValueError naming file and line."""
    run_dir = Path(run_dir)
    data = load_run(run_dir)
    plot_curves(data, run_dir / "curves.png")
    out = run_dir / "report.md"
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(render_markdown(data, title=title), encoding="utf-8")
    tmp.replace(out)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m robot_rl.runners.report RUN_DIR [--title TITLE]``."""
    parser = argparse.ArgumentParser(prog="python -m robot_rl.runners.report", description=main.__doc__)
    parser.add_argument("run_dir", type=Path, help="run directory (metrics.jsonl, evals.jsonl, config.json)")
    parser.add_argument("--title", default=None, help="report title (default: the directory's name)")
    args = parser.parse_args(argv)
    if not args.run_dir.is_dir():
        print(f"error: {args.run_dir} is not a directory", file=sys.stderr)
        return 2
    try:
        path = write_report(args.run_dir, title=args.title)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
