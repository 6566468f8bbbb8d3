"""D4RL-style HDF5: import flat transition arrays into a run folder, and export a run to them.

D4RL keys (N rows, one per transition): ``observations`` (N, obs_dim), ``actions`` (N, act_dim),
``rewards`` (N,), ``terminals`` (N,), ``timeouts`` (N,); optional ``next_observations``
(N, obs_dim) and ``infos/timestamps`` (N,) (float seconds, or int nanoseconds).

Import splits the rows into episodes after every row with ``terminals | timeouts`` (rows after
the last such flag form a final episode cut by the dataset, marked truncated). An episode needs
its final observation:

- with ``next_observations``: ``obs = observations[s..e] + next_observations[e]``; every step is kept.
- without: the final observation would be the next row's observation, but the next row belongs to
  the next episode, so (the D4RL ``qlearning_dataset`` convention) the last step of every episode
  is DROPPED and ``observations[e]`` becomes the final observation. The shortened episode ends
  truncated (its real end was dropped - including a terminal flag and its reward, so prefer files
  with ``next_observations``); ``extra["d4rl_dropped_last_step"]`` says what was dropped. An
  episode of a single row has no step left and is skipped (logged).

A terminal and a time-out on the same row read as terminated. Timestamps: ``infos/timestamps`` if
present (the final observation of an episode imported with ``next_observations`` gets
``t[e] + control_dt_s``), else ``index * control_dt_s``; synthesized times are flagged in the
episode ``extra``.

Export writes the D4RL keys (with ``next_observations`` always, so nothing is dropped on the way
back) plus a ``robot_rl`` group that makes the round trip exact: ``episode_lengths`` (E,) int64,
``t_ns`` (N,) and ``next_t_ns`` (N,) int64, ``episode_meta`` (E,) JSON strings and ``manifest``
(JSON string). Rewards are written as float64 (robot-rl stores raw float64 rewards).
"""

from __future__ import annotations

import json
import logging
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from robot_rl.data.errors import LogFormatError
from robot_rl.data.journal import meta_from_json, meta_to_json
from robot_rl.data.manifest import RunManifest
from robot_rl.data.reader import EpisodeReader
from robot_rl.data.writer import EpisodeWriter
from robot_rl.schema import Episode, EpisodeMeta, FieldLayout, SchemaError, Source

log = logging.getLogger(__name__)

REQUIRED_KEYS = ("observations", "actions", "rewards", "terminals", "timeouts")
GROUP = "robot_rl"


def export_d4rl(run: Path | str | EpisodeReader, out_file: Path | str) -> Path:
    """Write the run's transitions as a D4RL-style HDF5 file (see module docstring); returns its path."""
    import h5py

    reader = run if isinstance(run, EpisodeReader) else EpisodeReader(run)
    episodes = reader.load_episodes()
    if not episodes:
        raise LogFormatError(reader.run_dir, "episodes", "at least one episode to export", "none")
    out = Path(out_file)
    if out.exists():
        raise FileExistsError(f"{out} already exists; refusing to overwrite")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    str_dt = h5py.string_dtype()
    with h5py.File(tmp, "w") as f:
        f.create_dataset("observations", data=np.concatenate([ep.obs[:-1] for ep in episodes]))
        f.create_dataset("next_observations", data=np.concatenate([ep.obs[1:] for ep in episodes]))
        f.create_dataset("actions", data=np.concatenate([ep.action for ep in episodes]))
        f.create_dataset("rewards", data=np.concatenate([ep.reward for ep in episodes]))
        f.create_dataset("terminals", data=np.concatenate([ep.terminated for ep in episodes]))
        f.create_dataset("timeouts", data=np.concatenate([ep.truncated for ep in episodes]))
        g = f.create_group(GROUP)
        g.create_dataset("episode_lengths", data=np.array([ep.n_steps for ep in episodes], dtype=np.int64))
        g.create_dataset("t_ns", data=np.concatenate([ep.t_ns[:-1] for ep in episodes]))
        g.create_dataset("next_t_ns", data=np.concatenate([ep.t_ns[1:] for ep in episodes]))
        g.create_dataset(
            "episode_meta",
            data=np.array(
                [json.dumps(meta_to_json(ep.meta), sort_keys=True) for ep in episodes], dtype=object
            ),
            dtype=str_dt,
        )
        g.create_dataset("manifest", data=reader.manifest.to_json(), dtype=str_dt)
    tmp.rename(out)
    return out


def _read(f: Any, path: Path, key: str, rows: int | None) -> np.ndarray:
    if key not in f:
        raise LogFormatError(path, key, "present", "missing", detail=f"D4RL files need {list(REQUIRED_KEYS)}")
    arr = np.asarray(f[key][()])
    if rows is not None and (arr.ndim == 0 or arr.shape[0] != rows):
        got = "a scalar" if arr.ndim == 0 else f"{arr.shape[0]} rows"
        raise LogFormatError(path, key, f"{rows} rows (as observations)", got)
    return arr


def _as_2d(path: Path, key: str, arr: np.ndarray) -> np.ndarray:
    if arr.ndim == 1:
        return arr.reshape(-1, 1)
    if arr.ndim != 2:
        raise LogFormatError(path, key, "a (N, dim) array", f"shape {arr.shape}")
    return arr


def _build(path: Path, meta: EpisodeMeta, **arrays: np.ndarray) -> Episode:
    try:
        return Episode(meta=meta, **arrays)
    except SchemaError as err:
        raise LogFormatError.from_schema_error(path, err, meta.episode_id) from None


def import_d4rl(
    source: Path | str,
    out: Path | str,
    *,
    robot: str | None = None,
    task: str | None = None,
    source_kind: Source | str = Source.REAL,
    control_dt_s: float | None = None,
    obs_layout: FieldLayout | None = None,
    action_layout: FieldLayout | None = None,
    chunk_steps: int = 20_000,
) -> Path:
    """Import a D4RL-style HDF5 file into a new run folder ``out``; returns ``out``.

    A file written by :func:`export_d4rl` is restored exactly (its ``robot_rl`` group wins over
    the arguments). For others, robot/task/layouts/source/control_dt_s come from the arguments
    (defaults "unknown", anonymous layouts, ``real``, the median timestamp step or 1.0 s).
    """
    import h5py

    path = Path(source)
    if not path.is_file():
        raise LogFormatError(path, "<file>", "an HDF5 file", "no such file")
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise LogFormatError(path, "<file>", "a readable HDF5 file", str(err)) from None
    with f:
        obs_rows = _as_2d(path, "observations", _read(f, path, "observations", None))
        n = obs_rows.shape[0]
        actions = _as_2d(path, "actions", _read(f, path, "actions", n))
        rewards = _read(f, path, "rewards", n).astype(np.float64).reshape(n)
        terminals = _read(f, path, "terminals", n).astype(np.bool_).reshape(n)
        timeouts = _read(f, path, "timeouts", n).astype(np.bool_).reshape(n)
        next_obs = (
            _as_2d(path, "next_observations", _read(f, path, "next_observations", n))
            if "next_observations" in f
            else None
        )
        if GROUP in f:
            return _import_own(
                path,
                f[GROUP],
                obs_rows,
                next_obs,
                actions,
                rewards,
                terminals,
                timeouts,
                Path(out),
                chunk_steps,
            )
        stamps = _read(f, path, "infos/timestamps", n).reshape(n) if "infos/timestamps" in f else None

    extra: dict[str, str] = {"imported_from": f"d4rl-hdf5:{path.name}"}
    if obs_rows.dtype != np.float32:
        extra["obs_cast"] = f"{obs_rows.dtype} -> float32"
    if stamps is not None:
        t_all = (
            stamps.astype(np.int64)
            if np.issubdtype(stamps.dtype, np.integer)
            else np.round(stamps.astype(np.float64) * 1e9).astype(np.int64)
        )
    else:
        t_all = None
    if control_dt_s is None:
        diffs = np.diff(t_all) if t_all is not None else np.empty(0)
        diffs = diffs[diffs > 0]
        if diffs.size:
            control_dt_s = float(np.median(diffs)) * 1e-9
            extra["control_dt_s"] = "median of infos/timestamps steps"
        else:
            control_dt_s = 1.0
            extra["control_dt_s"] = "assumed 1.0 s (not given at import)"
    dt_ns = round(control_dt_s * 1e9)
    manifest = RunManifest(
        robot=robot or "unknown",
        task=task or path.stem,
        control_dt_s=control_dt_s,
        obs_layout=obs_layout or FieldLayout.anonymous("obs", obs_rows.shape[1]),
        action_layout=action_layout or FieldLayout.anonymous("action", actions.shape[1]),
        source=Source(source_kind),
        description=f"imported from D4RL-style HDF5 {path}",
        extra=extra,
    )

    ends = np.flatnonzero(terminals | timeouts)
    bounds = (
        [(int(s), int(e)) for s, e in zip(np.r_[0, ends[:-1] + 1], ends, strict=True)] if ends.size else []
    )
    tail_start = int(ends[-1]) + 1 if ends.size else 0
    if tail_start < n:
        bounds.append((tail_start, n - 1))  # cut by the end of the file
    skipped = 0
    with EpisodeWriter(Path(out), manifest, chunk_steps=chunk_steps) as writer:
        for s, e in bounds:
            ep_extra = {"d4rl_rows": f"{s}:{e + 1}"}
            cut_by_file = not (terminals[e] or timeouts[e])
            if next_obs is not None:
                obs = np.concatenate([obs_rows[s : e + 1], next_obs[e : e + 1]])
                act, rew = actions[s : e + 1], rewards[s : e + 1]
                term_end = bool(terminals[e])
                if t_all is not None:
                    t_ns = np.r_[t_all[s : e + 1], t_all[e] + dt_ns]
                    ep_extra["t_ns"] = "from infos/timestamps; final observation at t[e] + control_dt_s"
            else:
                if e == s:
                    skipped += 1
                    continue
                obs = obs_rows[s : e + 1]
                act, rew = actions[s:e], rewards[s:e]
                term_end = False  # the step that ended the episode was dropped
                if not cut_by_file:
                    ep_extra["d4rl_dropped_last_step"] = "terminal" if terminals[e] else "timeout"
                if t_all is not None:
                    t_ns = t_all[s : e + 1]
                    ep_extra["t_ns"] = "from infos/timestamps"
            if t_all is None:
                t_ns = np.arange(obs.shape[0], dtype=np.int64) * dt_ns
                ep_extra["t_ns"] = "synthesized as index * control_dt_s"
            if cut_by_file:
                ep_extra["end"] = "cut by the end of the file; marked truncated"
            steps = act.shape[0]
            term = np.zeros(steps, dtype=np.bool_)
            trunc = np.zeros(steps, dtype=np.bool_)
            term[-1] = term_end
            trunc[-1] = not term_end
            meta = EpisodeMeta(
                source=manifest.source,
                robot=manifest.robot,
                task=manifest.task,
                control_dt_s=control_dt_s,
                episode_id=uuid.uuid4().hex,
                extra=ep_extra,
            )
            ep = _build(
                path,
                meta,
                obs=obs.astype(np.float32),
                action=act.astype(np.float32),
                reward=rew,
                terminated=term,
                truncated=trunc,
                t_ns=np.asarray(t_ns, dtype=np.int64),
            )
            writer.write_episode(ep, journal=False)
    if skipped:
        log.warning("%s: skipped %d single-row episode(s) (no next_observations to end them)", path, skipped)
    return Path(out)


def _import_own(
    path: Path,
    g: Any,
    obs_rows: np.ndarray,
    next_obs: np.ndarray | None,
    actions: np.ndarray,
    rewards: np.ndarray,
    terminals: np.ndarray,
    timeouts: np.ndarray,
    out: Path,
    chunk_steps: int,
) -> Path:
    """Exact restore of a file written by :func:`export_d4rl`."""
    n = obs_rows.shape[0]
    if next_obs is None:
        raise LogFormatError(path, "next_observations", "present (robot_rl export)", "missing")
    for key in ("episode_lengths", "t_ns", "next_t_ns", "episode_meta", "manifest"):
        if key not in g:
            raise LogFormatError(path, f"{GROUP}/{key}", "present", "missing")
    lengths = np.asarray(g["episode_lengths"][()], dtype=np.int64)
    if int(lengths.sum()) != n or (lengths < 1).any():
        raise LogFormatError(
            path, f"{GROUP}/episode_lengths", f"positive lengths summing to {n}", str(lengths.sum())
        )
    t_ns = np.asarray(g["t_ns"][()], dtype=np.int64)
    next_t_ns = np.asarray(g["next_t_ns"][()], dtype=np.int64)
    for key, arr in (("t_ns", t_ns), ("next_t_ns", next_t_ns)):
        if arr.shape != (n,):
            raise LogFormatError(path, f"{GROUP}/{key}", f"{n} rows", f"shape {arr.shape}")
    metas_raw = [m.decode() if isinstance(m, bytes) else str(m) for m in g["episode_meta"][()]]
    if len(metas_raw) != lengths.size:
        raise LogFormatError(path, f"{GROUP}/episode_meta", f"{lengths.size} entries", str(len(metas_raw)))
    manifest_raw = g["manifest"][()]
    manifest_text = manifest_raw.decode() if isinstance(manifest_raw, bytes) else str(manifest_raw)
    try:
        manifest = RunManifest.from_json_dict(json.loads(manifest_text), f"{path}:{GROUP}/manifest")
        metas = [meta_from_json(json.loads(m)) for m in metas_raw]
    except (ValueError, KeyError, TypeError) as err:
        if isinstance(err, LogFormatError):
            raise
        raise LogFormatError(
            path, f"{GROUP}/episode_meta", "robot-rl episode metadata JSON", str(err)
        ) from None
    starts = np.r_[0, np.cumsum(lengths)[:-1]]
    with EpisodeWriter(out, manifest, chunk_steps=chunk_steps) as writer:
        for meta, s, length in zip(metas, starts, lengths, strict=True):
            e = int(s + length)
            ep = _build(
                path,
                meta,
                obs=np.concatenate([obs_rows[s:e], next_obs[e - 1 : e]]).astype(np.float32, copy=False),
                action=actions[s:e].astype(np.float32, copy=False),
                reward=rewards[s:e],
                terminated=terminals[s:e].copy(),
                truncated=timeouts[s:e].copy(),
                t_ns=np.r_[t_ns[s:e], next_t_ns[e - 1]].astype(np.int64),
            )
            writer.write_episode(ep, journal=False)
    return out
