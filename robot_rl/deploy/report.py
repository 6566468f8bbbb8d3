"""What a deploy run reports: loop timing statistics, per-episode results, the reason it ended.

Timing (RUN phase only, times from `time.monotonic`):

    period_k  = t_start(k) - t_start(k-1)          the loop's actual period (s)
    jitter_k  = |period_k - control_dt_s|
    compute_k = t_done(k) - t_start(k)             one step's work: newest state -> observation -> policy ->
                                                   checks -> JointTarget on the wire
    infer_k   = the policy call alone

Percentiles are numpy's (linear interpolation); milliseconds in the report. A step *overruns* when its tick
starts more than the lateness tolerance after its scheduled time, or its work finishes after the next
scheduled tick (its deadline).

Pure: numpy and the standard library.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np


def _pct(x: np.ndarray, q: float) -> float:
    return float(np.percentile(x, q)) if x.size else math.nan


@dataclass(frozen=True)
class TimingStats:
    """Loop timing of a RUN phase, in milliseconds (NaN where there were too few ticks)."""

    ticks: int
    period_p50_ms: float
    period_p99_ms: float
    period_max_ms: float
    jitter_p99_ms: float
    jitter_max_ms: float
    compute_p50_ms: float
    compute_p99_ms: float
    compute_max_ms: float
    infer_p50_ms: float
    infer_p99_ms: float


def timing_stats(
    periods_s: Sequence[float],
    compute_s: Sequence[float],
    infer_s: Sequence[float],
    control_dt_s: float,
) -> TimingStats:
    """Statistics of the measured periods, step work and inference times (seconds in, ms out)."""
    p = np.asarray(periods_s, dtype=np.float64) * 1e3
    c = np.asarray(compute_s, dtype=np.float64) * 1e3
    i = np.asarray(infer_s, dtype=np.float64) * 1e3
    jitter = np.abs(p - control_dt_s * 1e3)
    return TimingStats(
        ticks=int(c.size),
        period_p50_ms=_pct(p, 50),
        period_p99_ms=_pct(p, 99),
        period_max_ms=float(p.max()) if p.size else math.nan,
        jitter_p99_ms=_pct(jitter, 99),
        jitter_max_ms=float(jitter.max()) if jitter.size else math.nan,
        compute_p50_ms=_pct(c, 50),
        compute_p99_ms=_pct(c, 99),
        compute_max_ms=float(c.max()) if c.size else math.nan,
        infer_p50_ms=_pct(i, 50),
        infer_p99_ms=_pct(i, 99),
    )


def is_overrun(t_start: float, t_done: float, scheduled: float, period_s: float, late_tol_s: float) -> bool:
    """A step overruns if its tick started late (> `late_tol_s` after `scheduled`) or its work finished after
    its deadline, the next scheduled tick (`scheduled + period_s`)."""
    return (t_start - scheduled) > late_tol_s or t_done > scheduled + period_s


@dataclass
class EpisodeReport:
    """One RUN phase (one logged episode)."""

    index: int
    episode_id: str
    reason: str
    steps: int
    episode_return: float
    terminated: bool
    command_mps: float | None
    overruns: int
    max_consecutive_overruns: int
    timing: TimingStats
    detail: str = ""


@dataclass
class DeployReport:
    """The whole run: why it ended, how the loop kept time, what each episode returned."""

    reason: str
    exit_code: int
    control_dt_s: float
    steps: int = 0
    overruns: int = 0
    max_consecutive_overruns: int = 0
    skipped_ticks: int = 0
    timing: TimingStats | None = None
    episodes: list[EpisodeReport] = field(default_factory=list)
    damping: str = ""
    detail: str = ""
    warnings: list[str] = field(default_factory=list)
    log_dir: str = ""
    policy: str = ""

    @property
    def returns(self) -> list[float]:
        return [e.episode_return for e in self.episodes]

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (NaN -> None)."""

        def clean(v: Any) -> Any:
            if isinstance(v, float) and not math.isfinite(v):
                return None
            if isinstance(v, dict):
                return {k: clean(x) for k, x in v.items()}
            if isinstance(v, list):
                return [clean(x) for x in v]
            return v

        out = clean(asdict(self))
        out["returns"] = clean(self.returns)
        assert isinstance(out, dict)
        return out

    def summary(self) -> str:
        """Lines for the operator's terminal."""
        lines = [
            f"deploy: ended '{self.reason}' (exit {self.exit_code})"
            + (f": {self.detail}" if self.detail else "")
        ]
        t = self.timing
        lines.append(
            f"  steps {self.steps}, overruns {self.overruns} (longest run {self.max_consecutive_overruns}), "
            f"skipped ticks {self.skipped_ticks}"
        )
        if t is not None and t.ticks:
            lines.append(
                f"  period p50/p99/max {t.period_p50_ms:.2f}/{t.period_p99_ms:.2f}/{t.period_max_ms:.2f} ms "
                f"(control {self.control_dt_s * 1e3:g} ms), jitter p99 {t.jitter_p99_ms:.2f} ms"
            )
            lines.append(
                f"  step compute p50/p99 {t.compute_p50_ms:.3f}/{t.compute_p99_ms:.3f} ms, "
                f"policy p50/p99 {t.infer_p50_ms:.3f}/{t.infer_p99_ms:.3f} ms"
            )
        for e in self.episodes:
            cmd = f", command {e.command_mps:.2f} m/s" if e.command_mps is not None else ""
            lines.append(
                f"  episode {e.index} {e.episode_id}: {e.reason}, {e.steps} steps, "
                f"return {e.episode_return:.3f}{cmd}, overruns {e.overruns}"
            )
        if self.damping:
            lines.append(f"  damping: {self.damping}")
        if self.log_dir:
            lines.append(f"  log: {self.log_dir}")
        lines.extend(f"  warning: {w}" for w in self.warnings)
        return "\n".join(lines)
