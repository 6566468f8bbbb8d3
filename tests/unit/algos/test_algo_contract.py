"""The contract every algorithm of robot_rl.algos passes (STYLE.md "Tests"), for each registry name.

update() changes every network and returns finite, slash-namespaced metrics; the state_dict
round-trips through ``torch.save``/``torch.load(weights_only=True)`` so a loaded copy's next update
equals the original's bit for bit; the same seed gives the same result; ``policy_weights()`` acts
like the torch actor to 1e-5 through :class:`robot_rl.nets.NumpyPolicy`. Parity of the exported ONNX
graph joins this test with the ONNX exporter.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping

import numpy as np
import pytest
import torch

from robot_rl.algos import ALGO_NAMES, make_algo
from robot_rl.algos.base import Algo, BatchSpec, TorchBatch
from robot_rl.nets.numpy_policy import NumpyPolicy
from robot_rl.schema import Source, TransitionBatch

OBS, ACT = 6, 3
HIDDEN = (32, 32)


def build(name: str, seed: int = 0) -> Algo:
    return make_algo(
        name, obs_dim=OBS, act_dim=ACT, seed=seed, real_obs_std=np.linspace(0.0, 2.0, OBS), hidden=HIDDEN
    )


def make_batches(algo: Algo, seed: int, truncated: float = 0.0) -> dict[str, TorchBatch]:
    g = torch.Generator().manual_seed(seed)
    out: dict[str, TorchBatch] = {}
    for key, spec in algo.batch_spec.items():
        n = spec.size
        out[key] = TransitionBatch(
            obs=torch.randn(n, OBS, generator=g),
            action=torch.rand(n, ACT, generator=g) * 2.0 - 1.0,
            reward=torch.randn(n, generator=g),
            next_obs=torch.randn(n, OBS, generator=g),
            terminated=(torch.rand(n, generator=g) < 0.1).float(),
            truncated=torch.full((n,), truncated),
        )
    return out


def tensors(state: Mapping[str, object], prefix: str = "") -> dict[str, torch.Tensor]:
    """Every tensor of a (nested) state dict by dotted key."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if isinstance(value, torch.Tensor):
            out[prefix + str(key)] = value
        elif isinstance(value, Mapping):
            out.update(tensors(value, f"{prefix}{key}."))
    return out


def assert_states_equal(a: Mapping[str, object], b: Mapping[str, object]) -> None:
    ta, tb = tensors(a), tensors(b)
    assert ta.keys() == tb.keys()
    for key in ta:
        assert torch.equal(ta[key], tb[key]), key


names = pytest.mark.parametrize("name", ALGO_NAMES)


@names
def test_update_changes_every_network_and_returns_finite_metrics(name: str) -> None:
    algo = build(name)
    before = tensors(algo.state_dict())
    metrics = algo.update(make_batches(algo, 1))
    after = tensors(algo.state_dict())
    assert metrics and all(isinstance(v, float) and math.isfinite(v) for v in metrics.values()), metrics
    assert all("/" in key for key in metrics), sorted(metrics)
    assert {"loss/critic", "loss/actor"} <= metrics.keys()
    networks = {key.split(".")[0] for key in before if not key.split(".")[0].endswith("_opt")}
    for net in networks - {"generator", "gap_noise_std"}:
        changed = [k for k in before if k.startswith(net + ".") or k == net]
        assert any(not torch.equal(before[k], after[k]) for k in changed), f"{net} did not change"
    assert algo.state_dict()["updates"] == 1


@names
def test_state_dict_round_trip_continues_bit_for_bit(name: str) -> None:
    algo = build(name, seed=0)
    for i in range(2):
        algo.update(make_batches(algo, i))
    buffer = io.BytesIO()
    torch.save(algo.state_dict(), buffer)
    buffer.seek(0)
    copy = build(name, seed=123)
    copy.load_state_dict(torch.load(buffer, weights_only=True))
    assert_states_equal(copy.state_dict(), algo.state_dict())
    batches = make_batches(algo, 7)
    assert copy.update(batches) == algo.update(batches)
    assert_states_equal(copy.state_dict(), algo.state_dict())
    obs = np.zeros((2, OBS), np.float32)
    np.testing.assert_array_equal(copy.act(obs), algo.act(obs))  # the generators continue together


@names
def test_state_dict_is_a_snapshot(name: str) -> None:
    algo = build(name)
    state = algo.state_dict()
    saved = {k: v.clone() for k, v in tensors(state).items()}
    algo.update(make_batches(algo, 0))
    for key, value in tensors(state).items():
        assert torch.equal(value, saved[key]), key


@names
def test_same_seed_same_result(name: str) -> None:
    a, b = build(name, seed=5), build(name, seed=5)
    for i in range(3):
        assert a.update(make_batches(a, i)) == b.update(make_batches(b, i))
    assert_states_equal(a.state_dict(), b.state_dict())
    obs = np.ones((4, OBS), np.float32)
    np.testing.assert_array_equal(a.act(obs), b.act(obs))
    c = build(name, seed=6)
    assert not torch.equal(
        tensors(c.state_dict())["actor.trunk.0.weight"], tensors(a.state_dict())["actor.trunk.0.weight"]
    )


@names
def test_truncated_transitions_bootstrap_like_any_other(name: str) -> None:
    # `truncated` is bookkeeping only (schema.py): flipping it must not change a single bit.
    a, b = build(name, seed=2), build(name, seed=2)
    for i in range(2):
        assert a.update(make_batches(a, i, truncated=0.0)) == b.update(make_batches(b, i, truncated=1.0))
    assert_states_equal(a.state_dict(), b.state_dict())


@names
def test_policy_weights_act_like_the_torch_actor(name: str) -> None:
    # ONNX parity is added with the exporter; this is the torch-free NumpyPolicy path.
    algo = build(name)
    for i in range(3):
        algo.update(make_batches(algo, i))
    weights = algo.policy_weights()
    assert weights.policy_version == 0
    policy = NumpyPolicy.from_weights(weights)
    obs = np.random.default_rng(0).standard_normal((64, OBS)).astype(np.float32)
    ours = algo.act(obs, deterministic=True)
    assert ours.dtype == np.float32 and ours.shape == (64, ACT)
    np.testing.assert_allclose(policy.act(obs, deterministic=True), ours, atol=1e-5, rtol=0.0)
    sampled = algo.act(obs)
    assert sampled.shape == (64, ACT) and np.all(np.abs(sampled) <= 1.0)
    assert not np.array_equal(sampled, ours)


@names
def test_load_state_dict_names_the_mismatch(name: str) -> None:
    algo = build(name)
    state = algo.state_dict()
    bad = dict(state)
    bad["actor"] = dict(state["actor"])
    bad["actor"]["trunk.0.weight"] = torch.zeros(3, 3)
    with pytest.raises(ValueError, match=r"actor\.trunk\.0\.weight"):
        algo.load_state_dict(bad)
    missing = {k: v for k, v in state.items() if k != "critic_target"}
    with pytest.raises(ValueError, match="critic_target"):
        algo.load_state_dict(missing)
    wider = make_algo(name, obs_dim=OBS, act_dim=ACT, seed=0, real_obs_std=np.ones(OBS), hidden=(64, 64))
    with pytest.raises(ValueError, match="shape"):
        algo.load_state_dict(wider.state_dict())


@names
def test_update_names_a_missing_batch(name: str) -> None:
    algo = build(name)
    batches = make_batches(algo, 0)
    first = next(iter(algo.batch_spec))
    del batches[first]
    with pytest.raises(KeyError, match=first):
        algo.update(batches)


@names
def test_act_checks_the_observation_shape(name: str) -> None:
    with pytest.raises(ValueError, match="obs"):
        build(name).act(np.zeros((2, OBS + 1), np.float32))


def test_registry_names_and_default_batch_specs() -> None:
    assert ALGO_NAMES == ("h2o", "sac", "cql", "iql", "naive-mix")
    std = np.ones(34)
    specs = {
        name: dict(make_algo(name, obs_dim=34, act_dim=8, seed=0, real_obs_std=std).batch_spec)
        for name in ALGO_NAMES
    }
    h2o = {
        "real": BatchSpec(Source.REAL, 128),
        "sim": BatchSpec(Source.SIM, 128),
        "disc_real": BatchSpec(Source.REAL, 256),
        "disc_sim": BatchSpec(Source.SIM, 256),
    }
    assert specs == {
        "h2o": h2o,
        "naive-mix": h2o,
        "sac": {"sim": BatchSpec(Source.SIM, 256)},
        "cql": {"real": BatchSpec(Source.REAL, 256)},
        "iql": {"real": BatchSpec(Source.REAL, 256)},
    }
    for name in ALGO_NAMES:
        assert (
            make_algo(name, obs_dim=4, act_dim=2, seed=0, real_obs_std=np.ones(4), hidden=(8,)).name == name
        )


def test_registry_errors() -> None:
    with pytest.raises(ValueError, match=r"unknown algorithm 'td3'; known: h2o, sac, cql, iql, naive-mix"):
        make_algo("td3", obs_dim=3, act_dim=1, seed=0)
    for name in ("h2o", "naive-mix"):
        with pytest.raises(ValueError, match="real_obs_std"):
            make_algo(name, obs_dim=3, act_dim=1, seed=0)


@pytest.mark.parametrize("name", ["h2o", "sac", "cql", "naive-mix"])
def test_registry_sets_the_initial_temperature(name: str) -> None:
    algo = make_algo(
        name,
        obs_dim=OBS,
        act_dim=ACT,
        seed=0,
        real_obs_std=np.ones(OBS),
        hidden=(8,),
        init_log_alpha=math.log(0.1),
    )
    assert float(algo.log_alpha) == pytest.approx(math.log(0.1))  # type: ignore[attr-defined]
    default = make_algo(name, obs_dim=OBS, act_dim=ACT, seed=0, real_obs_std=np.ones(OBS), hidden=(8,))
    assert float(default.log_alpha) == 0.0  # type: ignore[attr-defined]
