"""Measure a sim-to-sim dynamics gap: how well a nominal model predicts a "real" one.

Semantics (exact):
- reference ("real"): backend `backend` with `profile` applied: its dynamics (friction, masses, motor
  strength, damping, gravity) and its actuation (`latency_steps` FIFO on the PD target, `action_noise_std`
  Gaussian noise on the action, seeded). Sensor noise is NOT applied: errors are measured on the true state.
- prediction: backend `vs_backend or backend` with nominal dynamics and ideal actuation (target applied at
  once, no noise). With `vs_backend` set and a nominal profile this compares two engines on the same robot.
- Both replay the SAME action sequences (smoothed random actions around the default pose: an AR(1) process,
  correlation 0.8 per control step, stationary std 0.5, clipped to [-1, 1]) from the SAME start states (the
  default pose with joints jittered by U(-0.05, 0.05) rad, zero velocity).
- one-step error: at every step t the predictor is reset to the reference state s_t (base pose and velocity,
  joints) and stepped once with the action of step t; the error against s_{t+1} is RMS-averaged over all
  steps and sequences, per joint (rad), and for the base position (m, floating base only).
- open-loop error: the predictor runs the whole sequence from the start state on its own; the error after k
  control steps, RMS over sequences, per joint (rad) and for the base position (m), for k = 1..horizon.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from sim.backends import make_backend
from sim.backends.base import PhysicsBackend, RobotState
from sim.profile import GapProfile, load_profile
from sim.robots import get_robot
from sim.robots.model import RobotModel

if TYPE_CHECKING:
    from rich.table import Table

_AR_RHO = 0.8
_AR_STD = 0.5
_JITTER_RAD = 0.05


@dataclass(frozen=True)
class GapReport:
    """Prediction errors of a nominal model against a reference (see the module docstring).

    one_step_joint_rmse_rad:    (n_joints,)
    one_step_base_pos_rmse_m:   float, NaN for a fixed-base robot
    open_loop_joint_rmse_rad:   (horizon, n_joints), row k-1 = after k control steps
    open_loop_base_pos_rmse_m:  (horizon,), NaN for a fixed-base robot
    """

    robot: str
    profile: str
    backend: str
    vs_backend: str | None
    joint_names: tuple[str, ...]
    n_sequences: int
    horizon: int
    control_dt_s: float
    one_step_joint_rmse_rad: np.ndarray
    one_step_base_pos_rmse_m: float
    open_loop_joint_rmse_rad: np.ndarray
    open_loop_base_pos_rmse_m: np.ndarray
    notes: tuple[str, ...] = field(default=())

    @property
    def prediction_backend(self) -> str:
        return self.vs_backend or self.backend

    def to_table(self) -> Table:
        """A rich Table: per joint one-step and final open-loop RMS error, then the base position row."""
        from rich.table import Table

        title = (
            f"{self.robot}: reference = {self.backend} + profile {self.profile!r}, "
            f"prediction = {self.prediction_backend} nominal "
            f"({self.n_sequences} sequences x {self.horizon} steps of {self.control_dt_s * 1e3:.0f} ms)"
        )
        table = Table(title=title)
        table.add_column("quantity")
        table.add_column("one-step RMS", justify="right")
        table.add_column(f"open-loop RMS @ {self.horizon} steps", justify="right")
        for i, name in enumerate(self.joint_names):
            table.add_row(
                f"{name} (rad)",
                f"{self.one_step_joint_rmse_rad[i]:.4g}",
                f"{self.open_loop_joint_rmse_rad[-1, i]:.4g}",
            )
        if np.isfinite(self.one_step_base_pos_rmse_m):
            table.add_row(
                "base position (m)",
                f"{self.one_step_base_pos_rmse_m:.4g}",
                f"{self.open_loop_base_pos_rmse_m[-1]:.4g}",
            )
        for note in self.notes:
            table.caption = (table.caption + "\n" if table.caption else "") + note
        return table

    def plot(self, path: str | Path) -> Path:
        """Write a PNG of open-loop RMS error vs horizon (s), one line per joint (+ base position panel)."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        path = Path(path)
        t_s = np.arange(1, self.horizon + 1) * self.control_dt_s
        floating = bool(np.isfinite(self.open_loop_base_pos_rmse_m).all())
        fig, axes = plt.subplots(1, 2 if floating else 1, figsize=(11 if floating else 6, 4), squeeze=False)
        ax = axes[0, 0]
        for i, name in enumerate(self.joint_names):
            ax.plot(t_s, self.open_loop_joint_rmse_rad[:, i], label=name)
        ax.set_xlabel("open-loop horizon (s)")
        ax.set_ylabel("joint position RMS error (rad)")
        ax.set_title(f"{self.robot}: {self.backend}+{self.profile} vs {self.prediction_backend} nominal")
        ax.legend(fontsize=7, ncol=2)
        ax.grid(alpha=0.3)
        if floating:
            ax = axes[0, 1]
            ax.plot(t_s, self.open_loop_base_pos_rmse_m, color="k")
            ax.set_xlabel("open-loop horizon (s)")
            ax.set_ylabel("base position RMS error (m)")
            ax.grid(alpha=0.3)
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=100)
        plt.close(fig)
        return path


def _reset_to(backend: PhysicsBackend, st: RobotState) -> None:
    backend.reset(
        st.base_pos_m,
        st.base_quat_wxyz,
        st.joint_pos_rad,
        st.joint_vel_radps,
        base_linvel_world_mps=st.base_linvel_world_mps,
        base_angvel_body_radps=st.base_angvel_body_radps,
    )


def smoothed_actions(rng: np.random.Generator, horizon: int, n: int) -> np.ndarray:
    """(horizon, n) float64 AR(1) actions in [-1, 1]: correlation 0.8 per step, stationary std 0.5."""
    a = np.empty((horizon, n))
    prev = rng.normal(0.0, _AR_STD, size=n)
    for t in range(horizon):
        prev = _AR_RHO * prev + np.sqrt(1.0 - _AR_RHO**2) * _AR_STD * rng.standard_normal(n)
        a[t] = prev
    return np.clip(a, -1.0, 1.0)


def measure_gap(
    robot: RobotModel | str,
    profile: GapProfile | str | Path,
    backend: str = "mujoco",
    vs_backend: str | None = None,
    n_sequences: int = 8,
    horizon: int = 50,
    seed: int = 0,
) -> GapReport:
    """Reference = `backend` with `profile`; prediction = `vs_backend or backend` nominal (see module doc)."""
    if n_sequences < 1 or horizon < 1:
        raise ValueError(f"n_sequences and horizon must be >= 1, got {n_sequences}, {horizon}")
    model = get_robot(robot) if isinstance(robot, str) else robot
    prof = profile if isinstance(profile, GapProfile) else load_profile(profile)
    ref = make_backend(backend, model)
    pred = make_backend(vs_backend or backend, model)
    notes: list[str] = []
    try:
        ref.apply_dynamics(prof.dynamics)
        n = len(model.joints)
        q0 = np.asarray(model.default_joint_pos_rad, dtype=np.float64)
        lo = np.array([j.range_rad[0] for j in model.joints])
        hi = np.array([j.range_rad[1] for j in model.joints])
        scale = model.action_scale_rad
        one_sq = np.zeros(n)
        one_base_sq = 0.0
        ol_sq = np.zeros((horizon, n))
        ol_base_sq = np.zeros(horizon)
        for s in range(n_sequences):
            rng = np.random.default_rng([seed, s])
            start = RobotState(
                base_pos_m=np.array(model.base_init_pos, dtype=np.float64),
                base_quat_wxyz=np.array([1.0, 0.0, 0.0, 0.0]),
                base_linvel_world_mps=np.zeros(3),
                base_angvel_body_radps=np.zeros(3),
                joint_pos_rad=np.clip(q0 + rng.uniform(-_JITTER_RAD, _JITTER_RAD, n), lo, hi),
                joint_vel_radps=np.zeros(n),
                joint_torque_nm=np.zeros(n),
                foot_contact=np.zeros(len(model.foot_geoms), dtype=bool),
                site_pos_world_m=np.zeros((len(model.sites), 3)),
            )
            actions = smoothed_actions(rng, horizon, n)
            targets = q0 + scale * actions  # what the predictor applies: ideal actuation
            # Reference actuation: noisy action, then a FIFO of latency_steps control steps on the target.
            noisy = np.clip(actions + prof.action_noise_std * rng.standard_normal(actions.shape), -1.0, 1.0)
            ref_targets = q0 + scale * noisy
            if prof.latency_steps:
                ref_targets = np.concatenate([np.tile(q0, (prof.latency_steps, 1)), ref_targets])[:horizon]

            _reset_to(ref, start)
            ref_states = [ref.state()]
            for t in range(horizon):
                ref.step(ref_targets[t])
                ref_states.append(ref.state())

            _reset_to(pred, start)
            for t in range(horizon):
                pred.step(targets[t])
                p_st = pred.state()
                ol_sq[t] += (p_st.joint_pos_rad - ref_states[t + 1].joint_pos_rad) ** 2
                if model.floating_base:
                    ol_base_sq[t] += float(np.sum((p_st.base_pos_m - ref_states[t + 1].base_pos_m) ** 2))

            for t in range(horizon):
                _reset_to(pred, ref_states[t])
                pred.step(targets[t])
                p_st = pred.state()
                one_sq += (p_st.joint_pos_rad - ref_states[t + 1].joint_pos_rad) ** 2
                if model.floating_base:
                    one_base_sq += float(np.sum((p_st.base_pos_m - ref_states[t + 1].base_pos_m) ** 2))
    finally:
        ref.close()
        pred.close()
    nan = float("nan")
    return GapReport(
        robot=model.name,
        profile=prof.name,
        backend=backend,
        vs_backend=vs_backend,
        joint_names=model.joint_names,
        n_sequences=n_sequences,
        horizon=horizon,
        control_dt_s=model.control_dt_s,
        one_step_joint_rmse_rad=np.sqrt(one_sq / (n_sequences * horizon)),
        one_step_base_pos_rmse_m=float(np.sqrt(one_base_sq / (n_sequences * horizon)))
        if model.floating_base
        else nan,
        open_loop_joint_rmse_rad=np.sqrt(ol_sq / n_sequences),
        open_loop_base_pos_rmse_m=np.sqrt(ol_base_sq / n_sequences)
        if model.floating_base
        else np.full(horizon, nan),
        notes=tuple(notes),
    )
