"""``EpisodeReader``: validated, read-only access to a run folder."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from robot_rl.data.chunks import check_chunk_footer, iter_chunk_episodes, list_chunks
from robot_rl.data.errors import LogFormatError
from robot_rl.data.journal import list_journals, read_journal
from robot_rl.data.manifest import RunManifest, read_manifest
from robot_rl.data.writer import EPISODES_DIR, writer_alive
from robot_rl.schema import Episode, FieldLayout, SchemaError, Source

log = logging.getLogger(__name__)


def _source_set(sources: Iterable[Source | str] | None) -> frozenset[Source] | None:
    return None if sources is None else frozenset(Source(s) for s in sources)


class EpisodeReader:
    """Read a run folder without modifying it.

    Opening reads and validates ``manifest.json`` and the footer (schema, column names, list
    widths == layout sizes) of every chunk, reading no row data, so a wrong file is reported before
    anything is loaded. Episodes are then validated as they are decoded; every error is a
    :class:`LogFormatError` naming the file, the episode, the field and the step.

    Journals: if no live writer holds the run's lock, journals left by a crashed writer are read
    as recovered episodes (the partial one with its last step truncated and
    ``extra["recovered"] = "partial"``), without touching the files. If a writer is live its
    journals are episodes in progress and are skipped.
    """

    def __init__(self, run_dir: Path | str) -> None:
        self.run_dir = Path(run_dir)
        self.manifest: RunManifest = read_manifest(self.run_dir)
        self.episodes_dir = self.run_dir / EPISODES_DIR
        self.chunk_paths: list[Path] = list_chunks(self.episodes_dir)
        for path in self.chunk_paths:
            check_chunk_footer(path, self.manifest.obs_layout, self.manifest.action_layout)

    @property
    def obs_layout(self) -> FieldLayout:
        """Observation layout of the run."""
        return self.manifest.obs_layout

    @property
    def action_layout(self) -> FieldLayout:
        """Action layout of the run."""
        return self.manifest.action_layout

    def _check(self, path: Path, ep: Episode) -> None:
        try:
            ep.validate(self.manifest.obs_layout, self.manifest.action_layout)
        except SchemaError as err:
            raise LogFormatError.from_schema_error(path, err) from None
        if ep.meta.robot != self.manifest.robot:
            raise LogFormatError(
                path, "robot", repr(self.manifest.robot), repr(ep.meta.robot), episode_id=ep.meta.episode_id
            )

    def iter_episodes(
        self, sources: Iterable[Source | str] | None = None, include_journals: bool = True
    ) -> Iterator[Episode]:
        """Yield validated episodes (chunks in write order, then recovered journals).

        Args:
            sources: keep only these sources (None: all).
            include_journals: also yield episodes recovered read-only from a dead writer's journals.
        """
        wanted = _source_set(sources)
        seen: dict[str, Path] = {}
        for path in self.chunk_paths:
            pf = check_chunk_footer(path, self.manifest.obs_layout, self.manifest.action_layout)
            for ep in iter_chunk_episodes(path, pf):
                self._check(path, ep)
                eid = ep.meta.episode_id
                if eid in seen:
                    raise LogFormatError(
                        path, "episode_id", "unique ids", f"{eid} also in {seen[eid].name}", episode_id=eid
                    )
                seen[eid] = path
                if wanted is None or ep.meta.source in wanted:
                    yield ep
        if not include_journals:
            return
        journals = list_journals(self.episodes_dir)
        if not journals:
            return
        if writer_alive(self.run_dir):
            log.info("%s: a writer is live; skipping %d in-progress journal(s)", self.run_dir, len(journals))
            return
        for jpath in journals:
            try:
                contents = read_journal(jpath)
            except LogFormatError as err:
                log.warning("skipping unreadable journal %s: %s", jpath, err)
                continue
            except FileNotFoundError:  # a writer started and recovered it meanwhile
                continue
            if contents.meta.episode_id in seen:
                continue  # crash between chunk rename and journal delete: the chunk has it
            recovered = contents.to_episode()
            if recovered is None:
                log.warning("skipping journal %s: no completed step", jpath)
                continue
            self._check(jpath, recovered)
            seen[recovered.meta.episode_id] = jpath
            if wanted is None or recovered.meta.source in wanted:
                yield recovered

    def load_episodes(
        self, sources: Iterable[Source | str] | None = None, include_journals: bool = True
    ) -> list[Episode]:
        """All episodes, or a LogFormatError and nothing (never a half-loaded list)."""
        return list(self.iter_episodes(sources, include_journals))

    def stats(self) -> RunStats:
        """Summary statistics of the run (reads every episode)."""
        return RunStats.from_episodes(self.manifest, self.iter_episodes(), self.run_dir)


def open_run(path: Path | str) -> EpisodeReader:
    """Open a run folder for reading (see :class:`EpisodeReader`)."""
    return EpisodeReader(path)


def _quantiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {k: None for k in ("mean", "std", "min", "p25", "median", "p75", "max")}
    arr = np.asarray(values, dtype=np.float64)
    p25, med, p75 = np.percentile(arr, [25, 50, 75])
    return {
        "mean": float(arr.mean()),
        "std": float(arr.std()),
        "min": float(arr.min()),
        "p25": float(p25),
        "median": float(med),
        "p75": float(p75),
        "max": float(arr.max()),
    }


@dataclass(frozen=True)
class RunStats:
    """Summary of a run.

    ``returns`` and ``lengths`` hold mean/std/min/p25/median/p75/max (None for an empty run) of the
    undiscounted episode return and of the steps per episode. ``measured_dt_s`` is the median of
    the observation timestamp differences, next to the nominal ``control_dt_s``.
    """

    run_dir: str
    robot: str
    task: str
    control_dt_s: float
    control_rate_hz: float
    measured_dt_s: float | None
    episodes: int
    steps: int
    terminated: int
    truncated: int
    recovered_partial: int
    episodes_per_source: dict[str, int]
    steps_per_source: dict[str, int]
    returns: dict[str, float | None]
    lengths: dict[str, float | None]
    obs_layout: FieldLayout
    action_layout: FieldLayout
    extra: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_episodes(cls, manifest: RunManifest, episodes: Iterable[Episode], run_dir: Path) -> RunStats:
        """Accumulate statistics over ``episodes`` (streamed: one episode in memory at a time)."""
        returns: list[float] = []
        lengths: list[float] = []
        dts: list[np.ndarray] = []
        eps_src: dict[str, int] = {}
        steps_src: dict[str, int] = {}
        terminated = truncated = partial = 0
        for ep in episodes:
            returns.append(ep.undiscounted_return())
            lengths.append(float(ep.n_steps))
            dts.append(np.diff(ep.t_ns))
            src = ep.meta.source.value
            eps_src[src] = eps_src.get(src, 0) + 1
            steps_src[src] = steps_src.get(src, 0) + ep.n_steps
            terminated += int(ep.terminated[-1])
            truncated += int(ep.truncated[-1])
            partial += int(ep.meta.extra.get("recovered") == "partial")
        measured = float(np.median(np.concatenate(dts))) * 1e-9 if dts else None
        return cls(
            run_dir=str(run_dir),
            robot=manifest.robot,
            task=manifest.task,
            control_dt_s=manifest.control_dt_s,
            control_rate_hz=manifest.control_rate_hz,
            measured_dt_s=measured,
            episodes=len(returns),
            steps=int(sum(lengths)),
            terminated=terminated,
            truncated=truncated,
            recovered_partial=partial,
            episodes_per_source=eps_src,
            steps_per_source=steps_src,
            returns=_quantiles(returns),
            lengths=_quantiles(lengths),
            obs_layout=manifest.obs_layout,
            action_layout=manifest.action_layout,
            extra=dict(manifest.extra),
        )

    def to_json_dict(self) -> dict[str, Any]:
        """JSON-safe dict (layouts as lists of {name, unit})."""
        return {
            "run_dir": self.run_dir,
            "robot": self.robot,
            "task": self.task,
            "control_dt_s": self.control_dt_s,
            "control_rate_hz": self.control_rate_hz,
            "measured_dt_s": self.measured_dt_s,
            "episodes": self.episodes,
            "steps": self.steps,
            "terminated": self.terminated,
            "truncated": self.truncated,
            "recovered_partial": self.recovered_partial,
            "episodes_per_source": self.episodes_per_source,
            "steps_per_source": self.steps_per_source,
            "returns": self.returns,
            "lengths": self.lengths,
            "obs_layout": self.obs_layout.to_json(),
            "action_layout": self.action_layout.to_json(),
            "extra": self.extra,
        }
