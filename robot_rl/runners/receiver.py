"""Learner side of the rollout link: PULL rollout chunks, check them, feed the replay (and the log).

Back-pressure policy (docs/bus.md, "Rollout back-pressure"):

- The learner binds PULL on ``endpoints.rollout`` with ``RCVHWM = rcvhwm`` (default 8 chunks) *per
  connected worker*; each worker's PUSH queues at most its own SNDHWM (default 4) more. When both
  are full the worker's send blocks: the worker stops stepping until the learner catches up. So a
  slow learner slows the workers down; it never drops data itself. Memory in flight is bounded by
  ``workers x (rcvhwm + sndhwm) x chunk size`` (8 workers x 12 x 170 KB ~ 16 MB for the quadruped
  with 512-row chunks).
- The only place rollouts are dropped for back-pressure is the worker, after its send timeout
  (``dropped/backpressure`` in the worker's heartbeat), so a stuck learner cannot freeze workers
  forever.
- :meth:`RolloutReceiver.poll` takes at most ``max_chunks`` per call so that a learner loop with
  gradient updates keeps a bounded ratio of data intake to updates; what it does not take stays
  queued (and eventually blocks the workers) rather than being discarded.

Counters (``RolloutReceiver.counters``, all monotonic): ``received/chunks``, ``received/transitions``,
per worker ``received/chunks/w<id>`` and ``received/transitions/w<id>``; rejected chunks by reason
(``rejected/robot``, ``rejected/shape``, ``rejected/kind``, and the codec's ``rejected/<reason>``
for malformed bytes, docs/bus.md section 7); ``received/gap`` (chunks lost according to ``seq``);
``workers/restarts`` (a worker id seen with a new sender or a restarted ``seq``); and, when episodes
are logged, ``episodes/written``, ``episodes/abandoned`` (cut by a reset or a worker restart),
``episodes/incomplete`` (first rows never seen) and ``episodes/rejected``.

Episodes: with an :class:`EpisodeAssembler`, rows are also regrouped into complete episodes and
appended to a log-store run folder (source ``sim``). The assembler works per (worker, env) in
time order, because one worker's chunks arrive in order over PUSH/PULL; it appends row slices
instead of re-grouping every pending row on every chunk as ``assemble_episode_rows`` does, which
is quadratic in the episode length (1000-step episodes span tens of chunks).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from robot_rl.bus.codec import DecodeLimits
from robot_rl.bus.messages import RolloutChunk, chunk_transitions
from robot_rl.bus.sockets import BusContext, Receiver, make_pull
from robot_rl.bus.topics import Endpoints
from robot_rl.data.replay import SourceMixer
from robot_rl.data.writer import EpisodeWriter
from robot_rl.schema import Episode, EpisodeMeta, SchemaError, Source

DEFAULT_ROLLOUT_RCVHWM = 8
"""Chunks queued per worker at the learner before the worker's sends block (the bus default of
1000 suits small sensor messages; 1000 rollout chunks would be ~170 MB per worker)."""
DEFAULT_MAX_CHUNK_ROWS = 65_536
"""Larger chunks are refused (``rejected/shape``): a guard against a buggy or hostile sender."""


@dataclass
class _OpenEpisode:
    episode_index: int
    next_step: int
    policy_versions: list[int]
    obs: list[np.ndarray] = field(default_factory=list)
    action: list[np.ndarray] = field(default_factory=list)
    reward: list[np.ndarray] = field(default_factory=list)
    terminated: list[np.ndarray] = field(default_factory=list)
    truncated: list[np.ndarray] = field(default_factory=list)
    t_ns: list[np.ndarray] = field(default_factory=list)


class EpisodeAssembler:
    """Rebuilds complete episodes from chunk rows and writes them with ``writer`` (source sim).

    Args:
        writer: an open EpisodeWriter on the run folder (its manifest fixes robot and layouts).
        control_dt_s: nominal control period of the sim, s.
    """

    def __init__(self, writer: EpisodeWriter, control_dt_s: float) -> None:
        self.writer = writer
        self.control_dt_s = control_dt_s
        self.open: dict[tuple[int, int], _OpenEpisode] = {}
        self.counters: dict[str, int] = {
            "episodes/written": 0,
            "episodes/abandoned": 0,
            "episodes/incomplete": 0,
            "episodes/rejected": 0,
        }

    def forget_worker(self, worker_id: int) -> None:
        """Drop the open episodes of a worker that restarted (they can never complete)."""
        for key in [k for k in self.open if k[0] == worker_id]:
            del self.open[key]
            self.counters["episodes/abandoned"] += 1

    def feed(self, chunk: RolloutChunk) -> None:
        """Append the chunk's rows to the open episodes; write those that end in it."""
        w = chunk.worker_id
        env_index = chunk.env_index
        for e in np.unique(env_index):
            idx = np.flatnonzero(env_index == e)
            epi = chunk.episode_index[idx]
            for seg in np.split(idx, np.flatnonzero(np.diff(epi)) + 1):
                self._segment(chunk, w, int(e), seg)

    def _segment(self, chunk: RolloutChunk, w: int, e: int, seg: np.ndarray) -> None:
        key = (w, e)
        k = int(chunk.episode_index[seg[0]])
        steps = chunk.step[seg]
        cur = self.open.get(key)
        if cur is None or cur.episode_index != k:
            if cur is not None:
                # A newer episode of this env started: the old one was cut by a reset.
                del self.open[key]
                self.counters["episodes/abandoned"] += 1
            if int(steps[0]) != 0:
                self.counters["episodes/incomplete"] += 1
                return
            cur = _OpenEpisode(episode_index=k, next_step=0, policy_versions=[])
            self.open[key] = cur
        if int(steps[0]) != cur.next_step or not np.array_equal(
            steps, np.arange(steps[0], steps[0] + len(seg))
        ):
            del self.open[key]
            self.counters["episodes/incomplete"] += 1
            return
        cur.obs.append(chunk.obs[seg])
        cur.action.append(chunk.action[seg])
        cur.reward.append(chunk.reward[seg])
        cur.terminated.append(chunk.terminated[seg])
        cur.truncated.append(chunk.truncated[seg])
        cur.t_ns.append(chunk.t_ns[seg])
        if not cur.policy_versions or cur.policy_versions[-1] != chunk.policy_version:
            cur.policy_versions.append(chunk.policy_version)
        cur.next_step += len(seg)
        last = seg[-1]
        if chunk.terminated[last] or chunk.truncated[last]:
            del self.open[key]
            self._write(chunk, w, e, cur, chunk.next_obs[last], int(chunk.next_t_ns[last]))

    def _write(
        self, chunk: RolloutChunk, w: int, e: int, ep: _OpenEpisode, final_obs: np.ndarray, final_t_ns: int
    ) -> None:
        extra = {
            "worker_id": str(w),
            "env_index": str(e),
            "episode_index": str(ep.episode_index),
            "backend": chunk.backend,
        }
        if len(ep.policy_versions) > 1:
            extra["policy_versions"] = ",".join(str(v) for v in ep.policy_versions)
        try:
            episode = Episode(
                meta=EpisodeMeta(
                    source=Source.SIM,
                    robot=chunk.robot,
                    task=chunk.task,
                    policy_version=ep.policy_versions[0],
                    control_dt_s=self.control_dt_s,
                    extra=extra,
                ),
                obs=np.concatenate([*ep.obs, final_obs[None]]).astype(np.float32, copy=False),
                action=np.concatenate(ep.action).astype(np.float32, copy=False),
                reward=np.concatenate(ep.reward).astype(np.float64, copy=False),
                terminated=np.concatenate(ep.terminated),
                truncated=np.concatenate(ep.truncated),
                t_ns=np.concatenate([*ep.t_ns, np.array([final_t_ns], np.int64)]),
            )
            # Sim rollouts can be regenerated, so they skip the per-step journal (much faster); a
            # crash loses at most the episodes buffered for the next Parquet chunk.
            self.writer.write_episode(episode, journal=False)
        except SchemaError:
            self.counters["episodes/rejected"] += 1
            return
        self.counters["episodes/written"] += 1


class RolloutReceiver:
    """Binds PULL on ``endpoints.rollout`` and moves valid chunks into ``mixer`` under Source.SIM.

    Args:
        ctx: the bus context.
        endpoints: the run's endpoints; only ``rollout`` is used.
        mixer: replay storage; chunks go to its ``Source.SIM`` buffer with their policy version.
        robot: chunks from another robot are refused (``rejected/robot``); None accepts any.
        rcvhwm: chunks queued per worker before its sends block (module docstring).
        max_chunk_rows: larger chunks are refused (``rejected/shape``).
        expected_obs_dim, expected_act_dim: widths every chunk must have (``rejected/shape``).
        assembler: optional episode logging.
    """

    def __init__(
        self,
        ctx: BusContext,
        endpoints: Endpoints,
        mixer: SourceMixer,
        *,
        robot: str | None,
        expected_obs_dim: int,
        expected_act_dim: int,
        rcvhwm: int = DEFAULT_ROLLOUT_RCVHWM,
        max_chunk_rows: int = DEFAULT_MAX_CHUNK_ROWS,
        assembler: EpisodeAssembler | None = None,
    ) -> None:
        if rcvhwm < 1 or max_chunk_rows < 1:
            raise ValueError(f"rcvhwm and max_chunk_rows must be >= 1, got {rcvhwm}, {max_chunk_rows}")
        self.mixer = mixer
        self.robot = robot
        self.obs_dim = expected_obs_dim
        self.act_dim = expected_act_dim
        self.max_chunk_rows = max_chunk_rows
        self.assembler = assembler
        # The largest array a valid chunk can carry is its (rows, obs_dim) float32 observations: anything
        # bigger is refused by the codec as "oversized" before a buffer is even looked at.
        limits = DecodeLimits(
            max_array_bytes=max_chunk_rows * max(4 * expected_obs_dim, 4 * expected_act_dim, 8)
        )
        self.receiver = Receiver(make_pull(ctx, endpoints.rollout, rcvhwm=rcvhwm), limits=limits)
        self.counters: dict[str, int] = {
            "received/chunks": 0,
            "received/transitions": 0,
            "rejected/robot": 0,
            "rejected/shape": 0,
            "rejected/kind": 0,
            "workers/restarts": 0,
        }
        self.versions_seen: dict[int, set[int]] = {}
        """worker id -> policy versions of the chunks accepted from it."""
        self._peer: dict[int, tuple[str, int]] = {}  # worker id -> (sender, last seq)

    def all_counters(self) -> dict[str, int]:
        """Our counters, the codec's (``received/ok``, ``received/gap``, ``rejected/<reason>``) and
        the assembler's, in one map."""
        out = {k: v for k, v in self.receiver.counters.items() if k != "received/ok"}
        out.update(self.counters)
        if self.assembler is not None:
            out.update(self.assembler.counters)
        return out

    def _count(self, key: str, n: int = 1) -> None:
        self.counters[key] = self.counters.get(key, 0) + n

    def poll(self, timeout_ms: int, max_chunks: int = 64) -> int:
        """Wait up to ``timeout_ms`` for a chunk, then take what is queued, at most ``max_chunks``
        in all. Returns the number of transitions added to the replay."""
        added = 0
        for i in range(max_chunks):
            decoded = self.receiver.recv(timeout_ms if i == 0 else 0)
            if decoded is None:
                break
            chunk = decoded.msg
            if not isinstance(chunk, RolloutChunk):
                self._count("rejected/kind")
                continue
            if self.robot is not None and chunk.robot != self.robot:
                self._count("rejected/robot")
                continue
            n = int(chunk.env_index.shape[0])
            if (
                n > self.max_chunk_rows
                or chunk.obs.shape[1] != self.obs_dim
                or chunk.action.shape[1] != self.act_dim
            ):
                self._count("rejected/shape")
                continue
            w = chunk.worker_id
            sender, seq = decoded.env.sender, decoded.env.seq
            peer = self._peer.get(w)
            if peer is not None and (peer[0] != sender or seq <= peer[1]):
                # Same worker number, new process (the launcher restarted it): its episode counters
                # start again, so its predecessor's open episodes can never complete.
                self._count("workers/restarts")
                if self.assembler is not None:
                    self.assembler.forget_worker(w)
            self._peer[w] = (sender, seq)
            self.mixer.add(Source.SIM, chunk_transitions(chunk), chunk.policy_version)
            self.versions_seen.setdefault(w, set()).add(chunk.policy_version)
            self._count("received/chunks")
            self._count("received/transitions", n)
            self._count(f"received/chunks/w{w}")
            self._count(f"received/transitions/w{w}", n)
            if self.assembler is not None:
                self.assembler.feed(chunk)
            added += n
        return added
