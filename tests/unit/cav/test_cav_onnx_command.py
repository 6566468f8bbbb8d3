"""ONNX CAV policies (layout checks, batched parity) and ``robot-rl cav test`` end to end (outputs, exit
codes, bad input)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")

from robot_rl.bus.messages import PolicyWeights  # noqa: E402
from robot_rl.cav.campaign import Campaign, run_campaign  # noqa: E402
from robot_rl.cav.commands import CavTest, main  # noqa: E402
from robot_rl.cav.drivers import CAV_OBS_NAMES, CavPolicyError, OnnxCav, cav_manifest, cav_observation  # noqa: E402
from robot_rl.cav.scenario import SINGLE, sample_initial  # noqa: E402
from robot_rl.export.graph import build_model  # noqa: E402
from robot_rl.nets.numpy_policy import PolicyArch  # noqa: E402


def make_onnx(
    path: Path, obs_dim: int = len(CAV_OBS_NAMES), seed: int = 0, **manifest_changes: object
) -> Path:
    """A robot-rl policy graph (robot_rl.export.graph) with a CAV manifest; 16 tanh units, random weights
    scaled so that the outputs span their range on the scenario's observations."""
    arch = PolicyArch(obs_dim=obs_dim, act_dim=2, hidden=(16,), activation="tanh")
    rng = np.random.default_rng(seed)
    params = {k: rng.normal(0.0, 1.0, shape).astype(np.float32) for k, shape in arch.param_shapes().items()}
    mean = np.array([30.0, 0.5, 40.0, -5.0, 100.0, 0.0, 60.0, 2.0][:obs_dim] + [0.0] * max(0, obs_dim - 8))
    std = np.array([2.0, 0.5, 30.0, 3.0, 80.0, 3.0, 60.0, 3.0][:obs_dim] + [1.0] * max(0, obs_dim - 8))
    weights = PolicyWeights(
        policy_version=0,
        arch=arch.to_json(),
        obs_mean=mean.astype(np.float32),
        obs_std=std.astype(np.float32),
        params=params,
    )
    manifest = replace(cav_manifest(mean, std), **manifest_changes)  # type: ignore[arg-type]
    onnx.save(build_model(weights, manifest), str(path))
    return path


def test_onnx_cav_batched_matches_batch_one(tmp_path: Path) -> None:
    cav = OnnxCav(make_onnx(tmp_path / "cav.onnx"))
    assert cav.batched  # the onnx package is installed here: one session call per batch
    s = sample_initial(SINGLE, 300, np.random.default_rng(0))
    obs = cav_observation(s)
    got = cav.actions(obs)
    want = cav.policy.batch(obs.astype(np.float32))
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert got[:, 0].min() < -1.0 and got[:, 0].max() > 1.0  # the outputs are not constant
    accel, lane = cav.act(s)
    np.testing.assert_allclose(accel, got[:, 0])
    np.testing.assert_array_equal(lane, (got[:, 1] > 0).astype(np.int8))
    # it drives the engine: a short NDE campaign runs and crashes are possible for a random policy
    res = run_campaign(Campaign(SINGLE, "nde", 2_000, batch_size=1_000), cav)
    assert res.record.n_tests == 2_000


def test_onnx_cav_layout_mismatch_is_a_clear_error(tmp_path: Path) -> None:
    names = tuple(f"joint_pos_{i}" for i in range(5))
    bad = make_onnx(
        tmp_path / "quad.onnx",
        obs_dim=5,
        obs_names=names,
        obs_units=("rad",) * 5,
        normaliser_hash="x",
    )
    with pytest.raises(
        CavPolicyError, match=r"inputs do not match the overtaking scenario's observation: it expects 5"
    ):
        OnnxCav(bad)
    wrong_out = make_onnx(tmp_path / "out.onnx", joint_names=("throttle", "steer"))
    with pytest.raises(CavPolicyError, match=r"outputs \['throttle', 'steer'\]"):
        OnnxCav(wrong_out)
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(CavPolicyError, match="not a readable ONNX model"):
        OnnxCav(junk)


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        code = main(["test", *argv, "--no-progress", "--bootstrap", "50"])
    except SystemExit as exc:  # tyro reports a field's ValueError from __post_init__ itself (exit 2)
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out, " ".join(out.err.split())  # tyro wraps its message in a box


def test_command_outputs_and_threshold(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    code, stdout, _ = run(
        [
            "--method",
            "nade",
            "--surrogates",
            "oracle",
            "--max-tests",
            "4000",
            "--out",
            str(out),
            "--max-crash-rate",
            "1e-3",
        ],
        capsys,
    )
    assert code == 0, stdout
    res = json.loads((out / "results.json").read_text())
    assert res["method"] == "nade" and res["n_tests"] == 4_000
    assert 0.5e-5 < res["estimate"] < 3e-5  # the single-decision crash rate is about 1.3e-5
    assert res["ci90"][0] < res["estimate"] < res["ci90"][1]
    assert res["tests_needed"] is not None and res["tests_needed"] < 4_000
    assert res["threshold"] == {"max_crash_rate": 1e-3, "passed": True}
    assert len(res["curve"]["n"]) == len(res["curve"]["rhw"])
    assert (out / "estimate.png").stat().st_size > 10_000
    assert (out / "crash-0.png").is_file() and (out / "crash-0.gif").is_file()
    suite = ET.parse(out / "junit.xml").getroot()
    assert suite.get("failures") == "0" and suite.get("tests") == "1"
    assert "tests needed to RHW 0.3" in stdout
    # the same run against a threshold below the crash rate fails: exit 1, a JUnit failure
    code, stdout, _ = run(
        [
            "--method",
            "nade",
            "--surrogates",
            "oracle",
            "--max-tests",
            "4000",
            "--out",
            str(out),
            "--overwrite",
            "--max-crash-rate",
            "1e-6",
            "--render-crashes",
            "0",
        ],
        capsys,
    )
    assert code == 1
    failure = ET.parse(out / "junit.xml").getroot().find(".//failure")
    assert failure is not None and "upper bound" in (failure.get("message") or "")
    assert "FAIL" in stdout


def test_command_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["--method", "mc"], capsys)
    assert code == 2 and "unknown method 'mc'; valid: nde, nade, adaptive, dense" in err
    code, _, err = run(["--epsilon", "-0.1", "--out", str(tmp_path / "a")], capsys)
    assert code == 2 and "epsilon: expected 0 < epsilon <= 1, got -0.1" in err
    bad = make_onnx(tmp_path / "bad.onnx", obs_dim=3, obs_names=("a", "b", "c"), obs_units=("", "", ""))
    code, _, err = run(
        ["--cav", str(bad), "--method", "nde", "--max-tests", "10", "--out", str(tmp_path / "b")], capsys
    )
    assert code == 2 and "do not match the overtaking scenario's observation" in err
    code, _, err = run(["--cav", str(tmp_path / "missing.onnx"), "--out", str(tmp_path / "c")], capsys)
    assert code == 2 and "no such file" in err
    code, _, err = run(["--scenario", "highway"], capsys)
    assert code == 2 and "unknown scenario" in err


def test_command_dataclass_defaults() -> None:
    assert CavTest().n_tests == 50_000
    assert CavTest(method="nde").n_tests == 3_000_000
    with pytest.raises(ValueError, match="decisions"):
        CavTest(scenario="multi", decisions=7)
