"""Losses as pure functions: tensors and floats in, `(loss, metrics)` out (STYLE.md rule 1).

One module per algorithm: :mod:`~robot_rl.losses.sac` (also the TD target, actor and temperature
losses H2O and CQL reuse), :mod:`~robot_rl.losses.h2o`, :mod:`~robot_rl.losses.cql`,
:mod:`~robot_rl.losses.iql`. Metrics are 0-d detached tensors with slash-namespaced keys; the
algorithm converts them to floats once per update.
"""
