"""Array aliases of robot_rl.cav (numpy, float64 physics, int8 lanes)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
LaneArray = npt.NDArray[np.int8]
BoolArray = npt.NDArray[np.bool_]
