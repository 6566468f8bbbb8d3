"""Pictures: one test as a PNG (road view + trajectories) or an animated GIF, and a campaign's estimate and
relative half-width against the number of tests. matplotlib (Agg) only; GIFs with imageio."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from robot_rl.cav.scenario import CAV, LEAD, Replay, TrafficState
from robot_rl.cav.stats import RHW_TARGET, Z_90, SparseRecord
from robot_rl.cav.types import FloatArray

LANE_WIDTH_M = 4.0
COLORS = {"cav": "#2ca02c", "lead": "#1f77b4", "bv": "#ff7f0e"}


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _vehicle_name(col: int) -> str:
    return "CAV" if col == CAV else ("lead" if col == LEAD else f"BV{col - 1}")


def _color(col: int) -> str:
    return COLORS["cav"] if col == CAV else (COLORS["lead"] if col == LEAD else COLORS["bv"])


def _draw_road(
    ax: Any, state: TrafficState, length_m: float, x_lo: float, x_hi: float, alpha: float = 1.0
) -> None:
    from matplotlib.patches import Rectangle

    for col in range(state.x_m.shape[1]):
        x, lane = float(state.x_m[0, col]), int(state.lane[0, col])
        y = lane * LANE_WIDTH_M
        ax.add_patch(
            Rectangle((x - length_m / 2, y - 1.0), length_m, 2.0, color=_color(col), alpha=alpha, lw=0)
        )
        if alpha == 1.0:
            ax.text(
                x, y + 1.4, f"{_vehicle_name(col)} {state.v_mps[0, col]:.1f} m/s", ha="center", fontsize=7
            )
    ax.set_xlim(x_lo, x_hi)
    ax.set_ylim(-LANE_WIDTH_M / 2, 1.5 * LANE_WIDTH_M)
    for y in (-LANE_WIDTH_M / 2, LANE_WIDTH_M / 2, 1.5 * LANE_WIDTH_M):
        ax.axhline(y, color="0.5", lw=0.8, ls="-" if y != LANE_WIDTH_M / 2 else "--")
    ax.set_yticks([0, LANE_WIDTH_M], ["travel (0)", "passing (1)"])


def plot_test(rp: Replay, path: Path, title: str = "") -> Path:
    """PNG of one test: the road at the start and at the end (crash), positions and speeds over time."""
    plt = _pyplot()
    L = rp.cfg.length_m
    x = np.stack([f.x_m[0] for f in rp.frames])  # (K+1, V)
    v = np.stack([f.v_mps[0] for f in rp.frames])
    lanes = np.stack([f.lane[0] for f in rp.frames])
    t = rp.times_s
    fig = plt.figure(figsize=(10, 7.5))
    gs = fig.add_gridspec(4, 2, height_ratios=[1, 1, 2, 2])
    x_lo, x_hi = float(x.min()) - 10, float(x.max()) + 10
    for row, (k, label) in enumerate(
        ((0, "start"), (len(rp.frames) - 1, "crash" if rp.crash_substep else "end"))
    ):
        ax = fig.add_subplot(gs[row, :])
        if row == 1:
            for j in range(k):
                _draw_road(ax, rp.frames[j], L, x_lo, x_hi, alpha=0.12)
        _draw_road(ax, rp.frames[k], L, x_lo, x_hi)
        ax.set_title(f"{label}: t = {t[k]:.0f} s", fontsize=9, loc="left")
    ax_x = fig.add_subplot(gs[2:, 0])
    ax_v = fig.add_subplot(gs[2:, 1])
    for col in range(x.shape[1]):
        ls = ["-", "--"]
        for lane in (0, 1):
            seg = np.where(lanes[:, col] == lane, x[:, col] - x[:, CAV], np.nan)
            ax_x.plot(
                t,
                seg,
                ls[lane],
                color=_color(col),
                marker="o",
                ms=3,
                label=f"{_vehicle_name(col)}" if lane == lanes[0, col] else None,
            )
        ax_v.plot(t, v[:, col], color=_color(col), marker="o", ms=3, label=_vehicle_name(col))
    if rp.crash_substep is not None:
        for ax in (ax_x, ax_v):
            ax.axvline(t[rp.crash_substep], color="red", lw=1)
    for d in range(1, rp.cfg.n_decisions):
        for ax in (ax_x, ax_v):
            ax.axvline(d * rp.cfg.hold_s, color="0.7", lw=0.8, ls=":")
    acc = ", ".join(
        f"t={d * rp.cfg.hold_s:.0f}s: "
        + " ".join(f"{_vehicle_name(c + 1)} {a:+.0f}" for c, a in enumerate(row))
        for d, row in enumerate(rp.accel_bg_mps2)
    )
    ax_x.set_xlabel("t (s)")
    ax_x.set_ylabel("x - x_CAV (m); dashed: passing lane")
    ax_x.axhspan(-L, L, color="red", alpha=0.06)
    ax_x.legend(fontsize=8)
    ax_v.set_xlabel("t (s)")
    ax_v.set_ylabel("speed (m/s)")
    ax_v.legend(fontsize=8)
    fig.suptitle((title + "\n" if title else "") + f"background accelerations (m/s²): {acc}", fontsize=9)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _interpolate(rp: Replay, per_s: int) -> list[TrafficState]:
    out: list[TrafficState] = []
    for a, b in zip(rp.frames[:-1], rp.frames[1:], strict=True):
        for k in range(per_s):
            f = k / per_s
            out.append(
                TrafficState(
                    (1 - f) * a.x_m + f * b.x_m,
                    (1 - f) * a.v_mps + f * b.v_mps,
                    b.lane if f > 0.5 else a.lane,
                    a.v_des_mps,
                )
            )
    out.append(rp.frames[-1])
    return out


def animate_test(rp: Replay, path: Path, frames_per_s: int = 5, title: str = "") -> Path:
    """Animated GIF of one test in the CAV's moving frame (positions linear between sub-steps)."""
    import imageio.v2 as imageio

    plt = _pyplot()
    images: list[Any] = []
    L = rp.cfg.length_m
    frames = _interpolate(rp, frames_per_s)
    for i, st in enumerate(frames):
        fig, ax = plt.subplots(figsize=(8, 1.8))
        centre = float(st.x_m[0, CAV])
        _draw_road(ax, st, L, centre - 70, centre + 70)
        crashed = rp.crash_substep is not None and i == len(frames) - 1
        ax.set_title(
            f"{title} t = {i / frames_per_s:.1f} s" + ("  CRASH" if crashed else ""),
            fontsize=9,
            loc="left",
            color="red" if crashed else "black",
        )
        fig.tight_layout()
        fig.canvas.draw()
        images.append(np.asarray(fig.canvas.buffer_rgba())[..., :3].copy())
        plt.close(fig)
    durations_ms = [1000.0 / frames_per_s] * len(images)
    durations_ms[-1] += 1000.0  # hold the last frame (the crash) for a second
    path = Path(path)
    imageio.mimsave(path, images, duration=durations_ms, loop=0)
    return path


def save_gif(frames: Sequence[np.ndarray], path: Path, frames_per_s: int) -> Path:
    """GIF of RGB frames (e.g. highway-env's)."""
    import imageio.v2 as imageio

    path = Path(path)
    imageio.mimsave(path, list(frames), duration=1000.0 / max(frames_per_s, 1), loop=0)
    return path


def curve_points(n_tests: int, k: int = 400) -> np.ndarray:
    """About k log-spaced test counts in 2..n_tests."""
    return np.unique(np.geomspace(2, max(n_tests, 2), k).astype(np.int64))


def plot_estimate(
    runs: Sequence[tuple[str, SparseRecord]],
    path: Path,
    *,
    reference: float | None = None,
    target: float = RHW_TARGET,
    title: str = "",
) -> Path:
    """Estimate with its 90 % interval (top) and relative half-width (bottom) against the number of tests,
    log-x, one line per run; the RHW target and each run's tests-needed n* marked."""
    plt = _pyplot()
    fig, (ax_m, ax_r) = plt.subplots(2, 1, figsize=(8, 7), sharex=True)
    for label, rec in runs:
        ns = curve_points(rec.n_tests)
        mu, rhw = rec.curve(ns)
        line = ax_m.plot(ns, mu, label=label)[0]
        with np.errstate(invalid="ignore"):
            half = np.where(np.isfinite(rhw), rhw * mu, np.nan)
        ax_m.fill_between(ns, mu - half, mu + half, color=line.get_color(), alpha=0.15, lw=0)
        ax_r.plot(ns, rhw, color=line.get_color(), label=label)
        n_star = rec.tests_needed(target)
        if n_star is not None:
            ax_r.plot([n_star], [target], "o", color=line.get_color())
            ax_r.annotate(
                f"n*={n_star:,}",
                (n_star, target),
                textcoords="offset points",
                xytext=(4, 6),
                fontsize=8,
                color=line.get_color(),
            )
    if reference is not None:
        ax_m.axhline(reference, color="k", ls=":", lw=1, label="reference")
    ax_r.axhline(target, color="red", ls="--", lw=1, label=f"RHW {target}")
    ax_m.set_xscale("log")
    ax_m.set_ylabel(f"crash rate estimate (band: ±{Z_90:.3f} s/√n)")
    ax_m.set_yscale("log")
    ax_r.set_yscale("log")
    ax_r.set_ylabel("relative half-width (90 %)")
    ax_r.set_xlabel("number of tests")
    ax_m.legend(fontsize=8)
    ax_r.legend(fontsize=8)
    if title:
        ax_m.set_title(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def trajectory_array(rp: Replay) -> FloatArray:
    """(K+1, V) positions, for tests."""
    out: FloatArray = np.stack([f.x_m[0] for f in rp.frames])
    return out
