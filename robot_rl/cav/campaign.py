"""A testing campaign: n tests of one CAV with one method, in batches, into a sparse record.

    nde       naturalistic Monte Carlo (ALGORITHMS.md 5.3)
    nade      importance sampling at critical steps, fixed θ (uniform over the surrogates) and fixed ε (5.4)
    adaptive  NADE whose θ is refitted by non-negative least squares every ``refit_every`` tests (5.7)
    dense     NADE with a learned state-dependent ε(s) on critical steps (5.6); the ε policy is trained first
              on separate behaviour tests (another random stream) unless one is given

Batches never straddle a refit, so θ only depends on earlier tests.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from robot_rl.cav.adaptive import ThetaSchedule
from robot_rl.cav.dense import EpsilonPolicy, PpoConfig, densify, train_epsilon
from robot_rl.cav.estimators import BatchResult, Importance, run_batch
from robot_rl.cav.scenario import CavModel, ScenarioConfig, TrafficState
from robot_rl.cav.stats import SparseRecord
from robot_rl.cav.surrogate import SURROGATES

METHODS = ("nde", "nade", "adaptive", "dense")
DEFAULT_BATCH = {"nde": 100_000, "nade": 5_000, "adaptive": 5_000, "dense": 5_000}


@dataclass(frozen=True)
class Campaign:
    """What to run (module docstring)."""

    scenario: ScenarioConfig
    method: str
    n_tests: int
    seed: int = 0
    surrogates: tuple[str, ...] = ("s1", "s2", "s3", "s4")
    epsilon: float = 0.1
    refit_every: int = 10_000
    lookahead_decisions: int = 1
    batch_size: int | None = None
    keep_crashes: int = 8
    """Crash tests whose initial state and actions are kept for pictures and replay."""

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method: unknown method {self.method!r}; valid: {', '.join(METHODS)}")
        if self.n_tests < 2:
            raise ValueError(f"n_tests: expected >= 2 (the sample std needs two tests), got {self.n_tests}")
        unknown = [s for s in self.surrogates if s not in SURROGATES]
        if unknown:
            raise ValueError(f"surrogates: unknown {unknown}; valid: {', '.join(SURROGATES)}")
        if self.method != "nde" and not self.surrogates:
            raise ValueError(f"surrogates: method {self.method} needs at least one surrogate")
        if not 0.0 < self.epsilon <= 1.0:
            raise ValueError(
                f"epsilon: expected 0 < epsilon <= 1, got {self.epsilon} (epsilon = 0 drops the defensive "
                "mixture and biases the estimate; a negative epsilon is not a probability)"
            )
        if self.refit_every < 1:
            raise ValueError(f"refit_every: expected >= 1, got {self.refit_every}")
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"batch_size: expected >= 1, got {self.batch_size}")

    @property
    def batch(self) -> int:
        return self.batch_size or DEFAULT_BATCH[self.method]


@dataclass
class CrashExample:
    test_index: int
    initial: TrafficState
    actions: np.ndarray
    """(T, B) action indices."""
    weight: float


@dataclass
class CampaignResult:
    campaign: Campaign
    cav_name: str
    record: SparseRecord
    wall_s: float
    theta_history: list[tuple[int, list[float]]] = field(default_factory=list)
    critical_steps: int = 0
    crashes: list[CrashExample] = field(default_factory=list)
    n_crash_tests: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def tests_per_s(self) -> float:
        return self.record.n_tests / self.wall_s if self.wall_s > 0 else float("nan")


Progress = Callable[[int, SparseRecord], None]


def _importance(c: Campaign, theta: np.ndarray | None, eps_fn: EpsilonPolicy | None) -> Importance:
    return Importance(
        tuple(SURROGATES[s] for s in c.surrogates),
        theta=None if theta is None else tuple(float(t) for t in theta),
        epsilon=c.epsilon,
        epsilon_fn=eps_fn,
        lookahead_decisions=c.lookahead_decisions,
    )


def run_campaign(
    c: Campaign,
    cav: CavModel,
    *,
    epsilon_policy: EpsilonPolicy | None = None,
    progress: Progress | None = None,
) -> CampaignResult:
    """Run ``c`` on ``cav`` (module docstring); ``dense`` needs ``epsilon_policy`` (:func:`train_dense`)."""
    if c.method == "dense" and epsilon_policy is None:
        raise ValueError("method dense: no ε policy (train one with train_dense or pass --epsilon-policy)")
    rng = np.random.default_rng(c.seed)
    record = SparseRecord()
    result = CampaignResult(c, cav.name, record, 0.0)
    schedule = ThetaSchedule(len(c.surrogates), c.refit_every) if c.method == "adaptive" else None
    imp: Importance | None = None
    if c.method == "nade":
        imp = _importance(c, None, None)
    elif c.method == "dense":
        imp = _importance(c, None, epsilon_policy)
    t0 = time.perf_counter()
    while record.n_tests < c.n_tests:
        n = min(c.batch, c.n_tests - record.n_tests)
        if schedule is not None:
            n = min(n, c.refit_every - record.n_tests % c.refit_every)
            imp = _importance(c, schedule.theta, None)
        batch = run_batch(c.scenario, cav, n, rng, imp, log_steps=schedule is not None)
        _collect(result, batch)
        if schedule is not None:
            schedule.observe(batch)
            if record.n_tests % c.refit_every == 0 and record.n_tests < c.n_tests:
                schedule.refit(record.n_tests)
        if progress is not None:
            progress(record.n_tests, record)
    result.wall_s = time.perf_counter() - t0
    if schedule is not None:
        result.theta_history = schedule.history
    return result


def _collect(result: CampaignResult, batch: BatchResult) -> None:
    first = result.record.n_tests
    result.record.add(batch.x)
    result.n_crash_tests += int(batch.crashed.sum())
    result.critical_steps += int(sum(int(s.critical.sum()) for s in batch.steps))
    room = result.campaign.keep_crashes - len(result.crashes)
    for j in np.flatnonzero(batch.crashed)[: max(room, 0)]:
        result.crashes.append(
            CrashExample(
                first + int(j), batch.initial.take(np.array([j])), batch.actions[j], float(batch.weight[j])
            )
        )


def train_dense(
    scenario: ScenarioConfig,
    cav: CavModel,
    surrogates: tuple[str, ...],
    n_behaviour_tests: int,
    seed: int,
    ppo: PpoConfig | None = None,
    lookahead_decisions: int = 1,
    batch_size: int = 5_000,
) -> tuple[EpsilonPolicy, dict[str, Any]]:
    """D2RL steps 1-5 (robot_rl.cav.dense): behaviour NADE tests with ε = 0.99 on the random stream
    ``seed`` + 1_000_003 (never the evaluation's), densified, PPO. Returns the policy and a summary."""
    rng = np.random.default_rng(seed + 1_000_003)
    imp = Importance(
        tuple(SURROGATES[s] for s in surrogates), epsilon=0.99, lookahead_decisions=lookahead_decisions
    )
    t0 = time.perf_counter()
    batches: list[BatchResult] = []
    done = 0
    while done < n_behaviour_tests:
        n = min(batch_size, n_behaviour_tests - done)
        b = run_batch(scenario, cav, n, rng, imp, log_steps=True)
        done += n
        if b.crashed.any():
            keep = np.flatnonzero(b.crashed)
            batches.append(_take_batch(b, keep))
    behaviour_s = time.perf_counter() - t0
    episodes = densify(batches)
    cfg = ppo or PpoConfig(seed=seed)
    t1 = time.perf_counter()
    policy, history = train_epsilon(episodes, cfg)
    info = {
        "behaviour_tests": n_behaviour_tests,
        "behaviour_crashes": int(sum(len(b.crashed) for b in batches)),
        "episodes": episodes.n,
        "behaviour_s": behaviour_s,
        "ppo_s": time.perf_counter() - t1,
        "reward_first": history[0]["reward/mean"],
        "reward_last": history[-1]["reward/mean"],
    }
    policy.meta.update(info)
    return policy, info


def _take_batch(b: BatchResult, rows: np.ndarray) -> BatchResult:
    """The tests ``rows`` of a batch (its step logs included)."""
    from robot_rl.cav.estimators import StepLog

    steps = [StepLog(*(getattr(s, f)[rows] for f in StepLog.__dataclass_fields__)) for s in b.steps]
    return BatchResult(b.crashed[rows], b.weight[rows], steps, b.initial.take(rows), b.actions[rows])
