"""The logs CLI commands: info prints the numbers; export/import go through the command objects."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from robot_rl.data.commands import EXIT_BAD_INPUT, EXIT_OK, LogsExport, LogsImport, LogsInfo
from robot_rl.data.store import open_run
from robot_rl.schema import Episode

MakeRun = Callable[..., tuple[Path, list[Episode]]]


def test_info_tables_contain_the_numbers(make_run: MakeRun, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir, eps = make_run(n_episodes=4, steps=5)
    assert LogsInfo(run=run_dir).execute() == EXIT_OK
    out = capsys.readouterr().out
    mean_return = np.mean([e.undiscounted_return() for e in eps])
    assert "go1" in out and "walk" in out
    assert "26" in out  # steps 5+6+7+8
    assert f"{mean_return:.4g}" in out
    assert "50 Hz" in out and "0.02 s" in out
    assert "joint_pos_FL_hip_rad" in out and "N*m" in out
    assert "2 / 2" in out  # terminated / truncated


def test_info_json(make_run: MakeRun, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir, eps = make_run(n_episodes=3, steps=2)
    assert LogsInfo(run=run_dir, json=True)() == EXIT_OK
    obj = json.loads(capsys.readouterr().out)
    assert obj["episodes"] == 3 and obj["steps"] == 2 + 3 + 4
    assert obj["returns"]["max"] == pytest.approx(max(e.undiscounted_return() for e in eps))
    assert obj["obs_layout"][0] == {"name": "base_height_m", "unit": "m"}


def test_info_bad_run_is_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert LogsInfo(run=tmp_path / "missing").execute() == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "manifest.json" in err


@pytest.mark.parametrize(("fmt", "target"), [("minari", "mds"), ("d4rl-hdf5", "x.hdf5")])
def test_export_then_import(make_run: MakeRun, tmp_path: Path, fmt: str, target: str) -> None:
    run_dir, eps = make_run(n_episodes=2, steps=3)
    out = tmp_path / target
    assert LogsExport(run=run_dir, to=fmt, out=out, dataset_id="go1_walk-v0").execute() == EXIT_OK  # type: ignore[arg-type]
    source = out / "go1_walk-v0" if fmt == "minari" else out
    assert LogsImport(source=source, format=fmt, out=tmp_path / "back").execute() == EXIT_OK  # type: ignore[arg-type]
    got = open_run(tmp_path / "back").load_episodes()
    assert all(g.equals(w) for g, w in zip(got, eps, strict=True)) and len(got) == 2


def test_import_refuses_non_empty_folder(
    make_run: MakeRun, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir, _ = make_run()
    h5 = tmp_path / "x.hdf5"
    assert LogsExport(run=run_dir, to="d4rl-hdf5", out=h5).execute() == EXIT_OK
    code = LogsImport(source=h5, format="d4rl-hdf5", out=run_dir).execute()
    assert code == EXIT_BAD_INPUT and "refusing to overwrite" in capsys.readouterr().err
    assert len(open_run(run_dir).load_episodes()) == 4  # untouched


def test_commands_module_import_is_light() -> None:
    import subprocess
    import sys

    code = (
        "import sys, robot_rl.data.commands; "
        "print([m for m in ('pyarrow', 'minari', 'h5py') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_cli_dispatch_positional_run_and_errors(
    make_run: MakeRun, capsys: pytest.CaptureFixture[str]
) -> None:
    from robot_rl.cli import COMMANDS, GROUPS, main

    run_dir, _ = make_run(n_episodes=2, steps=3)
    assert main(["logs", "info", str(run_dir), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["steps"] == 3 + 4
    assert main(["--help"]) == 0
    listing = capsys.readouterr().out
    for group, g in GROUPS.items():
        for sub in g.commands:
            assert f"{group} {sub}" in listing
    for name in COMMANDS:
        assert f"  {name} " in listing
    assert main(["bogus"]) == 2
    assert "valid: " in capsys.readouterr().err
    assert main(["logs", "info", str(run_dir / "missing")]) == 2
    assert "manifest.json" in capsys.readouterr().err
