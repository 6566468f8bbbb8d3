"""NumpyPolicy: torch parity, init scheme, bus/npz round trips, squashing and errors."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from robot_rl.bus.codec import decode, encode
from robot_rl.bus.messages import BUS_SCHEMA_VERSION, Envelope, PolicyWeights
from robot_rl.nets.numpy_policy import NumpyPolicy, PolicyArch, load_npz, random_init, save_npz

OBS_DIM, ACT_DIM = 34, 8


class TorchActor(nn.Module):
    """The reference torch module whose state_dict keys are the default names."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: tuple[int, ...], act: type[nn.Module]) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        fan_in = obs_dim
        for width in hidden:
            layers += [nn.Linear(fan_in, width), act()]
            fan_in = width
        self.trunk = nn.Sequential(*layers)
        self.mean = nn.Linear(fan_in, act_dim)
        self.log_std = nn.Linear(fan_in, act_dim)


@pytest.mark.parametrize(("activation", "module"), [("relu", nn.ReLU), ("tanh", nn.Tanh), ("elu", nn.ELU)])
def test_torch_trained_weights_give_the_same_mean_action(activation: str, module: type[nn.Module]) -> None:
    torch.manual_seed(0)
    actor = TorchActor(OBS_DIM, ACT_DIM, (256, 256), module)
    mean = torch.randn(OBS_DIM)
    std = torch.rand(OBS_DIM) + 0.5
    arch = PolicyArch(OBS_DIM, ACT_DIM, (256, 256), activation)
    params = {k: v.detach().numpy() for k, v in actor.state_dict().items()}
    policy = NumpyPolicy(arch, params, mean.numpy(), std.numpy())
    obs = torch.randn(64, OBS_DIM) * 3.0
    with torch.no_grad():
        expected = torch.tanh(actor.mean(actor.trunk((obs - mean) / std))).numpy()
        expected_std = torch.exp(torch.clamp(actor.log_std(actor.trunk((obs - mean) / std)), -20, 2)).numpy()
    got = policy.act(obs.numpy(), deterministic=True)
    assert got.dtype == np.float32 and got.shape == (64, ACT_DIM)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    np.testing.assert_allclose(policy.mean_and_std(obs.numpy())[1], expected_std, rtol=1e-5)


def test_random_init_matches_torch_linear_bounds() -> None:
    w = random_init(OBS_DIM, ACT_DIM, (256, 128), seed=3)
    # torch.nn.Linear: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weight and bias.
    for name, fan_in in (("trunk.0", OBS_DIM), ("trunk.2", 256), ("mean", 128), ("log_std", 128)):
        k = 1.0 / math.sqrt(fan_in)
        for p in (w.params[f"{name}.weight"], w.params[f"{name}.bias"]):
            assert p.dtype == np.float32
            assert float(np.abs(p).max()) <= k
            # A uniform on [-k, k] with thousands of draws reaches past 0.9 k.
            assert float(np.abs(p).max()) > 0.9 * k or p.size < 64
    assert w.params["trunk.0.weight"].shape == (256, OBS_DIM)
    assert w.params["mean.weight"].shape == (ACT_DIM, 128)
    torch_lin = nn.Linear(256, 128)
    # same std as torch's init: Var(U(-k, k)) = k^2 / 3
    ours = w.params["trunk.2.weight"].std()
    theirs = torch_lin.weight.detach().numpy().std()
    assert abs(ours - theirs) / theirs < 0.05
    assert np.array_equal(
        random_init(OBS_DIM, ACT_DIM, seed=3).params["mean.bias"],
        random_init(OBS_DIM, ACT_DIM, seed=3).params["mean.bias"],
    )
    assert not np.array_equal(
        random_init(OBS_DIM, ACT_DIM, seed=3).params["mean.bias"],
        random_init(OBS_DIM, ACT_DIM, seed=4).params["mean.bias"],
    )


def test_actions_are_squashed_and_stochastic_actions_vary() -> None:
    w = random_init(OBS_DIM, ACT_DIM, seed=1)
    policy = NumpyPolicy.from_weights(w)
    obs = np.random.default_rng(0).standard_normal((16, OBS_DIM)).astype(np.float32) * 100.0
    a1 = policy.act(obs, np.random.default_rng(1))
    a2 = policy.act(obs, np.random.default_rng(2))
    assert a1.dtype == np.float32 and a1.shape == (16, ACT_DIM)
    assert float(np.abs(a1).max()) <= 1.0
    assert not np.allclose(a1, a2)
    np.testing.assert_array_equal(a1, policy.act(obs, np.random.default_rng(1)))
    with pytest.raises(ValueError, match="rng"):
        policy.act(obs)
    with pytest.raises(ValueError, match="shape"):
        policy.act(obs[:, :5], deterministic=True)


def test_state_independent_log_std() -> None:
    w = random_init(4, 2, (8,), seed=0, log_std="param")
    params = dict(w.params)
    params["log_std"] = np.array([np.log(0.5), 5.0], np.float32)  # 5.0 is clipped to 2.0
    policy = NumpyPolicy(PolicyArch.from_json(w.arch), params)
    _, std = policy.mean_and_std(np.zeros((3, 4), np.float32))
    np.testing.assert_allclose(std, np.tile([0.5, math.exp(2.0)], (3, 1)), rtol=1e-6)


def test_weights_travel_the_bus_and_npz(tmp_path: Path) -> None:
    w = random_init(OBS_DIM, ACT_DIM, seed=5, policy_version=7)
    env = Envelope(schema_version=BUS_SCHEMA_VERSION, seq=0, t_src_ns=1, t_pub_ns=1, sender="t")
    decoded = decode([bytes(f) for f in encode(b"weights", env, w)])
    assert isinstance(decoded.msg, PolicyWeights)
    obs = np.random.default_rng(0).standard_normal((5, OBS_DIM)).astype(np.float32)
    ref = NumpyPolicy.from_weights(w).act(obs, deterministic=True)
    np.testing.assert_array_equal(NumpyPolicy.from_weights(decoded.msg).act(obs, deterministic=True), ref)
    path = save_npz(tmp_path / "p.npz", w)
    loaded = load_npz(path)
    assert loaded.policy_version == 7 and loaded.arch == w.arch
    np.testing.assert_array_equal(NumpyPolicy.from_weights(loaded).act(obs, deterministic=True), ref)
    assert load_npz(path, policy_version=9).policy_version == 9
    # No pickled object arrays: the file opens with allow_pickle=False and holds only numeric dtypes.
    with np.load(path, allow_pickle=False) as npz:
        assert all(npz[k].dtype != object for k in npz.files)


def test_bad_arch_and_params_are_refused(tmp_path: Path) -> None:
    w = random_init(4, 2, (8,), seed=0)
    with pytest.raises(ValueError, match="kind"):
        PolicyArch.from_json('{"kind": "cnn"}')
    with pytest.raises(ValueError, match="activation"):
        PolicyArch(4, 2, (8,), "gelu")
    params = dict(w.params)
    del params["mean.bias"]
    with pytest.raises(ValueError, match=r"missing \['mean.bias'\]"):
        NumpyPolicy(PolicyArch.from_json(w.arch), params)
    params = dict(w.params)
    params["trunk.0.weight"] = np.zeros((8, 5), np.float32)
    with pytest.raises(ValueError, match=r"trunk\.0\.weight"):
        NumpyPolicy(PolicyArch.from_json(w.arch), params)
    np.savez(tmp_path / "x.npz", a=np.zeros(3))
    with pytest.raises(ValueError, match="not a robot-rl policy"):
        load_npz(tmp_path / "x.npz")


def test_module_does_not_import_torch() -> None:
    import subprocess

    code = "import sys, robot_rl.nets.numpy_policy; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
