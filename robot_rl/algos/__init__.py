"""Training algorithms: one file per algorithm (STYLE.md rule 2); the runner contract is `base.Algo`.

:func:`make_algo` (the registry, signature :class:`robot_rl.algos.base.AlgoFactory`) builds any of
:data:`ALGO_NAMES` with its default config; each algorithm module is imported when first built.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from robot_rl.algos.base import Algo

ALGO_NAMES: tuple[str, ...] = ("h2o", "sac", "cql", "iql", "naive-mix")
"""The names :func:`make_algo` knows, as on the command line."""


def make_algo(
    name: str,
    *,
    obs_dim: int,
    act_dim: int,
    seed: int,
    real_obs_std: np.ndarray | None = None,
    hidden: tuple[int, ...] = (256, 256),
    init_log_alpha: float | None = None,
) -> Algo:
    """Build algorithm ``name`` with its default config and hidden widths ``hidden`` for every network
    (actor, critics, IQL's value net, H2O's two classifiers: the reference sizes them all alike).

    ``real_obs_std`` (obs_dim,) is required by ``"h2o"`` and ``"naive-mix"`` (the gap estimate's
    sigma_s) and ignored by the others. ValueError for an unknown ``name`` (listing the known ones)
    or a missing ``real_obs_std``. ``init_log_alpha`` overrides the initial SAC temperature (log alpha_0)
    of the algorithms that have one (all but IQL); None keeps each config's default (0, i.e. alpha_0 = 1).
    """
    log_alpha0 = 0.0 if init_log_alpha is None else float(init_log_alpha)  # 0.0: every config's default
    if name == "sac":
        from robot_rl.algos.sac import SAC, SACConfig

        return SAC(obs_dim, act_dim, seed=seed, config=SACConfig(hidden=hidden, init_log_alpha=log_alpha0))
    if name == "cql":
        from robot_rl.algos.cql import CQL, CQLConfig

        return CQL(obs_dim, act_dim, seed=seed, config=CQLConfig(hidden=hidden, init_log_alpha=log_alpha0))
    if name == "iql":
        from robot_rl.algos.iql import IQL, IQLConfig

        return IQL(obs_dim, act_dim, seed=seed, config=IQLConfig(hidden=hidden))
    if name in ("h2o", "naive-mix"):
        from robot_rl.algos.h2o import H2O, NAIVE_MIX, H2OConfig

        if real_obs_std is None:
            raise ValueError(f"{name} needs real_obs_std, the real dataset's per-dimension state std")
        base = H2OConfig() if name == "h2o" else NAIVE_MIX
        config = dataclasses.replace(base, hidden=hidden, classifier_hidden=hidden, init_log_alpha=log_alpha0)
        return H2O(obs_dim, act_dim, real_obs_std=real_obs_std, seed=seed, config=config, name=name)
    raise ValueError(f"unknown algorithm {name!r}; known: {', '.join(ALGO_NAMES)}")


__all__ = ["ALGO_NAMES", "make_algo"]
