"""Surrogate models of the CAV and the challenge / criticality they give (ALGORITHMS.md 5.4 steps 2-3).

The testing environment does not know the vehicle under test. It predicts it with surrogate models: IDM +
gap-acceptance drivers (robot_rl.cav.drivers.IdmCav) with their own (T_h, G). The challenge of surrogate k
for background vehicle v and action a is

    C_k(s, v, a) = 1[surrogate k crashes within H when v holds a and every other background vehicle holds its
                     nominal acceleration]

(a deterministic depth-1 look-ahead with the scenario engine itself). With ``n_holds`` > 1 the look-ahead
continues after H for n_holds - 1 further decisions in which every background vehicle holds its nominal
acceleration (recomputed at each decision), never past the end of the test: this also sees the crashes that
one deviation makes unavoidable only after H [choice, off by default]. Combined with non-negative weights θ,
C_θ = Σ_k θ_k C_k; the criticality of v is c_v(s) = Σ_a p_v(a|s) C_θ(s, v, a), the principal other vehicle
(POV) the most critical candidate, and the step is critical iff c_POV > 0. Candidates are the background
vehicles within ``candidate_range_m`` of the CAV (reference: the 4 nearest within 120 m; here there are 2-3).
"""

from __future__ import annotations

import numpy as np

from robot_rl.cav.drivers import IdmCav
from robot_rl.cav.naturalistic import ACTIONS_MPS2, N_ACTIONS
from robot_rl.cav.scenario import CAV, ScenarioConfig, TrafficState, advance, nominal_accel
from robot_rl.cav.types import FloatArray

SURROGATES: dict[str, IdmCav] = {
    "s1": IdmCav(headway_s=1.5, accept_gap_m=10.0, label="s1(T_h=1.5,G=10)"),
    "s2": IdmCav(headway_s=0.8, accept_gap_m=4.0, label="s2(T_h=0.8,G=4)"),
    "s3": IdmCav(headway_s=1.2, accept_gap_m=8.0, label="s3(T_h=1.2,G=8)"),
    "s4": IdmCav(headway_s=2.0, accept_gap_m=3.0, label="s4(T_h=2,G=3)"),
    "oracle": IdmCav(headway_s=1.0, accept_gap_m=6.0, label="oracle(T_h=1,G=6)"),
}
"""ALGORITHMS.md 5.2's surrogates. ``s1`` (1.5 s, 10 m) is the mis-specified one (it accepts only gaps the
CAV under test would also accept, so it never predicts the cut-ins that crash); ``oracle`` equals the CAV
under test and is only for the explicit oracle comparison (using it elsewhere is an oracle leak)."""
DEFAULT_SURROGATES = ("s1", "s2", "s3", "s4")


def challenge(
    cfg: ScenarioConfig,
    state: TrafficState,
    a_nom_mps2: FloatArray,
    models: tuple[IdmCav, ...],
    candidate_range_m: float = 120.0,
    n_holds: int = 1,
) -> FloatArray:
    """C (N, B, 7, K) in {0, 1}: surrogate k crashes within H if background vehicle b (column b + 1) holds
    action i while the others hold ``a_nom_mps2`` (N, B) (and within ``n_holds`` - 1 further nominal holds).
    Vehicles beyond ``candidate_range_m`` get 0."""
    n, nb, k = state.n, cfg.n_background, len(models)
    out = np.zeros((n, nb, N_ACTIONS, k))
    if n == 0:
        return out
    rows = nb * N_ACTIONS
    base = state.repeat(rows)
    accel = np.repeat(a_nom_mps2, rows, axis=0)  # row r = (test, vehicle b, action i)
    b_of_row = np.tile(np.repeat(np.arange(nb), N_ACTIONS), n)
    a_of_row = np.tile(ACTIONS_MPS2, n * nb)
    accel[np.arange(len(accel)), b_of_row] = a_of_row
    in_range = np.abs(state.x_m[:, 1:] - state.x_m[:, CAV : CAV + 1]) <= candidate_range_m  # (N, B)
    for j, model in enumerate(models):
        st = base if j == len(models) - 1 else base.copy()
        crashed = advance(cfg, st, accel, model, cfg.substeps_per_decision)
        for _ in range(n_holds - 1):
            crashed |= advance(cfg, st, nominal_accel(cfg, st), model, cfg.substeps_per_decision)
        out[..., j] = crashed.reshape(n, nb, N_ACTIONS)
    out *= in_range[:, :, None, None]
    return out


def criticality(p: FloatArray, c_theta: FloatArray) -> FloatArray:
    """c_v(s) = Σ_a p_v(a|s) C_θ(s, v, a): (N, B) from p and C_θ (N, B, 7)."""
    out: FloatArray = (p * c_theta).sum(-1)
    return out
