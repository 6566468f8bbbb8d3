"""The episode log store for ``calib/<run>/`` folders: one import point, plus derived data.

Layout of a run folder (full spec in docs/log-format.md)::

    <run>/manifest.json                        RunManifest, pretty JSON, written atomically
    <run>/.writer.lock                         flock of the live EpisodeWriter (holds its pid)
    <run>/episodes/chunk-000000.parquet        finished episodes, one row per episode, zstd
    <run>/episodes/.journal-<episode_id>.bin   write-ahead journal of an episode not yet in a chunk

The pieces live in :mod:`manifest`, :mod:`chunks`, :mod:`journal`, :mod:`writer` and
:mod:`reader`; this module re-exports them and derives training batches from whole runs with the
pure functions of :mod:`robot_rl.schema`.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from robot_rl.data.errors import LogFormatError, RunLockedError
from robot_rl.data.manifest import MANIFEST_NAME, RunManifest, read_manifest, write_manifest
from robot_rl.data.reader import EpisodeReader, RunStats, open_run
from robot_rl.data.writer import DEFAULT_CHUNK_STEPS, EpisodeWriter, RecoveryReport
from robot_rl.schema import (
    Episode,
    MonteCarloBatch,
    NStepBatch,
    Source,
    TransitionBatch,
    concat_batches,
    episode_monte_carlo,
    episode_nstep,
    episode_transitions,
)

__all__ = [
    "DEFAULT_CHUNK_STEPS",
    "MANIFEST_NAME",
    "EpisodeReader",
    "EpisodeWriter",
    "LogFormatError",
    "RecoveryReport",
    "RunLockedError",
    "RunManifest",
    "RunStats",
    "nstep_transitions",
    "open_run",
    "read_manifest",
    "returns_to_go",
    "transitions",
    "transitions_by_source",
    "write_manifest",
]

RunLike = EpisodeReader | Path | str


def _reader(run: RunLike) -> EpisodeReader:
    return run if isinstance(run, EpisodeReader) else EpisodeReader(run)


def _episodes(run: RunLike, sources: Iterable[Source | str] | None) -> tuple[EpisodeReader, list[Episode]]:
    reader = _reader(run)
    wanted = None if sources is None else [Source(s) for s in sources]
    episodes = reader.load_episodes(wanted)
    if not episodes:
        got = "no episodes" if wanted is None else f"no episodes from sources {[s.value for s in wanted]}"
        raise LogFormatError(reader.run_dir, "episodes", "at least one episode", got)
    return reader, episodes


def transitions(run: RunLike, sources: Iterable[Source | str] | None = None) -> TransitionBatch[np.ndarray]:
    """All one-step transitions of a run (optionally only some sources), episodes in storage order."""
    _, episodes = _episodes(run, sources)
    return concat_batches([episode_transitions(ep) for ep in episodes])


def transitions_by_source(run: RunLike) -> dict[Source, TransitionBatch[np.ndarray]]:
    """One TransitionBatch per source present in the run (H2O weighs real and sim apart)."""
    _, episodes = _episodes(run, None)
    by_source: dict[Source, list[TransitionBatch[np.ndarray]]] = {}
    for ep in episodes:
        by_source.setdefault(ep.meta.source, []).append(episode_transitions(ep))
    return {src: concat_batches(batches) for src, batches in by_source.items()}


def nstep_transitions(
    run: RunLike, n: int, gamma: float, sources: Iterable[Source | str] | None = None
) -> NStepBatch[np.ndarray]:
    """n-step transitions of every episode (windows stop at episode ends; see NStepBatch)."""
    _, episodes = _episodes(run, sources)
    return concat_batches([episode_nstep(ep, n, gamma) for ep in episodes])


def returns_to_go(
    run: RunLike, gamma: float, sources: Iterable[Source | str] | None = None
) -> MonteCarloBatch[np.ndarray]:
    """Discounted return-to-go of every step; ``partial`` marks steps of truncated episodes."""
    _, episodes = _episodes(run, sources)
    return concat_batches([episode_monte_carlo(ep, gamma) for ep in episodes])
