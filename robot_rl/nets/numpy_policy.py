"""A torch-free tanh-squashed Gaussian MLP policy that runs from a :class:`PolicyWeights` snapshot.

Sim workers and the deploy path act with this class so they need neither torch nor pickle: the
architecture travels as JSON (``PolicyWeights.arch``) and the parameters as named float32 arrays.

Network (the SAC actor of Haarnoja et al. 2018, also CleanRL's ``Actor``)::

    x      = (obs - obs_mean) / obs_std                    (N, D)
    h      = act(x @ W_0.T + b_0) ... act(. @ W_k.T + b_k)  hidden layers, ``activation`` in ACTIVATIONS
    mean   = h @ W_mean.T + b_mean                          (N, A)
    log_std = clip(h @ W_ls.T + b_ls, lo, hi)   ("layer")   or   clip(log_std_param, lo, hi)   ("param")
    action = tanh(mean)                                     deterministic
    action = tanh(mean + exp(log_std) * eps), eps ~ N(0, I) stochastic

Arch JSON (``PolicyWeights.arch``)::

    {"kind": "tanh_gaussian_mlp", "obs_dim": 34, "act_dim": 8, "hidden": [256, 256],
     "activation": "relu", "log_std": "layer", "log_std_bounds": [-20.0, 2.0],
     "names": {"hidden": ["trunk.0", "trunk.2"], "mean": "mean", "log_std": "log_std"}}

Parameter names are ``"<layer>.weight"`` (out, in) and ``"<layer>.bias"`` (out,), as in a torch
``state_dict``; the default names are those of a module with ``trunk = nn.Sequential(Linear, act,
Linear, act)``, ``mean = Linear`` and ``log_std = Linear`` (or an ``nn.Parameter`` of shape (A,)
for ``"param"``), so torch-trained weights slot in by key. ``names`` lets another producer keep its
own keys without renaming.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from robot_rl.bus.messages import PolicyWeights

F32 = npt.NDArray[np.float32]
ARCH_KIND = "tanh_gaussian_mlp"
LogStdMode = Literal["layer", "param"]


def _relu(x: F32) -> F32:
    return np.maximum(x, 0.0, out=x)


def _tanh(x: F32) -> F32:
    return np.tanh(x, out=x)


def _elu(x: F32) -> F32:
    return np.where(x > 0.0, x, np.expm1(np.minimum(x, 0.0))).astype(np.float32, copy=False)


def _silu(x: F32) -> F32:
    return (x / (1.0 + np.exp(-x))).astype(np.float32, copy=False)


ACTIVATIONS: dict[str, Callable[[F32], F32]] = {"relu": _relu, "tanh": _tanh, "elu": _elu, "silu": _silu}
"""Hidden-layer activations by name (torch: nn.ReLU, nn.Tanh, nn.ELU, nn.SiLU). In-place where safe."""


@dataclass(frozen=True)
class PolicyArch:
    """The parsed ``arch`` JSON of a :data:`ARCH_KIND` policy (module docstring)."""

    obs_dim: int
    act_dim: int
    hidden: tuple[int, ...] = (256, 256)
    activation: str = "relu"
    log_std: LogStdMode = "layer"
    log_std_bounds: tuple[float, float] = (-20.0, 2.0)
    hidden_names: tuple[str, ...] | None = None
    """Parameter prefix of each hidden layer; default ``trunk.0``, ``trunk.2``, ... (nn.Sequential)."""
    mean_name: str = "mean"
    log_std_name: str = "log_std"

    def __post_init__(self) -> None:
        if self.obs_dim < 1 or self.act_dim < 1:
            raise ValueError(f"obs_dim and act_dim must be >= 1, got {self.obs_dim}, {self.act_dim}")
        if any(h < 1 for h in self.hidden):
            raise ValueError(f"hidden: every width must be >= 1, got {self.hidden}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation {self.activation!r}: expected one of {sorted(ACTIVATIONS)}")
        if self.log_std not in ("layer", "param"):
            raise ValueError(f"log_std {self.log_std!r}: expected 'layer' or 'param'")
        lo, hi = self.log_std_bounds
        if not lo < hi:
            raise ValueError(f"log_std_bounds: expected lo < hi, got {self.log_std_bounds}")
        if self.hidden_names is None:
            object.__setattr__(self, "hidden_names", tuple(f"trunk.{2 * i}" for i in range(len(self.hidden))))
        elif len(self.hidden_names) != len(self.hidden):
            raise ValueError(f"names.hidden: {len(self.hidden_names)} names for {len(self.hidden)} layers")

    @property
    def layer_names(self) -> tuple[str, ...]:
        """Hidden layer prefixes (always set after construction)."""
        assert self.hidden_names is not None
        return self.hidden_names

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """Every parameter this architecture needs, name -> shape."""
        shapes: dict[str, tuple[int, ...]] = {}
        fan_in = self.obs_dim
        for name, width in zip(self.layer_names, self.hidden, strict=True):
            shapes[f"{name}.weight"] = (width, fan_in)
            shapes[f"{name}.bias"] = (width,)
            fan_in = width
        shapes[f"{self.mean_name}.weight"] = (self.act_dim, fan_in)
        shapes[f"{self.mean_name}.bias"] = (self.act_dim,)
        if self.log_std == "layer":
            shapes[f"{self.log_std_name}.weight"] = (self.act_dim, fan_in)
            shapes[f"{self.log_std_name}.bias"] = (self.act_dim,)
        else:
            shapes[self.log_std_name] = (self.act_dim,)
        return shapes

    def to_json(self) -> str:
        """The ``arch`` string of :class:`PolicyWeights` (keys sorted, so equal archs compare equal)."""
        return json.dumps(
            {
                "kind": ARCH_KIND,
                "obs_dim": self.obs_dim,
                "act_dim": self.act_dim,
                "hidden": list(self.hidden),
                "activation": self.activation,
                "log_std": self.log_std,
                "log_std_bounds": list(self.log_std_bounds),
                "names": {
                    "hidden": list(self.layer_names),
                    "mean": self.mean_name,
                    "log_std": self.log_std_name,
                },
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, arch: str) -> PolicyArch:
        """Parse and check an ``arch`` string; ValueError naming the bad key."""
        try:
            obj: Any = json.loads(arch)
        except ValueError as err:
            raise ValueError(f"arch is not JSON: {err}") from None
        if not isinstance(obj, dict) or obj.get("kind") != ARCH_KIND:
            got = obj.get("kind") if isinstance(obj, dict) else type(obj).__name__
            raise ValueError(f"arch kind {got!r}: this policy runs only {ARCH_KIND!r}")
        names = obj.get("names", {})
        try:
            bounds = obj.get("log_std_bounds", [-20.0, 2.0])
            return cls(
                obs_dim=int(obj["obs_dim"]),
                act_dim=int(obj["act_dim"]),
                hidden=tuple(int(h) for h in obj.get("hidden", [])),
                activation=str(obj.get("activation", "relu")),
                log_std=obj.get("log_std", "layer"),
                log_std_bounds=(float(bounds[0]), float(bounds[1])),
                hidden_names=tuple(str(n) for n in names["hidden"]) if "hidden" in names else None,
                mean_name=str(names.get("mean", "mean")),
                log_std_name=str(names.get("log_std", "log_std")),
            )
        except (KeyError, TypeError, IndexError) as err:
            raise ValueError(f"arch JSON is missing or mistypes a key: {err!r}") from None


class NumpyPolicy:
    """The policy of the module docstring, evaluated with numpy in float32, batched over N envs.

    Build it with :meth:`from_weights` or :func:`random_init`. Instances are immutable in use: a
    worker swaps a whole new instance in when new weights arrive, so a step never sees a mix.
    """

    def __init__(
        self,
        arch: PolicyArch,
        params: Mapping[str, np.ndarray],
        obs_mean: np.ndarray | None = None,
        obs_std: np.ndarray | None = None,
        policy_version: int = 0,
    ) -> None:
        self.arch = arch
        self.policy_version = policy_version
        shapes = arch.param_shapes()
        missing = sorted(set(shapes) - set(params))
        extra = sorted(set(params) - set(shapes))
        if missing or extra:
            raise ValueError(f"policy params: missing {missing}, unexpected {extra}")
        for name, shape in shapes.items():
            if tuple(params[name].shape) != shape:
                raise ValueError(
                    f"policy param {name!r}: shape {tuple(params[name].shape)}, expected {shape}"
                )
        self.params: dict[str, F32] = {
            k: np.ascontiguousarray(v, dtype=np.float32) for k, v in params.items()
        }
        d = arch.obs_dim
        mean = np.zeros(d, np.float32) if obs_mean is None else np.asarray(obs_mean, np.float32)
        std = np.ones(d, np.float32) if obs_std is None else np.asarray(obs_std, np.float32)
        if mean.shape != (d,) or std.shape != (d,):
            raise ValueError(f"obs_mean/obs_std: shapes {mean.shape}, {std.shape}, expected ({d},)")
        if not bool(np.all(std > 0.0)):
            raise ValueError("obs_std must be > 0")
        self.obs_mean = mean
        self.obs_std = std
        self._inv_std = (1.0 / std).astype(np.float32)
        # Transposed copies once, so each step is x @ W_T (a plain GEMM) instead of re-striding W.
        self._layers = [
            (np.ascontiguousarray(self.params[f"{n}.weight"].T), self.params[f"{n}.bias"])
            for n in arch.layer_names
        ]
        self._mean = (
            np.ascontiguousarray(self.params[f"{arch.mean_name}.weight"].T),
            self.params[f"{arch.mean_name}.bias"],
        )
        lo, hi = arch.log_std_bounds
        if arch.log_std == "layer":
            self._log_std_layer: tuple[F32, F32] | None = (
                np.ascontiguousarray(self.params[f"{arch.log_std_name}.weight"].T),
                self.params[f"{arch.log_std_name}.bias"],
            )
            self._std_param: F32 | None = None
        else:
            self._log_std_layer = None
            self._std_param = np.exp(np.clip(self.params[arch.log_std_name], lo, hi)).astype(np.float32)
        self._act = ACTIVATIONS[arch.activation]

    @property
    def obs_dim(self) -> int:
        return self.arch.obs_dim

    @property
    def act_dim(self) -> int:
        return self.arch.act_dim

    def _trunk(self, obs: np.ndarray) -> F32:
        x: F32 = ((np.asarray(obs, dtype=np.float32) - self.obs_mean) * self._inv_std).astype(
            np.float32, copy=False
        )
        for w_t, b in self._layers:
            x = self._act(x @ w_t + b)
        return x

    def mean_and_std(self, obs: np.ndarray) -> tuple[F32, F32]:
        """Pre-squash Gaussian ``(mean, std)``, each (N, A) float32, for obs (N, D) float32."""
        h = self._trunk(obs)
        mean = h @ self._mean[0] + self._mean[1]
        if self._log_std_layer is not None:
            lo, hi = self.arch.log_std_bounds
            log_std = np.clip(h @ self._log_std_layer[0] + self._log_std_layer[1], lo, hi)
            std = np.exp(log_std).astype(np.float32)
        else:
            assert self._std_param is not None
            std = np.broadcast_to(self._std_param, mean.shape)
        return mean, std

    def act(
        self, obs: np.ndarray, rng: np.random.Generator | None = None, deterministic: bool = False
    ) -> F32:
        """Actions (N, A) float32 in [-1, 1] for observations (N, D) float32.

        ``deterministic`` returns ``tanh(mean)``; otherwise ``tanh(mean + std * eps)`` with ``eps``
        drawn from ``rng`` (required then).
        """
        if obs.ndim != 2 or obs.shape[1] != self.arch.obs_dim:
            raise ValueError(f"obs: shape {obs.shape}, expected (N, {self.arch.obs_dim})")
        if deterministic:
            h = self._trunk(obs)
            out: F32 = np.tanh(h @ self._mean[0] + self._mean[1])
            return out
        if rng is None:
            raise ValueError("a stochastic action needs an rng")
        mean, std = self.mean_and_std(obs)
        eps = rng.standard_normal(mean.shape, dtype=np.float32)
        return np.tanh(mean + std * eps)

    # --- conversions ---------------------------------------------------------------------------

    def to_weights(self, policy_version: int | None = None) -> PolicyWeights:
        """This policy as a bus message (``policy_version`` defaults to the instance's)."""
        return PolicyWeights(
            policy_version=self.policy_version if policy_version is None else policy_version,
            arch=self.arch.to_json(),
            obs_mean=self.obs_mean,
            obs_std=self.obs_std,
            params=dict(self.params),
        )

    @classmethod
    def from_weights(cls, weights: PolicyWeights) -> NumpyPolicy:
        """Build from a bus message; ValueError if the arch or parameters do not fit together."""
        return cls(
            PolicyArch.from_json(weights.arch),
            weights.params,
            weights.obs_mean,
            weights.obs_std,
            policy_version=weights.policy_version,
        )


def random_init(
    obs_dim: int,
    act_dim: int,
    hidden: Sequence[int] = (256, 256),
    seed: int = 0,
    *,
    activation: str = "relu",
    log_std: LogStdMode = "layer",
    policy_version: int = 0,
) -> PolicyWeights:
    """A freshly initialised policy as :class:`PolicyWeights` (normaliser mean 0, std 1).

    Same scheme as ``torch.nn.Linear.reset_parameters``: weight and bias ~ U(-k, k) with
    ``k = 1 / sqrt(fan_in)`` (kaiming_uniform with a = sqrt(5) gives gain sqrt(1/3) and bound
    gain * sqrt(3 / fan_in) = 1 / sqrt(fan_in)), so a torch-trained network and this one start from
    the same distribution. A ``"param"`` log_std starts at 0 (std 1), as is usual.
    """
    arch = PolicyArch(obs_dim, act_dim, tuple(int(h) for h in hidden), activation, log_std)
    rng = np.random.default_rng(seed)
    params: dict[str, np.ndarray] = {}
    for name, shape in arch.param_shapes().items():
        if len(shape) == 2:
            k = 1.0 / math.sqrt(shape[1])
            params[name] = rng.uniform(-k, k, size=shape).astype(np.float32)
            fan_in = shape[1]
            bias = name[: -len(".weight")] + ".bias"
            params[bias] = rng.uniform(
                -1.0 / math.sqrt(fan_in), 1.0 / math.sqrt(fan_in), size=shape[0]
            ).astype(np.float32)
        elif name == arch.log_std_name and arch.log_std == "param":
            params[name] = np.zeros(shape, np.float32)
    return NumpyPolicy(arch, params, policy_version=policy_version).to_weights()


# --- .npz files ------------------------------------------------------------------------------------

_ARCH_KEY = "__arch__"
_MEAN_KEY = "__obs_mean__"
_STD_KEY = "__obs_std__"
_VERSION_KEY = "__policy_version__"


def save_npz(path: Path | str, weights: PolicyWeights) -> Path:
    """Write ``weights`` as an ``.npz`` of plain arrays: the params by name, the normaliser, the
    version, and the arch JSON as a uint8 array (so loading never needs pickle).

    Written to a temporary name and renamed, so a reader polling the file never sees half of it.
    """
    path = Path(path)
    arrays: dict[str, np.ndarray] = {k: np.asarray(v, np.float32) for k, v in weights.params.items()}
    for key in (_ARCH_KEY, _MEAN_KEY, _STD_KEY, _VERSION_KEY):
        if key in arrays:
            raise ValueError(f"param name {key!r} is reserved in policy .npz files")
    arrays[_ARCH_KEY] = np.frombuffer(weights.arch.encode(), dtype=np.uint8)
    arrays[_MEAN_KEY] = np.asarray(weights.obs_mean, np.float32)
    arrays[_STD_KEY] = np.asarray(weights.obs_std, np.float32)
    arrays[_VERSION_KEY] = np.asarray(weights.policy_version, np.int64)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        np.savez(f, allow_pickle=False, **arrays)
    tmp.replace(path)
    return path


def load_npz(path: Path | str, policy_version: int | None = None) -> PolicyWeights:
    """Read a file written by :func:`save_npz` (``allow_pickle=False``); the arch and params are
    checked by building a :class:`NumpyPolicy`. ``policy_version`` overrides the stored one."""
    with np.load(Path(path), allow_pickle=False) as npz:
        files = set(npz.files)
        for key in (_ARCH_KEY, _MEAN_KEY, _STD_KEY):
            if key not in files:
                raise ValueError(f"{path}: not a robot-rl policy file (no {key!r} array)")
        arch = bytes(npz[_ARCH_KEY].astype(np.uint8)).decode()
        stored_version = int(npz[_VERSION_KEY]) if _VERSION_KEY in files else 0
        params = {
            k: np.asarray(npz[k], np.float32) for k in files - {_ARCH_KEY, _MEAN_KEY, _STD_KEY, _VERSION_KEY}
        }
        obs_mean = np.asarray(npz[_MEAN_KEY], np.float32)
        obs_std = np.asarray(npz[_STD_KEY], np.float32)
    version = stored_version if policy_version is None else policy_version
    policy = NumpyPolicy(PolicyArch.from_json(arch), params, obs_mean, obs_std, policy_version=version)
    return policy.to_weights()
