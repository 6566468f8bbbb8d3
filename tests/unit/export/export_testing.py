"""Helpers of the export tests: checkpoint folders made as ``robot-rl train`` makes them
(``save_checkpoint`` with the run's config and provenance), from :func:`make_algo` algorithms that took a
few updates on random batches and whose actor was then perturbed away from its near-zero initial mean head
(so tanh(mean) spans its range and parity is not checked on near-constant outputs)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from firmware_bridge.calibration import calibration_hash, load_calibration
from robot_rl.algos import make_algo
from robot_rl.algos.base import Algo, TorchBatch
from robot_rl.data.manifest import read_manifest
from robot_rl.runners.checkpoint import save_checkpoint
from robot_rl.schema import TransitionBatch

ROOT = Path(__file__).resolve().parents[3]
RUN1 = ROOT / "calib" / "run1"
QUAD_CALIB = ROOT / "calib" / "quadruped.toml"
OBS_DIM, ACT_DIM = 34, 8
"""The quadruped's ForwardVelocityTask observation and its joints."""
HIDDEN = (16, 16)
QUAD_HASH = calibration_hash(load_calibration(QUAD_CALIB))


def random_batches(algo: Algo, seed: int) -> dict[str, TorchBatch]:
    g = torch.Generator().manual_seed(seed)
    out: dict[str, TorchBatch] = {}
    for key, spec in algo.batch_spec.items():
        n = spec.size
        out[key] = TransitionBatch(
            obs=torch.randn(n, OBS_DIM, generator=g),
            action=torch.rand(n, ACT_DIM, generator=g) * 2.0 - 1.0,
            reward=torch.randn(n, generator=g),
            next_obs=torch.randn(n, OBS_DIM, generator=g),
            terminated=(torch.rand(n, generator=g) < 0.1).float(),
            truncated=torch.zeros(n),
        )
    return out


def trained_algo(name: str, seed: int = 0) -> Algo:
    """``name`` from make_algo for the quadruped, 2 updates on random batches, actor perturbed."""
    algo = make_algo(
        name,
        obs_dim=OBS_DIM,
        act_dim=ACT_DIM,
        seed=seed,
        real_obs_std=np.linspace(0.1, 2.0, OBS_DIM),
        hidden=HIDDEN,
        init_log_alpha=math.log(0.1),
    )
    for i in range(2):
        algo.update(random_batches(algo, i))
    actor = algo.actor  # type: ignore[attr-defined]
    g = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():
        for p in actor.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=g))
    return algo


@dataclass
class MadeRun:
    run_dir: Path
    checkpoint: Path
    algo: Algo


def make_run(
    root: Path,
    name: str,
    *,
    dataset: str | None = str(RUN1),
    calib_hash: str = QUAD_HASH,
    dataset_manifest: dict[str, Any] | None = None,
    seed: int = 0,
) -> MadeRun:
    """A run folder ``root/<name>-run`` with one checkpoint (update 2) of :func:`trained_algo`."""
    algo = trained_algo(name, seed)
    run_dir = root / f"{name}-run"
    config: dict[str, Any] = {
        "sim": "mujoco",
        "real_logs": dataset,
        "algo": name,
        "robot": "quadruped",
        "seed": seed,
        "hidden": list(HIDDEN),
        "init_alpha": 0.1,
        "sim_max_episode_steps": None,
        "resolved": {"task": "ForwardVelocityTask"},
    }
    provenance: dict[str, Any] = {
        "software_version": "0.1.0",
        "calib_hash": calib_hash,
        "dataset": dataset,
        "dataset_hash": "0" * 64,
        "dataset_manifest": dataset_manifest
        if dataset_manifest is not None
        else read_manifest(RUN1).to_json_dict(),
    }
    ck = save_checkpoint(
        run_dir / "checkpoints",
        2,
        algo_state=algo.state_dict(),
        state={"update": 2},
        arrays={},
        config=config,
        provenance=provenance,
    )
    (run_dir / "config.json").write_text(json.dumps({**config, "provenance": provenance}, indent=2))
    return MadeRun(run_dir, ck, algo)
