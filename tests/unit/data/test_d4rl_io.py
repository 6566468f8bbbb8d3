"""D4RL-style HDF5 import/export: episode splitting, the dropped last step, exact round trips."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest

from robot_rl.data.d4rl_io import export_d4rl, import_d4rl
from robot_rl.data.store import LogFormatError, open_run
from robot_rl.schema import Episode

MakeRun = Callable[..., tuple[Path, list[Episode]]]


def _write(path: Path, **arrays: np.ndarray) -> Path:
    with h5py.File(path, "w") as f:
        for k, v in arrays.items():
            f.create_dataset(k, data=v)
    return path


def _flat(n: int = 7) -> dict[str, np.ndarray]:
    """7 rows: episode A rows 0-2 (terminal at 2), episode B rows 3-5 (timeout at 5), row 6 cut."""
    obs = np.arange(n * 2, dtype=np.float32).reshape(n, 2)  # row i = [2i, 2i+1]
    terminals = np.zeros(n, bool)
    timeouts = np.zeros(n, bool)
    terminals[2] = True
    timeouts[5] = True
    return {
        "observations": obs,
        "actions": np.arange(n, dtype=np.float32).reshape(n, 1),
        "rewards": np.arange(n, dtype=np.float32) * 0.5,
        "terminals": terminals,
        "timeouts": timeouts,
    }


def test_round_trip_preserves_everything(make_run: MakeRun, tmp_path: Path) -> None:
    run_dir, eps = make_run(n_episodes=3, steps=4)
    h5 = export_d4rl(run_dir, tmp_path / "x.hdf5")
    with h5py.File(h5, "r") as f:
        assert f["observations"].shape == (4 + 5 + 6, 3)
        np.testing.assert_array_equal(f["next_observations"][:4], eps[0].obs[1:])
        np.testing.assert_array_equal(f["terminals"][()], np.concatenate([e.terminated for e in eps]))
        np.testing.assert_array_equal(f["timeouts"][()], np.concatenate([e.truncated for e in eps]))
    back = open_run(import_d4rl(h5, tmp_path / "back"))
    assert back.manifest == open_run(run_dir).manifest
    for g, w in zip(back.load_episodes(), eps, strict=True):
        assert g.equals(w)


def test_import_without_next_observations_drops_last_step(tmp_path: Path) -> None:
    h5 = _write(tmp_path / "d.hdf5", **_flat())
    run = open_run(import_d4rl(h5, tmp_path / "run", robot="go1", control_dt_s=0.1))
    eps = run.load_episodes()
    # A: rows 0-2, last step (row 2, terminal) dropped -> 2 steps, obs rows 0..2, truncated.
    # B: rows 3-5 -> 2 steps (rows 3,4), final obs row 5.  Tail: row 6 alone -> no step, skipped.
    assert [e.n_steps for e in eps] == [2, 2]
    np.testing.assert_array_equal(eps[0].obs, [[0, 1], [2, 3], [4, 5]])
    np.testing.assert_array_equal(eps[0].action, [[0], [1]])
    np.testing.assert_array_equal(eps[0].reward, [0.0, 0.5])
    assert eps[0].truncated.tolist() == [False, True] and not eps[0].terminated.any()
    assert eps[0].meta.extra["d4rl_dropped_last_step"] == "terminal"
    assert eps[1].meta.extra["d4rl_dropped_last_step"] == "timeout"
    np.testing.assert_array_equal(eps[1].obs, [[6, 7], [8, 9], [10, 11]])
    assert eps[0].t_ns.tolist() == [0, 100_000_000, 200_000_000]
    assert run.manifest.robot == "go1" and run.manifest.obs_layout.names == ("obs_0", "obs_1")


def test_import_with_next_observations_keeps_every_step(tmp_path: Path) -> None:
    arrays = _flat()
    arrays["next_observations"] = arrays["observations"] + 100
    arrays["infos/timestamps"] = np.arange(7) * 0.02 + 1.0  # seconds
    h5 = _write(tmp_path / "d.hdf5", **arrays)
    run = open_run(import_d4rl(h5, tmp_path / "run"))
    eps = run.load_episodes()
    # A rows 0-2 (terminal), B rows 3-5 (timeout), C row 6 (cut by the file -> truncated)
    assert [e.n_steps for e in eps] == [3, 3, 1]
    np.testing.assert_array_equal(eps[0].obs[-1], [104, 105])  # next_observations[2]
    assert eps[0].terminated[-1] and eps[1].truncated[-1] and eps[2].truncated[-1]
    assert run.manifest.control_dt_s == pytest.approx(0.02)
    # t from infos/timestamps; the final obs at t[e] + dt: 1.04 s + 0.02 s
    assert eps[0].t_ns.tolist() == [1_000_000_000, 1_020_000_000, 1_040_000_000, 1_060_000_000]


def test_missing_key_and_length_mismatch(tmp_path: Path) -> None:
    arrays = _flat()
    del arrays["timeouts"]
    h5 = _write(tmp_path / "a.hdf5", **arrays)
    with pytest.raises(LogFormatError) as info:
        import_d4rl(h5, tmp_path / "r1")
    assert (info.value.path, info.value.field, info.value.got) == (h5, "timeouts", "missing")
    arrays = _flat()
    arrays["rewards"] = arrays["rewards"][:5]
    h5 = _write(tmp_path / "b.hdf5", **arrays)
    with pytest.raises(LogFormatError) as info:
        import_d4rl(h5, tmp_path / "r2")
    assert (info.value.field, info.value.expected, info.value.got) == (
        "rewards",
        "7 rows (as observations)",
        "5 rows",
    )
