"""In-process evaluation on the nominal simulator, the evaluation commands and the evals.jsonl record."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from robot_rl.bus.messages import PolicyWeights
from robot_rl.nets import NumpyPolicy, random_init
from robot_rl.runners.evaluate import EvalResult, evaluate_logs, evaluate_sim, evaluation_options

RUN1 = Path(__file__).resolve().parents[3] / "calib" / "run1"


def _constant(action_logits: list[float]) -> PolicyWeights:
    """A policy whose action is tanh(action_logits) whatever the observation (mean layer weights zero)."""
    net = NumpyPolicy.from_weights(random_init(34, 8, hidden=(16,), seed=1))
    params = dict(net.params)
    params["mean.weight"] = np.zeros_like(params["mean.weight"])
    params["mean.bias"] = np.asarray(action_logits, dtype=np.float32)
    return NumpyPolicy(net.arch, params).to_weights()


def _sim(weights: PolicyWeights, *, episodes: int = 3, cap: int = 100, seed: int = 0) -> EvalResult:
    return evaluate_sim(
        weights,
        robot="quadruped",
        backend="mujoco",
        episodes=episodes,
        max_episode_steps=cap,
        seed=seed,
        policy="p",
        update=7,
    )


def test_same_weights_same_result() -> None:
    w = random_init(34, 8, hidden=(32, 32), seed=3)
    a, b = _sim(w), _sim(w)
    assert a.returns == b.returns and a.lengths == b.lengths and a.falls == b.falls
    assert a.where == "sim" and a.policy == "p" and a.update == 7 and a.episodes == 3
    assert a.mean == pytest.approx(float(np.mean(a.returns)))
    assert a.std == pytest.approx(float(np.std(a.returns)))
    assert _sim(w, seed=1).returns != a.returns  # the seed changes commands and start poses


def test_falls_are_counted() -> None:
    # Diagonal legs driven to opposite joint limits: the quadruped tips over within ~20 steps, every time.
    result = _sim(_constant([5, -5, -5, 5, 5, -5, -5, 5]), cap=100)
    assert result.falls == 3
    assert all(n < 100 for n in result.lengths)


def test_lengths_are_capped() -> None:
    # Knees bent to the same offset: stands without falling, so every episode runs to the cap.
    result = _sim(_constant([-5.0] * 8), cap=30)
    assert result.lengths == (30, 30, 30)
    assert result.falls == 0
    assert result.max_episode_steps == 30


def test_mismatched_policy_is_refused() -> None:
    with pytest.raises(ValueError, match="policy is 10 -> 8"):
        _sim(random_init(10, 8, hidden=(4,)))


def test_commands_are_a_seeded_prefix_stable_sequence() -> None:
    five = evaluation_options("quadruped", 0, 5)
    assert evaluation_options("quadruped", 0, 3) == five[:3]
    cmds = [o["command_mps"] for o in five if o is not None]
    assert len(cmds) == 5 and all(0.3 <= c <= 1.0 for c in cmds)
    # Weyl sequence: 5 points leave no gap wider than 2 / 5 of the range (golden-ratio spacing bound).
    edges = np.sort(np.array([0.3, *cmds, 1.0]))
    assert float(np.max(np.diff(edges))) < 0.4 * 0.7
    assert evaluation_options("quadruped", 1, 5) != five
    assert evaluation_options("manipulator", 0, 2) == [None, None]


def test_eval_result_json_round_trip_and_errors() -> None:
    r = EvalResult.summarise(
        policy="h2o",
        where="real",
        update=5,
        returns=[1.0, 3.0],
        lengths=[10, 20],
        falls=1,
        max_episode_steps=20,
        wall_s=2.0,
    )
    d = r.to_json_dict()
    assert list(d) == [
        "policy",
        "where",
        "update",
        "returns",
        "lengths",
        "falls",
        "mean",
        "std",
        "episodes",
        "max_episode_steps",
        "wall_s",
    ]
    assert (d["mean"], d["std"], d["episodes"]) == (2.0, 1.0, 2)
    assert EvalResult.from_json_dict(d) == r
    with pytest.raises(ValueError, match="'update': expected an integer"):
        EvalResult.from_json_dict({**d, "update": 1.5})
    with pytest.raises(ValueError, match="unknown keys \\['extra'\\]"):
        EvalResult.from_json_dict({**d, "extra": 1})
    with pytest.raises(ValueError, match="episodes: 3, but 2 returns"):
        EvalResult.from_json_dict({**d, "episodes": 3})


@pytest.mark.skipif(not (RUN1 / "manifest.json").is_file(), reason="calib/run1 not present")
def test_behaviour_result_from_the_logs() -> None:
    full = evaluate_logs(RUN1)
    # calib/README.md: 70 episodes, 36 falls, return 211.1 +- 164.9, recorded with a 500-step cap.
    assert (full.policy, full.where, full.update) == ("behaviour", "real", 0)
    assert full.episodes == 70 and full.falls == 36 and full.max_episode_steps == 500
    assert full.mean == pytest.approx(211.1, abs=0.05) and full.std == pytest.approx(164.9, abs=0.05)
    cut = evaluate_logs(RUN1, max_episode_steps=100)
    assert cut.max_episode_steps == 100 and cut.episodes == 70
    short = [i for i, n in enumerate(full.lengths) if n <= 100]
    assert short, "run1 has episodes of 55-500 steps: some end within 100"
    for i, (n, r) in enumerate(zip(cut.lengths, cut.returns, strict=True)):
        if i in short:  # untouched by the cut
            assert (n, r) == (full.lengths[i], full.returns[i])
        else:
            assert n == 100
    # A fall counts only if it happened within the cap: run1's episodes end in a fall or at the 500-step cap
    # (no fault cuts), so exactly the short ones fell within 100 steps.
    assert cut.falls == len(short)
