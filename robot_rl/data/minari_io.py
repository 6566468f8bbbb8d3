"""Export a run to a Minari dataset and import Minari datasets into run folders.

Export is lossless for everything in the robot-rl format:

- observations (T+1, obs_dim) float32, actions (T, act_dim) float32, rewards float64,
  terminations/truncations go to Minari's own episode fields, with flat ``Box`` spaces;
- per-step ``t_ns`` (T+1,) int64 goes to the episode ``infos["t_ns"]``;
- per-episode metadata (episode_id, source, robot, task, policy_version, control_dt_s,
  calib_hash, seed, extra) goes, as a JSON list in episode order, to the dataset metadata key
  ``robot_rl_episodes``; the seed is also given to Minari's own episode seed;
- the run manifest goes, as JSON, to the dataset metadata key ``robot_rl_manifest``.

Importing such a dataset rebuilds the run exactly (same episode ids, arrays bit-equal, same
manifest). A dataset not made by robot-rl imports with robot/task/layouts/source from the caller
(defaults: anonymous layouts ``obs_0..`` / ``action_0..`` with unit ``"unknown"``); its timestamps
are synthesized as ``index * control_dt_s`` and marked so in the episode ``extra``.

Minari places datasets under ``MINARI_DATASETS_PATH``; :func:`export_minari` points that at the
caller's output folder for the duration of the call (so do not export from two threads at once).
"""

from __future__ import annotations

import json
import os
import re
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from robot_rl.data.errors import LogFormatError
from robot_rl.data.journal import meta_from_json, meta_to_json
from robot_rl.data.manifest import RunManifest
from robot_rl.data.reader import EpisodeReader
from robot_rl.data.writer import EpisodeWriter
from robot_rl.schema import Episode, EpisodeMeta, FieldLayout, SchemaError, Source

META_MANIFEST = "robot_rl_manifest"
META_EPISODES = "robot_rl_episodes"
INFO_T_NS = "t_ns"


def default_dataset_id(manifest: RunManifest) -> str:
    """``<robot>_<task>-v0`` with characters Minari ids do not allow replaced by ``_``."""
    name = re.sub(r"[^A-Za-z0-9_]+", "_", f"{manifest.robot}_{manifest.task}").strip("_") or "robot_rl"
    return f"{name}-v0"


@contextmanager
def _datasets_root(root: Path) -> Iterator[None]:
    old = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(root)
    try:
        yield
    finally:
        if old is None:
            del os.environ["MINARI_DATASETS_PATH"]
        else:
            os.environ["MINARI_DATASETS_PATH"] = old


def _box(size: int) -> Any:
    import gymnasium as gym

    return gym.spaces.Box(-np.inf, np.inf, shape=(size,), dtype=np.float32)


def export_minari(
    run: Path | str | EpisodeReader, out_dir: Path | str, dataset_id: str | None = None
) -> Path:
    """Write the run as Minari dataset ``dataset_id`` under ``out_dir``; returns the dataset folder.

    The dataset lands in ``out_dir/<dataset_id>/`` (``data/`` inside holds Minari's files). Load it
    with ``minari.load_dataset(dataset_id)`` after ``MINARI_DATASETS_PATH=out_dir``, or with
    ``minari.MinariDataset(out_dir/<dataset_id>/data)``.
    """
    import minari
    from minari.data_collector import EpisodeBuffer

    reader = run if isinstance(run, EpisodeReader) else EpisodeReader(run)
    manifest = reader.manifest
    dataset_id = dataset_id or default_dataset_id(manifest)
    out_root = Path(out_dir).resolve()
    out_root.mkdir(parents=True, exist_ok=True)
    buffers: list[Any] = []
    metas: list[dict[str, object]] = []
    for i, ep in enumerate(reader.iter_episodes()):
        buffers.append(
            EpisodeBuffer(
                id=i,
                seed=ep.meta.seed,
                observations=ep.obs,
                actions=ep.action,
                rewards=ep.reward,
                terminations=ep.terminated,
                truncations=ep.truncated,
                infos={INFO_T_NS: ep.t_ns},
            )
        )
        metas.append(meta_to_json(ep.meta))
    if not buffers:
        raise LogFormatError(reader.run_dir, "episodes", "at least one episode to export", "none")
    description = (
        f"robot-rl run {reader.run_dir.name}: robot {manifest.robot}, task {manifest.task}, "
        f"control_dt_s {manifest.control_dt_s}. {manifest.description}"
    ).strip()
    # Minari warns that env/eval_env/env_spec are None: that is the point of env=None here.
    with _datasets_root(out_root), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        dataset = minari.create_dataset_from_buffers(
            dataset_id=dataset_id,
            buffer=buffers,
            env=None,
            observation_space=_box(manifest.obs_layout.size),
            action_space=_box(manifest.action_layout.size),
            algorithm_name="robot-rl",
            description=description,
            data_format="hdf5",
            jpeg_encoding=False,
        )
        dataset.storage.update_metadata(
            {META_MANIFEST: manifest.to_json(), META_EPISODES: json.dumps(metas, sort_keys=True)}
        )
    return out_root / dataset_id


def _data_path(path: Path) -> Path:
    """Minari's data folder for a dataset folder or the data folder itself."""
    if (path / "metadata.json").is_file():
        return path
    if (path / "data" / "metadata.json").is_file():
        return path / "data"
    raise LogFormatError(
        path, "metadata.json", "a Minari dataset folder (with data/metadata.json)", "not found"
    )


def _as_flat(path: Path, name: str, value: object, rows: int, episode: int) -> np.ndarray:
    arr = np.asarray(value)
    if arr.ndim != 2 or arr.shape[0] != rows:
        raise LogFormatError(
            path,
            name,
            f"a ({rows}, dim) array (flat Box space)",
            f"shape {arr.shape}",
            step=None,
            detail=f"episode index {episode}",
        )
    return arr


def import_minari(
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
    """Import a Minari dataset folder into a new run folder ``out``; returns ``out``.

    A robot-rl export is restored exactly (the manifest and episode metadata come from the
    dataset; ``robot``/``task``/... arguments are ignored for it). Any other dataset needs flat
    ``Box`` observation and action spaces; robot, task, layouts, source and ``control_dt_s``
    come from the arguments (defaults: "unknown", anonymous layouts, ``real``, 1.0 s - flagged in
    the manifest ``extra``). Episodes that end with neither flag (cut by the dataset) are
    marked truncated; both flags set reads as terminated.
    """
    import minari

    path = _data_path(Path(source))
    dataset = minari.MinariDataset(path)
    raw_meta = dataset.storage.metadata
    out_dir = Path(out)
    if META_MANIFEST in raw_meta and META_EPISODES in raw_meta:
        try:
            manifest = RunManifest.from_json_dict(json.loads(raw_meta[META_MANIFEST]), path / "metadata.json")
            metas = [meta_from_json(m) for m in json.loads(raw_meta[META_EPISODES])]
        except (ValueError, KeyError, TypeError) as err:
            if isinstance(err, LogFormatError):
                raise
            raise LogFormatError(
                path / "metadata.json", META_EPISODES, "robot-rl episode metadata", str(err)
            ) from None
        if len(metas) != dataset.total_episodes:
            raise LogFormatError(
                path / "metadata.json", META_EPISODES, f"{dataset.total_episodes} entries", str(len(metas))
            )
        with EpisodeWriter(out_dir, manifest, chunk_steps=chunk_steps) as writer:
            for meta, ed in zip(metas, dataset.iterate_episodes(), strict=True):
                infos = ed.infos or {}
                if INFO_T_NS not in infos:
                    raise LogFormatError(
                        path, "infos/t_ns", "per-step timestamps", "missing", episode_id=meta.episode_id
                    )
                ep = _episode(
                    path,
                    meta,
                    ed.observations,
                    ed.actions,
                    ed.rewards,
                    ed.terminations,
                    ed.truncations,
                    np.asarray(infos[INFO_T_NS], dtype=np.int64),
                    ed.id,
                )
                writer.write_episode(ep, journal=False)
        return out_dir

    obs_space, act_space = dataset.observation_space, dataset.action_space
    for name, space in (("observation_space", obs_space), ("action_space", act_space)):
        shape = getattr(space, "shape", None)
        if shape is None or len(shape) != 1:
            raise LogFormatError(path / "metadata.json", name, "a flat Box space", repr(space))
    obs_dim, act_dim = int(obs_space.shape[0]), int(act_space.shape[0])
    extra: dict[str, str] = {"imported_from": f"minari:{raw_meta.get('dataset_id', path)}"}
    if control_dt_s is None:
        control_dt_s = 1.0
        extra["control_dt_s"] = "assumed 1.0 s (not given at import)"
    manifest = RunManifest(
        robot=robot or "unknown",
        task=task or str(raw_meta.get("dataset_id", "unknown")),
        control_dt_s=control_dt_s,
        obs_layout=obs_layout or FieldLayout.anonymous("obs", obs_dim),
        action_layout=action_layout or FieldLayout.anonymous("action", act_dim),
        source=Source(source_kind),
        description=f"imported from Minari dataset {raw_meta.get('dataset_id', path)}",
        extra=extra,
    )
    dt_ns = round(control_dt_s * 1e9)
    with EpisodeWriter(out_dir, manifest, chunk_steps=chunk_steps) as writer:
        for ed in dataset.iterate_episodes():
            seed = getattr(ed, "seed", None)
            n = len(ed.rewards)
            meta = EpisodeMeta(
                source=manifest.source,
                robot=manifest.robot,
                task=manifest.task,
                control_dt_s=control_dt_s,
                episode_id=uuid.uuid4().hex,
                seed=None if seed is None else int(seed),
                extra={"minari_episode_index": str(ed.id), "t_ns": "synthesized as index * control_dt_s"},
            )
            t_ns = np.arange(n + 1, dtype=np.int64) * dt_ns
            ep = _episode(
                path,
                meta,
                ed.observations,
                ed.actions,
                ed.rewards,
                ed.terminations,
                ed.truncations,
                t_ns,
                ed.id,
                fix_flags=True,
            )
            writer.write_episode(ep, journal=False)
    return out_dir


def _episode(
    path: Path,
    meta: EpisodeMeta,
    observations: object,
    actions: object,
    rewards: object,
    terminations: object,
    truncations: object,
    t_ns: np.ndarray,
    index: int,
    *,
    fix_flags: bool = False,
) -> Episode:
    """Build and validate an Episode from Minari arrays; ``fix_flags`` repairs a foreign episode end."""
    rew = np.asarray(rewards, dtype=np.float64)
    n = rew.shape[0]
    obs = _as_flat(path, "observations", observations, n + 1, index)
    act = _as_flat(path, "actions", actions, n, index)
    term = np.asarray(terminations, dtype=np.bool_).copy()
    trunc = np.asarray(truncations, dtype=np.bool_).copy()
    if fix_flags and n:
        # Foreign data: a terminal state wins over a simultaneous time-out, and an episode the
        # dataset simply cut (neither flag) is truncated.
        if term[-1]:
            trunc[-1] = False
        elif not trunc[-1]:
            trunc[-1] = True
            meta = replace(meta, extra={**meta.extra, "end": "cut by the dataset; marked truncated"})
    try:
        return Episode(
            meta=meta,
            obs=obs.astype(np.float32, copy=False),
            action=act.astype(np.float32, copy=False),
            reward=rew,
            terminated=term,
            truncated=trunc,
            t_ns=t_ns,
        )
    except SchemaError as err:
        raise LogFormatError.from_schema_error(path, err, meta.episode_id) from None
