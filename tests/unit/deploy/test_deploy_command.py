"""The `Deploy` command: its argparse twin of the tyro CLI, the import rule, refusals before any I/O."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from robot_rl.deploy.commands import Deploy, build_parser, field_docs, main

ROOT = Path(__file__).resolve().parents[3]
DEPLOY_MODULES = [
    "robot_rl.deploy",
    "robot_rl.deploy.observation",
    "robot_rl.deploy.checks",
    "robot_rl.deploy.report",
    "robot_rl.deploy.runner",
    "robot_rl.deploy.commands",
    "robot_rl.deploy.__main__",
    "robot_rl.export.runtime",
    "robot_rl.data.writer",
    "onnxruntime",
]
BLOCKED = ["torch", "gymnasium", "mujoco", "dm_control", "pybullet", "tyro"]


def test_every_field_has_help_and_a_flag() -> None:
    docs = field_docs(Deploy)
    names = [f.name for f in dataclasses.fields(Deploy)]
    assert set(docs) == set(names)
    assert all(docs[n] for n in names)
    help_text = build_parser(Deploy, "deploy").format_help()
    for n in names[1:]:
        assert "--" + n.replace("_", "-") in help_text, n


def test_argparse_gives_the_same_dataclass_as_tyro() -> None:
    argv = ["p.onnx", "--bus", "ipc:///tmp/x", "--steps", "7", "--command-mps", "0.5", "0.7", "--no-log"]
    ns = vars(build_parser(Deploy, "deploy").parse_args(argv))
    ours = Deploy(**{k: tuple(v) if isinstance(v, list) else v for k, v in ns.items()})
    tyro = pytest.importorskip("tyro")
    theirs = tyro.cli(Deploy, args=argv)
    assert ours == theirs
    assert ours.policy == Path("p.onnx") and ours.command_mps == (0.5, 0.7) and ours.log is False


def test_the_deploy_path_imports_no_torch_gymnasium_mujoco_or_tyro() -> None:
    # Blocked modules raise ImportError on import; the subprocess also reports what else got loaded.
    code = (
        "import importlib, json, sys\n"
        f"for k in {BLOCKED!r}: sys.modules[k] = None\n"
        f"for m in {DEPLOY_MODULES!r}: importlib.import_module(m)\n"
        "from robot_rl.deploy.commands import build_parser, Deploy\n"
        "build_parser(Deploy, 'x').format_help()\n"
        "print(json.dumps(sorted(m for m in sys.modules if sys.modules[m] is not None)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT, check=False
    )
    assert out.returncode == 0, out.stderr[-2000:]
    loaded = json.loads(out.stdout)
    tops = {m.split(".")[0] for m in loaded}
    assert not tops & {"torch", "gymnasium", "mujoco", "dm_control", "pybullet", "tyro", "rich", "onnx"}
    assert {"numpy", "zmq", "msgspec", "onnxruntime", "pyarrow"} <= tops  # the check sees real imports


def test_python_m_help_runs_without_the_heavy_modules() -> None:
    code = (
        "import runpy, sys\n"
        f"for k in {BLOCKED!r}: sys.modules[k] = None\n"
        "sys.argv = ['robot_rl.deploy', '--help']\n"
        "runpy.run_module('robot_rl.deploy', run_name='__main__')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT, check=False
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "--port" in out.stdout and "--allow-calib-mismatch" in out.stdout


def test_port_and_bus_exactly_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tmp_path / "p.onnx")]) == 2
    assert "exactly one of --port" in capsys.readouterr().err
    assert main([str(tmp_path / "p.onnx"), "--port", "/dev/null", "--bus", "ipc:///tmp/x"]) == 2


def test_a_missing_or_corrupt_model_is_refused_before_any_bridge(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log_dir = tmp_path / "logs"
    assert main([str(tmp_path / "none.onnx"), "--port", "/dev/null", "--log-dir", str(log_dir)]) == 2
    assert "no such file" in capsys.readouterr().err
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x01garbage")
    assert main([str(bad), "--port", "/dev/null", "--log-dir", str(log_dir)]) == 2
    assert "not a readable ONNX model" in capsys.readouterr().err
    assert not log_dir.exists()  # refused before the log folder, the bridge or any socket


def test_episodes_without_an_end_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tmp_path / "p.onnx"), "--bus", "ipc:///tmp/x", "--episodes", "3"]) == 2
    assert "--episodes > 1 needs --steps or --duration" in capsys.readouterr().err


def test_the_command_module_itself_is_light_for_robot_rl_help() -> None:
    # `robot-rl --help` imports every command module: numpy, pyzmq and the simulator code load in execute().
    code = "import json, sys, robot_rl.deploy.commands; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    loaded = json.loads(out.stdout)
    assert {m.split(".")[0] for m in loaded} & {"numpy", "zmq", "msgspec", "sim", "onnxruntime"} == set()
    assert [m for m in loaded if m.startswith("robot_rl.")] == [
        "robot_rl.deploy",
        "robot_rl.deploy.commands",
        "robot_rl.deploy.exit_codes",
    ]
