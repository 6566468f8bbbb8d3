"""Automated-vehicle (CAV) overtaking tests: how often does the vehicle under test crash, with few tests.

ALGORITHMS.md section 5; docs/cav.md. Modules, in the order a test runs through them:

    scenario      the overtaking scenario family as a vectorised numpy engine (state, dynamics, crashes)
    naturalistic  the parametric naturalistic behaviour pdf of background vehicles
    idm, drivers  IDM; the vehicle under test (IDM + gap acceptance or MOBIL, or an ONNX policy)
    surrogate     surrogate models of the CAV, challenge and criticality
    estimators    NDE and NADE test batches (importance sampling at critical steps, defensive mixture)
    adaptive      AdaTE-style non-negative least-squares combination of surrogates
    dense         D2RL-style learned state-dependent epsilon (densified PPO, numpy)
    stats         estimate, relative half-width, tests needed, bootstrap
    campaign      a run of n tests with one method
    render        PNG / GIF of one test, estimate and RHW curves
    highway       replay in highway-env's two-way-v0
    commands      ``robot-rl cav test`` (report: its outputs)
"""
