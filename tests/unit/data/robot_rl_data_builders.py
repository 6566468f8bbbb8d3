"""Builders for the data-store tests: a small manifest and random episodes (imported by tests)."""

from __future__ import annotations

import numpy as np

from robot_rl.data.store import EpisodeWriter, RunManifest
from robot_rl.schema import Episode, EpisodeMeta, FieldLayout, Source

OBS_DIM = 3
ACT_DIM = 2


def small_manifest(**kw: object) -> RunManifest:
    fields: dict[str, object] = {
        "robot": "go1",
        "task": "walk",
        "control_dt_s": 0.02,
        "obs_layout": FieldLayout(
            ("base_height_m", "base_vel_x_m_s", "joint_pos_FL_hip_rad"), ("m", "m/s", "rad")
        ),
        "action_layout": FieldLayout(("joint_tau_FL_hip_Nm", "joint_tau_FL_knee_Nm"), ("N*m", "N*m")),
        "calib_hash": "abc123",
        "source": Source.SIM,
        "extra": {"generator": "pytest"},
    }
    fields.update(kw)
    return RunManifest(**fields)  # type: ignore[arg-type]


def random_episode(
    rng: np.random.Generator, n_steps: int, *, terminated: bool = False, **meta_kw: object
) -> Episode:
    meta_fields: dict[str, object] = {
        "source": Source.SIM,
        "robot": "go1",
        "task": "walk",
        "control_dt_s": 0.02,
        "policy_version": 3,
        "calib_hash": "abc123",
        "seed": int(rng.integers(0, 1000)),
        "extra": {"note": "x"},
    }
    meta_fields.update(meta_kw)
    term = np.zeros(n_steps, dtype=bool)
    trunc = np.zeros(n_steps, dtype=bool)
    (term if terminated else trunc)[-1] = True
    # Jittered true timestamps: not index * dt, so a derived clock would be caught.
    t_ns = np.cumsum(rng.integers(19_000_000, 21_000_000, n_steps + 1)).astype(np.int64)
    return Episode(
        meta=EpisodeMeta(**meta_fields),  # type: ignore[arg-type]
        obs=rng.standard_normal((n_steps + 1, OBS_DIM)).astype(np.float32),
        action=rng.standard_normal((n_steps, ACT_DIM)).astype(np.float32),
        reward=rng.standard_normal(n_steps),
        terminated=term,
        truncated=trunc,
        t_ns=t_ns,
    )


def write_episodes(writer: EpisodeWriter, episodes: list[Episode]) -> None:
    """Write through the step API (begin/add_step), as a live logger would."""
    for ep in episodes:
        writer.begin_episode(ep.meta, ep.obs[0], int(ep.t_ns[0]))
        for t in range(ep.n_steps):
            writer.add_step(
                ep.action[t],
                float(ep.reward[t]),
                ep.obs[t + 1],
                int(ep.t_ns[t + 1]),
                terminated=bool(ep.terminated[t]),
                truncated=bool(ep.truncated[t]),
            )
