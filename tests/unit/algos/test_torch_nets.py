"""robot_rl.nets.torch_nets: the batched critic ensemble's hand-written backward against autograd,
the tanh-Gaussian actor's log-probabilities and head, its NumpyPolicy export, Polyak averaging.

(Here rather than under tests/unit/nets: these networks exist for the algorithms.)
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from robot_rl.nets.numpy_policy import NumpyPolicy
from robot_rl.nets.torch_nets import (
    CriticEnsemble,
    TanhGaussianActor,
    polyak_update_,
    squash_sample,
)

OBS, ACT = 5, 3


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _reference_q(
    critic: CriticEnsemble, obs: torch.Tensor, action: torch.Tensor, detach: bool
) -> torch.Tensor:
    """The ensemble as K plain autograd MLPs, member by member."""
    x = torch.cat((obs, action), dim=-1)
    out = []
    for k in range(critic.n_members):
        h = x
        for i, (w, b) in enumerate(zip(critic.weights, critic.biases, strict=True)):
            wk, bk = (w[k].detach(), b[k].detach()) if detach else (w[k], b[k])
            h = h @ wk + bk
            if i < len(critic.weights) - 1:
                h = torch.relu(h)
        out.append(h.squeeze(-1))
    return torch.stack(out)


def test_ensemble_forward_and_gradients_match_autograd() -> None:
    critic = CriticEnsemble(OBS, ACT, (16, 8), n_members=3, generator=_gen())
    obs, action = torch.randn(7, OBS), torch.randn(7, ACT)
    weights = torch.randn(3, 7)
    q = critic(obs, action)
    q_ref = _reference_q(critic, obs, action, detach=False)
    torch.testing.assert_close(q, q_ref, rtol=0.0, atol=1e-6)
    grads = torch.autograd.grad((q * weights).sum(), list(critic.parameters()))
    grads_ref = torch.autograd.grad((q_ref * weights).sum(), list(critic.parameters()))
    for g, g_ref in zip(grads, grads_ref, strict=True):
        torch.testing.assert_close(g, g_ref, rtol=1e-5, atol=1e-6)


def test_forward_split_frozen_rows_feed_only_their_input() -> None:
    critic = CriticEnsemble(OBS, ACT, (16, 16), n_members=2, generator=_gen())
    obs, action = torch.randn(6, OBS), torch.randn(6, ACT)
    obs_pi, action_pi = torch.randn(4, OBS), torch.randn(4, ACT, requires_grad=True)
    q, q_pi = critic.forward_split(obs, action, obs_pi, action_pi)
    q_ref = _reference_q(critic, obs, action, detach=False)
    q_pi_ref = _reference_q(critic, obs_pi, action_pi, detach=True)
    torch.testing.assert_close(q, q_ref, rtol=0.0, atol=1e-6)
    torch.testing.assert_close(q_pi, q_pi_ref, rtol=0.0, atol=1e-6)
    loss = q.square().sum() - 3.0 * q_pi.sum()
    loss_ref = q_ref.square().sum() - 3.0 * q_pi_ref.sum()
    inputs = [*critic.parameters(), action_pi]
    for g, g_ref in zip(
        torch.autograd.grad(loss, inputs), torch.autograd.grad(loss_ref, inputs), strict=True
    ):
        torch.testing.assert_close(g, g_ref, rtol=1e-5, atol=1e-6)
    # The frozen rows alone give the critics no gradient at all.
    _, q_pi_only = critic.forward_split(obs[:0], action[:0], obs_pi, action_pi)
    grads = torch.autograd.grad(q_pi_only.sum(), [*critic.parameters(), action_pi], allow_unused=True)
    assert all(g is None or not g.any() for g in grads[:-1])
    assert grads[-1] is not None and grads[-1].abs().sum() > 0


def test_ensemble_members_start_as_independent_linear_stacks() -> None:
    critic = CriticEnsemble(OBS, ACT, (16,), n_members=2, generator=_gen())
    w0 = critic.weights[0]
    assert not torch.equal(w0[0], w0[1])
    bound = 1.0 / math.sqrt(OBS + ACT)  # nn.Linear's U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    assert w0.abs().max() <= bound and critic.biases[0].abs().max() <= bound


def test_actor_head_initialisation() -> None:
    actor = TanhGaussianActor(OBS, ACT, (32, 32), _gen())
    assert actor.log_std_scale.item() == 1.0 and actor.log_std_offset.item() == -1.0
    assert not actor.head.bias.any()
    xavier_bound = 1e-2 * math.sqrt(6.0 / (32 + 2 * ACT))
    assert actor.head.weight.abs().max() <= xavier_bound
    _, log_std = actor(torch.randn(4, OBS))
    # raw ~ 0 at init: log_std ~ m * 0 + o = -1
    torch.testing.assert_close(log_std, torch.full_like(log_std, -1.0), rtol=0.0, atol=0.05)


def test_sampled_log_prob_matches_torch_distributions() -> None:
    mean = torch.tensor([[0.3, -1.0], [0.0, 2.0]])
    log_std = torch.tensor([[-0.5, 0.2], [-1.0, 0.0]])
    action, log_prob = squash_sample(mean, log_std, _gen(3))
    dist = torch.distributions.TransformedDistribution(
        torch.distributions.Normal(mean, log_std.exp()), [torch.distributions.TanhTransform()]
    )
    torch.testing.assert_close(log_prob, dist.log_prob(action).sum(-1), rtol=1e-4, atol=1e-4)
    assert action.abs().max() < 1.0


def test_actor_log_prob_of_its_own_sample_round_trips() -> None:
    actor = TanhGaussianActor(OBS, ACT, (32,), _gen())
    obs = torch.randn(16, OBS)
    with torch.no_grad():
        action, log_prob = actor.sample(obs, _gen(1))
        again = actor.log_prob(obs, action, eps=1e-6)
    torch.testing.assert_close(again, log_prob, rtol=1e-4, atol=1e-4)


def test_sample_with_n_samples_reuses_the_trunk() -> None:
    mean, log_std = torch.zeros(4, 2), torch.zeros(4, 2)
    action, log_prob = squash_sample(mean, log_std, _gen(), n_samples=5)
    assert action.shape == (5, 4, 2) and log_prob.shape == (5, 4)


def _randomise_(actor: TanhGaussianActor) -> None:
    with torch.no_grad():
        actor.head.weight.normal_(0.0, 0.3, generator=_gen(5))
        actor.head.bias.normal_(0.0, 0.3, generator=_gen(6))
        actor.log_std_scale.fill_(0.7)
        actor.log_std_offset.fill_(-0.4)


@pytest.mark.parametrize("hidden", [(64, 64), (32,)])
def test_policy_weights_match_numpy_policy(hidden: tuple[int, ...]) -> None:
    actor = TanhGaussianActor(OBS, ACT, hidden, _gen())
    _randomise_(actor)
    weights = actor.policy_weights()
    assert weights.policy_version == 0
    policy = NumpyPolicy.from_weights(weights)
    obs = np.random.default_rng(0).standard_normal((32, OBS)).astype(np.float32)
    with torch.no_grad():
        mean, log_std = actor(torch.from_numpy(obs))
    np_mean, np_std = policy.mean_and_std(obs)
    np.testing.assert_allclose(np_mean, mean.numpy(), atol=1e-5, rtol=0.0)
    np.testing.assert_allclose(np_std, log_std.exp().numpy(), atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(policy.act(obs, deterministic=True), torch.tanh(mean).numpy(), atol=1e-5)


def test_policy_weights_layer_names_are_numpy_policy_defaults() -> None:
    weights = TanhGaussianActor(OBS, ACT, (8, 8), _gen()).policy_weights()
    assert sorted(weights.params) == sorted(
        [f"{n}.{p}" for n in ("trunk.0", "trunk.2", "mean", "log_std") for p in ("weight", "bias")]
    )


def test_polyak_update_known_answer() -> None:
    target = [torch.zeros(2), torch.full((1,), 10.0)]
    online = [torch.ones(2), torch.zeros(1)]
    # (1 - 0.1) * target + 0.1 * online
    polyak_update_(target, online, 0.1)
    assert target[0].tolist() == pytest.approx([0.1, 0.1]) and target[1].tolist() == pytest.approx([9.0])


def test_ensemble_is_a_module_with_stacked_parameters() -> None:
    critic = CriticEnsemble(OBS, ACT, (16, 16), n_members=2, generator=_gen())
    shapes = [tuple(p.shape) for p in critic.parameters()]
    assert shapes == [(2, 8, 16), (2, 16, 16), (2, 16, 1), (2, 1, 16), (2, 1, 16), (2, 1, 1)]
    assert isinstance(critic, nn.Module)
