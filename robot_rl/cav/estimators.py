"""Test batches under NDE and NADE sampling (ALGORITHMS.md 5.3-5.4), with per-step logs for AdaTE and D2RL.

NDE: every background vehicle draws its action from the naturalistic p at every decision; X_j = 1[crash_j].

NADE, at every decision of a running test:

1. a_nom and p(a|s) of every background vehicle; challenges C_k of the surrogate models
   (robot_rl.cav.surrogate), C_θ = Σ_k θ_k C_k, criticalities c_v = Σ_a p_v C_θ; POV = argmax_v c_v;
   critical iff c_POV > 0.
2. On a critical step the POV draws from the defensive mixture
       q(a|s) = (1 - ε) p(a|s) C_θ(s, a) / c_POV(s) + ε p(a|s)
   (first the component: naturalistic with probability ε, else the adversarial p C_θ / c; the component is
   logged for D2RL, the ratio always uses the exact mixture q); the other vehicles draw from p.
3. ρ_t = p(a_t|s_t) / q(a_t|s_t) on critical steps, 1 otherwise; w_j = Π_t ρ_t; X_j = w_j 1[crash_j].

Unbiased for every ε in (0, 1] and every θ, ε(s) fixed before the test (ε = 1 is NDE with weights 1).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from robot_rl.cav.drivers import IdmCav
from robot_rl.cav.naturalistic import ACTIONS_MPS2, N_ACTIONS, sample_categorical
from robot_rl.cav.scenario import (
    CAV,
    CavModel,
    ScenarioConfig,
    TrafficState,
    advance,
    nominal_accel,
    sample_initial,
)
from robot_rl.cav.surrogate import challenge, criticality
from robot_rl.cav.types import BoolArray, FloatArray, IntArray

EpsilonFn = Callable[[FloatArray], FloatArray]
"""A state-dependent ε: D2RL observations (M, 10) -> ε (M,) in [0.001, 0.999] (robot_rl.cav.dense)."""

DENSE_OBS_NAMES: tuple[str, ...] = (
    "cav_x",
    "cav_y",
    "cav_speed",
    "log10_weight",
    "critical",
    "log10_sum_criticality",
    "pov_dx",
    "pov_dy",
    "pov_dv",
    "pov_dx_plus_dv",
)
"""ALGORITHMS.md 5.6 step 3: the ε agent's observation, each scaled to about [-1, 1] and clipped at +-5."""
_OBS_CENTRE = np.array([200.0, 0.5, 25.0, -4.0, 0.5, -4.0, 0.0, 0.0, 0.0, 0.0])
_OBS_HALF_RANGE = np.array([200.0, 0.5, 10.0, 4.0, 0.5, 4.0, 60.0, 1.0, 10.0, 60.0])


@dataclass(frozen=True)
class Importance:
    """NADE's proposal settings."""

    surrogates: tuple[IdmCav, ...]
    theta: tuple[float, ...] | None = None
    """Non-negative weights of the surrogates' challenges; None: uniform 1/K."""
    epsilon: float = 0.1
    """Weight of the naturalistic pdf in the defensive mixture, 0 < ε <= 1 (ignored where ``epsilon_fn``)."""
    candidate_range_m: float = 120.0
    epsilon_fn: EpsilonFn | None = None
    """State-dependent ε(s) on critical steps (D2RL); None: the constant ``epsilon``."""
    lookahead_decisions: int = 1
    """Decisions the surrogate challenge looks ahead (1: within H, ALGORITHMS.md 5.4; see surrogate.py)."""

    def __post_init__(self) -> None:
        if not self.surrogates:
            raise ValueError("surrogates: at least one surrogate model is needed")
        if not 0.0 < self.epsilon <= 1.0:
            raise ValueError(
                f"epsilon: expected 0 < epsilon <= 1, got {self.epsilon} (epsilon = 0 drops the defensive "
                "mixture and biases the estimate; a negative epsilon is not a probability)"
            )
        if self.theta is not None:
            th = np.asarray(self.theta, np.float64)
            if th.shape != (len(self.surrogates),):
                raise ValueError(f"theta: {len(th)} weights for {len(self.surrogates)} surrogates")
            if not (np.all(np.isfinite(th)) and np.all(th >= 0.0) and th.sum() > 0.0):
                raise ValueError(f"theta: expected finite weights >= 0, not all 0, got {self.theta}")
        if self.lookahead_decisions < 1:
            raise ValueError(f"lookahead_decisions: expected >= 1, got {self.lookahead_decisions}")
        if not self.candidate_range_m > 0.0:
            raise ValueError(f"candidate_range_m: expected > 0, got {self.candidate_range_m}")

    @property
    def theta_array(self) -> FloatArray:
        k = len(self.surrogates)
        return np.full(k, 1.0 / k) if self.theta is None else np.asarray(self.theta, np.float64)


@dataclass
class StepLog:
    """One decision of a batch of n tests (arrays (n,); meaningless where ``alive`` is False)."""

    alive: BoolArray
    critical: BoolArray
    pov: IntArray
    """Column - 1 of the POV among the background vehicles (0 the lead)."""
    action: IntArray
    """The POV's action index into ACTIONS_MPS2 (-1 off critical steps)."""
    p_a: FloatArray
    q_a: FloatArray
    adv_a: FloatArray
    """Probability of the POV's action under the adversarial component p C_θ / c (0 off critical steps): with
    p_a it gives the exact ratio for any ε, 1 / ((1 - ε) adv_a / p_a + ε)."""
    ratio: FloatArray
    adversarial: BoolArray
    """The POV's action came from the adversarial component of q."""
    epsilon: FloatArray
    features: FloatArray
    """(n, K): C_k(s, POV, a_taken) of each surrogate (0 off critical steps)."""
    obs: FloatArray
    """(n, 10) D2RL observation before the action (DENSE_OBS_NAMES)."""


@dataclass
class BatchResult:
    crashed: BoolArray
    """(n,) the CAV crashed."""
    weight: FloatArray
    """(n,) likelihood ratio w = Π_t ρ_t (1 for NDE)."""
    steps: list[StepLog]
    """Per decision, when logged (NADE only)."""
    initial: TrafficState
    """The n initial states (to replay a test)."""
    actions: npt.NDArray[np.int8]
    """(n, T, B) every background vehicle's action index per decision (to replay a test)."""

    @property
    def x(self) -> FloatArray:
        """The estimator's per-test values X_j = w_j 1[crash_j]."""
        out: FloatArray = np.where(self.crashed, self.weight, 0.0)
        return out


def dense_observation(
    state: TrafficState,
    log10_weight: FloatArray,
    critical: BoolArray,
    sum_criticality: FloatArray,
    pov: IntArray,
) -> FloatArray:
    """(N, 10) ε-agent observation (DENSE_OBS_NAMES), normalised and clipped at +-5."""
    n = state.n
    rows = np.arange(n)
    col = pov + 1
    dx = state.x_m[rows, col] - state.x_m[:, CAV]
    dy = state.lane[rows, col].astype(np.float64) - state.lane[:, CAV]
    dv = state.v_mps[rows, col] - state.v_mps[:, CAV]
    raw = np.stack(
        [
            state.x_m[:, CAV],
            state.lane[:, CAV].astype(np.float64),
            state.v_mps[:, CAV],
            log10_weight,
            critical.astype(np.float64),
            np.log10(np.maximum(sum_criticality, 1e-10)),
            dx,
            dy,
            dv,
            dx + dv,
        ],
        axis=1,
    )
    out: FloatArray = np.clip((raw - _OBS_CENTRE) / _OBS_HALF_RANGE, -5.0, 5.0)
    return out


def defensive_proposal(p: FloatArray, c_theta: FloatArray, eps: FloatArray) -> tuple[FloatArray, FloatArray]:
    """(adversarial component p C_θ / c, mixture q = (1 - ε) p C_θ / c + ε p), each (M, 7), for the POV's
    p and C_θ (M, 7) and ε (M,); c = Σ_a p C_θ. Rows with c = 0 (not critical) get the adversarial component
    0 and q = ε p (unused there)."""
    c = (p * c_theta).sum(-1, keepdims=True)
    adv: FloatArray = np.where(c > 0.0, p * c_theta / np.where(c > 0.0, c, 1.0), 0.0)
    q: FloatArray = (1.0 - eps)[:, None] * adv + eps[:, None] * p
    return adv, q


def run_batch(
    cfg: ScenarioConfig,
    cav: CavModel,
    n: int,
    rng: np.random.Generator,
    importance: Importance | None = None,
    *,
    log_steps: bool = False,
    initial: TrafficState | None = None,
) -> BatchResult:
    """n tests of ``cav`` in scenario ``cfg``: NDE if ``importance`` is None, else NADE (module docstring).
    ``initial`` replaces the sampled initial states (n rows)."""
    state = sample_initial(cfg, n, rng) if initial is None else initial.copy()
    start = state.copy()
    nb = cfg.n_background
    actions = np.zeros((n, cfg.n_decisions, nb), np.int8)
    alive = np.ones(n, bool)
    crashed = np.zeros(n, bool)
    weight = np.ones(n)
    steps: list[StepLog] = []
    for t in range(cfg.n_decisions):
        a_nom = nominal_accel(cfg, state)
        p = cfg.naturalistic.pdf(a_nom)  # (n, B, 7)
        idx = sample_categorical(p.reshape(-1, N_ACTIONS), rng.random(n * nb)).reshape(n, nb)
        if importance is not None:
            holds = min(importance.lookahead_decisions, cfg.n_decisions - t)
            log = _importance_step(cfg, state, alive, a_nom, p, idx, weight, rng, importance, holds)
            weight *= log.ratio
            if log_steps:
                steps.append(log)
        actions[:, t] = idx
        crashed_now = advance(cfg, state, ACTIONS_MPS2[idx], cav, cfg.substeps_per_decision)
        crashed |= crashed_now & alive
        alive &= ~crashed_now
        if not alive.any():
            break
    return BatchResult(crashed, weight, steps, start, actions)


def _importance_step(
    cfg: ScenarioConfig,
    state: TrafficState,
    alive: BoolArray,
    a_nom: FloatArray,
    p: FloatArray,
    idx: IntArray,
    weight: FloatArray,
    rng: np.random.Generator,
    imp: Importance,
    n_holds: int,
) -> StepLog:
    """Steps 1-3 of the module docstring for the running tests; overwrites the POV's entry of ``idx``."""
    n, k = state.n, len(imp.surrogates)
    rows = np.flatnonzero(alive)
    c_all = np.zeros((n, cfg.n_background, N_ACTIONS, k))
    c_all[rows] = challenge(
        cfg, state.take(rows), a_nom[rows], imp.surrogates, imp.candidate_range_m, n_holds
    )
    c_theta = c_all @ imp.theta_array  # (n, B, 7)
    crit = criticality(p, c_theta)  # (n, B)
    pov = crit.argmax(1)
    r = np.arange(n)
    c_pov = crit[r, pov]
    critical = alive & (c_pov > 0.0)
    log_w = np.log10(np.maximum(weight, 1e-300))
    obs = dense_observation(state, log_w, critical, crit.sum(1), pov)
    eps = np.full(n, imp.epsilon)
    if imp.epsilon_fn is not None and critical.any():
        eps[critical] = imp.epsilon_fn(obs[critical])
    p_pov = p[r, pov]  # (n, 7)
    adv, q = defensive_proposal(p_pov, np.where(critical[:, None], c_theta[r, pov], 0.0), eps)
    from_adv = critical & (rng.random(n) >= eps)
    u = rng.random(n)
    drawn_adv = sample_categorical(np.where(from_adv[:, None], adv, p_pov), u)
    action = np.where(critical, drawn_adv, -1)
    # On a critical step the POV's action becomes the mixture draw (from either component); elsewhere every
    # vehicle keeps its draw from p.
    idx[critical, pov[critical]] = drawn_adv[critical]
    a_taken = np.maximum(action, 0)
    p_a = p_pov[r, a_taken]
    q_a = q[r, a_taken]
    adv_a = np.where(critical, adv[r, a_taken], 0.0)
    ratio = np.where(critical, p_a / np.where(critical, q_a, 1.0), 1.0)
    features = np.where(critical[:, None], c_all[r, pov, a_taken], 0.0)
    return StepLog(alive.copy(), critical, pov, action, p_a, q_a, adv_a, ratio, from_adv, eps, features, obs)


def enumerate_single_decision(cfg: ScenarioConfig, cav: CavModel, initial: TrafficState) -> FloatArray:
    """μ(s0) = Σ_a p(a|s0) 1[crash(s0, a)] exactly for each initial state (N,) of a single-decision scenario,
    enumerating the 7^B joint actions of the B background vehicles (the dynamics are deterministic)."""
    if cfg.n_decisions != 1:
        raise ValueError(f"enumerate_single_decision: needs n_decisions = 1, got {cfg.n_decisions}")
    nb = cfg.n_background
    p = cfg.naturalistic.pdf(nominal_accel(cfg, initial))  # (N, B, 7)
    mu = np.zeros(initial.n)
    for combo in np.ndindex(*(N_ACTIONS,) * nb):
        st = initial.copy()
        accel = np.broadcast_to(ACTIONS_MPS2[list(combo)], (initial.n, nb))
        crashed = advance(cfg, st, accel, cav, cfg.substeps_per_decision)
        prob = np.prod([p[:, b, a] for b, a in enumerate(combo)], axis=0)
        mu += prob * crashed
    return mu
