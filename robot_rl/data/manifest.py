"""The run manifest: ``<run>/manifest.json``, the facts shared by every episode of a run."""

from __future__ import annotations

import datetime as _dt
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import robot_rl
from robot_rl.data.errors import LogFormatError
from robot_rl.schema import SCHEMA_VERSION, FieldLayout, SchemaError, Source

MANIFEST_NAME = "manifest.json"
FORMAT_NAME = "robot-rl-log"

MIGRATION_HINT = (
    "logs are never rewritten in place; convert the run with a robot-rl release that reads "
    "schema_version {got} (export it to Minari or D4RL HDF5 and import it with this release), "
    "or open it with the matching robot-rl version"
)


def _utc_now() -> str:
    return _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class RunManifest:
    """What a run folder holds, written once as ``manifest.json`` when the run is created.

    Attributes:
        robot: robot name; every episode's ``meta.robot`` must match.
        task: task name of the run (episodes carry their own, usually the same).
        control_dt_s: nominal control period in seconds.
        obs_layout: names and units of the observation vector.
        action_layout: names and units of the action vector (the clamped action actually sent).
        calib_hash: hash of the calibration file in force when the run was created; ``""`` if none.
        source: default source of the run's episodes.
        description: free text.
        extra: free-form string facts (generator command, seed, dynamics profile, ...).
        schema_version: :data:`robot_rl.schema.SCHEMA_VERSION` of the writer.
        software_version: ``robot_rl.__version__`` of the writer that created the run.
        created_utc: ISO-8601 UTC creation time.
        format: always ``"robot-rl-log"``; tells a run folder from other JSON files.
    """

    robot: str
    task: str
    control_dt_s: float
    obs_layout: FieldLayout
    action_layout: FieldLayout
    calib_hash: str = ""
    source: Source = Source.REAL
    description: str = ""
    extra: dict[str, str] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION
    software_version: str = robot_rl.__version__
    created_utc: str = field(default_factory=_utc_now)
    format: str = FORMAT_NAME

    def __post_init__(self) -> None:
        object.__setattr__(self, "source", Source(self.source))
        if not self.robot:
            raise SchemaError("robot", "a non-empty robot name", "''")
        if not (self.control_dt_s > 0.0 and self.control_dt_s < float("inf")):
            raise SchemaError("control_dt_s", "a finite period > 0 s", repr(self.control_dt_s))

    @property
    def control_rate_hz(self) -> float:
        """Nominal control rate, 1 / control_dt_s."""
        return 1.0 / self.control_dt_s

    def to_json_dict(self) -> dict[str, Any]:
        """The JSON object stored in ``manifest.json`` (layouts as lists of {name, unit})."""
        return {
            "format": self.format,
            "schema_version": self.schema_version,
            "software_version": self.software_version,
            "created_utc": self.created_utc,
            "robot": self.robot,
            "task": self.task,
            "control_dt_s": self.control_dt_s,
            "calib_hash": self.calib_hash,
            "source": self.source.value,
            "description": self.description,
            "extra": dict(self.extra),
            "obs_layout": self.obs_layout.to_json(),
            "action_layout": self.action_layout.to_json(),
        }

    def to_json(self) -> str:
        """Pretty JSON text of :meth:`to_json_dict`."""
        return json.dumps(self.to_json_dict(), indent=2, sort_keys=False) + "\n"

    @classmethod
    def from_json_dict(cls, obj: object, path: Path | str = MANIFEST_NAME) -> RunManifest:
        """Parse and validate a manifest object; errors name ``path`` and the field.

        The format and schema version are checked first, so a manifest from another version fails
        on ``schema_version`` (with a migration hint) rather than on whatever field changed.
        """
        if not isinstance(obj, dict):
            raise LogFormatError(path, "<root>", "a JSON object", type(obj).__name__)
        fmt = obj.get("format")
        if fmt != FORMAT_NAME:
            raise LogFormatError(path, "format", repr(FORMAT_NAME), repr(fmt))
        version = obj.get("schema_version")
        if version != SCHEMA_VERSION:
            raise LogFormatError(
                path,
                "schema_version",
                str(SCHEMA_VERSION),
                repr(version),
                detail=MIGRATION_HINT.format(got=version),
            )

        def need(key: str, kind: type | tuple[type, ...]) -> Any:
            if key not in obj:
                raise LogFormatError(path, key, "present", "missing")
            value = obj[key]
            # bool is an int subclass; a float field given true/false is still wrong.
            if not isinstance(value, kind) or isinstance(value, bool):
                want = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
                raise LogFormatError(path, key, want, f"{type(value).__name__} {value!r}")
            return value

        extra = need("extra", dict)
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in extra.items()):
            raise LogFormatError(path, "extra", "an object of str -> str", repr(extra))
        try:
            return cls(
                robot=need("robot", str),
                task=need("task", str),
                control_dt_s=float(need("control_dt_s", (int, float))),
                obs_layout=FieldLayout.from_json(need("obs_layout", list), "obs_layout"),
                action_layout=FieldLayout.from_json(need("action_layout", list), "action_layout"),
                calib_hash=need("calib_hash", str),
                source=Source(need("source", str)),
                description=need("description", str),
                extra=dict(extra),
                schema_version=version,
                software_version=need("software_version", str),
                created_utc=need("created_utc", str),
                format=fmt,
            )
        except SchemaError as err:
            if isinstance(err, LogFormatError):
                raise
            raise LogFormatError.from_schema_error(path, err) from None
        except ValueError as err:  # an unknown Source value
            raise LogFormatError(path, "source", f"one of {[s.value for s in Source]}", str(err)) from None

    def compatible_with(self, other: RunManifest) -> list[str]:
        """Fields that must agree for ``other``'s episodes to be appended to this run; empty if they do."""
        diffs: list[str] = []
        for name in ("format", "schema_version", "robot", "obs_layout", "action_layout"):
            if getattr(self, name) != getattr(other, name):
                diffs.append(name)
        return diffs


def write_manifest(run_dir: Path, manifest: RunManifest) -> Path:
    """Write ``run_dir/manifest.json`` atomically (temp file, fsync, rename, fsync the directory)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / MANIFEST_NAME
    tmp = run_dir / f".{MANIFEST_NAME}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(manifest.to_json())
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(run_dir)
    return path


def read_manifest(run_dir: Path) -> RunManifest:
    """Read and validate ``run_dir/manifest.json``; a missing or malformed file raises LogFormatError."""
    path = Path(run_dir) / MANIFEST_NAME
    if not path.is_file():
        what = "no such folder" if not Path(run_dir).exists() else "no manifest.json in the folder"
        raise LogFormatError(path, "manifest.json", "a robot-rl run folder with manifest.json", what)
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise LogFormatError(path, "<root>", "valid JSON", str(err)) from None
    return RunManifest.from_json_dict(obj, path)


def fsync_dir(path: Path) -> None:
    """fsync a directory so a rename or unlink in it survives a power cut."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
