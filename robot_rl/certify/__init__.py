"""Policy smoothing: certified lower bounds on a policy's return under l2-bounded observation attacks.

ALGORITHMS.md section 4 (Kumar, Levine and Feizi, ICLR 2022); docs/certify.md. Modules:

- :mod:`robot_rl.certify.smoothing`: the smoothed policy (fresh Gaussian noise on every observation at every
  step) and the same noise as a training augmentation (``robot-rl train --obs-noise-sigma``);
- :mod:`robot_rl.certify.bounds`: Clopper-Pearson + Bonferroni, DKW, the certified bound C(B), per-step
  budgets (pure functions);
- :mod:`robot_rl.certify.evaluate`: vectorised Monte Carlo episodes (numpy CartPole, Gymnasium ids, the
  simulated robots, the emulated real robot);
- :mod:`robot_rl.certify.attack`: PGD on the smoothed torch policy with the unused budget carried over;
- :mod:`robot_rl.certify.policies`: what ``POLICY`` can name;
- :mod:`robot_rl.certify.commands` / :mod:`robot_rl.certify.runner`: ``robot-rl certify``.

This package's import is light (no torch, scipy or simulator): import the modules you use.
"""
