"""Run-folder store: exact round trips, appends, chunking, and every bad input named precisely."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from robot_rl_data_builders import ACT_DIM, OBS_DIM, random_episode, small_manifest, write_episodes

from robot_rl.data.chunks import arrow_schema, chunk_name, episodes_to_table, list_chunks, write_chunk
from robot_rl.data.journal import FLAG_TRUNCATED, JournalWriter, journal_path, list_journals, record_size
from robot_rl.data.store import (
    EpisodeReader,
    EpisodeWriter,
    LogFormatError,
    RunLockedError,
    nstep_transitions,
    open_run,
    returns_to_go,
    transitions,
    transitions_by_source,
)
from robot_rl.schema import Episode, FieldLayout, SchemaError, Source

MakeRun = Callable[..., tuple[Path, list[Episode]]]


def assert_same(got: list[Episode], want: list[Episode]) -> None:
    assert [e.meta.episode_id for e in got] == [e.meta.episode_id for e in want]
    for g, w in zip(got, want, strict=True):
        assert g.equals(w), g.meta.episode_id


def test_round_trip_is_exact(make_run: MakeRun) -> None:
    run_dir, eps = make_run(n_episodes=4, steps=5)
    reader = open_run(run_dir)
    assert reader.manifest == small_manifest().__class__.from_json_dict(
        json.loads((run_dir / "manifest.json").read_text()), run_dir / "manifest.json"
    )
    assert reader.manifest.robot == "go1" and reader.manifest.extra == {"generator": "pytest"}
    assert_same(reader.load_episodes(), eps)
    assert [p.name for p in list_chunks(run_dir / "episodes")] == ["chunk-000000.parquet"]
    assert list_journals(run_dir / "episodes") == []  # journals go once their chunk is durable
    # The manifest is pretty JSON a person can read and diff.
    text = (run_dir / "manifest.json").read_text()
    assert '\n  "robot": "go1"' in text and json.loads(text)["schema_version"] == 1


def test_stats_numbers(make_run: MakeRun) -> None:
    run_dir, eps = make_run(n_episodes=4, steps=5)
    stats = open_run(run_dir).stats()
    returns = [e.undiscounted_return() for e in eps]
    assert stats.episodes == 4
    assert stats.steps == 5 + 6 + 7 + 8
    assert (stats.terminated, stats.truncated) == (2, 2)  # odd episodes terminate
    assert stats.returns["mean"] == pytest.approx(np.mean(returns))
    assert stats.returns["median"] == pytest.approx(np.median(returns))
    assert stats.lengths["max"] == 8.0
    assert stats.episodes_per_source == {"sim": 4}
    assert stats.control_rate_hz == pytest.approx(50.0)
    assert 0.019 <= stats.measured_dt_s <= 0.021  # type: ignore[operator]


def test_multiple_chunks_and_append(make_run: MakeRun) -> None:
    run_dir, eps = make_run(n_episodes=5, steps=4, chunk_steps=9)  # lengths 4..8: a chunk per ~2 episodes
    chunks_before = list_chunks(run_dir / "episodes")
    assert len(chunks_before) >= 3
    rng = np.random.default_rng(7)
    more = [random_episode(rng, 3), random_episode(rng, 2, terminated=True)]
    with EpisodeWriter(run_dir) as w:  # append: manifest taken from the folder
        write_episodes(w, more)
    assert len(list_chunks(run_dir / "episodes")) == len(chunks_before) + 1
    assert_same(open_run(run_dir).load_episodes(), eps + more)


def test_append_with_other_layout_is_refused(make_run: MakeRun) -> None:
    run_dir, _ = make_run()
    other = small_manifest(obs_layout=FieldLayout.anonymous("obs", OBS_DIM + 1))
    with pytest.raises(LogFormatError) as info:
        EpisodeWriter(run_dir, other)
    assert info.value.field == "obs_layout" and info.value.path.name == "manifest.json"
    EpisodeWriter(run_dir, small_manifest(description="same robot and layouts")).close()  # compatible


def test_writer_rejects_bad_steps_before_journaling(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    ep = random_episode(rng, 3)
    with EpisodeWriter(tmp_path / "run", small_manifest()) as w:
        with pytest.raises(SchemaError, match="robot"):
            w.begin_episode(random_episode(rng, 2, robot="anymal").meta, ep.obs[0], 0)
        w.begin_episode(ep.meta, ep.obs[0], int(ep.t_ns[0]))
        jpath = journal_path(w.episodes_dir, ep.meta.episode_id)
        size = jpath.stat().st_size
        with pytest.raises(SchemaError, match=r"field 'action', step 0: expected shape \(2,\)"):
            w.add_step(np.zeros(3), 0.0, ep.obs[1], int(ep.t_ns[1]))
        with pytest.raises(SchemaError, match="t_ns"):
            w.add_step(ep.action[0], 0.0, ep.obs[1], int(ep.t_ns[0]))
        with pytest.raises(SchemaError, match="obs"):
            w.add_step(ep.action[0], 0.0, np.full(OBS_DIM, np.nan), int(ep.t_ns[1]))
        assert jpath.stat().st_size == size  # nothing was journaled
        w.add_step(ep.action[0], 1.5, ep.obs[1], int(ep.t_ns[1]))
        assert jpath.stat().st_size == size + record_size(OBS_DIM, ACT_DIM)
        done = w.end_episode()  # an operator stop: the last step becomes truncated
    assert done is not None and done.truncated.tolist() == [True]
    (got,) = open_run(tmp_path / "run").load_episodes()
    assert got.equals(done) and got.reward.tolist() == [1.5]


def test_second_writer_is_refused(make_run: MakeRun) -> None:
    run_dir, _ = make_run()
    with EpisodeWriter(run_dir), pytest.raises(RunLockedError, match=f"pid {os.getpid()}"):
        EpisodeWriter(run_dir)
    EpisodeWriter(run_dir).close()  # free again after close


def test_missing_manifest(tmp_path: Path) -> None:
    with pytest.raises(LogFormatError) as info:
        EpisodeReader(tmp_path / "nope")
    assert info.value.path == tmp_path / "nope" / "manifest.json"
    with pytest.raises(LogFormatError, match=r"manifest\.json"):
        EpisodeWriter(tmp_path / "nope")  # append needs an existing run


def test_schema_version_mismatch_names_field_and_migration(make_run: MakeRun) -> None:
    run_dir, _ = make_run()
    path = run_dir / "manifest.json"
    obj = json.loads(path.read_text())
    obj["schema_version"] = 2
    path.write_text(json.dumps(obj))
    with pytest.raises(LogFormatError) as info:
        open_run(run_dir)
    err = info.value
    assert (err.path, err.field, err.expected, err.got) == (path, "schema_version", "1", "2")
    assert "manifest.json" in str(err) and "convert" in str(err)


def _chunk(run_dir: Path) -> Path:
    return list_chunks(run_dir / "episodes")[0]


def test_corrupt_chunk_bytes_in_data(make_run: MakeRun) -> None:
    run_dir, _ = make_run(n_episodes=3, steps=50)
    path = _chunk(run_dir)
    data = bytearray(path.read_bytes())
    mid = len(data) // 3  # inside the data pages, footer intact
    data[mid : mid + 16] = bytes(16)
    path.write_bytes(bytes(data))
    with pytest.raises(LogFormatError) as info:
        open_run(run_dir).load_episodes()
    assert info.value.path == path


def test_corrupt_chunk_footer(make_run: MakeRun) -> None:
    run_dir, _ = make_run()
    path = _chunk(run_dir)
    data = bytearray(path.read_bytes())
    data[-12:-4] = b"\xff" * 8  # footer length and the last footer bytes
    path.write_bytes(bytes(data))
    with pytest.raises(LogFormatError) as info:
        open_run(run_dir)  # fails at open: nothing is loaded
    assert info.value.path == path and info.value.field == "<parquet footer>"


def test_truncated_chunk(make_run: MakeRun) -> None:
    run_dir, _ = make_run()
    path = _chunk(run_dir)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(LogFormatError, match=str(path)):
        open_run(run_dir)


def test_wrong_fixed_size_list_width(make_run: MakeRun) -> None:
    run_dir, _ = make_run()
    # A chunk written by hand whose obs rows are 4 wide while the layout says 3.
    rng = np.random.default_rng(3)
    bad = [random_episode(rng, 2)]
    object.__setattr__(bad[0], "obs", rng.standard_normal((3, OBS_DIM + 1)).astype(np.float32))
    table = episodes_to_table(bad, OBS_DIM + 1, ACT_DIM)
    path = run_dir / "episodes" / chunk_name(1)
    pq.write_table(table, path)
    with pytest.raises(LogFormatError) as info:
        open_run(run_dir)
    err = info.value
    assert (err.path, err.field) == (path, "obs")
    assert "[3]" in err.expected and "[4]" in err.got


def test_nan_observation_names_file_episode_field_and_step(make_run: MakeRun) -> None:
    run_dir, _ = make_run()
    rng = np.random.default_rng(4)
    ep = random_episode(rng, 4)
    ep.obs[2, 1] = np.nan  # arrays are mutable: smuggle a NaN past the Episode check
    path = write_chunk(run_dir / "episodes", 1, [ep], OBS_DIM, ACT_DIM)
    reader = open_run(run_dir)  # the footer is fine
    with pytest.raises(LogFormatError) as info:
        reader.load_episodes()
    err = info.value
    assert (err.path, err.episode_id, err.field, err.step) == (path, ep.meta.episode_id, "obs", 2)
    assert "finite" in str(err)


def test_non_monotonic_t_ns_and_bad_flags_in_chunk(make_run: MakeRun) -> None:
    run_dir, _ = make_run()
    rng = np.random.default_rng(5)
    ep = random_episode(rng, 4)
    ep.t_ns[3] = ep.t_ns[2]
    path = write_chunk(run_dir / "episodes", 1, [ep], OBS_DIM, ACT_DIM)
    with pytest.raises(LogFormatError) as info:
        open_run(run_dir).load_episodes()
    assert (info.value.path, info.value.field, info.value.step) == (path, "t_ns", 3)
    path.unlink()
    ep2 = random_episode(rng, 4)
    ep2.truncated[1] = True
    write_chunk(run_dir / "episodes", 1, [ep2], OBS_DIM, ACT_DIM)
    with pytest.raises(LogFormatError) as info:
        open_run(run_dir).load_episodes()
    assert (info.value.field, info.value.step) == ("truncated", 1)


def test_wrong_column_names(make_run: MakeRun) -> None:
    run_dir, _ = make_run()
    schema = arrow_schema(OBS_DIM, ACT_DIM)
    table = pa.table({"episode_id": pa.array(["x"])})
    path = run_dir / "episodes" / chunk_name(1)
    pq.write_table(table, path)
    with pytest.raises(LogFormatError) as info:
        open_run(run_dir)
    assert info.value.field == "<columns>" and "obs" in info.value.got and len(schema) == 16


def test_stale_tmp_is_ignored_then_removed(make_run: MakeRun) -> None:
    run_dir, eps = make_run()
    tmp = run_dir / "episodes" / f".{chunk_name(1)}.tmp"
    tmp.write_bytes(b"half a parquet file")
    assert_same(open_run(run_dir).load_episodes(), eps)
    assert tmp.exists()  # readers never modify the folder
    with EpisodeWriter(run_dir) as w:
        assert tmp in w.recovery.removed_tmp
    assert not tmp.exists()


def _crash_mid_episode(run_dir: Path, ep: Episode, steps_done: int) -> None:
    """Journal ``steps_done`` steps of ``ep`` and abandon it, as a killed writer would."""
    w = EpisodeWriter(run_dir)
    w.begin_episode(ep.meta, ep.obs[0], int(ep.t_ns[0]))
    for t in range(steps_done):
        w.add_step(ep.action[t], float(ep.reward[t]), ep.obs[t + 1], int(ep.t_ns[t + 1]))
    assert w._journal is not None and w._lock is not None
    w._journal.close()
    w._lock.release()  # the kernel would drop the flock when the process dies


def test_orphan_journal_read_only_then_recovered(make_run: MakeRun) -> None:
    run_dir, eps = make_run()
    ep = random_episode(np.random.default_rng(9), 6)
    _crash_mid_episode(run_dir, ep, 3)
    jpath = journal_path(run_dir / "episodes", ep.meta.episode_id)
    with open(jpath, "ab") as f:
        f.write(b"\x02" * 10)  # a torn half-record at the end is dropped
    before = sorted(os.listdir(run_dir / "episodes"))
    got = open_run(run_dir).load_episodes()
    assert sorted(os.listdir(run_dir / "episodes")) == before  # read-only
    assert_same(got[:-1], eps)
    partial = got[-1]
    assert partial.meta.episode_id == ep.meta.episode_id and partial.n_steps == 3
    assert partial.meta.extra == {**ep.meta.extra, "recovered": "partial"}
    np.testing.assert_array_equal(partial.obs, ep.obs[:4])
    np.testing.assert_array_equal(partial.action, ep.action[:3])
    np.testing.assert_array_equal(partial.reward, ep.reward[:3])
    np.testing.assert_array_equal(partial.t_ns, ep.t_ns[:4])
    assert partial.truncated.tolist() == [False, False, True] and not partial.terminated.any()

    with EpisodeWriter(run_dir) as w:
        assert w.recovery.recovered_partial == (ep.meta.episode_id,)
    assert list_journals(run_dir / "episodes") == []
    again = open_run(run_dir).load_episodes()
    assert_same(again, got)


def test_empty_journal_dropped_and_duplicate_journal_deleted(make_run: MakeRun) -> None:
    run_dir, eps = make_run()
    empty = random_episode(np.random.default_rng(10), 2)
    _crash_mid_episode(run_dir, empty, 0)
    # A journal for an episode already in a chunk: the crash hit between rename and delete.
    dup = eps[0]
    jw = JournalWriter(
        journal_path(run_dir / "episodes", dup.meta.episode_id), dup.meta, OBS_DIM, ACT_DIM, dup.obs[0], 0
    )
    jw.append_step(0, dup.action[0], 1.0, dup.obs[1], 1, FLAG_TRUNCATED)
    jw.close()
    assert_same(open_run(run_dir).load_episodes(), eps)  # no duplicate, no empty episode
    with EpisodeWriter(run_dir) as w:
        assert w.recovery.dropped_empty == (empty.meta.episode_id,)
        assert w.recovery.deleted_duplicates == (dup.meta.episode_id,)
    assert list_journals(run_dir / "episodes") == []
    assert_same(open_run(run_dir).load_episodes(), eps)


def test_live_journal_is_skipped(make_run: MakeRun) -> None:
    run_dir, eps = make_run()
    ep = random_episode(np.random.default_rng(11), 3)
    with EpisodeWriter(run_dir) as w:
        w.begin_episode(ep.meta, ep.obs[0], int(ep.t_ns[0]))
        w.add_step(ep.action[0], 0.0, ep.obs[1], int(ep.t_ns[1]))
        assert_same(open_run(run_dir).load_episodes(), eps)  # the live episode is not visible yet
    # close() ended it (truncated) and wrote it out
    got = open_run(run_dir).load_episodes()
    assert got[-1].meta.episode_id == ep.meta.episode_id and got[-1].truncated.tolist() == [True]


def test_derived_batches(make_run: MakeRun) -> None:
    run_dir, eps = make_run(n_episodes=4, steps=3, sources=(Source.REAL, Source.SIM))
    b = transitions(run_dir)
    assert b.obs.shape == (3 + 4 + 5 + 6, OBS_DIM)
    np.testing.assert_array_equal(b.next_obs[:3], eps[0].obs[1:])
    real = transitions(run_dir, sources=["real"])
    assert real.obs.shape[0] == 3 + 5
    by_src = transitions_by_source(run_dir)
    assert set(by_src) == {Source.REAL, Source.SIM} and by_src[Source.SIM].reward.shape == (4 + 6,)
    ns = nstep_transitions(run_dir, n=3, gamma=0.5)
    assert ns.n_steps[:3].tolist() == [3, 2, 1]
    rtg = returns_to_go(run_dir, gamma=1.0)
    assert rtg.return_to_go[0] == pytest.approx(eps[0].reward.sum())
    assert rtg.partial[:3].all() and not rtg.partial[3:7].any()  # episode 0 truncated, 1 terminated
    with pytest.raises(LogFormatError, match="demo"):
        transitions(run_dir, sources=[Source.DEMO])
