"""Known-answer tests of the data contract and its derivations (arithmetic in the comments)."""

from __future__ import annotations

import numpy as np
import pytest

from robot_rl.schema import (
    Episode,
    EpisodeMeta,
    FieldLayout,
    MonteCarloBatch,
    SchemaError,
    Source,
    concat_batches,
    episode_monte_carlo,
    episode_nstep,
    episode_return_to_go,
    episode_transitions,
)


def make_episode(end: str = "terminated", rewards: tuple[float, ...] = (1.0, 2.0, 4.0)) -> Episode:
    """obs[t] = [t, 10 t] for t = 0..T; action[t] = [-t]; t_ns[t] = 20 ms * t."""
    n = len(rewards)
    term = np.zeros(n, dtype=bool)
    trunc = np.zeros(n, dtype=bool)
    (term if end == "terminated" else trunc)[-1] = True
    t = np.arange(n + 1)
    return Episode(
        meta=EpisodeMeta(Source.SIM, "go1", "walk", control_dt_s=0.02, episode_id="ep0"),
        obs=np.stack([t, 10 * t], axis=1).astype(np.float32),
        action=-t[:-1, None].astype(np.float32),
        reward=np.asarray(rewards, dtype=np.float64),
        terminated=term,
        truncated=trunc,
        t_ns=(t * 20_000_000).astype(np.int64),
    )


def test_one_step_transitions_of_a_three_step_episode() -> None:
    b = episode_transitions(make_episode())
    # s  = obs[0..2] = [0,0],[1,10],[2,20];  s' = obs[1..3] = [1,10],[2,20],[3,30]
    np.testing.assert_array_equal(b.obs, [[0, 0], [1, 10], [2, 20]])
    np.testing.assert_array_equal(b.next_obs, [[1, 10], [2, 20], [3, 30]])
    np.testing.assert_array_equal(b.action, [[0], [-1], [-2]])
    np.testing.assert_array_equal(b.reward, [1.0, 2.0, 4.0])
    np.testing.assert_array_equal(b.terminated, [False, False, True])
    np.testing.assert_array_equal(b.truncated, [False, False, False])
    assert b.obs.dtype == np.float32 and b.reward.dtype == np.float64


def test_nstep_n2_gamma_half_terminated_episode() -> None:
    b = episode_nstep(make_episode("terminated"), n=2, gamma=0.5)
    # t=0: k=2, 1 + 0.5*2 = 2.0, next obs[2], discount 0.5^2 * (1 - term[1]=0) = 0.25
    # t=1: k=2, 2 + 0.5*4 = 4.0, next obs[3], discount 0.25 * (1 - term[2]=1) = 0
    # t=2: k=1 (episode end), 4.0, next obs[3], discount 0.5 * (1 - 1) = 0
    np.testing.assert_allclose(b.reward_sum_n, [2.0, 4.0, 4.0])
    np.testing.assert_array_equal(b.n_steps, [2, 2, 1])
    np.testing.assert_allclose(b.discount, [0.25, 0.0, 0.0])
    np.testing.assert_array_equal(b.next_obs, [[2, 20], [3, 30], [3, 30]])


def test_nstep_truncated_episode_keeps_bootstrapping() -> None:
    b = episode_nstep(make_episode("truncated"), n=2, gamma=0.5)
    # Same sums; a time limit does not stop bootstrapping: discounts 0.5^2, 0.5^2, 0.5^1.
    np.testing.assert_allclose(b.reward_sum_n, [2.0, 4.0, 4.0])
    np.testing.assert_allclose(b.discount, [0.25, 0.25, 0.5])


def test_nstep_n1_matches_one_step_td() -> None:
    ep = make_episode("terminated")
    b = episode_nstep(ep, n=1, gamma=0.9)
    # discount = 0.9 * (1 - terminated): [0.9, 0.9, 0]
    np.testing.assert_allclose(b.discount, [0.9, 0.9, 0.0])
    np.testing.assert_array_equal(b.reward_sum_n, ep.reward)


def test_return_to_go_gamma_09() -> None:
    g = episode_return_to_go(make_episode(), gamma=0.9)
    # G2 = 4;  G1 = 2 + 0.9*4 = 5.6;  G0 = 1 + 0.9*5.6 = 6.04
    np.testing.assert_allclose(g, [6.04, 5.6, 4.0], rtol=0, atol=1e-12)
    assert g.dtype == np.float64


def test_monte_carlo_marks_truncated_episodes_partial() -> None:
    assert not episode_monte_carlo(make_episode("terminated"), 0.9).partial.any()
    mc = episode_monte_carlo(make_episode("truncated"), 0.9)
    assert mc.partial.all()
    np.testing.assert_allclose(mc.return_to_go, [6.04, 5.6, 4.0])


def test_constant_reward_return_approaches_geometric_sum() -> None:
    # An endless +1 reward is worth 1/(1-gamma) = 10 at gamma 0.9; 200 steps leave 0.9^200 ~ 7e-10.
    ep = make_episode("truncated", rewards=(1.0,) * 200)
    assert episode_return_to_go(ep, 0.9)[0] == pytest.approx(10.0, abs=1e-8)


def test_concat_batches() -> None:
    a = episode_monte_carlo(make_episode("terminated"), 0.9)
    b = episode_monte_carlo(make_episode("truncated", rewards=(3.0,)), 0.9)
    c = concat_batches([a, b])
    assert isinstance(c, MonteCarloBatch)
    np.testing.assert_allclose(c.return_to_go, [6.04, 5.6, 4.0, 3.0])
    np.testing.assert_array_equal(c.partial, [False, False, False, True])
    with pytest.raises(SchemaError, match="batches"):
        concat_batches([a, episode_transitions(make_episode())])  # type: ignore[list-item]


def _replace(ep: Episode, **arrays: object) -> Episode:
    fields = {
        k: getattr(ep, k) for k in ("meta", "obs", "action", "reward", "terminated", "truncated", "t_ns")
    }
    fields.update(arrays)
    return Episode(**fields)  # type: ignore[arg-type]


def test_validation_errors_name_field_expected_and_got() -> None:
    ep = make_episode()
    obs = ep.obs.copy()
    obs[2, 1] = np.nan
    with pytest.raises(SchemaError) as info:
        _replace(ep, obs=obs)
    assert (info.value.field, info.value.step) == ("obs", 2)
    assert "finite" in str(info.value) and "ep0" in str(info.value)

    with pytest.raises(SchemaError, match=r"field 'obs'.*shape \(4, \*\).*got shape \(3, 2\)"):
        _replace(ep, obs=ep.obs[:3])
    with pytest.raises(SchemaError, match=r"field 'action'.*dtype float32, got dtype float64"):
        _replace(ep, action=ep.action.astype(np.float64))
    with pytest.raises(SchemaError, match="T >= 1"):
        _replace(
            ep,
            obs=ep.obs[:1],
            action=ep.action[:0],
            reward=ep.reward[:0],
            terminated=ep.terminated[:0],
            truncated=ep.truncated[:0],
            t_ns=ep.t_ns[:1],
        )
    with pytest.raises(SchemaError) as info:
        _replace(ep, terminated=np.array([True, False, True]))
    assert (info.value.field, info.value.step) == ("terminated", 0)
    with pytest.raises(SchemaError, match="not both"):
        _replace(ep, truncated=np.array([False, False, True]))
    with pytest.raises(SchemaError, match="neither"):
        _replace(ep, terminated=np.zeros(3, dtype=bool))
    with pytest.raises(SchemaError) as info:
        _replace(ep, t_ns=np.array([0, 5, 5, 9], dtype=np.int64))
    assert (info.value.field, info.value.step, info.value.got) == ("t_ns", 2, "5")
    with pytest.raises(SchemaError, match="reward"):
        _replace(ep, reward=np.array([1.0, np.inf, 0.0]))


def test_layout_validation() -> None:
    layout = FieldLayout(("joint_pos_FL_hip_rad", "joint_vel_FL_hip_rad_s"), ("rad", "rad/s"))
    assert layout.size == 2
    assert FieldLayout.from_json(layout.to_json()) == layout
    with pytest.raises(SchemaError, match="duplicate 'a'"):
        FieldLayout(("a", "a"), ("m", "m"))
    with pytest.raises(SchemaError, match="one unit per name"):
        FieldLayout(("a", "b"), ("m",))
    ep = make_episode()
    ep.validate(layout, FieldLayout(("torque_Nm",), ("N*m",)))
    with pytest.raises(SchemaError, match="obs_dim 3, got 2"):
        ep.validate(FieldLayout.anonymous("obs", 3), FieldLayout.anonymous("a", 1))


def test_meta_validation() -> None:
    with pytest.raises(SchemaError, match="source"):
        EpisodeMeta("robot", "go1", "walk", control_dt_s=0.02)  # type: ignore[arg-type]
    with pytest.raises(SchemaError, match="control_dt_s"):
        EpisodeMeta(Source.REAL, "go1", "walk", control_dt_s=0.0)
    meta = EpisodeMeta("real", "go1", "walk", control_dt_s=0.02)  # type: ignore[arg-type]
    assert meta.source is Source.REAL and len(meta.episode_id) == 32
