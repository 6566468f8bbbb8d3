"""A tiny, real torch actor-critic that follows the ``robot_rl.algos.base.Algo`` contract, for runner tests.

It is not a faithful algorithm (fixed temperature, one critic): the runner tests need something
that learns, is seeded, round-trips its state and publishes NumpyPolicy weights, fast. ``tiny_factory``
has the ``AlgoFactory`` signature; the name picks the batches (as the real algorithms would):
h2o / naive-mix sample REAL and SIM, sac SIM only, cql / iql REAL only.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from robot_rl.algos.base import BatchSpec, TorchBatch, to_torch
from robot_rl.bus.messages import PolicyWeights
from robot_rl.nets.numpy_policy import NumpyPolicy, PolicyArch
from robot_rl.schema import Source, TransitionBatch

SPECS: dict[str, dict[str, BatchSpec]] = {
    "h2o": {"real": BatchSpec(Source.REAL, 16), "sim": BatchSpec(Source.SIM, 16)},
    "naive-mix": {"real": BatchSpec(Source.REAL, 16), "sim": BatchSpec(Source.SIM, 16)},
    "sac": {"sim": BatchSpec(Source.SIM, 32)},
    "cql": {"real": BatchSpec(Source.REAL, 32)},
    "iql": {"real": BatchSpec(Source.REAL, 32)},
}


class TinyActorCritic:
    """SAC-shaped: tanh-Gaussian actor (NumpyPolicy names), one Q network and its Polyak target."""

    def __init__(self, name: str, obs_dim: int, act_dim: int, seed: int, hidden: tuple[int, ...]) -> None:
        self.name = name
        self.batch_spec = SPECS[name]
        torch.manual_seed(seed)
        self.arch = PolicyArch(obs_dim, act_dim, hidden)
        layers: list[nn.Module] = []
        fan_in = obs_dim
        for width in hidden:
            layers += [nn.Linear(fan_in, width), nn.ReLU()]
            fan_in = width
        self.actor = nn.ModuleDict(
            {
                "trunk": nn.Sequential(*layers),
                "mean": nn.Linear(fan_in, act_dim),
                "log_std": nn.Linear(fan_in, act_dim),
            }
        )
        self.q = nn.Sequential(nn.Linear(obs_dim + act_dim, 32), nn.ReLU(), nn.Linear(32, 1))
        self.q_target = nn.Sequential(nn.Linear(obs_dim + act_dim, 32), nn.ReLU(), nn.Linear(32, 1))
        self.q_target.load_state_dict(self.q.state_dict())
        self.pi_opt = torch.optim.Adam(self.actor.parameters(), lr=1e-3)
        self.q_opt = torch.optim.Adam(self.q.parameters(), lr=1e-3)
        self.gen = torch.Generator().manual_seed(seed)
        self.updates = 0

    def _dist(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.actor["trunk"](obs)
        return self.actor["mean"](h), self.actor["log_std"](h).clamp(-20.0, 2.0).exp()

    def _sample(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, std = self._dist(obs)
        eps = torch.randn(mean.shape, generator=self.gen)
        pre = mean + std * eps
        a = torch.tanh(pre)
        log_pi = (-0.5 * eps**2 - std.log() - 0.5 * np.log(2 * np.pi)).sum(-1) - torch.log(
            1 - a**2 + 1e-6
        ).sum(-1)
        return a, log_pi

    def update(self, batches: Mapping[str, TorchBatch]) -> dict[str, float]:
        b = list(batches.values())
        obs = torch.cat([x.obs for x in b])
        act = torch.cat([x.action for x in b])
        rew = torch.cat([x.reward for x in b])
        nxt = torch.cat([x.next_obs for x in b])
        term = torch.cat([x.terminated for x in b])
        with torch.no_grad():
            a2, logp2 = self._sample(nxt)
            y = rew + 0.99 * (1 - term) * (self.q_target(torch.cat([nxt, a2], -1)).squeeze(-1) - 0.1 * logp2)
        q = self.q(torch.cat([obs, act], -1)).squeeze(-1)
        loss_q = ((q - y) ** 2).mean()
        self.q_opt.zero_grad()
        loss_q.backward()
        self.q_opt.step()
        a, logp = self._sample(obs)
        loss_pi = (0.1 * logp - self.q(torch.cat([obs, a], -1)).squeeze(-1)).mean()
        self.pi_opt.zero_grad()
        loss_pi.backward()
        self.pi_opt.step()
        with torch.no_grad():
            for p, tp in zip(self.q.parameters(), self.q_target.parameters(), strict=True):
                tp.mul_(0.99).add_(0.01 * p)
        self.updates += 1
        return {"loss/critic": loss_q.item(), "loss/actor": loss_pi.item(), "q/mean": q.mean().item()}

    def act(self, obs: np.ndarray, deterministic: bool = False) -> np.ndarray:
        with torch.no_grad():
            o = torch.as_tensor(obs, dtype=torch.float32)
            if deterministic:
                return torch.tanh(self._dist(o)[0]).numpy()
            return self._sample(o)[0].numpy()

    def policy_weights(self) -> PolicyWeights:
        params = {k: v.detach().numpy().copy() for k, v in self.actor.state_dict().items()}
        policy = NumpyPolicy(self.arch, params)
        return policy.to_weights(0)

    def state_dict(self) -> dict[str, Any]:
        return {
            "actor": self.actor.state_dict(),
            "q": self.q.state_dict(),
            "q_target": self.q_target.state_dict(),
            "pi_opt": self.pi_opt.state_dict(),
            "q_opt": self.q_opt.state_dict(),
            "gen": self.gen.get_state(),
            "updates": self.updates,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.actor.load_state_dict(state["actor"])
        self.q.load_state_dict(state["q"])
        self.q_target.load_state_dict(state["q_target"])
        self.pi_opt.load_state_dict(state["pi_opt"])
        self.q_opt.load_state_dict(state["q_opt"])
        self.gen.set_state(state["gen"])
        self.updates = int(state["updates"])


def tiny_factory(
    name: str,
    *,
    obs_dim: int,
    act_dim: int,
    seed: int,
    real_obs_std: np.ndarray | None = None,
    hidden: tuple[int, ...] = (256, 256),
    init_log_alpha: float | None = None,
) -> TinyActorCritic:
    if name not in SPECS:
        raise ValueError(f"unknown algorithm {name!r}; known: {sorted(SPECS)}")
    if name in ("h2o", "naive-mix") and real_obs_std is None:
        raise ValueError("h2o needs real_obs_std")
    return TinyActorCritic(name, obs_dim, act_dim, seed, hidden)


# --- the tiny algorithm's own contract checks (the runner tests rely on them) ------------------------


def _batch(rng: np.random.Generator, n: int, obs_dim: int = 5, act_dim: int = 2) -> TorchBatch:
    return to_torch(
        TransitionBatch(
            obs=rng.standard_normal((n, obs_dim)).astype(np.float32),
            action=rng.uniform(-1, 1, (n, act_dim)).astype(np.float32),
            reward=rng.standard_normal(n),
            next_obs=rng.standard_normal((n, obs_dim)).astype(np.float32),
            terminated=np.zeros(n, bool),
            truncated=np.zeros(n, bool),
        )
    )


def test_tiny_algo_weights_match_numpy_policy() -> None:
    algo = tiny_factory("sac", obs_dim=5, act_dim=2, seed=0, hidden=(8, 8))
    rng = np.random.default_rng(0)
    for _ in range(3):
        algo.update({"sim": _batch(rng, 32)})
    obs = rng.standard_normal((4, 5)).astype(np.float32)
    numpy_actions = NumpyPolicy.from_weights(algo.policy_weights()).act(obs, deterministic=True)
    np.testing.assert_allclose(numpy_actions, algo.act(obs, deterministic=True), atol=1e-5)


def test_tiny_algo_state_round_trip_continues_identically() -> None:
    rng = np.random.default_rng(1)
    batches = [{"sim": _batch(rng, 32)} for _ in range(6)]
    a = tiny_factory("sac", obs_dim=5, act_dim=2, seed=3, hidden=(8,))
    for b in batches[:3]:
        a.update(b)
    b_algo = tiny_factory("sac", obs_dim=5, act_dim=2, seed=99, hidden=(8,))
    # A deep copy: optimizer.load_state_dict keeps the given state tensors (a checkpoint goes through disk).
    b_algo.load_state_dict(copy.deepcopy(a.state_dict()))
    for b in batches[3:]:
        assert a.update(b) == b_algo.update(b)
    for (k, v), (_, w) in zip(a.actor.state_dict().items(), b_algo.actor.state_dict().items(), strict=True):
        assert torch.equal(v, w), k
