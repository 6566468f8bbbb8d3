"""Torch networks of the learners: tanh-Gaussian actor, batched critic ensemble, plain MLP.

Every constructor takes a ``torch.Generator`` for its initial weights, so an algorithm seeded with
``seed`` builds the same networks whatever the global torch RNG holds.

- :class:`TanhGaussianActor`: ``obs (B, D) -> (mean, log_std)``, each (B, A); the action is
  ``tanh(mean + exp(log_std) * eps)``. The head is H2O's (ALGORITHMS.md 1.4): one linear layer
  gives ``[mean, raw]`` and ``log_std = clamp(m * raw + o, -20, 2)`` with learned scalars ``m``
  (init 1.0) and ``o`` (init -1.0); the head layer starts Xavier-uniform with gain 1e-2 and zero
  bias, so the first policy is near ``tanh(0)`` with std ``e^-1``. :meth:`TanhGaussianActor.policy_weights`
  folds ``m`` and ``o`` into the ``log_std`` layer of :mod:`robot_rl.nets.numpy_policy`'s format.
- :class:`CriticEnsemble`: K MLPs ``[obs, action] -> Q`` whose weights are stacked (K, in, out), so
  all K run as one batched matrix product per layer (``torch.baddbmm``), not K modules in a loop.
- :class:`MLP`: a plain ReLU MLP (IQL's value net, H2O's classifiers).

Hidden layers use ``torch.nn.Linear``'s default scheme (weight and bias ~ U(-k, k), ``k =
1/sqrt(fan_in)``), drawn from the given generator.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from robot_rl.bus.messages import PolicyWeights
from robot_rl.nets.numpy_policy import NumpyPolicy, PolicyArch

LOG_STD_MIN = -20.0
LOG_STD_MAX = 2.0
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
_LOG_2 = math.log(2.0)


def init_linear_(weight: torch.Tensor, bias: torch.Tensor, fan_in: int, generator: torch.Generator) -> None:
    """``nn.Linear``'s default init, U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weight and bias, in place."""
    bound = 1.0 / math.sqrt(fan_in)
    with torch.no_grad():
        weight.uniform_(-bound, bound, generator=generator)
        bias.uniform_(-bound, bound, generator=generator)


def _linear(fan_in: int, fan_out: int, generator: torch.Generator) -> nn.Linear:
    layer = nn.Linear(fan_in, fan_out)
    init_linear_(layer.weight, layer.bias, fan_in, generator)
    return layer


class MLP(nn.Module):
    """ReLU MLP ``(B, in_dim) -> (B, out_dim)``; layers ``net.0``, ``net.2``, ... as in nn.Sequential."""

    def __init__(self, in_dim: int, out_dim: int, hidden: Sequence[int], generator: torch.Generator) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        fan_in = in_dim
        for width in hidden:
            layers += [_linear(fan_in, width, generator), nn.ReLU()]
            fan_in = width
        layers.append(_linear(fan_in, out_dim, generator))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.net(x)
        return out


class TanhGaussianActor(nn.Module):
    """The policy: trunk ``nn.Sequential(Linear, ReLU, ...)``, head ``Linear(h, 2A) -> [mean, raw]``,
    ``log_std = clamp(m * raw + o, -20, 2)`` (module docstring)."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: Sequence[int], generator: torch.Generator) -> None:
        super().__init__()
        self.obs_dim = obs_dim
        self.act_dim = act_dim
        self.hidden = tuple(int(h) for h in hidden)
        layers: list[nn.Module] = []
        fan_in = obs_dim
        for width in self.hidden:
            layers += [_linear(fan_in, width, generator), nn.ReLU()]
            fan_in = width
        self.trunk = nn.Sequential(*layers)
        self.head = nn.Linear(fan_in, 2 * act_dim)
        with torch.no_grad():
            nn.init.xavier_uniform_(self.head.weight, gain=1e-2, generator=generator)
            self.head.bias.zero_()
        self.log_std_scale = nn.Parameter(torch.tensor(1.0))
        """m in ``log_std = m * raw + o``."""
        self.log_std_offset = nn.Parameter(torch.tensor(-1.0))
        """o in ``log_std = m * raw + o``."""

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Pre-squash ``(mean, log_std)``, each (B, A), for ``obs`` (B, D)."""
        out = self.head(self.trunk(obs))
        mean, raw = out.split(self.act_dim, dim=-1)
        log_std = (raw * self.log_std_scale + self.log_std_offset).clamp(LOG_STD_MIN, LOG_STD_MAX)
        return mean, log_std

    def sample(
        self, obs: torch.Tensor, generator: torch.Generator, n_samples: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Reparameterised ``(action, log_prob)`` for ``obs`` (B, D): action (B, A) in (-1, 1),
        log_prob (B,). With ``n_samples`` N the trunk runs once and the shapes are (N, B, A), (N, B).
        """
        mean, log_std = self(obs)
        return squash_sample(mean, log_std, generator, n_samples)

    def log_prob(self, obs: torch.Tensor, action: torch.Tensor, eps: float) -> torch.Tensor:
        """log pi(action | obs), (B,), for given actions (B, A) in [-1, 1], clipped to +-(1 - eps)
        before ``atanh`` (a dataset action of exactly +-1 has no finite pre-squash value)."""
        mean, log_std = self(obs)
        clipped = action.clamp(-1.0 + eps, 1.0 - eps)
        pre = torch.atanh(clipped)
        z = (pre - mean) * torch.exp(-log_std)
        log_det = 2.0 * (_LOG_2 - pre - nn.functional.softplus(-2.0 * pre))
        per_dim = -0.5 * z.square() - log_std - _HALF_LOG_2PI - log_det
        log_prob: torch.Tensor = per_dim.sum(-1)
        return log_prob

    def policy_weights(self) -> PolicyWeights:
        """This actor in :mod:`robot_rl.nets.numpy_policy`'s ``tanh_gaussian_mlp`` format
        (normaliser mean 0, std 1; ``m`` and ``o`` folded into the ``log_std`` layer)."""
        arch = PolicyArch(
            obs_dim=self.obs_dim,
            act_dim=self.act_dim,
            hidden=self.hidden,
            activation="relu",
            log_std="layer",
            log_std_bounds=(LOG_STD_MIN, LOG_STD_MAX),
        )
        a = self.act_dim
        with torch.no_grad():
            params: dict[str, np.ndarray] = {}
            for i, name in enumerate(arch.layer_names):
                layer = self.trunk[2 * i]
                assert isinstance(layer, nn.Linear)
                params[f"{name}.weight"] = layer.weight.numpy().copy()
                params[f"{name}.bias"] = layer.bias.numpy().copy()
            w, b = self.head.weight, self.head.bias
            m, o = self.log_std_scale, self.log_std_offset
            params[f"{arch.mean_name}.weight"] = w[:a].numpy().copy()
            params[f"{arch.mean_name}.bias"] = b[:a].numpy().copy()
            params[f"{arch.log_std_name}.weight"] = (m * w[a:]).numpy()
            params[f"{arch.log_std_name}.bias"] = (m * b[a:] + o).numpy()
        return NumpyPolicy(arch, params).to_weights(policy_version=0)


def squash_sample(
    mean: torch.Tensor, log_std: torch.Tensor, generator: torch.Generator, n_samples: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``a = tanh(mean + exp(log_std) * eps)``, eps ~ N(0, I) from ``generator``, and log pi(a).

    log pi(a) = sum_i [log N(u_i; mean_i, std_i) - log(1 - tanh(u_i)^2)], with
    ``log N = -eps^2/2 - log_std - log(2 pi)/2`` (as (u - mean)/std = eps) and the stable
    ``log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u))``.
    """
    shape = mean.shape if n_samples is None else (n_samples, *mean.shape)
    eps = torch.randn(shape, generator=generator, dtype=mean.dtype)
    pre = mean + log_std.exp() * eps
    action = torch.tanh(pre)
    per_dim = 0.5 * eps.square() + log_std + 2.0 * (_LOG_2 - pre - nn.functional.softplus(-2.0 * pre))
    log_prob = -per_dim.sum(-1) - mean.shape[-1] * _HALF_LOG_2PI
    return action, log_prob


class CriticEnsemble(nn.Module):
    """K Q-functions ``Q_k(obs, action)`` evaluated together: ``(B, D), (B, A) -> (K, B)``.

    Layer ``l`` holds ``weights[l]`` (K, fan_in, fan_out) and ``biases[l]`` (K, 1, fan_out); a
    forward pass is one ``baddbmm`` per layer over all members (the first layer broadcasts the
    shared input over K without copying it). Forward and backward are written out in
    :class:`_EnsembleMLP` (in-place ReLU and ReLU-gradient, no weight-gradient work for rows that
    only need an input gradient).
    """

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        hidden: Sequence[int],
        n_members: int,
        generator: torch.Generator,
    ) -> None:
        super().__init__()
        self.n_members = n_members
        sizes = [obs_dim + act_dim, *hidden, 1]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for fan_in, fan_out in itertools.pairwise(sizes):
            w = torch.empty(n_members, fan_in, fan_out)
            b = torch.empty(n_members, 1, fan_out)
            for k in range(n_members):
                # Member by member, each as one nn.Linear(fan_in, fan_out) would draw it.
                wk = torch.empty(fan_out, fan_in)
                init_linear_(wk, b[k, 0], fan_in, generator)
                w[k] = wk.T
            self.weights.append(nn.Parameter(w))
            self.biases.append(nn.Parameter(b))

    def _params(self) -> list[torch.Tensor]:
        out: list[torch.Tensor] = []
        for w, b in zip(self.weights, self.biases, strict=True):
            out += [w, b]
        return out

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """Q-values (K, B); gradients reach the parameters (not ``obs``/``action``)."""
        x = torch.cat((obs, action), dim=-1)
        if not torch.is_grad_enabled():
            return _ensemble_forward(x, self._params())[0]
        q = _ensemble_apply(x, x.shape[0], *self._params())
        return q

    def forward_split(
        self, obs: torch.Tensor, action: torch.Tensor, obs_frozen: torch.Tensor, action_frozen: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(Q(obs, action), Q(obs_frozen, action_frozen))``, (K, B1) and (K, B2), in one pass.

        The first rows train the critics (gradient to the parameters only); the frozen rows pass
        gradient to ``obs_frozen``/``action_frozen`` only, as if the parameters were detached (the
        actor's loss) - without the weight-gradient products for them and without copying weights.
        """
        n = obs.shape[0]
        x = torch.cat((torch.cat((obs, action), dim=-1), torch.cat((obs_frozen, action_frozen), dim=-1)))
        q = _ensemble_apply(x, n, *self._params())
        return q[:, :n], q[:, n:]


def _ensemble_forward(
    x: torch.Tensor, params: Sequence[torch.Tensor]
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """``(q (K, B), hidden outputs [(K, B, H_l)])`` for x (B, in) and params ``[W_0, b_0, W_1, ...]``."""
    ws, bs = params[0::2], params[1::2]
    h = x.unsqueeze(0).expand(ws[0].shape[0], *x.shape)
    hidden: list[torch.Tensor] = []
    last = len(ws) - 1
    for i, (w, b) in enumerate(zip(ws, bs, strict=True)):
        h = torch.baddbmm(b, h, w)
        if i < last:
            h.relu_()
            hidden.append(h)
    return h.squeeze(-1), hidden


class _EnsembleMLP(torch.autograd.Function):
    """Stacked-ensemble MLP ``x (B, in) -> q (K, B)`` whose rows ``[0, n_train)`` train the
    parameters and rows ``[n_train, B)`` send gradient only to their input ``x``."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, n_train: int, *params: torch.Tensor) -> torch.Tensor:
        q, hidden = _ensemble_forward(x, params)
        ctx.n_train = n_train
        ctx.n_hidden = len(hidden)
        ctx.save_for_backward(x, *hidden, *params[0::2])
        return q

    @staticmethod
    def backward(ctx: Any, dq: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        saved = ctx.saved_tensors
        x, hidden, ws = saved[0], saved[1 : 1 + ctx.n_hidden], saved[1 + ctx.n_hidden :]
        n = ctx.n_train
        n_layers = len(ws)
        grads: list[torch.Tensor | None] = [None] * (2 * n_layers)
        want = ctx.needs_input_grad[2:]
        g = dq.unsqueeze(-1)
        for i in range(n_layers - 1, -1, -1):
            if n > 0 and want[2 * i]:
                g_train = g[:, :n]
                # Layer 0's input is shared by the members: broadcast it (a view), not matmul's copy.
                layer_in = hidden[i - 1][:, :n] if i > 0 else x[:n].unsqueeze(0).expand(g.shape[0], -1, -1)
                grads[2 * i] = torch.bmm(layer_in.transpose(1, 2), g_train)
                grads[2 * i + 1] = g_train.sum(dim=1, keepdim=True)
            if i > 0:
                # A one-unit output layer's input gradient is an outer product: a broadcast multiply,
                # several times faster than a rank-1 bmm.
                w_t = ws[i].transpose(1, 2)
                g = g * w_t if g.shape[-1] == 1 else torch.bmm(g, w_t)
                torch.ops.aten.threshold_backward.grad_input(g, hidden[i - 1], 0.0, grad_input=g)
        dx: torch.Tensor | None = None
        if ctx.needs_input_grad[0] and n < x.shape[0]:
            dx = torch.zeros_like(x)
            dx[n:] = torch.bmm(g[:, n:], ws[0].transpose(1, 2)).sum(dim=0)
        return (dx, None, *grads)


_ensemble_apply: Callable[..., torch.Tensor] = _EnsembleMLP.apply


def polyak_update_(target: Sequence[torch.Tensor], online: Sequence[torch.Tensor], tau: float) -> None:
    """``target <- (1 - tau) * target + tau * online`` for every pair, in place, in one foreach op."""
    with torch.no_grad():
        torch._foreach_lerp_(list(target), list(online), tau)
