"""``robot-rl export`` as a command: what it refuses (exit 2, one line naming the problem, nothing
written), a parity failure (exit 1, nothing written), the calibration override, and the CLI entry."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import onnx
import pytest
from export_testing import QUAD_CALIB, QUAD_HASH, RUN1, MadeRun, make_run

from firmware_bridge.calibration import calibration_hash, load_calibration
from robot_rl.bus.messages import PolicyWeights
from robot_rl.data.manifest import read_manifest
from robot_rl.export import onnx_export
from robot_rl.export.commands import Export, main
from robot_rl.export.graph import build_model as real_build
from robot_rl.export.manifest import DeployManifest
from robot_rl.export.runtime import OnnxPolicy

SMALL = 2_000
"""Parity observations where parity is not what the test is about."""


@pytest.fixture(scope="module")
def sac_run(tmp_path_factory: pytest.TempPathFactory) -> MadeRun:
    return make_run(tmp_path_factory.mktemp("runs"), "sac")


def files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("robot-rl export: ")
    return err


def edited_calib(tmp_path: Path, old: str, new: str) -> Path:
    text = QUAD_CALIB.read_text()
    assert old in text
    path = tmp_path / "quadruped-edited.toml"
    path.write_text(text.replace(old, new, 1))
    return path


def test_an_existing_out_is_not_overwritten(
    sac_run: MadeRun, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "policy.onnx"
    out.write_bytes(b"old")
    assert Export(checkpoint=sac_run.run_dir, out=out, parity_n=SMALL).execute() == 2
    err = one_error_line(capsys)
    assert "already exists" in err and "--overwrite" in err
    assert out.read_bytes() == b"old" and files(tmp_path) == ["policy.onnx"]
    assert Export(checkpoint=sac_run.run_dir, out=out, parity_n=SMALL, overwrite=True).execute() == 0
    assert OnnxPolicy(out).manifest.algo == "sac"
    assert files(tmp_path) == ["policy.onnx", "policy.onnx.json"]


def test_a_missing_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "p.onnx"
    assert Export(checkpoint=tmp_path / "no-such-run", out=out).execute() == 2
    err = one_error_line(capsys)
    assert "no-such-run does not exist" in err
    assert files(tmp_path) == []


@pytest.mark.parametrize("make", ["empty_dir", "text_file", "bad_npz", "run_without_checkpoint"])
def test_inputs_that_are_not_a_policy(tmp_path: Path, make: str, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "src"
    if make == "empty_dir":
        src.mkdir()
        expect = "is not a robot-rl train run folder, a checkpoint folder"
    elif make == "text_file":
        src = tmp_path / "notes.txt"
        src.write_text("hello")
        expect = "is a file but not a policy .npz"
    elif make == "bad_npz":
        src = tmp_path / "broken.npz"
        src.write_bytes(b"PK\x03\x04 not really")
        expect = "is not a readable policy .npz"
    else:
        src.mkdir()
        (src / "config.json").write_text("{}")
        expect = "has no complete checkpoint"
    out = tmp_path / "out" / "p.onnx"
    assert Export(checkpoint=src, out=out).execute() == 2
    assert expect in one_error_line(capsys)
    assert not (tmp_path / "out").exists()


def test_an_unknown_algorithm_in_the_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = make_run(tmp_path, "cql")
    config_path = run.checkpoint / "config.json"
    config = json.loads(config_path.read_text())
    config["algo"] = "ppo"
    config_path.write_text(json.dumps(config))
    assert Export(checkpoint=run.run_dir).execute() == 2
    err = one_error_line(capsys)
    assert "algorithm 'ppo'" in err and "h2o" in err
    assert not (run.run_dir / "policy.onnx").exists()


def test_a_calibration_hash_mismatch_is_refused_then_allowed(
    sac_run: MadeRun, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    calib = edited_calib(tmp_path, "kp_nm_per_rad = 40.0", "kp_nm_per_rad = 42.0")
    other_hash = calibration_hash(load_calibration(calib))
    out = tmp_path / "p.onnx"
    assert Export(checkpoint=sac_run.run_dir, out=out, calib=calib, parity_n=SMALL).execute() == 2
    err = one_error_line(capsys)
    assert other_hash in err and QUAD_HASH in err and "--allow-calib-mismatch" in err
    assert not out.exists()

    code = Export(
        checkpoint=sac_run.run_dir, out=out, calib=calib, allow_calib_mismatch=True, parity_n=SMALL
    ).execute()
    assert code == 0
    assert "WARNING: calibration" in capsys.readouterr().out
    policy = OnnxPolicy(out)
    assert policy.manifest.calib_hash == QUAD_HASH  # the training data's
    assert policy.manifest.kp_nm_per_rad[0] == 42.0  # the gains of the file that was allowed
    props = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert json.loads(props[onnx_export.CALIB_OVERRIDE_KEY]) == {
        "calib_file_hash": other_hash,
        "training_calib_hash": QUAD_HASH,
    }
    summary = json.loads((tmp_path / "p.onnx.json").read_text())
    assert summary["calibration"]["mismatch_allowed"] is True
    assert summary["calibration"]["file_hash"] == other_hash


def test_a_calibration_whose_default_pose_differs_from_the_robot(
    sac_run: MadeRun, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    calib = edited_calib(tmp_path, "default_pos_rad = 0.8", "default_pos_rad = 0.7")
    out = tmp_path / "p.onnx"
    code = Export(checkpoint=sac_run.run_dir, out=out, calib=calib, allow_calib_mismatch=True).execute()
    assert code == 2
    err = one_error_line(capsys)
    assert "joint 'FL_hip' default_pos_rad is 0.7" in err and "0.8" in err
    assert not out.exists()


def test_a_dataset_layout_that_differs_from_the_task(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dataset = read_manifest(RUN1).to_json_dict()
    dataset["obs_layout"][3] = {"name": "gyro_x_degps", "unit": "deg/s"}
    run = make_run(tmp_path, "iql", dataset_manifest=dataset)
    assert Export(checkpoint=run.run_dir).execute() == 2
    err = one_error_line(capsys)
    assert "element 3" in err and "gyro_x_degps" in err and "gyro_x_radps" in err


def test_a_parity_failure_writes_nothing(
    sac_run: MadeRun, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def perturbed(weights: PolicyWeights, manifest: DeployManifest, opset: int = 17) -> Any:
        params = dict(weights.params)
        bias = params["mean.bias"].copy()
        bias[0] += 1e-3
        params["mean.bias"] = bias
        return real_build(
            PolicyWeights(
                policy_version=0,
                arch=weights.arch,
                obs_mean=weights.obs_mean,
                obs_std=weights.obs_std,
                params=params,
            ),
            manifest,
            opset,
        )

    monkeypatch.setattr(onnx_export, "build_model", perturbed)
    out = tmp_path / "out" / "p.onnx"
    assert Export(checkpoint=sac_run.run_dir, out=out).execute() == 1
    err = one_error_line(capsys)
    assert re.search(r"parity: onnxruntime and torch differ by [0-9.e-]+ rad \(> tolerance 1e-05\)", err), err
    assert "FL_hip" in err and "nothing written" in err
    assert not (tmp_path / "out").exists()  # no model, no temporary file, not even the folder


def test_the_command_line(sac_run: MadeRun, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli.onnx"
    args = [str(sac_run.checkpoint), "--out", str(out), "--opset", "11", "--parity-n", "3000"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "parity: max |onnxruntime - torch|" in printed and "3000 observations" in printed
    assert OnnxPolicy(out).manifest.opset == 11
    # __post_init__ refuses these while tyro parses; tyro prints the message, exits 2 (as robot-rl train).
    for bad, message in (
        ("--parity-n=0", "parity_n: expected >= 1"),
        ("--opset=9", "opset: 9 is not supported"),
    ):
        with pytest.raises(SystemExit) as exc:
            main([str(sac_run.checkpoint), "--out", str(tmp_path / "x.onnx"), bad])
        assert exc.value.code == 2
        err = " ".join(capsys.readouterr().err.split())
        assert message in err and "Traceback" not in err
    assert not (tmp_path / "x.onnx").exists()


def test_opsets_agree_with_the_graph_builder() -> None:
    from robot_rl.export.commands import OPSETS
    from robot_rl.export.graph import SUPPORTED_OPSETS

    assert OPSETS == SUPPORTED_OPSETS
