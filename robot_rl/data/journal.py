"""Per-episode write-ahead journal: ``episodes/.journal-<episode_id>.bin``.

Every step of an in-progress episode is appended as one fixed-size, CRC-protected record with a
single ``os.write`` (so it is in the kernel's page cache, and survives ``kill -9``, as soon as
``add_step`` returns) and fsynced every few steps (so a power cut loses at most that window).
Recovery reads records until the first short or CRC-failing one: a torn last write is dropped,
everything before it is kept.

Layout (little-endian):

header::

    magic     4s   b"RRLJ"
    version   u16  JOURNAL_VERSION
    reserved  u16  0
    obs_dim   u32
    act_dim   u32
    meta_len  u32  length of the JSON that follows
    meta      meta_len bytes, UTF-8 JSON of the EpisodeMeta
    crc32     u32  zlib.crc32 of all header bytes above

record (RECORD_FIXED + 4*act_dim + 4*obs_dim + 4 bytes)::

    kind      u8   1 = first observation, 2 = step, 3 = end of episode
    flags     u8   bit 0 terminated, bit 1 truncated (kind 2 and 3)
    reserved  u16  0
    step      u32  kind 1: 0; kind 2: index t of the action; kind 3: T (number of steps)
    t_ns      i64  timestamp of the observation in this record (kind 1: obs[0]; kind 2: obs[t+1])
    reward    f64  kind 2: reward[t]; else 0
    action    f32[act_dim]  kind 2: action[t]; else zeros
    obs       f32[obs_dim]  kind 1: obs[0]; kind 2: obs[t+1]; kind 3: zeros
    crc32     u32  zlib.crc32 of the record bytes above
"""

from __future__ import annotations

import json
import os
import struct
import time
import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from robot_rl.data.errors import LogFormatError
from robot_rl.schema import Episode, EpisodeMeta, SchemaError, Source

JOURNAL_PREFIX = ".journal-"
JOURNAL_SUFFIX = ".bin"
JOURNAL_MAGIC = b"RRLJ"
JOURNAL_VERSION = 1

KIND_FIRST_OBS = 1
KIND_STEP = 2
KIND_END = 3
FLAG_TERMINATED = 1
FLAG_TRUNCATED = 2

_HEADER_FIXED = struct.Struct("<4sHHIII")
_RECORD_FIXED = struct.Struct("<BBHIqd")
_CRC = struct.Struct("<I")


def journal_path(episodes_dir: Path, episode_id: str) -> Path:
    """Where the journal of ``episode_id`` lives."""
    return episodes_dir / f"{JOURNAL_PREFIX}{episode_id}{JOURNAL_SUFFIX}"


def list_journals(episodes_dir: Path) -> list[Path]:
    """Journal files in ``episodes_dir``, sorted by modification time (oldest episode first)."""
    if not episodes_dir.is_dir():
        return []
    found = [
        p
        for p in episodes_dir.iterdir()
        if p.name.startswith(JOURNAL_PREFIX) and p.name.endswith(JOURNAL_SUFFIX) and p.is_file()
    ]
    return sorted(found, key=lambda p: (p.stat().st_mtime_ns, p.name))


def record_size(obs_dim: int, act_dim: int) -> int:
    """Bytes per journal record."""
    return _RECORD_FIXED.size + 4 * act_dim + 4 * obs_dim + _CRC.size


def meta_to_json(meta: EpisodeMeta) -> dict[str, object]:
    """EpisodeMeta as a JSON-safe dict (also used by the Minari and HDF5 exporters)."""
    return {
        "episode_id": meta.episode_id,
        "source": meta.source.value,
        "robot": meta.robot,
        "task": meta.task,
        "policy_version": meta.policy_version,
        "control_dt_s": meta.control_dt_s,
        "calib_hash": meta.calib_hash,
        "seed": meta.seed,
        "extra": dict(meta.extra),
    }


def meta_from_json(obj: dict[str, object]) -> EpisodeMeta:
    """Inverse of :func:`meta_to_json`; raises SchemaError/ValueError/KeyError/TypeError on bad input."""
    seed = obj.get("seed")
    extra = obj.get("extra", {})
    if not isinstance(extra, dict):
        raise SchemaError("extra", "an object", type(extra).__name__)
    return EpisodeMeta(
        source=Source(str(obj["source"])),
        robot=str(obj["robot"]),
        task=str(obj["task"]),
        policy_version=int(obj["policy_version"]),  # type: ignore[call-overload]
        control_dt_s=float(obj["control_dt_s"]),  # type: ignore[arg-type]
        calib_hash=str(obj["calib_hash"]),
        episode_id=str(obj["episode_id"]),
        seed=None if seed is None else int(seed),  # type: ignore[call-overload]
        extra={str(k): str(v) for k, v in extra.items()},
    )


def _encode_record(
    kind: int, flags: int, step: int, t_ns: int, reward: float, action: np.ndarray, obs: np.ndarray
) -> bytes:
    body = (
        _RECORD_FIXED.pack(kind, flags, 0, step, t_ns, reward)
        + np.ascontiguousarray(action, dtype="<f4").tobytes()
        + np.ascontiguousarray(obs, dtype="<f4").tobytes()
    )
    return body + _CRC.pack(zlib.crc32(body))


class JournalWriter:
    """Appends the records of one in-progress episode; see the module docstring for the layout."""

    def __init__(
        self,
        path: Path,
        meta: EpisodeMeta,
        obs_dim: int,
        act_dim: int,
        obs0: np.ndarray,
        t_ns0: int,
        fsync_every_steps: int = 50,
        fsync_interval_s: float = 1.0,
    ) -> None:
        self.path = path
        self._obs_dim = obs_dim
        self._act_dim = act_dim
        self._zero_action = np.zeros(act_dim, dtype=np.float32)
        self._zero_obs = np.zeros(obs_dim, dtype=np.float32)
        self._fsync_every = max(1, fsync_every_steps)
        self._fsync_interval_s = fsync_interval_s
        meta_bytes = json.dumps(meta_to_json(meta), sort_keys=True).encode()
        header = _HEADER_FIXED.pack(JOURNAL_MAGIC, JOURNAL_VERSION, 0, obs_dim, act_dim, len(meta_bytes))
        header += meta_bytes
        header += _CRC.pack(zlib.crc32(header))
        # O_EXCL: an episode id is written once; O_APPEND: each os.write lands whole at the end.
        self._fd: int | None = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
        self._write(header + _encode_record(KIND_FIRST_OBS, 0, 0, t_ns0, 0.0, self._zero_action, obs0))
        # No fsync here: a journal without a completed step holds nothing recovery would keep, so it can
        # wait for the step cadence. Creating and syncing a file stalls a real-time loop (it tripped the
        # emulated firmware's 60 ms watchdog between reset and the first step in `robot-rl record`).
        self._unsynced = 1
        self._last_sync = time.monotonic()

    def _write(self, data: bytes) -> None:
        assert self._fd is not None, "journal already closed"
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]

    def fsync(self) -> None:
        """Force the journal to disk."""
        assert self._fd is not None
        os.fsync(self._fd)
        self._unsynced = 0
        self._last_sync = time.monotonic()

    def append_step(
        self, step: int, action: np.ndarray, reward: float, next_obs: np.ndarray, t_ns: int, flags: int
    ) -> None:
        """Journal step ``step``; fsync every ``fsync_every_steps`` steps or ``fsync_interval_s`` seconds."""
        self._write(_encode_record(KIND_STEP, flags, step, t_ns, reward, action, next_obs))
        self._unsynced += 1
        if (
            self._unsynced >= self._fsync_every
            or time.monotonic() - self._last_sync >= self._fsync_interval_s
        ):
            self.fsync()

    def append_end(self, n_steps: int, flags: int, t_ns: int) -> None:
        """Mark the episode complete with its final flags, and fsync."""
        self._write(_encode_record(KIND_END, flags, n_steps, t_ns, 0.0, self._zero_action, self._zero_obs))
        self.fsync()

    def close(self) -> None:
        """Close the file descriptor (the journal stays until its episode is in a chunk)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


@dataclass
class JournalContents:
    """What could be read back from a journal."""

    path: Path
    meta: EpisodeMeta
    obs: list[np.ndarray] = field(default_factory=list)  # T+1 rows of (obs_dim,) float32
    t_ns: list[int] = field(default_factory=list)  # T+1
    action: list[np.ndarray] = field(default_factory=list)  # T rows of (act_dim,) float32
    reward: list[float] = field(default_factory=list)  # T
    flags: list[int] = field(default_factory=list)  # T
    ended: bool = False
    end_flags: int = 0
    torn_bytes: int = 0  # bytes after the last good record (a torn or corrupt tail)

    @property
    def n_steps(self) -> int:
        """Number of complete steps read."""
        return len(self.action)

    def to_episode(self) -> Episode | None:
        """The episode as recorded, or None if no step was completed.

        An ended episode comes back as written. An unfinished one (the writer died) keeps every
        complete step, with the last one marked truncated and ``extra["recovered"] = "partial"``.
        """
        n = self.n_steps
        if n == 0:
            return None
        terminated = np.zeros(n, dtype=np.bool_)
        truncated = np.zeros(n, dtype=np.bool_)
        last_flags = self.end_flags if self.ended else self.flags[-1]
        terminated[-1] = bool(last_flags & FLAG_TERMINATED)
        truncated[-1] = bool(last_flags & FLAG_TRUNCATED)
        meta = self.meta
        if not self.ended and not (terminated[-1] or truncated[-1]):
            truncated[-1] = True
            meta = replace(meta, extra={**meta.extra, "recovered": "partial"})
        return Episode(
            meta=meta,
            obs=np.stack(self.obs).astype(np.float32, copy=False),
            action=np.stack(self.action).astype(np.float32, copy=False),
            reward=np.asarray(self.reward, dtype=np.float64),
            terminated=terminated,
            truncated=truncated,
            t_ns=np.asarray(self.t_ns, dtype=np.int64),
        )


def read_journal(path: Path) -> JournalContents:
    """Parse a journal; an unreadable header raises LogFormatError, a torn tail is cut off silently."""
    data = path.read_bytes()
    if len(data) < _HEADER_FIXED.size:
        raise LogFormatError(path, "journal header", f">= {_HEADER_FIXED.size} bytes", f"{len(data)} bytes")
    magic, version, _, obs_dim, act_dim, meta_len = _HEADER_FIXED.unpack_from(data, 0)
    if magic != JOURNAL_MAGIC:
        raise LogFormatError(path, "journal magic", repr(JOURNAL_MAGIC), repr(magic))
    if version != JOURNAL_VERSION:
        raise LogFormatError(path, "journal version", str(JOURNAL_VERSION), str(version))
    header_end = _HEADER_FIXED.size + meta_len
    if len(data) < header_end + _CRC.size:
        raise LogFormatError(path, "journal header", f"{header_end + _CRC.size} bytes", f"{len(data)} bytes")
    (crc,) = _CRC.unpack_from(data, header_end)
    if crc != zlib.crc32(data[:header_end]):
        raise LogFormatError(
            path, "journal header crc32", f"{zlib.crc32(data[:header_end]):08x}", f"{crc:08x}"
        )
    try:
        meta = meta_from_json(json.loads(data[_HEADER_FIXED.size : header_end]))
    except (ValueError, KeyError, TypeError) as err:
        raise LogFormatError(path, "journal meta", "a valid EpisodeMeta JSON", str(err)) from None

    out = JournalContents(path=path, meta=meta)
    size = record_size(obs_dim, act_dim)
    a_end = _RECORD_FIXED.size + 4 * act_dim
    pos = header_end + _CRC.size
    while pos + size <= len(data):
        rec = data[pos : pos + size]
        (crc,) = _CRC.unpack_from(rec, size - _CRC.size)
        if crc != zlib.crc32(rec[: size - _CRC.size]):
            break
        kind, flags, _, step, t_ns, reward = _RECORD_FIXED.unpack_from(rec, 0)
        # A record out of sequence means corruption, not a torn write: stop, as for a bad CRC.
        if kind == KIND_FIRST_OBS and not out.obs and step == 0:
            out.obs.append(np.frombuffer(rec, "<f4", obs_dim, a_end).astype(np.float32))
            out.t_ns.append(t_ns)
        elif kind == KIND_STEP and out.obs and not out.ended and step == out.n_steps:
            out.action.append(np.frombuffer(rec, "<f4", act_dim, _RECORD_FIXED.size).astype(np.float32))
            out.obs.append(np.frombuffer(rec, "<f4", obs_dim, a_end).astype(np.float32))
            out.t_ns.append(t_ns)
            out.reward.append(reward)
            out.flags.append(flags)
        elif kind == KIND_END and out.obs and not out.ended and step == out.n_steps:
            out.ended = True
            out.end_flags = flags
        else:
            break
        pos += size
    out.torn_bytes = len(data) - pos
    return out
