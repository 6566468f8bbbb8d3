"""`robot-rl certify` on the emulated real robot (firmware emulator + bridge started by the command, in real
time): two episodes of 10 steps, about 10 s."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from robot_rl.certify.commands import main

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
MAIN_POLICY = ROOT / "bench" / "results" / "hybrid" / "full" / "h2o" / "seed0" / "policy.npz"


def test_certify_on_the_emulated_real_robot(tmp_path: Path) -> None:
    out = tmp_path / "real.json"
    args = [str(MAIN_POLICY), "--env", "robot_rl/RealQuadruped-v0", "--sigma", "0.1", "--episodes", "2"]
    args += ["--max-episode-steps", "10", "--budgets", "0:0.1:0.1", "--out", str(out), "--quiet"]
    assert main(args) == 0
    result = json.loads(out.read_text())
    assert result["env"]["id"] == "robot_rl/RealQuadruped-v0" and result["episodes"] == 2
    assert result["clean"]["mean_length"] <= 10
    assert result["rows"][0]["certified_return"] == pytest.approx(result["lower_bounded_mean"]["value"])
