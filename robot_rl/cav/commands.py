"""``robot-rl cav test``: estimate a CAV's crash rate in the overtaking scenario (robot_rl.cav).

    robot-rl cav test --cav idm --method adaptive                       # single decision, 50k tests
    robot-rl cav test --cav policy.onnx --method nde --max-tests 2000000 --max-crash-rate 1e-4
    python -m robot_rl.cav test --cav idm --method dense --scenario multi

Imports stay light (``robot-rl --help`` imports this module): numpy, scipy, matplotlib, onnxruntime and
highway-env are imported by :meth:`CavTest.execute`.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path

METHOD_NAMES = ("nde", "nade", "adaptive", "dense")
"""robot_rl.cav.campaign.METHODS (not imported: it needs numpy)."""
SCENARIO_NAMES = ("single", "multi")
SURROGATE_NAMES = ("s1", "s2", "s3", "s4", "oracle")
DEFAULT_MAX_TESTS = {"nde": 3_000_000, "nade": 50_000, "adaptive": 50_000, "dense": 100_000}


@dataclass(frozen=True)
class CavTest:
    """Estimate an automated vehicle's crash rate in overtaking tests (NDE, NADE, adaptive, dense)."""

    cav: str = "idm"
    """Vehicle under test: idm (built-in IDM + lane change, see --idm-*) or an ONNX policy exported by
    robot-rl whose manifest has the scenario's observation names (docs/cav.md)."""
    method: str = "adaptive"
    """nde (naturalistic Monte Carlo), nade (importance sampling at critical steps, fixed surrogate weights
    and epsilon), adaptive (surrogate weights refitted by non-negative least squares), dense (learned
    state-dependent epsilon, D2RL-style)."""
    scenario: str = "single"
    """single (one 3 s decision) or multi (--decisions decisions)."""
    decisions: int = 2
    """Decisions per test of the multi scenario (2-4)."""
    max_tests: int | None = None
    """Tests to run (all are run: the estimate is never stopped early); default 3,000,000 for nde, 100,000
    for dense, 50,000 otherwise."""
    max_crash_rate: float | None = None
    """Pass/fail threshold (crashes per test) for the JUnit report and the exit code: the test fails when the
    one-sided 95 % upper bound of the crash rate exceeds it."""
    epsilon: float = 0.1
    """Defensive-mixture weight of the naturalistic pdf on critical steps, 0 < epsilon <= 1 (nade,
    adaptive)."""
    surrogates: tuple[str, ...] = ("s1", "s2", "s3", "s4")
    """Surrogate models of the CAV (s1-s4, docs/cav.md; oracle = the built-in CAV itself, comparison only)."""
    refit_every: int = 10_000
    """adaptive: tests between two refits of the surrogate weights."""
    lookahead: int = 1
    """Decisions the surrogate challenge looks ahead (1: within the 3 s hold, the specification's)."""
    epsilon_policy: Path | None = None
    """dense: an epsilon policy (.npz) trained before; default: train one first on separate tests."""
    behaviour_tests: int = 1_000_000
    """dense: NADE tests with epsilon 0.99 whose crash episodes train the epsilon policy."""
    ppo_iterations: int = 150
    """dense: PPO iterations."""
    idm_headway_s: float = 1.0
    """Built-in CAV: IDM time headway T_h (s)."""
    idm_accept_gap_m: float = 6.0
    """Built-in CAV: accepted gap G in the passing lane before the speed term (m)."""
    lane_change: str = "gap"
    """Built-in CAV's lane-change rule: gap (gap acceptance, the specification's) or mobil."""
    seed: int = 0
    """Random stream of the tests (dense: the behaviour tests use another stream derived from it)."""
    batch_size: int | None = None
    """Tests simulated at once (default 100,000 for nde, 5,000 otherwise)."""
    out: Path | None = None
    """Output folder (results.json, junit.xml, estimate.png, crash pictures); default
    runs/<UTC stamp>-cav-<method>-<scenario>/."""
    render_crashes: int = 1
    """Crash tests drawn as PNG and animated GIF (the first ones found)."""
    highway_replay: bool = False
    """Also replay the drawn crash tests in highway-env's two-way-v0 (GIF) and with highway-env's IDM vehicle
    as the CAV (outcome in results.json); needs highway-env."""
    bootstrap: int = 1000
    """Bootstrap resamples of the tests-needed distribution (0: none)."""
    progress: bool = True
    """Show a progress bar on stderr."""
    overwrite: bool = False
    """Write into an existing --out folder."""

    def __post_init__(self) -> None:
        if self.method not in METHOD_NAMES:
            raise ValueError(f"method: unknown method {self.method!r}; valid: {', '.join(METHOD_NAMES)}")
        if self.scenario not in SCENARIO_NAMES:
            raise ValueError(
                f"scenario: unknown scenario {self.scenario!r}; valid: {', '.join(SCENARIO_NAMES)}"
            )
        if not 2 <= self.decisions <= 4:
            raise ValueError(f"decisions: expected 2-4 for the multi scenario, got {self.decisions}")
        if self.max_tests is not None and self.max_tests < 2:
            raise ValueError(f"max_tests: expected >= 2, got {self.max_tests}")
        if self.max_crash_rate is not None and not (0.0 < self.max_crash_rate < 1.0):
            raise ValueError(f"max_crash_rate: expected a rate in (0, 1), got {self.max_crash_rate}")
        if not (0.0 < self.epsilon <= 1.0) or math.isnan(self.epsilon):
            raise ValueError(
                f"epsilon: expected 0 < epsilon <= 1, got {self.epsilon} (epsilon = 0 drops the defensive "
                "mixture and biases the estimate; a negative epsilon is not a probability)"
            )
        if not self.surrogates:
            raise ValueError("surrogates: at least one surrogate model is needed")
        unknown = [s for s in self.surrogates if s not in SURROGATE_NAMES]
        if unknown:
            raise ValueError(f"surrogates: unknown {unknown}; valid: {', '.join(SURROGATE_NAMES)}")
        for name in ("refit_every", "lookahead", "behaviour_tests", "ppo_iterations"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: expected >= 1, got {getattr(self, name)}")
        if self.lane_change not in ("gap", "mobil"):
            raise ValueError(f"lane_change: expected gap or mobil, got {self.lane_change!r}")
        if self.render_crashes < 0 or self.bootstrap < 0:
            raise ValueError("render_crashes, bootstrap: expected >= 0")
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"batch_size: expected >= 1, got {self.batch_size}")
        if self.cav != "idm" and not self.cav.endswith(".onnx"):
            raise ValueError(f"cav: expected idm or a path to an .onnx policy, got {self.cav!r}")

    @property
    def n_tests(self) -> int:
        return self.max_tests if self.max_tests is not None else DEFAULT_MAX_TESTS[self.method]

    def execute(self) -> int:
        """Run; 0 passed (or no threshold), 1 the crash-rate threshold is exceeded, 2 bad input."""
        from robot_rl.cav.report import run_test_command

        return run_test_command(self)


def main(argv: list[str] | None = None) -> int:
    """``python -m robot_rl.cav test ARGS`` (the arguments of ``robot-rl cav test``)."""
    from robot_rl.cli import run_command

    args = sys.argv[1:] if argv is None else list(argv)
    if not args or args[0] in ("-h", "--help"):
        print("usage: python -m robot_rl.cav test [ARGS...]   (python -m robot_rl.cav test --help)")
        print(f"\n  test       {(CavTest.__doc__ or '').strip().splitlines()[0]}")
        return 0 if args else 2
    if args[0] != "test":
        print(f"robot-rl cav: error: unknown subcommand {args[0]!r}; valid: test", file=sys.stderr)
        return 2
    return run_command(CavTest, args[1:], "robot-rl cav test")


if __name__ == "__main__":
    sys.exit(main())
