"""`robot-rl certify` (python -m robot_rl.certify): JSON + PNG + table for the reference agent, a policy.npz
and a policy.onnx; bad input in one line with exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from robot_rl.certify.commands import Certify, main

ROOT = Path(__file__).resolve().parents[3]
MAIN_POLICY = ROOT / "bench" / "results" / "hybrid" / "full" / "h2o" / "seed0" / "policy.npz"


def test_reference_agent_certificate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cert.json"
    args = ["reference:cartpole", "--env", "vec:CartPole-v0", "--sigma", "0.2", "--episodes", "2000"]
    assert main([*args, "--budgets", "0:1:0.25", "--out", str(out), "--quiet"]) == 0
    result = json.loads(out.read_text())
    png = out.with_suffix(".png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert result["method"] == "cp" and result["levels"] == 200 and result["per_level_alpha"] == 0.05 / 200
    rows = result["rows"]
    assert [r["budget"] for r in rows] == [0.0, 0.25, 0.5, 0.75, 1.0]
    for r in rows:  # every number with its confidence level, N, sigma and method
        assert (r["confidence"], r["episodes"], r["sigma"], r["method"]) == (0.95, 2000, 0.2, "cp")
    certified = [r["certified_return"] for r in rows]
    assert certified == sorted(certified, reverse=True)
    assert certified[0] == pytest.approx(result["lower_bounded_mean"]["value"])
    assert certified[0] <= result["clean"]["mean"] <= 200.0
    assert result["command"].startswith(
        "robot-rl certify reference:cartpole --env vec:CartPole-v0 --sigma 0.2"
    )
    table = capsys.readouterr().out
    assert "| budget | certified (95%) |" in table and f"| 0.5 | {certified[2]:.2f} |" in table


def test_npz_policy_with_attack_per_step(tmp_path: Path) -> None:
    out = tmp_path / "q.json"
    args = [str(MAIN_POLICY), "--env", "robot_rl/Quadruped-v0", "--sigma", "0.1", "--episodes", "6"]
    args += ["--budgets", "0:0.02:0.01", "--budget-kind", "per-step", "--max-episode-steps", "12"]
    args += ["--attack", "--attack-episodes", "3", "--attack-draws", "4", "--attack-undefended"]
    assert main([*args, "--out", str(out), "--quiet"]) == 0
    result = json.loads(out.read_text())
    assert result["method"] == "dkw" and result["budget_kind"] == "per-step"
    assert result["certified_quantity"].startswith(
        "E[max(F, a)]"
    )  # the quadruped's return has no lower bound
    assert result["policy"]["kind"] == "npz" and result["policy"]["algo"] == "h2o"
    assert result["env"]["max_episode_steps"] == 12
    rows = result["rows"]
    assert "attacked" not in rows[0]  # no attack at budget 0
    for r in rows[1:]:
        assert r["attacked"]["episodes"] == 3 and r["attacked"]["largest_spent_l2"] <= r["budget"] * 12**0.5
        assert r["undefended_attacked"]["sigma"] == 0.0
        assert isinstance(r["attack_above_certificate"], bool)


def test_onnx_policy(tmp_path: Path) -> None:
    onnx = tmp_path / "policy.onnx"
    export = ["-m", "robot_rl.export.commands", str(MAIN_POLICY), "--out", str(onnx), "--parity-n", "50"]
    subprocess.run(
        [sys.executable, *export],
        check=True,
        capture_output=True,
        cwd=ROOT,
    )
    common = ["--env", "robot_rl/Quadruped-v0", "--sigma", "0.1", "--episodes", "4", "--budgets", "0:0.1:0.1"]
    common += ["--max-episode-steps", "10", "--quiet"]
    assert main([str(onnx), *common, "--out", str(tmp_path / "o.json")]) == 0
    assert main([str(MAIN_POLICY), *common, "--out", str(tmp_path / "n.json")]) == 0
    got = json.loads((tmp_path / "o.json").read_text())
    want = json.loads((tmp_path / "n.json").read_text())
    assert got["policy"]["kind"] == "onnx"
    # Same seed, same noise, the same network to 1e-6 rad: the same episodes.
    assert got["clean"]["mean"] == pytest.approx(want["clean"]["mean"], abs=1e-3)
    assert main([str(onnx), *common, "--attack", "--out", str(tmp_path / "a.json")]) == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--sigma", "0"], "sigma: the smoothing noise scale must be > 0"),
        (["--sigma", "-0.5"], "sigma: the smoothing noise scale must be > 0"),
        (["--sigma", "0.2", "--budgets", "1:0:0.1"], "budgets: the range 1.0:0.0:0.1 is empty"),
        (["--sigma", "0.2", "--budgets", "0:1"], "START:STOP:STEP"),
        (["--sigma", "0.2", "--episodes", "0"], "episodes: expected >= 1"),
    ],
)
def test_bad_arguments(args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    # __post_init__ refuses these while tyro parses; tyro prints the message and exits 2 (as robot-rl export).
    with pytest.raises(SystemExit) as exc:
        main(["reference:cartpole", "--env", "vec:CartPole-v0", *args])
    assert exc.value.code == 2
    err = " ".join(capsys.readouterr().err.replace("│", " ").split())
    assert message in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("policy", "env", "extra", "message"),
    [
        (str(MAIN_POLICY), "vec:CartPole-v0", [], "the policy takes 34 observations (1 frame(s) of 34)"),
        ("reference:cartpole", "robot_rl/Quadruped-v0", [], "the policy takes 12 observations"),
        ("reference:cartpole", "InvertedPendulum-v5", ["--frames", "1"], "v5 takes 1 continuous actions"),
        ("reference:cartpole", "NoSuchEnv-v3", [], "not a registered Gymnasium id"),
        ("reference:pendulum", "vec:CartPole-v0", [], "unknown reference policy"),
        ("no/such/policy.npz", "vec:CartPole-v0", [], "does not exist"),
        (str(MAIN_POLICY), "robot_rl/Quadruped-v0", ["--method", "cp"], "cp needs integer returns"),
    ],
)
def test_bad_input_names_the_problem(
    policy: str, env: str, extra: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [policy, "--env", env, "--sigma", "0.2", "--episodes", "3", "--max-episode-steps", "5", *extra]
    assert main([*args, "--out", str(tmp_path / "x.json"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("robot-rl certify: error:") and message in err, err
    assert not (tmp_path / "x.json").exists()


def test_dataclass_validation() -> None:
    with pytest.raises(ValueError, match="attack_undefended: needs --attack"):
        Certify("reference:cartpole", env="vec:CartPole-v0", sigma=0.2, attack_undefended=True)
