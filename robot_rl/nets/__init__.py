"""Policy networks that run without torch (sim workers, deploy)."""

from __future__ import annotations

from robot_rl.nets.numpy_policy import NumpyPolicy, PolicyArch, load_npz, random_init, save_npz

__all__ = ["NumpyPolicy", "PolicyArch", "load_npz", "random_init", "save_npz"]
