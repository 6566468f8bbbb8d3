"""D2RL-style dense learning of a state-dependent ε(s) (ALGORITHMS.md 5.6).

1. Behaviour data: NADE tests with ε = 0.99 and per-step logs (robot_rl.cav.estimators.StepLog): observation,
   critical flag, p(a), the mixture component the POV action came from, the step ratio and the test weight.
2. Densify (MDP editing, :func:`densify`): keep crash tests with final weight < 0.1; delete the steps whose
   ratio lies in (0.9, 1.001) (non-critical steps have ratio 1); chain the rest into a short episode; only
   episodes with at most one adversarial step get the reward below, the others are dropped [choice: the
   specification rewards those episodes only and says nothing of the rest]. Training episodes are drawn
   from this pool with probability proportional to their weight (crash paths then appear as often as
   under p).
3. Agent: observation DENSE_OBS_NAMES (10 values, scaled to about [-1, 1], clipped at +-5); its log10-weight
   entry is recomputed in training from the agent's own ε choices. Action: ε in [0.001, 0.999], ε = 0.001 +
   0.998 sigmoid(u) with u ~ N(μ_φ(o), σ) in training and u = μ_φ(o) when deployed.
4. Reward (terminal, :func:`d2rl_reward`): r = max(100 - 5e4 w̃, -100), w̃ = Π ρ̃_t over the episode's steps with
   ρ̃_t = 1/ε_t for a naturalistic-component action and p(a_t|s_t)/(1 - ε_t) for an adversarial one (the
   ratio if the normalised criticality were concentrated on that action).
5. PPO, γ = 1 (Monte-Carlo returns; the reward arrives at the last step), hand-written in numpy: 2-layer tanh
   MLPs of 32 units for μ_φ and the value, a state-independent log σ, clip 0.2, Adam. Deployment
   (robot_rl.cav.estimators.Importance.epsilon_fn) uses the exact p/q weights.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from robot_rl.cav.estimators import DENSE_OBS_NAMES, BatchResult
from robot_rl.cav.types import BoolArray, FloatArray

EPS_MIN, EPS_MAX = 0.001, 0.999
KEEP_WEIGHT_BELOW = 0.1
DROP_RATIO = (0.9, 1.001)
_W_COL = DENSE_OBS_NAMES.index("log10_weight")


def d2rl_reward(w_tilde: FloatArray | float) -> FloatArray:
    """r = max(100 - 5e4 w̃, -100): w̃ = 0 -> 100, 2e-3 -> 0, >= 4e-3 -> -100."""
    out: FloatArray = np.maximum(100.0 - 5e4 * np.asarray(w_tilde, np.float64), -100.0)
    return out


def epsilon_of(u: FloatArray) -> FloatArray:
    """ε = 0.001 + 0.998 sigmoid(u)."""
    out: FloatArray = EPS_MIN + (EPS_MAX - EPS_MIN) / (1.0 + np.exp(-np.asarray(u, np.float64)))
    return out


def approx_ratio(eps: FloatArray, p_a: FloatArray, adversarial: BoolArray) -> FloatArray:
    """ρ̃ (module docstring, step 4)."""
    out: FloatArray = np.where(adversarial, p_a / (1.0 - eps), 1.0 / eps)
    return out


@dataclass
class Episodes:
    """Densified crash episodes padded to the longest: arrays (E, L) / (E, L, 10), ``mask`` the real steps."""

    obs: FloatArray
    p_a: FloatArray
    adversarial: BoolArray
    mask: BoolArray
    weight: FloatArray
    """(E,) the behaviour test's exact weight (sampling probability of the episode)."""

    @property
    def n(self) -> int:
        return int(self.obs.shape[0])


def keep_steps(ratio: FloatArray, critical: BoolArray) -> BoolArray:
    """Steps kept by the densification: critical and ratio outside (0.9, 1.001)."""
    lo, hi = DROP_RATIO
    out: BoolArray = critical & ~((ratio > lo) & (ratio < hi))
    return out


def densify(batches: list[BatchResult]) -> Episodes:
    """The training pool of step 2 (module docstring) from behaviour batches with step logs."""
    rows: list[tuple[list[FloatArray], list[float], list[bool], float]] = []
    for b in batches:
        if not b.steps:
            raise ValueError("densify: the behaviour batches have no step logs (run_batch(log_steps=True))")
        for j in np.flatnonzero(b.crashed & (b.weight < KEEP_WEIGHT_BELOW)):
            obs, p_a, adv = [], [], []
            for s in b.steps:
                if s.alive[j] and keep_steps(s.ratio[j : j + 1], s.critical[j : j + 1])[0]:
                    obs.append(s.obs[j])
                    p_a.append(float(s.p_a[j]))
                    adv.append(bool(s.adversarial[j]))
            if obs and sum(adv) <= 1:
                rows.append((obs, p_a, adv, float(b.weight[j])))
    if not rows:
        raise ValueError(
            "densify: no crash episode with weight < 0.1 and at most one adversarial step; "
            "run more behaviour tests"
        )
    n_steps = max(len(r[0]) for r in rows)
    E = len(rows)
    ep = Episodes(
        np.zeros((E, n_steps, len(DENSE_OBS_NAMES))),
        np.ones((E, n_steps)),
        np.zeros((E, n_steps), bool),
        np.zeros((E, n_steps), bool),
        np.array([r[3] for r in rows]),
    )
    for i, (obs, p_a, adv, _) in enumerate(rows):
        k = len(obs)
        ep.obs[i, :k] = np.stack(obs)
        ep.p_a[i, :k] = p_a
        ep.adversarial[i, :k] = adv
        ep.mask[i, :k] = True
    return ep


class Mlp:
    """tanh MLP with a linear output; ``forward`` keeps what ``backward`` needs."""

    def __init__(self, sizes: list[int], rng: np.random.Generator, out_scale: float = 1.0) -> None:
        self.params: list[FloatArray] = []
        for i, (a, b) in enumerate(itertools.pairwise(sizes)):
            scale = (out_scale if i == len(sizes) - 2 else 1.0) / np.sqrt(a)
            self.params += [rng.normal(0.0, scale, (a, b)), np.zeros(b)]
        self._acts: list[FloatArray] = []

    def forward(self, x: FloatArray) -> FloatArray:
        self._acts = [x]
        n_layers = len(self.params) // 2
        for i in range(n_layers):
            x = x @ self.params[2 * i] + self.params[2 * i + 1]
            if i < n_layers - 1:
                x = np.tanh(x)
            self._acts.append(x)
        return x

    def backward(self, grad_out: FloatArray) -> list[FloatArray]:
        """Gradients of the parameters for dL/d(output) ``grad_out`` of the last forward."""
        grads: list[FloatArray] = [np.zeros(0)] * len(self.params)
        g = grad_out
        n_layers = len(self.params) // 2
        for i in reversed(range(n_layers)):
            if i < n_layers - 1:
                g = g * (1.0 - self._acts[i + 1] ** 2)
            grads[2 * i] = self._acts[i].T @ g
            grads[2 * i + 1] = g.sum(0)
            g = g @ self.params[2 * i].T
        return grads


class Adam:
    def __init__(self, params: list[FloatArray], lr: float) -> None:
        self.params, self.lr, self.t = params, lr, 0
        self.m = [np.zeros_like(p) for p in params]
        self.v = [np.zeros_like(p) for p in params]

    def step(self, grads: list[FloatArray], b1: float = 0.9, b2: float = 0.999) -> None:
        self.t += 1
        for p, g, m, v in zip(self.params, grads, self.m, self.v, strict=True):
            m *= b1
            m += (1 - b1) * g
            v *= b2
            v += (1 - b2) * g * g
            p -= self.lr * (m / (1 - b1**self.t)) / (np.sqrt(v / (1 - b2**self.t)) + 1e-8)


@dataclass(frozen=True)
class PpoConfig:
    iterations: int = 150
    episodes_per_iteration: int = 512
    epochs: int = 8
    minibatch: int = 256
    clip: float = 0.2
    lr: float = 3e-4
    hidden: int = 32
    init_log_std: float = 0.0
    init_epsilon: float = 0.5
    """ε of the initial mean action (u = logit)."""
    entropy_coef: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("iterations", "episodes_per_iteration", "epochs", "minibatch", "hidden"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: expected >= 1, got {getattr(self, name)}")
        if not EPS_MIN < self.init_epsilon < EPS_MAX:
            raise ValueError(f"init_epsilon: expected in ({EPS_MIN}, {EPS_MAX}), got {self.init_epsilon}")


@dataclass
class EpsilonPolicy:
    """ε_φ(o) = 0.001 + 0.998 sigmoid(μ_φ(o)) (deterministic; module docstring step 3)."""

    params: list[FloatArray]
    meta: dict[str, Any] = field(default_factory=dict)

    def __call__(self, obs: FloatArray) -> FloatArray:
        x = np.asarray(obs, np.float64)
        n_layers = len(self.params) // 2
        for i in range(n_layers):
            x = x @ self.params[2 * i] + self.params[2 * i + 1]
            if i < n_layers - 1:
                x = np.tanh(x)
        return epsilon_of(x[:, 0])

    def save(self, path: str | Path) -> None:
        arrays = {f"p{i}": p for i, p in enumerate(self.params)}
        meta = {"obs_names": list(DENSE_OBS_NAMES), **self.meta}
        np.savez(Path(path), meta=np.array(json.dumps(meta)), **arrays)  # type: ignore[arg-type]

    @classmethod
    def load(cls, path: str | Path) -> EpsilonPolicy:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"--epsilon-policy {path}: no such file")
        try:
            with np.load(path, allow_pickle=False) as f:
                meta = json.loads(str(f["meta"]))
                params = [f[f"p{i}"] for i in range(sum(1 for k in f.files if k.startswith("p")))]
        except (OSError, ValueError, KeyError) as err:
            raise ValueError(
                f"--epsilon-policy {path}: not an ε policy file written by robot-rl: {err}"
            ) from None
        if meta.get("obs_names") != list(DENSE_OBS_NAMES):
            raise ValueError(
                f"--epsilon-policy {path}: observation names {meta.get('obs_names')} are not this version's"
            )
        return cls(params, meta)


def _rollout(
    ep: Episodes, idx: np.ndarray, mean_net: Mlp, log_std: float, rng: np.random.Generator
) -> tuple[FloatArray, FloatArray, FloatArray, BoolArray, FloatArray]:
    """Play the episodes ``idx``: (obs (M, L, 10) with the agent's weight entry, u (M, L), log π (M, L),
    mask (M, L), return (M,))."""
    obs = ep.obs[idx].copy()
    p_a, adv, mask = ep.p_a[idx], ep.adversarial[idx], ep.mask[idx]
    m, n_steps = mask.shape
    u = np.zeros((m, n_steps))
    logp = np.zeros((m, n_steps))
    log_w = np.zeros(m)
    sd = float(np.exp(log_std))
    for t in range(n_steps):
        obs[:, t, _W_COL] = np.clip((log_w + 4.0) / 4.0, -5.0, 5.0)
        mu = mean_net.forward(obs[:, t])[:, 0]
        u[:, t] = mu + sd * rng.normal(size=m)
        logp[:, t] = -0.5 * ((u[:, t] - mu) / sd) ** 2 - log_std
        eps = epsilon_of(u[:, t])
        log_w += np.where(mask[:, t], np.log10(approx_ratio(eps, p_a[:, t], adv[:, t])), 0.0)
    ret = d2rl_reward(10.0**log_w)
    return obs, u, logp, mask, ret


def train_epsilon(ep: Episodes, cfg: PpoConfig = PpoConfig()) -> tuple[EpsilonPolicy, list[dict[str, float]]]:
    """PPO on the densified pool (module docstring): the deployable policy and per-iteration metrics."""
    rng = np.random.default_rng(cfg.seed)
    d = len(DENSE_OBS_NAMES)
    pi = Mlp([d, cfg.hidden, cfg.hidden, 1], rng, out_scale=0.01)
    pi.params[-1][:] = np.log(
        (cfg.init_epsilon - EPS_MIN) / (EPS_MAX - cfg.init_epsilon)
    )  # sigmoid(u) = (ε - min)/(max - min)
    vf = Mlp([d, cfg.hidden, cfg.hidden, 1], rng)
    log_std = np.array([cfg.init_log_std])
    opt_pi = Adam([*pi.params, log_std], cfg.lr)
    opt_vf = Adam(vf.params, cfg.lr)
    prob = ep.weight / ep.weight.sum()
    history: list[dict[str, float]] = []
    for it in range(cfg.iterations):
        idx = rng.choice(ep.n, size=cfg.episodes_per_iteration, p=prob)
        obs, u, logp_old, mask, ret = _rollout(ep, idx, pi, float(log_std[0]), rng)
        flat = mask.reshape(-1)
        o = obs.reshape(-1, d)[flat]
        a = u.reshape(-1)[flat]
        lp_old = logp_old.reshape(-1)[flat]
        g = np.broadcast_to(ret[:, None] / 100.0, mask.shape).reshape(-1)[flat]  # γ = 1: every step sees R
        adv = g - vf.forward(o)[:, 0]
        adv = (adv - adv.mean()) / (adv.std() + 1e-8)
        n = len(o)
        for _ in range(cfg.epochs):
            perm = rng.permutation(n)
            for start in range(0, n, cfg.minibatch):
                mb = perm[start : start + cfg.minibatch]
                sd = float(np.exp(log_std[0]))
                mu = pi.forward(o[mb])[:, 0]
                z = (a[mb] - mu) / sd
                lp = -0.5 * z * z - log_std[0]
                ratio = np.exp(lp - lp_old[mb])
                A = adv[mb]
                active = np.where(A >= 0.0, ratio < 1.0 + cfg.clip, ratio > 1.0 - cfg.clip)
                dl_dlp = -np.where(active, A * ratio, 0.0) / len(mb)  # d(-min(rA, clip(r)A))/d log π
                g_mu = dl_dlp * z / sd
                g_logstd = np.sum(dl_dlp * (z * z - 1.0)) - cfg.entropy_coef
                grads = pi.backward(g_mu[:, None])
                opt_pi.step([*grads, np.array([g_logstd])])
                np.clip(log_std, -3.0, 1.0, out=log_std)
                v = vf.forward(o[mb])[:, 0]
                opt_vf.step(vf.backward(((v - g[mb]) * (2.0 / len(mb)))[:, None]))
        history.append(
            {
                "iteration": float(it),
                "reward/mean": float(ret.mean()),
                "policy/std": float(np.exp(log_std[0])),
                "policy/epsilon_mean": float(epsilon_of(pi.forward(o)[:, 0]).mean()),
            }
        )
    meta = {"ppo": asdict(cfg), "episodes": ep.n, "final_reward": history[-1]["reward/mean"]}
    return EpsilonPolicy([p.copy() for p in pi.params], meta), history
