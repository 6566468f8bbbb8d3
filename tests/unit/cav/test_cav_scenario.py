"""The overtaking engine: naturalistic pdf, sampling, IDM, integration, crash rule, the CAV's lane change."""

from __future__ import annotations

import math

import numpy as np
import pytest

from robot_rl.cav.drivers import CAV_UNDER_TEST, IdmCav
from robot_rl.cav.estimators import Importance, run_batch
from robot_rl.cav.idm import Idm
from robot_rl.cav.naturalistic import ACTIONS_MPS2, Naturalistic, sample_categorical
from robot_rl.cav.scenario import (
    MULTI,
    SINGLE,
    ScenarioConfig,
    TrafficState,
    advance,
    nearest,
    nominal_accel,
    replay,
    sample_initial,
)
from robot_rl.cav.surrogate import SURROGATES


def state(x: list[float], v: list[float], lane: list[int]) -> TrafficState:
    v_arr = np.array([v], float)
    return TrafficState(np.array([x], float), v_arr, np.array([lane], np.int8), v_arr.copy())


class Hold:
    """A CAV that keeps its lane and holds one acceleration."""

    name = "hold"

    def __init__(self, accel: float, lane: int | None = None) -> None:
        self.accel, self.lane = accel, lane

    def act(self, s: TrafficState) -> tuple[np.ndarray, np.ndarray]:
        lane = s.lane[:, 0] if self.lane is None else np.full(s.n, self.lane, np.int8)
        return np.full(s.n, self.accel), lane


def test_naturalistic_pdf_by_hand() -> None:
    # a_nom = 0: weights exp(-a^2 / 0.18) + 3e-4 over a = -4..2; a = +-1: exp(-5.556) = 3.866e-3.
    p = Naturalistic().pdf(np.array([0.0]))[0]
    w = np.exp(-(ACTIONS_MPS2**2) / 0.18) + 3e-4
    np.testing.assert_allclose(p, w / w.sum(), rtol=1e-12)
    assert p.sum() == pytest.approx(1.0)
    assert p[4] == pytest.approx(1.0003 / (1.0003 + 2 * (3.866e-3 + 3e-4) + 4 * 3e-4), rel=1e-3)
    assert p[0] == pytest.approx(3e-4 / w.sum(), rel=1e-6)  # -4 m/s^2: the floor only
    # the mass follows a_nom: a_nom = -1.6 puts most mass on -2 (0.4 away) and -1 (0.6 away)
    q = Naturalistic().pdf(np.array([-1.6]))[0]
    assert q.argmax() == 2 and q[3] > q[1]
    with pytest.raises(ValueError, match="floor"):
        Naturalistic(floor=0.0)


def test_sample_categorical_frequencies() -> None:
    rng = np.random.default_rng(0)
    probs = np.tile([0.1, 0.0, 0.6, 0.3], (200_000, 1))
    idx = sample_categorical(probs, rng.random(len(probs)))
    freq = np.bincount(idx, minlength=4) / len(idx)
    np.testing.assert_allclose(freq, [0.1, 0.0, 0.6, 0.3], atol=4e-3)
    assert sample_categorical(np.array([[0.5, 0.5]]), np.array([0.999999999]))[0] == 1


def test_idm_known_values() -> None:
    idm = Idm(headway_s=1.5, max_accel_mps2=2.0, comfort_brake_mps2=3.0, min_gap_m=2.0)
    v = np.array([30.0])
    # free road at v0: 0; free road at half speed: 2 * (1 - 1/16) = 1.875
    assert idm.accel(v, 30.0, np.array([np.inf]), v)[0] == pytest.approx(0.0)
    assert idm.accel(np.array([15.0]), 30.0, np.array([np.inf]), np.array([15.0]))[0] == pytest.approx(1.875)
    # same speed ahead, gap 47 m: s* = 2 + 45 = 47 -> a = 2 * (1 - 1 - 1) = -2
    assert idm.accel(v, 30.0, np.array([47.0]), v)[0] == pytest.approx(-2.0)


def test_integration_is_exact_with_a_stop() -> None:
    cfg = ScenarioConfig()
    # CAV alone in the travel lane ahead of everyone: v 10, a -4: after 1 s x = 10 - 2 = 8, v = 6;
    # after a further 1 s x = 8 + 6 - 2 = 12, v = 2; then it stops after 0.5 s: x = 12 + 0.5 = 12.5.
    s = state([0.0, 500.0, -500.0], [10.0, 0.0, 0.0], [0, 0, 1])
    for x_want, v_want in ((8.0, 6.0), (12.0, 2.0), (12.5, 0.0)):
        advance(cfg, s, np.zeros((1, 2)), Hold(-4.0), 1)
        assert s.x_m[0, 0] == pytest.approx(x_want) and s.v_mps[0, 0] == pytest.approx(v_want)


def test_crash_rule() -> None:
    cfg = ScenarioConfig()
    # Rear-ending the lead: gap 3 m (centres 8 m apart), closing 4 m/s -> centres 4 m apart after 1 s: crash.
    s = state([0.0, 8.0, -100.0], [30.0, 26.0, 30.0], [0, 0, 1])
    assert advance(cfg, s, np.zeros((1, 2)), Hold(0.0), 1)[0]
    # The same in different lanes is no crash.
    s = state([0.0, 8.0, -100.0], [30.0, 26.0, 30.0], [0, 1, 1])
    assert not advance(cfg, s, np.zeros((1, 2)), Hold(0.0), 1)[0]
    # Driving through within one sub-step (centres +6 m -> -14 m) is a crash: the sign of Δx changed.
    s = state([0.0, 6.0, -100.0], [30.0, 10.0, 30.0], [0, 0, 1])
    assert advance(cfg, s, np.zeros((1, 2)), Hold(0.0), 1)[0]
    # Changing lanes onto a vehicle (BV level with the CAV) is a crash at the start of the sub-step.
    s = state([0.0, 100.0, 1.0], [30.0, 30.0, 20.0], [0, 0, 1])
    assert advance(cfg, s, np.zeros((1, 2)), Hold(0.0, lane=1), 1)[0]


def test_nearest_and_nominal_accel() -> None:
    cfg = ScenarioConfig()
    s = state([0.0, 40.0, -20.0], [30.0, 25.0, 32.0], [0, 0, 1])
    fg, fv, rg, rv = nearest(s, 0, 0, 5.0)
    assert (fg[0], fv[0], rg[0], rv[0]) == (35.0, 25.0, math.inf, 30.0)
    fg, fv, rg, rv = nearest(s, 0, 1, 5.0)
    assert (fg[0], rg[0], rv[0]) == (math.inf, 15.0, 32.0)
    # lead cruises; the BV drives free at its desired speed (= its speed): both 0
    np.testing.assert_allclose(nominal_accel(cfg, s), [[0.0, 0.0]])
    # once the CAV is in its lane 15 m ahead and 2 m/s slower, the BV brakes (IDM, clipped at -4)
    s.lane[0, 0] = 1
    a = nominal_accel(cfg, s)[0, 1]
    assert -4.0 <= a < -2.0


def test_gap_acceptance_rule() -> None:
    cav = IdmCav(headway_s=1.0, accept_gap_m=6.0)
    # lead 5 m/s slower; BV 2 m/s faster behind: needs a rear gap >= 6 + 2 * 2 = 10 m
    for gap, changes in ((9.9, False), (10.0, True)):
        s = state([0.0, 40.0, -(5.0 + gap)], [30.0, 25.0, 32.0], [0, 0, 1])
        _, lane = cav.act(s)
        assert bool(lane[0] == 1) is changes, gap
    # a lead only 0.5 m/s slower is no reason to change
    s = state([0.0, 40.0, -100.0], [30.0, 29.5, 30.0], [0, 0, 1])
    assert cav.act(s)[1][0] == 0
    # MOBIL: the passing lane is free far ahead, the BV far behind: change
    mobil = IdmCav(lane_change="mobil")
    s = state([0.0, 20.0, -200.0], [30.0, 25.0, 30.0], [0, 0, 1])
    assert mobil.act(s)[1][0] == 1
    with pytest.raises(ValueError, match="lane_change"):
        IdmCav(lane_change="sometimes")


def test_initial_distribution_ranges() -> None:
    s = sample_initial(SINGLE, 20_000, np.random.default_rng(1))
    v_cav, v_lead = s.v_mps[:, 0], s.v_mps[:, 1]
    assert v_cav.min() >= 28 and v_cav.max() <= 32
    assert (v_cav - v_lead).min() >= 3 and (v_cav - v_lead).max() <= 8
    gap = s.x_m[:, 1] - 5.0
    assert gap.min() >= 25 and gap.max() <= 50
    behind = -s.x_m[:, 2] - 5.0
    assert behind.min() >= 10 and behind.max() <= 40
    # gap and speed deficit drawn independently
    assert abs(np.corrcoef(gap, v_cav - v_lead)[0, 1]) < 0.03


def test_replay_reproduces_the_batch() -> None:
    rng = np.random.default_rng(3)
    imp = Importance((SURROGATES["oracle"],), epsilon=0.1)
    b = run_batch(MULTI, CAV_UNDER_TEST, 3_000, rng, imp)
    rows = np.flatnonzero(b.crashed)[:5]
    assert len(rows) == 5
    for j in [*rows, *np.flatnonzero(~b.crashed)[:5]]:
        rp = replay(MULTI, b.initial.take(np.array([j])), b.actions[j], CAV_UNDER_TEST)
        assert (rp.crash_substep is not None) == bool(b.crashed[j])
