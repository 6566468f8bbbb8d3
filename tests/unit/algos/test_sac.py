"""SAC's value of an endless +1 reward under time-limit truncation, and the configs' validation."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from robot_rl.algos.cql import CQLConfig
from robot_rl.algos.h2o import H2OConfig
from robot_rl.algos.iql import IQLConfig
from robot_rl.algos.sac import SAC, SACConfig
from robot_rl.schema import Source, TransitionBatch


def one_state_value(terminated: float, truncated: float, updates: int = 1500) -> float:
    """Mean Q after training SAC (no entropy backup) on one state whose every transition pays +1 and
    returns to it; gamma 0.9."""
    n = 64
    batch = TransitionBatch(
        obs=torch.zeros(n, 1),
        action=torch.rand(n, 1, generator=torch.Generator().manual_seed(0)) * 2.0 - 1.0,
        reward=torch.ones(n),
        next_obs=torch.zeros(n, 1),
        terminated=torch.full((n,), terminated),
        truncated=torch.full((n,), truncated),
    )
    config = SACConfig(
        hidden=(32, 32), gamma=0.9, critic_lr=1e-3, tau=0.05, batch_size=n, backup_entropy=False
    )
    sac = SAC(1, 1, seed=0, config=config)
    for _ in range(updates):
        metrics = sac.update({"sim": batch})
    return metrics["train/q_mean"]


def test_endless_reward_under_truncation_has_value_one_over_one_minus_gamma() -> None:
    # Every transition is cut by a time limit (truncated), none terminates: Q = sum_t 0.9^t = 10.
    assert one_state_value(terminated=0.0, truncated=1.0) == pytest.approx(10.0, rel=0.01)


def test_terminated_transitions_do_not_bootstrap() -> None:
    # The same problem with every transition terminal: Q = r = 1.
    assert one_state_value(terminated=1.0, truncated=0.0, updates=600) == pytest.approx(1.0, abs=0.02)


def test_source_picks_the_batch() -> None:
    oracle = SAC(3, 1, config=SACConfig(source=Source.REAL, hidden=(8,)))
    assert dict(oracle.batch_spec) == {"real": (Source.REAL, 256)}


def test_initial_temperature_is_a_config_field() -> None:
    sac = SAC(3, 1, config=SACConfig(hidden=(8,), init_log_alpha=-2.0))
    assert sac.log_alpha.item() == -2.0


@pytest.mark.parametrize(
    ("config", "field", "value"),
    [
        (SACConfig, "gamma", 1.0),
        (SACConfig, "tau", 0.0),
        (SACConfig, "actor_lr", -1.0),
        (SACConfig, "hidden", ()),
        (SACConfig, "init_log_alpha", float("nan")),
        (SACConfig, "source", "moon"),
        (H2OConfig, "ratio_clip", (1.0, 1e-5)),
        (H2OConfig, "gap_samples", 0),
        (H2OConfig, "classifier_noise", -0.1),
        (H2OConfig, "obs_std_floor", 0.0),
        (H2OConfig, "classifier_hidden", (0,)),
        (CQLConfig, "min_q_weight", -1.0),
        (CQLConfig, "n_action_samples", 0),
        (IQLConfig, "expectile", 1.0),
        (IQLConfig, "max_weight", 0.0),
        (IQLConfig, "action_clip_eps", 0.0),
    ],
)
def test_config_validation_names_the_field(config: Any, field: str, value: Any) -> None:
    with pytest.raises(ValueError, match=field):
        config(**{field: value})
