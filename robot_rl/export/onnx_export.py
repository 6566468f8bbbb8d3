"""``robot-rl export``: a trained policy as a deployable ``policy.onnx``, verified against torch.

    robot-rl export runs/<stamp>-h2o-mujoco                      # latest checkpoint -> <run>/policy.onnx
    robot-rl export runs/<run>/checkpoints/update-00020000       # -> <run>/policy-update-00020000.onnx
    robot-rl export runs/<run>/policy.npz --out /tmp/p.onnx      # a torch-free policy file

What an export does, in order:

1. Source. A run folder is its latest complete checkpoint. For a checkpoint the algorithm is rebuilt with
   :func:`robot_rl.algos.make_algo` from the checkpoint's ``config.json`` (algo, hidden, init_alpha, seed;
   H2O's ``real_obs_std`` comes back with ``load_state_dict``) and its state loaded; the weights to export
   are ``algo.policy_weights()`` and the torch reference is the algorithm's own actor. For a ``.npz`` the
   weights are the file's and the reference is an equivalent torch module (:class:`MeanActionNet`).
   A ``.npz`` inside a run folder (``<run>/policy.npz``) takes the run's config and provenance.
2. Manifest (:class:`robot_rl.export.manifest.DeployManifest`). Joint names, default pose and action scale
   from the robot model (``sim.robots``); observation names and units from the task's layout, which must
   equal the training dataset's (provenance ``dataset_manifest``); PD gains and control period from the
   calibration file (``--calib``, default ``calib/<robot>.toml``), whose joints, default pose and control
   period must agree with the robot model; ``calib_hash`` is the training data's, and a calibration file
   with another hash is refused unless ``--allow-calib-mismatch`` (then recorded in the summary and in the
   model's metadata as ``robot_rl_calib_override``).
3. Graph (:func:`robot_rl.export.graph.build_model`) and ``onnx.checker.check_model(full_check=True)``.
4. Parity. ``--parity-n`` observations (10 000 by default): half drawn from the training logs (the
   provenance's dataset path, or ``--real-logs``), half random states (Gaussian around the logs' mean with
   3x their std, and uniform over the logs' range widened by its span on each side); without logs, random
   states only (standard and 3x-wide Gaussians, uniform in [-10, 10]), said in the summary. Each goes
   through onnxruntime one at a time (batch 1, as deployed, via :class:`robot_rl.export.runtime.OnnxPolicy`
   on the written file) and is compared with the torch reference ``q0 + action_scale * tanh(mean)`` in
   float32. The largest absolute difference (rad) must be <= ``--parity-tol`` (1e-5).
5. Output. The model is written to a temporary file beside ``--out`` and renamed into place only after it
   passed; ``<out>.json`` holds the summary (source, manifest, calibration, parity, sizes, time).

Exit codes: 0 written; 1 a check failed (parity, ONNX checker: nothing written at ``--out``); 2 bad input
(one line on stderr naming the problem, nothing written).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx
import torch
from torch import nn

import robot_rl
from robot_rl.bus.messages import PolicyWeights
from robot_rl.data.manifest import fsync_dir
from robot_rl.export.graph import build_model
from robot_rl.export.manifest import DeployManifest, ManifestError, normaliser_hash
from robot_rl.export.runtime import OnnxPolicy, PolicyFileError
from robot_rl.nets.numpy_policy import NumpyPolicy, PolicyArch
from robot_rl.runners.train import RESUME_MUST_MATCH

if TYPE_CHECKING:
    from firmware_bridge.calibration import Calibration
    from robot_rl.export.commands import Export
    from sim.robots.model import RobotModel
    from sim.tasks import Task

EXIT_OK = 0
EXIT_CHECK_FAILED = 1
EXIT_BAD_INPUT = 2

REPO_ROOT = Path(__file__).resolve().parents[2]
CALIB_DIR = REPO_ROOT / "calib"
PARITY_SEED = 0
"""Seed of the parity observations (an export is reproducible but for its time stamp)."""
CALIB_OVERRIDE_KEY = "robot_rl_calib_override"
"""metadata_props key written (JSON) when --allow-calib-mismatch let another calibration through."""
RUN_ID_FIELDS = RESUME_MUST_MATCH
"""Config fields hashed into the run id: those that decide what is trained (train.RESUME_MUST_MATCH), so
a resumed run (more --updates, another --out spelling) keeps its id."""
_H2O_LIKE = ("h2o", "naive-mix")


class ExportInputError(ValueError):
    """Bad input to ``robot-rl export`` (exit 2): the message names the argument or file and the problem."""


class ExportCheckError(RuntimeError):
    """The exported model failed a check (exit 1); nothing was written at ``--out``."""


# --------------------------------------------------------------------------------------------------
# The torch reference.


_TORCH_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "elu": nn.ELU,
    "silu": nn.SiLU,
}


class MeanActionNet(nn.Module):
    """The deterministic part of a ``tanh_gaussian_mlp`` :class:`PolicyWeights` as a torch module:
    obs (N, D) float32 -> pre-squash mean (N, A), normaliser included. The log-std head (either mode) is
    not built: a deployed policy acts with its mean."""

    def __init__(self, weights: PolicyWeights) -> None:
        super().__init__()
        NumpyPolicy.from_weights(weights)  # checks the arch and every parameter's shape
        arch = PolicyArch.from_json(weights.arch)
        act = _TORCH_ACTIVATIONS[arch.activation]
        layers: list[nn.Module] = []
        fan_in = arch.obs_dim
        for name, width in zip(arch.layer_names, arch.hidden, strict=True):
            layers += [self._linear(weights, name, fan_in, width), act()]
            fan_in = width
        self.trunk = nn.Sequential(*layers)
        self.mean = self._linear(weights, arch.mean_name, fan_in, arch.act_dim)
        self.obs_mean = torch.from_numpy(np.asarray(weights.obs_mean, np.float32).copy())
        self.obs_std = torch.from_numpy(np.asarray(weights.obs_std, np.float32).copy())

    @staticmethod
    def _linear(weights: PolicyWeights, name: str, fan_in: int, fan_out: int) -> nn.Linear:
        layer = nn.Linear(fan_in, fan_out)
        with torch.no_grad():
            layer.weight.copy_(torch.from_numpy(np.asarray(weights.params[f"{name}.weight"], np.float32)))
            layer.bias.copy_(torch.from_numpy(np.asarray(weights.params[f"{name}.bias"], np.float32)))
        return layer

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        mean: torch.Tensor = self.mean(self.trunk((obs - self.obs_mean) / self.obs_std))
        return mean


# --------------------------------------------------------------------------------------------------
# Sources.


@dataclass
class PolicySource:
    """A policy to export and what is known about its training."""

    kind: str
    """``"run"``, ``"checkpoint"`` or ``"npz"``."""
    path: Path
    """As given on the command line."""
    weights: PolicyWeights
    mean_fn: Callable[[torch.Tensor], torch.Tensor]
    """obs (N, D) float32 -> pre-squash mean action (N, A): the torch reference."""
    reference: str
    """What ``mean_fn`` is, in words (for the summary)."""
    algo: str
    robot: str
    config: dict[str, Any] | None
    provenance: dict[str, Any] | None
    run_dir: Path | None
    checkpoint: Path | None = None
    update: int | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def arch(self) -> PolicyArch:
        return PolicyArch.from_json(self.weights.arch)


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ExportInputError(f"{what}: {path} is not readable JSON: {err}") from None
    if not isinstance(obj, dict):
        raise ExportInputError(f"{what}: {path} holds {type(obj).__name__}, expected a JSON object")
    return obj


def _find_robot(
    given: str | None,
    config: dict[str, Any] | None,
    provenance: dict[str, Any] | None,
    arch: PolicyArch | None,
) -> str:
    """The robot: ``--robot``, else the run's config (or its dataset manifest), else the one robot whose
    observation and action sizes fit ``arch``."""
    from sim.robots import ROBOTS
    from sim.tasks import default_task

    known: str | None = None
    if config is not None and isinstance(config.get("robot"), str):
        known = str(config["robot"])
    elif provenance is not None and isinstance(provenance.get("dataset_manifest"), dict):
        robot = provenance["dataset_manifest"].get("robot")
        known = robot if isinstance(robot, str) else None
    if given is not None and known is not None and given != known:
        raise ExportInputError(f"robot: the policy was trained for robot {known!r}, not {given!r}")
    robot = given or known
    if robot is None:
        assert arch is not None
        fits = [
            name
            for name, model in ROBOTS.items()
            if len(default_task(model).obs_layout) == arch.obs_dim and len(model.joint_names) == arch.act_dim
        ]
        if len(fits) != 1:
            raise ExportInputError(
                f"robot: the policy ({arch.obs_dim} observations -> {arch.act_dim} joints) has no run config "
                f"saying its robot, and {'no' if not fits else 'more than one'} robot fits "
                f"({', '.join(fits) or ', '.join(sorted(ROBOTS))}); pass --robot"
            )
        robot = fits[0]
    if robot not in ROBOTS:
        raise ExportInputError(f"robot: unknown robot {robot!r}; known: {', '.join(sorted(ROBOTS))}")
    return robot


def _obs_act_dims(robot: str) -> tuple[int, int]:
    from sim.robots import get_robot
    from sim.tasks import default_task

    model = get_robot(robot)
    return len(default_task(model).obs_layout), len(model.joint_names)


def resolve_checkpoint_dir(path: Path) -> tuple[str, Path, Path | None]:
    """``(kind, checkpoint folder, run folder)`` for a run folder, a ``checkpoints/`` folder or a checkpoint
    folder; ExportInputError naming ``path`` otherwise."""
    from robot_rl.runners.checkpoint import LATEST, latest_checkpoint

    if (path / "algo.pt").is_file() and (path / "state.json").is_file():
        run_dir = path.parent.parent if path.parent.name == "checkpoints" else None
        return "checkpoint", path, run_dir
    for root, run_dir in ((path / "checkpoints", path), (path, path.parent)):
        if (root / LATEST).is_file():
            ck = latest_checkpoint(root)
            if ck is None:
                raise ExportInputError(
                    f"checkpoint: {root}/{LATEST} names no complete checkpoint folder (interrupted write?)"
                )
            return "run", ck, run_dir if root.name == "checkpoints" else None
    if (path / "config.json").is_file():
        hint = f"; export {path / 'policy.npz'} instead" if (path / "policy.npz").is_file() else ""
        raise ExportInputError(f"checkpoint: the run folder {path} has no complete checkpoint{hint}")
    raise ExportInputError(
        f"checkpoint: {path} is not a robot-rl train run folder, a checkpoint folder (checkpoints/update-N) "
        "or a policy .npz"
    )


def load_checkpoint_source(path: Path, robot_override: str | None = None) -> PolicySource:
    """A run folder or checkpoint folder as a :class:`PolicySource` (algorithm rebuilt, state loaded)."""
    from robot_rl.algos import ALGO_NAMES, make_algo
    from robot_rl.runners.checkpoint import load_checkpoint

    kind, ck_dir, run_dir = resolve_checkpoint_dir(path)
    try:
        ck = load_checkpoint(ck_dir)
    except Exception as err:  # OSError, JSON and pickle errors, zipfile.BadZipFile: a damaged checkpoint
        raise ExportInputError(
            f"checkpoint: {ck_dir} is not a readable checkpoint: {type(err).__name__}: {err}"
        ) from None
    config, provenance = ck.config, ck.provenance
    algo_name = config.get("algo")
    if algo_name not in ALGO_NAMES:
        raise ExportInputError(
            f"checkpoint: {ck_dir / 'config.json'} names algorithm {algo_name!r}, which robot-rl does not "
            f"know (known: {', '.join(ALGO_NAMES)})"
        )
    robot = _find_robot(robot_override, config, provenance, None)
    obs_dim, act_dim = _obs_act_dims(robot)
    try:
        hidden = tuple(int(h) for h in config["hidden"])
        seed = int(config.get("seed", 0))
        init_alpha = config.get("init_alpha")
        algo = make_algo(
            algo_name,
            obs_dim=obs_dim,
            act_dim=act_dim,
            seed=seed,
            # H2O's sigma_s comes back from the state (gap_noise_std); the actor does not use it.
            real_obs_std=np.ones(obs_dim, np.float32) if algo_name in _H2O_LIKE else None,
            hidden=hidden,
            init_log_alpha=None if init_alpha is None else math.log(float(init_alpha)),
        )
    except (KeyError, TypeError, ValueError) as err:
        raise ExportInputError(
            f"checkpoint: {ck_dir / 'config.json'} does not describe a buildable {algo_name}: {err!r}"
        ) from None
    try:
        algo.load_state_dict(ck.algo_state)
    except (ValueError, KeyError, TypeError, RuntimeError) as err:
        raise ExportInputError(
            f"checkpoint: {ck_dir / 'algo.pt'} does not fit a {algo_name} for the {robot} ({obs_dim} obs -> "
            f"{act_dim} joints, hidden {list(hidden)}): {str(err).splitlines()[0]}"
        ) from None
    weights = algo.policy_weights()
    actor = getattr(algo, "actor", None)
    notes: list[str] = []
    if isinstance(actor, nn.Module):
        actor.eval()
        obs_mean = torch.from_numpy(np.asarray(weights.obs_mean, np.float32).copy())
        obs_std = torch.from_numpy(np.asarray(weights.obs_std, np.float32).copy())

        def mean_fn(obs: torch.Tensor) -> torch.Tensor:
            # The actors take normalised observations (policy_weights' normaliser; the identity today).
            out = actor((obs - obs_mean) / obs_std)
            mean: torch.Tensor = out[0] if isinstance(out, tuple) else out
            return mean

        reference = f"the torch actor of the {algo_name} checkpoint ({type(actor).__name__})"
    else:
        mean_fn = MeanActionNet(algo.policy_weights())
        reference = (
            f"a torch module built from {algo_name}.policy_weights() (the algorithm has no torch actor)"
        )
        notes.append(f"{algo_name} has no torch `actor`: parity is checked against its policy_weights()")
    return PolicySource(
        kind=kind,
        path=path,
        weights=weights,
        mean_fn=mean_fn,
        reference=reference,
        algo=algo_name,
        robot=robot,
        config=config,
        provenance=provenance,
        run_dir=run_dir,
        checkpoint=ck_dir,
        update=ck.update,
        notes=notes,
    )


def load_npz_source(path: Path, robot_override: str | None = None) -> PolicySource:
    """A policy ``.npz`` as a :class:`PolicySource`; inside a run folder it takes the run's config."""
    from robot_rl.nets.numpy_policy import load_npz

    try:
        weights = load_npz(path)
    except Exception as err:  # OSError, ValueError, zipfile.BadZipFile, EOFError: numpy raises them all
        raise ExportInputError(
            f"checkpoint: {path} is not a readable policy .npz: {type(err).__name__}: {err}"
        ) from None
    config: dict[str, Any] | None = None
    provenance: dict[str, Any] | None = None
    run_dir: Path | None = None
    run_config = path.parent / "config.json"
    if run_config.is_file():
        obj = _read_json(run_config, "checkpoint")
        if "algo" in obj and isinstance(obj.get("provenance"), dict):
            config, provenance, run_dir = obj, obj["provenance"], path.parent
    arch = PolicyArch.from_json(weights.arch)
    robot = _find_robot(robot_override, config, provenance, arch)
    algo = str(config["algo"]) if config is not None else "unknown"
    return PolicySource(
        kind="npz",
        path=path,
        weights=weights,
        mean_fn=MeanActionNet(weights),
        reference=f"a torch module built from {path.name} ({arch.activation}, log_std {arch.log_std!r})",
        algo=algo,
        robot=robot,
        config=config,
        provenance=provenance,
        run_dir=run_dir,
        update=int(config["updates_done"]) if config is not None and "updates_done" in config else None,
    )


def load_source(path: Path, robot_override: str | None = None) -> PolicySource:
    """Any of the sources of the module docstring; ExportInputError naming the problem otherwise."""
    if not path.exists():
        raise ExportInputError(f"checkpoint: {path} does not exist")
    if path.is_file():
        if path.suffix != ".npz":
            raise ExportInputError(
                f"checkpoint: {path} is a file but not a policy .npz; give a run folder, a checkpoint folder "
                "or a .npz"
            )
        return load_npz_source(path, robot_override)
    return load_checkpoint_source(path, robot_override)


def run_id(source: PolicySource) -> str:
    """``<run folder name>-<8 hex of the config's training fields>`` (``@update-N`` for a checkpoint); for
    a ``.npz`` outside a run, ``<file stem>-<8 hex of the file>``."""
    if source.config is not None:
        fields = {k: source.config.get(k) for k in RUN_ID_FIELDS}
        digest = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:8]
        name = source.run_dir.name if source.run_dir is not None else str(source.config.get("algo", "run"))
        rid = f"{name}-{digest}"
        return f"{rid}@update-{source.update}" if source.kind != "npz" and source.update is not None else rid
    return f"{source.path.stem}-{hashlib.sha256(source.path.read_bytes()).hexdigest()[:8]}"


# --------------------------------------------------------------------------------------------------
# The manifest.


def _check_layout(what: str, dataset: list[tuple[str, str]], task: list[tuple[str, str]]) -> None:
    from robot_rl.schema import layout_difference

    problem = layout_difference(what, dataset, "the training dataset", task, "the task")
    if problem is not None:
        raise ExportInputError(f"provenance: {problem}")


def _layout_pairs(obj: Any, what: str) -> list[tuple[str, str]]:
    try:
        return [(str(e["name"]), str(e["unit"])) for e in obj]
    except (TypeError, KeyError) as err:
        raise ExportInputError(f"provenance: dataset_manifest.{what} is malformed: {err!r}") from None


def task_record(task: Task, config: dict[str, Any] | None) -> dict[str, Any]:
    """``{"name": class name, "command_range_mps": [lo, hi] (if any), "max_episode_steps": cap}``; the cap
    is the training simulator's (``sim_max_episode_steps`` when the run set it)."""
    record: dict[str, Any] = {"name": type(task).__name__}
    command_range = getattr(task, "command_range_mps", None)
    if command_range is not None:
        record["command_range_mps"] = [float(v) for v in command_range]
    cap = config.get("sim_max_episode_steps") if config is not None else None
    record["max_episode_steps"] = int(cap) if cap else int(task.max_episode_steps)
    return record


@dataclass(frozen=True)
class CalibCheck:
    """The calibration file used for the manifest and how its hash compares with the training data's."""

    path: Path
    file_hash: str
    training_hash: str | None
    """The training provenance's calib_hash; None when there is no provenance or it recorded none."""
    mismatch_allowed: bool
    calibration: Calibration

    def to_json(self) -> dict[str, Any]:
        return {
            "file": str(self.path),
            "file_hash": self.file_hash,
            "training_hash": self.training_hash,
            "hashes_equal": self.training_hash is None or self.training_hash == self.file_hash,
            "mismatch_allowed": self.mismatch_allowed,
        }


def check_calibration(
    source: PolicySource, robot: RobotModel, calib: Path | None, allow_mismatch: bool
) -> CalibCheck:
    """Load ``calib`` (default ``calib/<robot>.toml``) and check it against the robot model and the training
    provenance (module docstring); ExportInputError naming the first disagreement."""
    from firmware_bridge.calibration import CalibrationError, calibration_hash, load_calibration

    path = calib if calib is not None else CALIB_DIR / f"{source.robot}.toml"
    if not path.is_file():
        raise ExportInputError(f"calib: {path} does not exist")
    try:
        cal = load_calibration(path, expected_robot=source.robot)
    except CalibrationError as err:
        more = f" (and {len(err.problems) - 1} more)" if len(err.problems) > 1 else ""
        raise ExportInputError(f"calib: {err.problems[0]}{more}") from None
    if cal.joint_names != robot.joint_names:
        raise ExportInputError(
            f"calib: {path} has joints {list(cal.joint_names)}, "
            f"the {robot.name} has {list(robot.joint_names)}"
        )
    q0_cal = cal.arrays.default_pos_rad
    for name, a, b in zip(robot.joint_names, q0_cal, robot.default_joint_pos_rad, strict=True):
        if abs(float(a) - float(b)) > 1e-9:
            raise ExportInputError(
                f"calib: {path}: joint {name!r} default_pos_rad is {a}, the robot model's default pose "
                f"(trained with) is {b}"
            )
    if abs(cal.control_dt_s - robot.control_dt_s) > 1e-12:
        raise ExportInputError(
            f"calib: {path}: control_dt_s is {cal.control_dt_s} s, the policy was trained at "
            f"{robot.control_dt_s} s"
        )
    file_hash = calibration_hash(cal)
    training_hash: str | None = None
    if source.provenance is not None:
        recorded = source.provenance.get("calib_hash")
        training_hash = recorded if isinstance(recorded, str) and recorded else None
    if training_hash is not None and training_hash != file_hash and not allow_mismatch:
        raise ExportInputError(
            f"calib: {path} has calibration hash {file_hash}, the training data was recorded with "
            f"{training_hash}; export with the calibration of the training data, or pass "
            "--allow-calib-mismatch to use this one (recorded in the summary)"
        )
    return CalibCheck(path, file_hash, training_hash, allow_mismatch and training_hash != file_hash, cal)


def build_manifest(
    source: PolicySource, calib: Path | None, allow_calib_mismatch: bool, opset: int
) -> tuple[DeployManifest, CalibCheck, Task]:
    """The manifest of ``source`` (module docstring, step 2), the calibration check and the task."""
    from sim.robots import get_robot
    from sim.tasks import action_layout, default_task

    robot = get_robot(source.robot)
    task = default_task(robot)
    arch = source.arch
    if arch.obs_dim != len(task.obs_layout) or arch.act_dim != len(robot.joint_names):
        raise ExportInputError(
            f"checkpoint: the policy maps {arch.obs_dim} observations to {arch.act_dim} actions; the "
            f"{robot.name}'s {type(task).__name__} has {len(task.obs_layout)} and {len(robot.joint_names)}"
        )
    if source.config is not None:
        resolved = source.config.get("resolved")
        trained_task = resolved.get("task") if isinstance(resolved, dict) else None
        if trained_task and trained_task != type(task).__name__:
            raise ExportInputError(
                f"checkpoint: the run trained task {trained_task!r}, the {robot.name}'s task here is "
                f"{type(task).__name__!r}"
            )
    dataset = source.provenance.get("dataset_manifest") if source.provenance is not None else None
    if isinstance(dataset, dict):
        if dataset.get("robot") not in (None, robot.name):
            raise ExportInputError(
                f"provenance: the training dataset is of robot {dataset.get('robot')!r}, not {robot.name!r}"
            )
        _check_layout(
            "observation", _layout_pairs(dataset.get("obs_layout"), "obs_layout"), list(task.obs_layout)
        )
        if "action_layout" in dataset:
            _check_layout(
                "action", _layout_pairs(dataset["action_layout"], "action_layout"), list(action_layout(robot))
            )
    elif source.provenance is not None:
        source.notes.append(
            "the training provenance has no dataset_manifest: observation layout not cross-checked"
        )
    cal = check_calibration(source, robot, calib, allow_calib_mismatch)
    q0 = [float(q) for q in robot.default_joint_pos_rad]
    scale = float(robot.action_scale_rad)
    mean = np.asarray(source.weights.obs_mean, np.float32)
    std = np.asarray(source.weights.obs_std, np.float32)
    manifest = _manifest(
        robot=robot.name,
        joint_names=tuple(robot.joint_names),
        obs_names=tuple(name for name, _ in task.obs_layout),
        obs_units=tuple(unit for _, unit in task.obs_layout),
        default_joint_pos_rad=tuple(q0),
        action_scale_rad=scale,
        action_low_rad=tuple(q - scale for q in q0),
        action_high_rad=tuple(q + scale for q in q0),
        kp_nm_per_rad=tuple(float(j.kp_nm_per_rad) for j in cal.calibration.joints),
        kd_nm_s_per_rad=tuple(float(j.kd_nm_s_per_rad) for j in cal.calibration.joints),
        control_dt_s=float(cal.calibration.control_dt_s),
        normaliser_hash=normaliser_hash(mean, std),
        calib_hash=cal.training_hash if cal.training_hash is not None else cal.file_hash,
        software_version=robot_rl.__version__,
        run_id=run_id(source),
        algo=source.algo,
        task=task_record(task, source.config),
        opset=opset,
        exported_utc=_dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    )
    if cal.training_hash is None:
        source.notes.append(
            "no calibration hash in the training provenance: the manifest records the calibration file's"
        )
    lo_lim, hi_lim = cal.calibration.arrays.position_min_rad, cal.calibration.arrays.position_max_rad
    for name, lo, hi, pmin, pmax in zip(
        robot.joint_names, manifest.action_low_rad, manifest.action_high_rad, lo_lim, hi_lim, strict=True
    ):
        if lo < pmin or hi > pmax:
            source.notes.append(
                f"joint {name}: action range [{lo:.3f}, {hi:.3f}] rad reaches past the calibration's "
                f"position limits [{pmin:.3f}, {pmax:.3f}]; the bridge's safety clamp cuts it there"
            )
    return manifest, cal, task


def _manifest(**fields: Any) -> DeployManifest:
    try:
        return DeployManifest(**fields)
    except ManifestError as err:
        raise ExportInputError(f"manifest: {err}") from None


# --------------------------------------------------------------------------------------------------
# Parity.


def _resolve_logs(path_str: str) -> Path:
    """A dataset path as the provenance recorded it (relative to where train ran): as given, else relative
    to the repository root."""
    path = Path(path_str)
    if path.is_absolute() or path.exists():
        return path
    return REPO_ROOT / path


def load_log_observations(path: Path, obs_names: tuple[str, ...]) -> np.ndarray:
    """Every observation (incl. final ones) of the run folder ``path``, (N, D) float32; ValueError naming the
    problem if it cannot be read or its observation layout is not ``obs_names``."""
    from robot_rl.data.reader import open_run

    if not path.is_dir():
        raise ValueError(f"{path} does not exist or is not a folder")
    try:
        reader = open_run(path)
        names = tuple(reader.obs_layout.names)
        if names != obs_names:
            raise ValueError(f"{path}: its observation layout ({len(names)} elements) is not the policy's")
        obs = [ep.obs for ep in reader.iter_episodes()]
    except ValueError:
        raise
    except Exception as err:  # LogFormatError, OSError, pyarrow's own types
        raise ValueError(f"{path} is not a readable log run: {type(err).__name__}: {err}") from None
    if not obs:
        raise ValueError(f"{path} holds no episodes")
    return np.concatenate(obs).astype(np.float32)


def parity_observations(
    n: int, obs_dim: int, logs_obs: np.ndarray | None, rng: np.random.Generator
) -> tuple[np.ndarray, dict[str, int]]:
    """``n`` observations (n, D) float32 and how many came from each kind (module docstring, step 4)."""
    parts: dict[str, np.ndarray] = {}
    if logs_obs is not None and len(logs_obs) > 0:
        n_logs = n // 2
        rows = rng.choice(len(logs_obs), size=n_logs, replace=len(logs_obs) < n_logs)
        parts["logs"] = logs_obs[rows]
        x = logs_obs.astype(np.float64)
        mean, std = x.mean(axis=0), np.maximum(x.std(axis=0), 0.05)
        lo, hi = x.min(axis=0), x.max(axis=0)
        span = np.maximum(hi - lo, 1.0)
        n_rand = n - n_logs
        n_gauss = n_rand // 2
        parts["random_gaussian_3std"] = mean + 3.0 * std * rng.standard_normal((n_gauss, obs_dim))
        parts["random_uniform_wide"] = rng.uniform(lo - span, hi + span, size=(n_rand - n_gauss, obs_dim))
    else:
        k = n // 3
        parts["random_gaussian_1"] = rng.standard_normal((k, obs_dim))
        parts["random_gaussian_3"] = 3.0 * rng.standard_normal((k, obs_dim))
        parts["random_uniform_10"] = rng.uniform(-10.0, 10.0, size=(n - 2 * k, obs_dim))
    obs = np.concatenate(list(parts.values())).astype(np.float32)
    return obs, {name: len(a) for name, a in parts.items()}


def reference_actions(source: PolicySource, manifest: DeployManifest, obs: np.ndarray) -> np.ndarray:
    """Torch ``q0 + action_scale * tanh(mean(obs))``, (N, A) float32, rad, computed in float32."""
    q0 = torch.tensor(manifest.default_joint_pos_rad, dtype=torch.float32)
    scale = torch.tensor(manifest.action_scale_rad, dtype=torch.float32)
    with torch.no_grad():
        mean = source.mean_fn(torch.from_numpy(np.ascontiguousarray(obs, np.float32)))
        out = q0 + scale * torch.tanh(mean.to(torch.float32))
    result: np.ndarray = out.numpy()
    return result


def reference_policy(source: PolicySource, manifest: DeployManifest) -> Callable[[np.ndarray], np.ndarray]:
    """The torch reference as a deploy policy callable, obs (D,) -> joint targets (A,) float32 rad: what
    :class:`robot_rl.export.runtime.OnnxPolicy` computes, so both can run through the same deploy loop."""

    def act(obs: np.ndarray) -> np.ndarray:
        out: np.ndarray = reference_actions(source, manifest, np.asarray(obs, np.float32)[None, :])[0]
        return out

    return act


@dataclass(frozen=True)
class ParityResult:
    """Outcome of the parity check: observations per kind, the largest |onnxruntime - torch| (rad), where."""

    n_obs: dict[str, int]
    max_abs_diff: float
    tolerance: float
    worst_obs_index: int
    worst_joint: str
    worst_kind: str
    logs: str | None
    logs_note: str

    @property
    def passed(self) -> bool:
        return self.max_abs_diff <= self.tolerance  # NaN fails

    def to_json(self) -> dict[str, Any]:
        n_logs = self.n_obs.get("logs", 0)
        return {
            "n_obs": sum(self.n_obs.values()),
            "n_obs_logs": n_logs,
            "n_obs_random": sum(self.n_obs.values()) - n_logs,
            "n_obs_by_kind": self.n_obs,
            "logs": self.logs,
            "logs_note": self.logs_note,
            "max_abs_diff": self.max_abs_diff,
            "tolerance": self.tolerance,
            "passed": self.passed,
            "worst": {"obs_index": self.worst_obs_index, "kind": self.worst_kind, "joint": self.worst_joint},
            "batch_size": 1,
            "seed": PARITY_SEED,
        }


def check_parity(
    policy: OnnxPolicy,
    source: PolicySource,
    manifest: DeployManifest,
    n: int,
    tolerance: float,
    logs_obs: np.ndarray | None,
    logs: str | None,
    logs_note: str,
) -> ParityResult:
    """Compare onnxruntime (batch 1, one call per observation) with the torch reference on ``n``
    observations (module docstring, step 4)."""
    rng = np.random.default_rng(PARITY_SEED)
    obs, counts = parity_observations(n, manifest.obs_dim, logs_obs, rng)
    got = policy.batch(obs)
    want = reference_actions(source, manifest, obs)
    diff = np.abs(got.astype(np.float64) - want.astype(np.float64))
    if np.isnan(diff).any():
        flat = int(np.flatnonzero(np.isnan(diff))[0])
        max_diff = float("nan")
    else:
        flat = int(np.argmax(diff))
        max_diff = float(diff.flat[flat])
    row, joint = divmod(flat, manifest.act_dim)
    bounds = np.cumsum(list(counts.values()))
    kind = list(counts)[int(np.searchsorted(bounds, row, side="right"))]
    return ParityResult(
        n_obs=counts,
        max_abs_diff=max_diff,
        tolerance=tolerance,
        worst_obs_index=row,
        worst_joint=manifest.joint_names[joint],
        worst_kind=kind,
        logs=logs,
        logs_note=logs_note,
    )


def parity_logs(
    source: PolicySource, manifest: DeployManifest, real_logs: Path | None
) -> tuple[np.ndarray | None, str | None, str]:
    """``(observations, path, note)`` of the logs for the parity check: ``--real-logs`` (ExportInputError if
    unreadable) or the provenance's dataset (random states only if unavailable, said in the note)."""
    if real_logs is not None:
        try:
            return load_log_observations(real_logs, manifest.obs_names), str(real_logs), "--real-logs"
        except ValueError as err:
            raise ExportInputError(f"real_logs: {err}") from None
    dataset = source.provenance.get("dataset") if source.provenance is not None else None
    if not isinstance(dataset, str) or not dataset:
        return None, None, "no training dataset recorded: random states only"
    path = _resolve_logs(dataset)
    try:
        return load_log_observations(path, manifest.obs_names), str(path), "the training dataset (provenance)"
    except ValueError as err:
        return None, str(path), f"training logs unavailable ({err}): random states only"


# --------------------------------------------------------------------------------------------------
# The command.


def default_out(source: PolicySource) -> Path:
    """``<run>/policy.onnx`` for a run folder, ``<run>/policy-update-N.onnx`` for a checkpoint folder,
    ``<stem>.onnx`` beside a ``.npz``."""
    if source.kind == "npz":
        return source.path.with_suffix(".onnx")
    assert source.checkpoint is not None
    base = source.run_dir if source.run_dir is not None else source.checkpoint.parent
    if source.kind == "run":
        return base / "policy.onnx"
    return base / f"policy-{source.checkpoint.name}.onnx"


def summary_path(out: Path) -> Path:
    """``<out>.json``, the export summary beside the model."""
    return out.with_name(out.name + ".json")


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def export_policy(cfg: Export) -> dict[str, Any]:
    """Run the export of ``cfg`` (module docstring) and return its summary.

    ExportInputError on bad input, ExportCheckError if the model fails a check; in both cases nothing is
    written at ``--out``.
    """
    t0 = time.monotonic()
    source = load_source(cfg.checkpoint, cfg.robot)
    out = cfg.out if cfg.out is not None else default_out(source)
    if out.exists() and not cfg.overwrite:
        raise ExportInputError(
            f"out: {out} already exists; pass --overwrite to replace it, or choose another --out"
        )
    if out.exists() and not out.is_file():
        raise ExportInputError(f"out: {out} exists and is not a file")
    manifest, cal, _task = build_manifest(source, cfg.calib, cfg.allow_calib_mismatch, cfg.opset)
    logs_obs, logs, logs_note = parity_logs(source, manifest, cfg.real_logs)
    try:
        model = build_model(source.weights, manifest, cfg.opset)
    except (ValueError, ManifestError) as err:
        raise ExportInputError(f"opset: {err}" if "opset" in str(err) else str(err)) from None
    if cal.mismatch_allowed:
        entry = model.metadata_props.add()
        entry.key = CALIB_OVERRIDE_KEY
        entry.value = json.dumps({"calib_file_hash": cal.file_hash, "training_calib_hash": cal.training_hash})
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as err:  # onnx.checker.ValidationError, onnx.shape_inference.InferenceError
        raise ExportCheckError(
            f"the ONNX checker rejects the model: {str(err).strip().splitlines()[0]}"
        ) from None
    data = model.SerializeToString()

    created_dir = not out.parent.exists()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        try:
            policy = OnnxPolicy(tmp)
        except PolicyFileError as err:
            raise ExportCheckError(f"the written model does not load for deployment: {err}") from None
        parity = check_parity(
            policy, source, manifest, cfg.parity_n, cfg.parity_tol, logs_obs, logs, logs_note
        )
        if not parity.passed:
            raise ExportCheckError(
                f"parity: onnxruntime and torch differ by {parity.max_abs_diff:.3g} rad (> tolerance "
                f"{cfg.parity_tol:g}) at observation {parity.worst_obs_index} ({parity.worst_kind}), joint "
                f"{parity.worst_joint}; nothing written at {out}"
            )
        if out.exists() and not cfg.overwrite:  # appeared while we worked
            raise ExportInputError(f"out: {out} already exists; pass --overwrite to replace it")
        os.replace(tmp, out)
        fsync_dir(out.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        if created_dir:
            with contextlib.suppress(OSError):
                out.parent.rmdir()
        raise
    summary: dict[str, Any] = {
        "model": str(out),
        "model_bytes": len(data),
        "model_sha256": hashlib.sha256(data).hexdigest(),
        "opset": cfg.opset,
        "source": {
            "path": str(source.path),
            "kind": source.kind,
            "checkpoint": None if source.checkpoint is None else str(source.checkpoint),
            "run_dir": None if source.run_dir is None else str(source.run_dir),
            "update": source.update,
            "algo": source.algo,
            "reference": source.reference,
            "training_software_version": (source.provenance or {}).get("software_version"),
            "dataset": (source.provenance or {}).get("dataset"),
            "dataset_hash": (source.provenance or {}).get("dataset_hash"),
        },
        "manifest": asdict(manifest),
        "calibration": cal.to_json(),
        "parity": parity.to_json(),
        "notes": source.notes,
        "seconds": round(time.monotonic() - t0, 3),
    }
    _write_atomic(summary_path(out), (json.dumps(summary, indent=2) + "\n").encode())
    return summary


def _print_summary(summary: dict[str, Any]) -> None:
    src, par, m = summary["source"], summary["parity"], summary["manifest"]
    what = src["kind"] + (f" (update {src['update']})" if src["update"] is not None else "")
    lines = [
        f"robot-rl export: {summary['model']} ({summary['model_bytes']} bytes, opset {summary['opset']}, "
        f"{summary['seconds']:.1f} s)",
        f"  source: {src['path']}: {what}, algo {src['algo']}, robot {m['robot']}, run id {m['run_id']}",
        f"  manifest: {len(m['obs_names'])} observations -> {len(m['joint_names'])} joint targets (rad), "
        f"control period {m['control_dt_s']} s, calib {m['calib_hash'][:12]}...",
        f"  parity: max |onnxruntime - torch| = {par['max_abs_diff']:.3g} rad "
        f"(tolerance {par['tolerance']:g}) over {par['n_obs']} observations at batch 1: "
        f"{par['n_obs_logs']} from logs, {par['n_obs_random']} random ({par['logs_note']})",
    ]
    if summary["calibration"]["mismatch_allowed"]:
        cal = summary["calibration"]
        lines.append(
            f"  WARNING: calibration {cal['file']} (hash {cal['file_hash'][:12]}...) is not the training "
            f"data's ({cal['training_hash'][:12]}...); allowed by --allow-calib-mismatch"
        )
    lines += [f"  note: {note}" for note in summary["notes"]]
    lines.append(f"  summary: {summary_path(Path(summary['model']))}")
    print("\n".join(lines), flush=True)


def run_export(cfg: Export) -> int:
    """``robot-rl export``: 0 written, 1 a check failed, 2 bad input (one line on stderr each)."""
    try:
        summary = export_policy(cfg)
    except ExportInputError as err:
        print(f"robot-rl export: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except ExportCheckError as err:
        print(f"robot-rl export: failed: {err}", file=sys.stderr)
        return EXIT_CHECK_FAILED
    _print_summary(summary)
    return EXIT_OK
