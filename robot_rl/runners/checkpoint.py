"""Checkpoints of ``robot-rl train``: one folder per checkpoint, written atomically, the newest few kept.

Layout of ``<run>/checkpoints/``::

    latest.json                    {"update": 1500, "dir": "update-00001500"}  (written last, by rename)
    update-00001500/
        algo.pt                    Algo.state_dict() (torch.save; loads with weights_only=True)
        runner.pt                  the torch global RNG state
        state.json                 counters, numpy RNG states, collector values, pending evaluations
        arrays.npz                 the SIM replay buffer, the collector's arrays, pending policies
        config.json                the resolved run config
        provenance.json            software version, calibration hash, the dataset manifest and hash

A checkpoint folder is assembled under a temporary name (``.tmp-update-...``), every file flushed
to disk, then renamed into place; ``latest.json`` is replaced last. A crash at any point leaves
either the previous checkpoint or the new one, never half of one. ARCHITECTURE.md section 7: every
checkpoint folder holds the resolved config, the software version, the calibration hash and the
dataset manifest it was trained on.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from robot_rl.data.manifest import fsync_dir
from robot_rl.data.replay import ReplayBuffer

LATEST = "latest.json"
_PREFIX = "update-"


def checkpoint_name(update: int) -> str:
    """Folder name of the checkpoint after ``update`` updates (zero-padded, so names sort by update)."""
    return f"{_PREFIX}{update:08d}"


def write_json_atomic(path: Path, obj: Any) -> None:
    """``obj`` as indented JSON at ``path`` via a temporary file, fsync and rename."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


@dataclass(frozen=True)
class Checkpoint:
    """What a checkpoint folder holds, loaded (see the module docstring)."""

    path: Path
    update: int
    algo_state: dict[str, Any]
    torch_rng: torch.Tensor
    state: dict[str, Any]
    arrays: dict[str, np.ndarray]
    config: dict[str, Any]
    provenance: dict[str, Any]


def save_checkpoint(
    root: Path,
    update: int,
    *,
    algo_state: dict[str, Any],
    state: dict[str, Any],
    arrays: dict[str, np.ndarray],
    config: dict[str, Any],
    provenance: dict[str, Any],
    keep: int = 2,
) -> Path:
    """Write the checkpoint after ``update`` updates under ``root`` (atomic); keep the newest ``keep``."""
    root.mkdir(parents=True, exist_ok=True)
    final = root / checkpoint_name(update)
    tmp = root / f".tmp-{checkpoint_name(update)}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    torch.save(algo_state, tmp / "algo.pt")
    torch.save({"torch_rng": torch.get_rng_state()}, tmp / "runner.pt")
    with open(tmp / "arrays.npz", "wb") as f:
        np.savez(f, allow_pickle=False, **arrays)
    for name, obj in (("state.json", state), ("config.json", config), ("provenance.json", provenance)):
        with open(tmp / name, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=2)
            f.write("\n")
    for path in tmp.iterdir():
        _fsync_file(path)
    fsync_dir(tmp)
    if final.exists():  # a checkpoint of the same update from an interrupted earlier attempt
        shutil.rmtree(final)
    os.replace(tmp, final)
    fsync_dir(root)
    write_json_atomic(root / LATEST, {"update": update, "dir": final.name})
    fsync_dir(root)
    _prune(root, keep, protect=final.name)
    return final


def _prune(root: Path, keep: int, protect: str) -> None:
    folders = sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith(_PREFIX))
    for old in folders[: max(0, len(folders) - keep)]:
        if old.name != protect:
            shutil.rmtree(old, ignore_errors=True)
    for stale in root.glob(".tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)


def latest_checkpoint(root: Path) -> Path | None:
    """The folder named by ``root/latest.json``, or None if there is no complete checkpoint."""
    try:
        latest = json.loads((root / LATEST).read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    path = root / str(latest.get("dir", ""))
    return path if (path / "state.json").is_file() else None


def load_checkpoint(path: Path) -> Checkpoint:
    """Read a checkpoint folder written by :func:`save_checkpoint`."""
    state = json.loads((path / "state.json").read_text(encoding="utf-8"))
    with np.load(path / "arrays.npz", allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    runner = torch.load(path / "runner.pt", weights_only=True)
    return Checkpoint(
        path=path,
        update=int(state["update"]),
        algo_state=torch.load(path / "algo.pt", weights_only=True),
        torch_rng=runner["torch_rng"],
        state=state,
        arrays=arrays,
        config=json.loads((path / "config.json").read_text(encoding="utf-8")),
        provenance=json.loads((path / "provenance.json").read_text(encoding="utf-8")),
    )


# --------------------------------------------------------------------------------------------------
# Replay buffers as arrays (the physical row order is kept: sampling draws row indices).

_BUFFER_FIELDS = ("obs", "action", "reward", "next_obs", "terminated", "truncated", "policy_version")


def buffer_arrays(buf: ReplayBuffer, prefix: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(counters, arrays) of ``buf``'s filled rows, in their physical order."""
    n = len(buf)
    arrays = {f"{prefix}{name}": getattr(buf, name)[:n].copy() for name in _BUFFER_FIELDS}
    return {"size": n, "cursor": buf.cursor, "added": buf.added, "capacity": buf.capacity}, arrays


def restore_buffer(
    buf: ReplayBuffer, counters: dict[str, Any], arrays: dict[str, np.ndarray], prefix: str
) -> None:
    """Refill ``buf`` (same capacity and widths) from :func:`buffer_arrays`."""
    if int(counters["capacity"]) != buf.capacity:
        raise ValueError(
            f"replay capacity {counters['capacity']} in the checkpoint, {buf.capacity} in this run"
        )
    n = int(counters["size"])
    for name in _BUFFER_FIELDS:
        getattr(buf, name)[:n] = arrays[f"{prefix}{name}"]
    buf.cursor = int(counters["cursor"])
    buf.added = int(counters["added"])
    buf._size = n  # ReplayBuffer has no public setter; rows [0, n) are the ones just written
