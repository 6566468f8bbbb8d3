"""``robot-rl certify``: a certified lower bound on a smoothed policy's return under observation attacks.

    robot-rl certify reference:cartpole --env vec:CartPole-v0 --sigma 0.2 --episodes 10000 --budgets 0:1:0.2
    robot-rl certify runs/RUN/policy.npz --env robot_rl/Quadruped-v0 --sigma 0.1 --episodes 1000 \\
        --budgets 0:0.2:0.05 --max-episode-steps 500 --attack --attack-episodes 100
    python -m robot_rl.certify ...                           # the same, without the CLI dispatcher

Imports stay light (``robot-rl --help`` imports this module): numpy, scipy, torch and the simulators are
imported by :meth:`Certify.execute` (:mod:`robot_rl.certify.runner`).
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from tyro.conf import Positional, arg

EXIT_OK = 0
EXIT_BAD_INPUT = 2


@dataclass(frozen=True)
class Certify:
    """Certify a policy's return under an l2-bounded observation attack (policy smoothing), and attack it."""

    policy: Positional[Annotated[str, arg(metavar="POLICY")]]
    """A `robot-rl train` run folder, a checkpoint folder, a policy .npz, a policy.onnx (`robot-rl export`),
    or reference:cartpole (the untrained reference agent of ALGORITHMS.md 4.7)."""
    env: str
    """Environment: vec:CartPole-v0 / vec:CartPole-v1 (numpy, vectorised), robot_rl/Quadruped-v0,
    robot_rl/Manipulator-v0, robot_rl/RealQuadruped-v0 (the emulated real robot, real time: use few episodes),
    or any registered Gymnasium id."""
    sigma: float
    """Smoothing noise scale: every observation gets fresh N(0, sigma^2 I) noise at every step (observation
    units). Must be > 0."""
    episodes: int = 10_000
    """Clean episodes of the smoothed policy behind the certificate (N)."""
    budgets: str = "0:1:0.2"
    """Attack budgets START:STOP:STEP (STOP included): total l2 norm of the perturbation over an episode, in
    observation units (per step with --budget-kind per-step)."""
    alpha: float = 0.05
    """1 - confidence of the certificate (one-sided; Bonferroni over the return levels for cp)."""
    method: Literal["cp", "dkw"] | None = None
    """cp: Clopper-Pearson + Bonferroni (integer returns with a known range: CartPole); dkw: DKW band (any
    returns). Default: cp where it applies, else dkw."""
    budget_kind: Literal["total", "per-step"] = "total"
    """total: one l2 budget for the whole episode; per-step: the same budget at every step (certified through
    the total sqrt(steps) * budget)."""
    return_low: float | None = None
    """Lower end a of the return for dkw: a value no return can fall below. Default: the env's own bound
    (CartPole: 0), else the smallest clean return (then the certificate bounds E[max(F, a)])."""
    attack: bool = False
    """Also attack the smoothed policy (PGD on the smoothed torch policy, unused budget carried over) at every
    budget > 0 and report its mean return beside the certificate. Needs a torch policy (not an .onnx)."""
    attack_episodes: int = 1000
    """Episodes per budget of the attack."""
    attack_draws: int = 128
    """Noise samples of the smoothed objective the attack differentiates."""
    attack_undefended: bool = False
    """With --attack: also attack the undefended policy (sigma 0) with the same attack."""
    frames: int | None = None
    """Noisy observations stacked into the policy's input; default: 3 for reference:cartpole, else 1."""
    max_episode_steps: int | None = None
    """Episode cap; default: the env's own (200 for vec:CartPole-v0, 1000 for the quadruped)."""
    sim_backend: str = "mujoco"
    """Physics backend of the simulated robots: mujoco, dmcontrol or pybullet."""
    sim_profile: str = "nominal"
    """Dynamics profile of the simulated robots (a name in sim/profiles/ or a TOML path)."""
    batch_size: int | None = None
    """Episodes run together; default 10,000 (vec:), 1,000 (attack on vec:), 100 (other envs)."""
    seed: int = 0
    """Seed of the episodes, the smoothing noise and the attack."""
    out: Path | None = None
    """JSON file to write (the PNG goes beside it); default certify-<env>-sigma<S>.json in the run folder,
    beside a policy file, or in the current folder for reference:cartpole. Replaced if it exists."""
    torch_threads: int = 1
    """Torch intra-op threads (the attack)."""
    quiet: bool = False
    """No progress lines on stderr."""

    def __post_init__(self) -> None:
        if not (math.isfinite(self.sigma) and self.sigma > 0.0):
            raise ValueError(
                f"sigma: the smoothing noise scale must be > 0, got {self.sigma} (a certificate needs noise; "
                "attack the undefended policy with --attack-undefended)"
            )
        if self.episodes < 1:
            raise ValueError(f"episodes: expected >= 1, got {self.episodes}")
        if not 0.0 < self.alpha < 1.0:
            raise ValueError(f"alpha: expected 0 < alpha < 1, got {self.alpha}")
        from robot_rl.certify.bounds import parse_budgets

        parse_budgets(self.budgets)  # BoundInputError (a ValueError) naming the problem
        for name in ("attack_episodes", "attack_draws", "torch_threads"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: expected >= 1, got {getattr(self, name)}")
        for name in ("frames", "max_episode_steps", "batch_size"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name}: expected >= 1, got {value}")
        if self.return_low is not None and not math.isfinite(self.return_low):
            raise ValueError(f"return_low: expected a finite number, got {self.return_low}")
        if self.attack_undefended and not self.attack:
            raise ValueError("attack_undefended: needs --attack")

    def execute(self) -> int:
        """Certify; 0 done, 2 bad input (one line on stderr)."""
        from robot_rl.certify.runner import run_certify

        return run_certify(self)


def main(argv: list[str] | None = None) -> int:
    """``python -m robot_rl.certify ARGS`` (the arguments of ``robot-rl certify``)."""
    from robot_rl.cli import run_command

    return run_command(Certify, sys.argv[1:] if argv is None else argv, "robot-rl certify")


if __name__ == "__main__":
    sys.exit(main())
