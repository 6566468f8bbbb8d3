"""Topology files: parsing, every kind of bad input, the command lines built, and the restart decision."""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import pytest

from robot_rl.launch.config import (
    RestartPolicy,
    RunConfig,
    TopologyError,
    bus_base_for,
    ipc_dir_fits,
    load_topology,
    parse_topology,
    plan_processes,
)
from robot_rl.launch.supervisor import decide_after_exit, default_run_dir, prepare_launch

REPO = Path(__file__).resolve().parents[3]
LOCAL_SIM = REPO / "launch" / "local_sim.toml"

FULL = """
[run]
name = "full"
transport = "tcp"
run_dir = "runs/full"
heartbeat_timeout_s = 2
stop_grace_s = 1.5
host = "127.0.0.1"
base_port = 6000

[learner]
robot = "manipulator"
backend = "pybullet"
policy = "p.npz"
log_episodes = true
seed = 7
extra_args = ["--republish-s", "0.5"]
restart = "always"
max_restarts = 3

[[sim_workers]]
name = "mj"
replicas = 2
robot = "manipulator"
backend = "mujoco"
num_envs = 3
profile = "example_gap"
seed = 10
backoff_initial_s = 0.5
backoff_max_s = 4

[[sim_workers]]
name = "pb"
robot = "manipulator"
backend = "pybullet"
extra_args = ["--deterministic"]
restart = "never"

[[process]]
name = "bridge"
argv = ["bridge-bin", "--port", "/dev/ttyUSB0"]
heartbeat_sender = "bridge/a1"
restart_on_stale = true
backoff_reset_s = 10
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "topo.toml"
    path.write_text(text)
    return path


def test_local_sim_parses_and_plans_two_workers_and_a_learner(tmp_path: Path) -> None:
    topo = load_topology(LOCAL_SIM)
    assert topo.run.name == "local_sim" and topo.run.transport == "ipc"
    assert topo.learner is not None and topo.learner.robot == "quadruped"
    (workers,) = topo.sim_workers
    assert (workers.replicas, workers.robot, workers.backend, workers.num_envs) == (
        2,
        "quadruped",
        "mujoco",
        4,
    )
    specs = plan_processes(topo, bus_base="ipc:///tmp/x/rrl-local_sim", run_dir=tmp_path)
    assert [s.name for s in specs] == ["learner", "sim-0", "sim-1"]
    assert [s.stop_phase for s in specs] == [1, 0, 0]  # the learner stops last
    assert [s.heartbeat_sender for s in specs] == ["learner", "sim-0", "sim-1"]


def test_full_file_every_key(tmp_path: Path) -> None:
    topo = load_topology(write(tmp_path, FULL))
    assert topo.run == RunConfig(
        name="full",
        transport="tcp",
        run_dir=Path("runs/full"),
        heartbeat_timeout_s=2.0,
        stop_grace_s=1.5,
        host="127.0.0.1",
        base_port=6000,
    )
    assert topo.learner is not None
    assert topo.learner.restart == RestartPolicy(when="always", max_restarts=3)
    assert topo.learner.extra_args == ("--republish-s", "0.5")
    mj, pb = topo.sim_workers
    assert mj.restart == RestartPolicy(backoff_initial_s=0.5, backoff_max_s=4.0)
    assert pb.replicas == 1 and pb.num_envs == 1 and pb.profile is None and pb.restart.when == "never"
    (bridge,) = topo.process
    assert bridge.argv == ("bridge-bin", "--port", "/dev/ttyUSB0")
    assert bridge.restart == RestartPolicy(restart_on_stale=True, backoff_reset_s=10.0)

    run_dir = tmp_path / "run"
    base = bus_base_for(topo.run, run_dir)
    assert base == "tcp://127.0.0.1:6000"
    specs = {s.name: s for s in plan_processes(topo, bus_base=base, run_dir=run_dir)}
    assert list(specs) == ["learner", "bridge", "mj-0", "mj-1", "pb-0"]
    py = sys.executable
    assert specs["learner"].argv == (
        py, "-m", "robot_rl.runners.learner_process", "--bind", base, "--robot", "manipulator",
        "--backend", "pybullet", "--learner-id", "learner", "--out", str(run_dir / "episodes"),
        "--policy", "p.npz", "--seed", "7", "--republish-s", "0.5",
    )  # fmt: skip
    # Worker indexes run across tables (1, 2, 3); each replica gets its own seed.
    assert specs["mj-1"].argv == (
        py, "-m", "sim.worker", "--connect", base, "--robot", "manipulator", "--backend", "mujoco",
        "--num-envs", "3", "--worker-id", "mj-1", "--index", "2", "--seed", "11", "--profile", "example_gap",
    )  # fmt: skip
    assert specs["pb-0"].argv[-5:] == ("--index", "3", "--seed", "0", "--deterministic")
    assert specs["bridge"].argv == bridge.argv  # verbatim
    assert specs["bridge"].heartbeat_sender == "bridge/a1"


def test_minimal_defaults() -> None:
    topo = parse_topology({"run": {"name": "m"}, "learner": {"robot": "quadruped"}}, "m.toml")
    assert topo.run.transport == "ipc" and topo.run.heartbeat_timeout_s == 5.0
    assert topo.learner is not None and topo.learner.restart == RestartPolicy()
    assert RestartPolicy() == RestartPolicy("on-failure", 10, 1.0, 32.0, 60.0, False)


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        # unknown keys name the table and list the valid keys
        (
            '[run]\nname = "x"\n[learner]\nrobt = "quadruped"\n',
            ["[learner]", "unknown key 'robt'", "valid keys: robot, backend, policy"],
        ),
        ('[run]\nname = "x"\ncolour = 1\n', ["[run]", "unknown key 'colour'", "heartbeat_timeout_s"]),
        ('[run]\nname = "x"\n[workers]\nrobot = "a"\n', ["unknown table 'workers'", "sim_workers"]),
        (
            '[run]\nname = "x"\n[[sim_workers]]\nrobot = "quadruped"\nrestart_policy = "never"\n',
            ["[[sim_workers]] #1", "unknown key 'restart_policy'", "restart, max_restarts"],
        ),
        # wrong types: key, expected, got
        (
            '[run]\nname = "x"\n[[sim_workers]]\nrobot = "quadruped"\nnum_envs = "4"\n',
            ["[[sim_workers]] #1.num_envs", "expected integer", "got str '4'"],
        ),
        (
            '[run]\nname = "x"\n[[sim_workers]]\nrobot = "quadruped"\nreplicas = true\n',
            ["[[sim_workers]] #1.replicas", "expected integer", "got bool True"],
        ),
        ('[run]\nname = "x"\nheartbeat_timeout_s = "5"\n', ["[run].heartbeat_timeout_s", "expected number"]),
        (
            '[run]\nname = "x"\n[[process]]\nname = "p"\nargv = "python -m x"\n',
            ["[[process]] #1.argv", "expected list of strings", "got str"],
        ),
        (
            '[run]\nname = "x"\n[[process]]\nname = "p"\nargv = ["a", 1]\n',
            ["[[process]] #1.argv", "expected list of strings"],
        ),
        (
            '[run]\nname = "x"\n[learner]\nrobot = "dog"\n',
            ["[learner].robot", "'quadruped' | 'manipulator'", "'dog'"],
        ),
        ('[run]\nname = "x"\ntransport = "udp"\n', ["[run].transport", "'ipc' | 'tcp'", "'udp'"]),
        # values out of range
        (
            '[run]\nname = "x"\n[[sim_workers]]\nrobot = "quadruped"\nreplicas = 0\n',
            ["[[sim_workers]] #1.replicas: expected >= 1, got 0"],
        ),
        (
            '[run]\nname = "x"\n[[sim_workers]]\nrobot = "quadruped"\nnum_envs = 0\n',
            ["[[sim_workers]] #1.num_envs: expected >= 1, got 0"],
        ),
        (
            '[run]\nname = "x"\n[learner]\nrobot = "quadruped"\nrestart = "sometimes"\n',
            ["[learner].restart", "'on-failure' | 'always' | 'never'", "'sometimes'"],
        ),
        (
            '[run]\nname = "x"\n[learner]\nrobot = "quadruped"\nmax_restarts = -1\n',
            ["[learner].max_restarts: expected >= 0, got -1"],
        ),
        (
            '[run]\nname = "x"\n[learner]\nrobot = "quadruped"\nbackoff_initial_s = 5\nbackoff_max_s = 2\n',
            ["[learner].backoff_max_s: expected >= backoff_initial_s"],
        ),
        ('[run]\nname = "a b"\n[learner]\nrobot = "quadruped"\n', ["[run].name", "A-Z a-z 0-9"]),
        (
            '[run]\nname = "x"\ntransport = "tcp"\nhost = "0.0.0.0"\n[learner]\nrobot = "quadruped"\n',
            ["[run].host", "keys_dir"],
        ),
        # structure
        ('[learner]\nrobot = "quadruped"\n', ["missing table [run]"]),
        ('[run]\nname = "x"\n', ["no processes"]),
        (
            '[run]\nname = "x"\n[[sim_workers]]\nreplicas = 2\n',
            ["[[sim_workers]] #1", "missing required key(s) robot"],
        ),
        ('[run]\nname = "x"\n[sim_workers]\nrobot = "quadruped"\n', ["sim_workers", "array of tables"]),
        (
            '[run]\nname = "x"\n[[sim_workers]]\nrobot = "quadruped"\nreplicas = 2\n'
            '[[process]]\nname = "sim-1"\nargv = ["x"]\n',
            ["process name 'sim-1' is also used by [[process]] #1"],
        ),
        ('[run]\nname = "x"\n[[process]]\nname = "p"\nargv = []\n', ["[[process]] #1.argv", "non-empty"]),
        (
            '[run]\nname = "x"\n[learner]\nrobot = "quadruped"\n'
            '[[process]]\nname = "p"\nargv = ["x"]\nheartbeat_sender = "learner"\n',
            ["heartbeat_sender 'learner' of process 'p' is also the sender id of 'learner'"],
        ),
        ('[run\nname = "x"\n', ["not valid TOML"]),
        (
            '[run]\nname = "x"\n[learner]\nrobot = "quadruped"\nlog_episodes = false\nout = "o"\n',
            ["[learner].out", "log_episodes is false"],
        ),
    ],
)
def test_bad_input_names_file_table_key(tmp_path: Path, text: str, fragments: list[str]) -> None:
    path = write(tmp_path, text)
    with pytest.raises(TopologyError) as info:
        load_topology(path)
    msg = str(info.value)
    assert msg.startswith(f"{path}: "), msg
    for fragment in fragments:
        assert fragment in msg, f"{fragment!r} not in {msg!r}"


def test_missing_file() -> None:
    with pytest.raises(FileNotFoundError, match=r"nope\.toml"):
        load_topology(Path("/nonexistent/nope.toml"))


def test_ipc_paths_stay_short(tmp_path: Path) -> None:
    run = RunConfig(name="r")
    assert bus_base_for(run, Path("/tmp/d")) == "ipc:///tmp/d/rrl-r"
    long_dir = Path("/tmp/" + "d" * 90)
    assert not ipc_dir_fits(run, long_dir)
    with pytest.raises(ValueError, match="too long"):
        bus_base_for(run, long_dir)
    # prepare_launch falls back to a short temp dir when the run folder's path is too long.
    topo = parse_topology({"run": {"name": "r"}, "process": [{"name": "p", "argv": ["true"]}]})
    deep = tmp_path / ("x" * 80)
    plan = prepare_launch(topo, run_dir=deep)
    assert plan.run_dir == deep and (deep / "logs").is_dir()
    assert plan.temp_ipc_dir is not None and plan.bus_base == f"ipc://{plan.temp_ipc_dir}/rrl-r"
    assert plan.telemetry == f"{plan.bus_base}-telemetry"
    plan.temp_ipc_dir.rmdir()
    short_dir = Path(tempfile.mkdtemp(prefix="rrl-t-"))
    try:
        short = prepare_launch(topo, run_dir=short_dir)
        assert short.temp_ipc_dir is None and short.bus_base == f"ipc://{short_dir}/rrl-r"
    finally:
        shutil.rmtree(short_dir)


def test_default_run_dir_is_named_and_timestamped() -> None:
    from datetime import datetime

    assert default_run_dir("local_sim", datetime(2026, 1, 2, 3, 4, 5)) == Path(
        "runs/local_sim-20260102-030405"
    )


class TestRestartDecision:
    """decide_after_exit: the back-off sequence and the policies, worked out by hand."""

    POLICY = RestartPolicy(max_restarts=4, backoff_initial_s=1.0, backoff_max_s=4.0, backoff_reset_s=60.0)

    def test_crash_loop_doubles_caps_and_gives_up(self) -> None:
        streak, delays = 0, []
        for _ in range(5):
            d = decide_after_exit(self.POLICY, exit_code=1, uptime_s=0.5, streak=streak)
            if d.state != "backoff":
                break
            delays.append(d.delay_s)
            streak = d.streak
        # 1 * 2**0, 2**1, 2**2 = 4 (cap), 4 (cap); the 5th crash in a row exceeds max_restarts = 4.
        assert delays == [1.0, 2.0, 4.0, 4.0]
        assert d.state == "gave-up" and d.streak == 4

    def test_long_run_resets_the_streak(self) -> None:
        d = decide_after_exit(self.POLICY, exit_code=-9, uptime_s=60.0, streak=4)
        assert (d.state, d.delay_s, d.streak) == ("backoff", 1.0, 1)

    def test_policies(self) -> None:
        on_failure, always, never = (RestartPolicy(when=w) for w in ("on-failure", "always", "never"))
        assert decide_after_exit(on_failure, 0, 1.0, 0).state == "stopped"
        assert decide_after_exit(on_failure, -9, 1.0, 0).state == "backoff"  # killed by a signal
        assert decide_after_exit(always, 0, 1.0, 0).state == "backoff"
        assert decide_after_exit(never, 2, 1.0, 0).state == "failed"
        assert decide_after_exit(never, 0, 1.0, 0).state == "stopped"
        assert decide_after_exit(RestartPolicy(max_restarts=0), 1, 1.0, 0).state == "gave-up"
