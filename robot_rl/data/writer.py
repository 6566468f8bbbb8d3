"""``EpisodeWriter``: append episodes to a run folder, crash-safely.

Durability model (ARCHITECTURE.md section 4):

1. ``begin_episode`` creates ``episodes/.journal-<episode_id>.bin``; each ``add_step`` appends one
   CRC-protected record with one ``os.write`` (survives ``kill -9`` once the call returns) and
   fsyncs every ``fsync_every_steps`` steps or ``fsync_interval_s`` seconds (bounds what a power cut
   can take) and at the episode end.
2. Finished episodes are buffered until ``chunk_steps`` steps, then written as one Parquet chunk:
   ``.chunk-N.parquet.tmp`` -> flush -> fsync -> rename -> fsync(dir); only THEN are the journals of
   those episodes deleted. At every instant each episode is in a journal, a chunk, or both.
3. Opening a run for append recovers orphan journals left by a dead writer (see :func:`recover`).

One writer per run at a time: an exclusive ``fcntl.flock`` on ``run_dir/.writer.lock``, which
holds the writer's pid for the error message a second writer gets. The lock dies with the
process, so a ``kill -9`` never leaves a run locked.
"""

from __future__ import annotations

import fcntl
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import numpy as np

from robot_rl.data.chunks import (
    chunk_index,
    list_chunks,
    read_episode_ids,
    remove_stale_tmp,
    write_chunk,
)
from robot_rl.data.errors import LogFormatError, RunLockedError
from robot_rl.data.journal import (
    FLAG_TERMINATED,
    FLAG_TRUNCATED,
    JournalWriter,
    journal_path,
    list_journals,
    read_journal,
)
from robot_rl.data.manifest import MANIFEST_NAME, RunManifest, fsync_dir, read_manifest, write_manifest
from robot_rl.schema import Episode, EpisodeMeta, SchemaError

log = logging.getLogger(__name__)

LOCK_NAME = ".writer.lock"
EPISODES_DIR = "episodes"
DEFAULT_CHUNK_STEPS = 20_000


def writer_alive(run_dir: Path) -> bool:
    """True if a live process holds the run's writer lock (tested without creating any file)."""
    path = Path(run_dir) / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


class _WriterLock:
    """Exclusive flock on ``run_dir/.writer.lock`` with the holder's pid written in."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / LOCK_NAME
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise RunLockedError(
                f"{run_dir}: another EpisodeWriter (pid {holder}) holds {self.path}; "
                "one writer per run - close it first or write to another run folder"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


@dataclass(frozen=True)
class RecoveryReport:
    """What :func:`recover` did to the journals of a dead writer."""

    recovered_complete: tuple[str, ...]  # episode ids written to a chunk as they were
    recovered_partial: tuple[str, ...]  # episode ids written with the last step marked truncated
    dropped_empty: tuple[str, ...]  # episode ids with no completed step
    deleted_duplicates: tuple[str, ...]  # journals whose episode already was in a chunk
    quarantined: tuple[Path, ...]  # unreadable journals renamed to *.corrupt
    removed_tmp: tuple[Path, ...]  # stale temporary chunk/manifest files


def recover(run_dir: Path, manifest: RunManifest, next_chunk: int) -> tuple[RecoveryReport, int]:
    """Turn a dead writer's leftovers into chunks. Caller must hold the writer lock.

    Rules: stale ``.tmp`` files are deleted (their rename never happened, so their episodes are
    still in journals); a journal whose episode id is already in a chunk is deleted (the crash hit
    between rename and journal delete); a journal with zero completed steps is dropped; the rest
    become episodes (a partial one truncated at its last complete step) written to one new chunk,
    after which their journals are deleted. Returns the report and the next free chunk index.
    """
    episodes_dir = run_dir / EPISODES_DIR
    removed_tmp = tuple(remove_stale_tmp(episodes_dir))
    stale_manifest_tmp = run_dir / f".{MANIFEST_NAME}.tmp"
    if stale_manifest_tmp.exists():
        stale_manifest_tmp.unlink()
        removed_tmp += (stale_manifest_tmp,)
    journals = list_journals(episodes_dir)
    if not journals:
        return RecoveryReport((), (), (), (), (), removed_tmp), next_chunk

    stored_ids: set[str] = set()
    for chunk in list_chunks(episodes_dir):
        stored_ids.update(read_episode_ids(chunk))
    complete: list[str] = []
    partial: list[str] = []
    empty: list[str] = []
    dups: list[str] = []
    quarantined: list[Path] = []
    episodes: list[Episode] = []
    journal_of: list[Path] = []
    for jpath in journals:
        try:
            contents = read_journal(jpath)
        except LogFormatError as err:
            bad = jpath.with_name(jpath.name + ".corrupt")
            os.rename(jpath, bad)
            quarantined.append(bad)
            log.warning("unreadable journal moved aside to %s: %s", bad, err)
            continue
        eid = contents.meta.episode_id
        if eid in stored_ids:
            jpath.unlink()
            dups.append(eid)
            continue
        ep = contents.to_episode()
        if ep is None:
            log.warning("dropping episode %s from %s: no completed step was journaled", eid, jpath)
            jpath.unlink()
            empty.append(eid)
            continue
        try:
            ep.validate(manifest.obs_layout, manifest.action_layout)
        except SchemaError as err:
            raise LogFormatError.from_schema_error(jpath, err) from None
        (partial if ep.meta.extra.get("recovered") == "partial" else complete).append(eid)
        if contents.torn_bytes:
            log.warning("%s: ignored %d bytes of a torn last record", jpath, contents.torn_bytes)
        episodes.append(ep)
        journal_of.append(jpath)

    if episodes:
        write_chunk(episodes_dir, next_chunk, episodes, manifest.obs_layout.size, manifest.action_layout.size)
        next_chunk += 1
        for jpath in journal_of:
            jpath.unlink()
    fsync_dir(episodes_dir)
    if complete or partial:
        log.warning(
            "recovered %d complete and %d partial episode(s) from journals in %s",
            len(complete),
            len(partial),
            episodes_dir,
        )
    report = RecoveryReport(
        tuple(complete), tuple(partial), tuple(empty), tuple(dups), tuple(quarantined), removed_tmp
    )
    return report, next_chunk


def _as_vector(name: str, value: object, size: int, episode_id: str, step: int | None) -> np.ndarray:
    """(size,) float32 copy of ``value``; shape and finiteness are checked before anything is written."""
    arr = np.asarray(value)
    if arr.shape != (size,):
        raise SchemaError(name, f"shape ({size},)", f"shape {arr.shape}", episode_id=episode_id, step=step)
    out = arr.astype(np.float32)
    if not np.isfinite(out).all():
        raise SchemaError(name, "finite values", repr(out), episode_id=episode_id, step=step)
    return out


class EpisodeWriter:
    """Create or append to a run folder, one episode at a time.

    Args:
        run_dir: the run folder (``calib/<run>/``).
        manifest: the run's manifest. Given and no ``manifest.json`` yet: the run is created.
            Given and one exists: they must agree on format, schema version, robot and layouts.
            None: append to an existing run.
        chunk_steps: finished episodes are buffered until this many steps, then written as a chunk.
        fsync_every_steps, fsync_interval_s: journal fsync cadence (whichever comes first).

    Usage::

        with EpisodeWriter(run_dir, manifest) as w:
            w.begin_episode(meta, obs0, t_ns0)
            w.add_step(action, reward, next_obs, t_ns, terminated=False, truncated=False)
            ...
    """

    def __init__(
        self,
        run_dir: Path | str,
        manifest: RunManifest | None = None,
        *,
        chunk_steps: int = DEFAULT_CHUNK_STEPS,
        fsync_every_steps: int = 50,
        fsync_interval_s: float = 1.0,
    ) -> None:
        self.run_dir = Path(run_dir)
        if chunk_steps < 1:
            raise ValueError(f"chunk_steps: expected >= 1, got {chunk_steps}")
        self._chunk_steps = chunk_steps
        self._fsync_every_steps = fsync_every_steps
        self._fsync_interval_s = fsync_interval_s
        if manifest is None:
            existing: RunManifest | None = read_manifest(self.run_dir)  # raises if not a run
        else:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            existing = None
        # Lock before touching the manifest so two writers cannot both create the run.
        self._lock: _WriterLock | None = _WriterLock(self.run_dir)
        try:
            if manifest is not None:
                if (self.run_dir / MANIFEST_NAME).exists():
                    existing = read_manifest(self.run_dir)
                    diffs = existing.compatible_with(manifest)
                    if diffs:
                        f = diffs[0]
                        raise LogFormatError(
                            self.run_dir / MANIFEST_NAME,
                            f,
                            f"{getattr(existing, f)!r} (the existing run's value)",
                            f"{getattr(manifest, f)!r} (the given manifest)",
                            detail=f"cannot append: fields {diffs} differ; write to a new run folder",
                        )
                else:
                    write_manifest(self.run_dir, manifest)
                    existing = manifest
            assert existing is not None
            self.manifest: RunManifest = existing
            self.episodes_dir = self.run_dir / EPISODES_DIR
            self.episodes_dir.mkdir(exist_ok=True)
            chunks = list_chunks(self.episodes_dir)
            self._next_chunk = max((chunk_index(p) or 0 for p in chunks), default=-1) + 1
            self.recovery, self._next_chunk = recover(self.run_dir, self.manifest, self._next_chunk)
            self._known_ids: set[str] = set()
            for chunk in list_chunks(self.episodes_dir):
                self._known_ids.update(read_episode_ids(chunk))
        except BaseException:
            self._lock.release()
            self._lock = None
            raise
        self._obs_dim = self.manifest.obs_layout.size
        self._act_dim = self.manifest.action_layout.size
        self._pending: list[Episode] = []
        self._pending_journals: list[Path] = []
        self._pending_steps = 0
        self._journal: JournalWriter | None = None
        self._meta: EpisodeMeta | None = None
        self._obs: list[np.ndarray] = []
        self._action: list[np.ndarray] = []
        self._reward: list[float] = []
        self._t_ns: list[int] = []
        self._last_flags = 0
        self.episodes_written = 0

    # -- context manager -------------------------------------------------------------------------

    def __enter__(self) -> EpisodeWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- episodes --------------------------------------------------------------------------------

    @property
    def in_episode(self) -> bool:
        """True between begin_episode and the episode's end."""
        return self._meta is not None

    def begin_episode(self, meta: EpisodeMeta, obs0: np.ndarray, t_ns0: int) -> None:
        """Start an episode with its first observation ``obs0`` (obs_dim,) taken at ``t_ns0`` ns."""
        self._check_open()
        if self._meta is not None:
            raise RuntimeError(f"episode {self._meta.episode_id} is still in progress; end it first")
        eid = meta.episode_id
        if meta.robot != self.manifest.robot:
            raise SchemaError("robot", repr(self.manifest.robot), repr(meta.robot), episode_id=eid)
        if eid in self._known_ids:
            raise SchemaError("episode_id", "an id not yet in this run", repr(eid), episode_id=eid)
        obs = _as_vector("obs", obs0, self._obs_dim, eid, 0)
        self._journal = JournalWriter(
            journal_path(self.episodes_dir, eid),
            meta,
            self._obs_dim,
            self._act_dim,
            obs,
            int(t_ns0),
            self._fsync_every_steps,
            self._fsync_interval_s,
        )
        fsync_dir(self.episodes_dir)  # the journal's directory entry must survive a power cut too
        self._known_ids.add(eid)
        self._meta = meta
        self._obs = [obs]
        self._t_ns = [int(t_ns0)]
        self._action, self._reward = [], []
        self._last_flags = 0

    def add_step(
        self,
        action: np.ndarray,
        reward: float,
        next_obs: np.ndarray,
        t_ns: int,
        terminated: bool = False,
        truncated: bool = False,
    ) -> Episode | None:
        """Record step t: ``action`` (act_dim,) as sent, ``reward``, and ``next_obs`` seen at ``t_ns``.

        Ends the episode when ``terminated`` or ``truncated`` (returning it); else returns None.
        Everything is checked before the journal is written, so a rejected step leaves no trace.
        """
        self._check_open()
        if self._meta is None or self._journal is None:
            raise RuntimeError("add_step called outside an episode; call begin_episode first")
        eid = self._meta.episode_id
        step = len(self._action)
        act = _as_vector("action", action, self._act_dim, eid, step)
        obs = _as_vector("obs", next_obs, self._obs_dim, eid, step + 1)
        reward_f = float(reward)
        if not np.isfinite(reward_f):
            raise SchemaError("reward", "a finite value", repr(reward_f), episode_id=eid, step=step)
        if int(t_ns) <= self._t_ns[-1]:
            raise SchemaError(
                "t_ns",
                f"> {self._t_ns[-1]} (strictly increasing)",
                str(int(t_ns)),
                episode_id=eid,
                step=step + 1,
            )
        if terminated and truncated:
            raise SchemaError(
                "truncated", "not both terminated and truncated", "both True", episode_id=eid, step=step
            )
        flags = (FLAG_TERMINATED if terminated else 0) | (FLAG_TRUNCATED if truncated else 0)
        self._journal.append_step(step, act, reward_f, obs, int(t_ns), flags)
        self._action.append(act)
        self._obs.append(obs)
        self._reward.append(reward_f)
        self._t_ns.append(int(t_ns))
        self._last_flags = flags
        if flags:
            return self.end_episode()
        return None

    def end_episode(self) -> Episode | None:
        """Finish the episode in progress and return it (None if it had no step and was dropped).

        An episode ended without terminated/truncated on its last step (an operator stop) gets
        ``truncated`` on its last step: it was cut, not finished.
        """
        self._check_open()
        if self._meta is None or self._journal is None:
            raise RuntimeError("end_episode called outside an episode")
        meta, journal = self._meta, self._journal
        self._meta, self._journal = None, None
        n = len(self._action)
        if n == 0:
            journal.close()
            journal.path.unlink()
            self._known_ids.discard(meta.episode_id)
            log.warning("dropping episode %s: it ended before its first step", meta.episode_id)
            return None
        flags = self._last_flags or FLAG_TRUNCATED
        journal.append_end(n, flags, self._t_ns[-1])
        journal.close()
        terminated = np.zeros(n, dtype=np.bool_)
        truncated = np.zeros(n, dtype=np.bool_)
        terminated[-1] = bool(flags & FLAG_TERMINATED)
        truncated[-1] = bool(flags & FLAG_TRUNCATED)
        ep = Episode(
            meta=meta,
            obs=np.stack(self._obs),
            action=np.stack(self._action),
            reward=np.asarray(self._reward, dtype=np.float64),
            terminated=terminated,
            truncated=truncated,
            t_ns=np.asarray(self._t_ns, dtype=np.int64),
        )
        self._pending.append(ep)
        self._pending_journals.append(journal.path)
        self._pending_steps += n
        self.episodes_written += 1
        if self._pending_steps >= self._chunk_steps:
            self.flush()
        return ep

    def write_episode(self, ep: Episode, *, journal: bool = True) -> None:
        """Write a whole, already-built episode (sim rollouts, importers).

        With ``journal=True`` it goes through the same step journal as live logging. Importers pass
        ``journal=False``: the episode is only buffered for the next chunk, which is much faster,
        and a crash loses the buffer - acceptable when the source file still exists to redo it.
        """
        self._check_open()
        if self._meta is not None:
            raise RuntimeError(f"episode {self._meta.episode_id} is still in progress; end it first")
        try:
            ep.validate(self.manifest.obs_layout, self.manifest.action_layout)
        except SchemaError as err:
            raise SchemaError(err.field, err.expected, err.got, episode_id=ep.meta.episode_id) from None
        if not journal:
            eid = ep.meta.episode_id
            if ep.meta.robot != self.manifest.robot:
                raise SchemaError("robot", repr(self.manifest.robot), repr(ep.meta.robot), episode_id=eid)
            if eid in self._known_ids:
                raise SchemaError("episode_id", "an id not yet in this run", repr(eid), episode_id=eid)
            self._known_ids.add(eid)
            self._pending.append(ep)
            self._pending_steps += ep.n_steps
            self.episodes_written += 1
            if self._pending_steps >= self._chunk_steps:
                self.flush()
            return
        self.begin_episode(ep.meta, ep.obs[0], int(ep.t_ns[0]))
        last = ep.n_steps - 1
        for t in range(ep.n_steps):
            self.add_step(
                ep.action[t],
                float(ep.reward[t]),
                ep.obs[t + 1],
                int(ep.t_ns[t + 1]),
                terminated=bool(ep.terminated[t]) and t == last,
                truncated=bool(ep.truncated[t]) and t == last,
            )

    def flush(self) -> Path | None:
        """Write buffered finished episodes as a chunk now; returns its path (None if nothing to write)."""
        self._check_open()
        if not self._pending:
            return None
        path = write_chunk(self.episodes_dir, self._next_chunk, self._pending, self._obs_dim, self._act_dim)
        self._next_chunk += 1
        # Only now that the chunk is durable may the journals go.
        for jpath in self._pending_journals:
            jpath.unlink()
        fsync_dir(self.episodes_dir)
        self._pending, self._pending_journals, self._pending_steps = [], [], 0
        return path

    def close(self) -> None:
        """End an episode in progress (as truncated), write buffered episodes, release the lock."""
        if self._lock is None:
            return
        try:
            if self._meta is not None:
                self.end_episode()
            self.flush()
        finally:
            if self._journal is not None:
                self._journal.close()
            self._lock.release()
            self._lock = None

    def _check_open(self) -> None:
        if self._lock is None:
            raise RuntimeError(f"EpisodeWriter for {self.run_dir} is closed")
