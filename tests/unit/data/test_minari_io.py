"""Minari export/import: lossless for robot-rl runs; foreign datasets import with caller-given facts."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import minari
import numpy as np
import pytest

from robot_rl.data.minari_io import export_minari, import_minari
from robot_rl.data.store import LogFormatError, open_run
from robot_rl.schema import Episode, Source

MakeRun = Callable[..., tuple[Path, list[Episode]]]


def test_round_trip_is_lossless(make_run: MakeRun, tmp_path: Path) -> None:
    run_dir, eps = make_run(n_episodes=4, steps=5, sources=(Source.REAL, Source.DEMO))
    ds = export_minari(run_dir, tmp_path / "minari", "go1_walk-v0")
    assert ds == (tmp_path / "minari" / "go1_walk-v0").resolve()
    meta = json.loads((ds / "data" / "metadata.json").read_text())
    assert meta["total_episodes"] == 4 and meta["total_steps"] == 5 + 6 + 7 + 8
    back = import_minari(ds, tmp_path / "back")
    src, dst = open_run(run_dir), open_run(back)
    assert dst.manifest == src.manifest
    got = dst.load_episodes()
    assert [e.meta.episode_id for e in got] == [e.meta.episode_id for e in eps]
    for g, w in zip(got, eps, strict=True):
        assert g.equals(w)  # arrays bit-equal, meta (source, seed, extra, ...) equal


def test_exported_dataset_reads_as_plain_minari(make_run: MakeRun, tmp_path: Path) -> None:

    run_dir, eps = make_run(n_episodes=2, steps=3)
    ds = export_minari(run_dir, tmp_path / "m")
    data = minari.MinariDataset(ds / "data")
    first = next(data.iterate_episodes())
    np.testing.assert_array_equal(first.observations, eps[0].obs)
    np.testing.assert_array_equal(first.infos["t_ns"], eps[0].t_ns)
    assert data.observation_space.shape == (3,)


def _foreign_dataset(root: Path) -> Path:
    """A Minari dataset made with plain arrays, no robot-rl metadata."""
    import gymnasium as gym
    from minari.data_collector import EpisodeBuffer

    rng = np.random.default_rng(0)
    buffers = []
    for i, (n, term, trunc) in enumerate([(4, True, False), (3, False, True), (2, False, False)]):
        terms = np.zeros(n, bool)
        truncs = np.zeros(n, bool)
        terms[-1], truncs[-1] = term, trunc
        buffers.append(
            EpisodeBuffer(
                id=i,
                observations=rng.standard_normal((n + 1, 4)).astype(np.float32),
                actions=rng.standard_normal((n, 2)).astype(np.float32),
                rewards=rng.standard_normal(n),
                terminations=terms,
                truncations=truncs,
            )
        )
    import os

    os.environ["MINARI_DATASETS_PATH"] = str(root)
    try:
        minari.create_dataset_from_buffers(
            "plain-v0",
            buffers,
            env=None,
            observation_space=gym.spaces.Box(-1, 1, (4,), np.float32),
            action_space=gym.spaces.Box(-1, 1, (2,), np.float32),
        )
    finally:
        del os.environ["MINARI_DATASETS_PATH"]
    return root / "plain-v0"


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_import_foreign_dataset(tmp_path: Path) -> None:

    path = _foreign_dataset(tmp_path / "m")
    src = list(minari.MinariDataset(path / "data").iterate_episodes())
    out = import_minari(path, tmp_path / "run", task="reach", source_kind="demo", control_dt_s=0.05)
    reader = open_run(out)
    m = reader.manifest
    assert (m.robot, m.task, m.source, m.control_dt_s) == ("unknown", "reach", Source.DEMO, 0.05)
    assert m.obs_layout.names == ("obs_0", "obs_1", "obs_2", "obs_3") and set(m.obs_layout.units) == {
        "unknown"
    }
    got = reader.load_episodes()
    assert len(got) == 3
    for g, s in zip(got, src, strict=True):
        np.testing.assert_array_equal(g.obs, s.observations)
        np.testing.assert_array_equal(g.action, s.actions)
        np.testing.assert_array_equal(g.reward, s.rewards)
        assert g.meta.source is Source.DEMO
    # t_ns synthesized at 50 ms
    assert got[0].t_ns.tolist() == [0, 50_000_000, 100_000_000, 150_000_000, 200_000_000]
    assert (got[0].terminated[-1], got[1].truncated[-1]) == (True, True)
    # the third episode ended with neither flag: cut by the dataset, so truncated
    assert got[2].truncated[-1] and "cut" in got[2].meta.extra["end"]


def test_import_missing_dataset(tmp_path: Path) -> None:
    with pytest.raises(LogFormatError, match="metadata"):
        import_minari(tmp_path / "none", tmp_path / "run")
