"""Parquet chunks: episodes <-> Arrow tables, and the footer check done before any data is read.

A chunk (``episodes/chunk-000000.parquet``) is episode-major: one row per episode, the per-step
arrays as list columns. Reading one episode is then one row, the final observation stays with its
episode, and the per-step values round-trip bit-exactly (float32 observations/actions, float64
rewards, int64 timestamps). Row groups are capped so a reader's memory stays bounded.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from robot_rl.data.errors import LogFormatError
from robot_rl.data.manifest import fsync_dir
from robot_rl.schema import SCHEMA_VERSION, Episode, EpisodeMeta, FieldLayout, SchemaError, Source

CHUNK_PREFIX = "chunk-"
CHUNK_SUFFIX = ".parquet"
ROWS_PER_ROW_GROUP = 64
META_KEY_SCHEMA_VERSION = b"robot_rl.schema_version"
# Dictionary encoding only pays for the repetitive string columns; on float data it costs space.
DICTIONARY_COLUMNS = ("source", "robot", "task", "calib_hash", "extra")
# BYTE_STREAM_SPLIT groups the bytes of floats by significance so zstd finds the shared
# exponents/high bytes; DELTA_BINARY_PACKED stores near-regular timestamps as small deltas.
COLUMN_ENCODING = {
    "obs.list.element.list.element": "BYTE_STREAM_SPLIT",
    "action.list.element.list.element": "BYTE_STREAM_SPLIT",
    "reward.list.element": "BYTE_STREAM_SPLIT",
    "t_ns.list.element": "DELTA_BINARY_PACKED",
    "policy_version": "PLAIN",
}

META_COLUMNS: tuple[tuple[str, pa.DataType], ...] = (
    ("episode_id", pa.string()),
    ("source", pa.string()),
    ("robot", pa.string()),
    ("task", pa.string()),
    ("policy_version", pa.int64()),
    ("control_dt_s", pa.float64()),
    ("calib_hash", pa.string()),
    ("seed", pa.int64()),
    ("extra", pa.string()),
    ("n_steps", pa.int64()),
)


def chunk_name(index: int) -> str:
    """``chunk-000042.parquet``: six digits so names sort in write order."""
    return f"{CHUNK_PREFIX}{index:06d}{CHUNK_SUFFIX}"


def chunk_index(path: Path) -> int | None:
    """The index in a chunk file name, or None if ``path`` is not a chunk."""
    name = path.name
    if not (name.startswith(CHUNK_PREFIX) and name.endswith(CHUNK_SUFFIX)):
        return None
    digits = name[len(CHUNK_PREFIX) : -len(CHUNK_SUFFIX)]
    return int(digits) if digits.isdigit() else None


def list_chunks(episodes_dir: Path) -> list[Path]:
    """Finished chunk files in write order (temporary ``.tmp`` files are never listed)."""
    if not episodes_dir.is_dir():
        return []
    found = [(chunk_index(p), p) for p in episodes_dir.iterdir() if p.is_file()]
    return [p for i, p in sorted((i, p) for i, p in found if i is not None)]


def arrow_schema(obs_dim: int, act_dim: int) -> pa.Schema:
    """The exact Arrow schema of a chunk for the given vector widths."""
    step_columns: list[tuple[str, pa.DataType]] = [
        ("obs", pa.list_(pa.list_(pa.float32(), obs_dim))),
        ("action", pa.list_(pa.list_(pa.float32(), act_dim))),
        ("reward", pa.list_(pa.float64())),
        ("terminated", pa.list_(pa.bool_())),
        ("truncated", pa.list_(pa.bool_())),
        ("t_ns", pa.list_(pa.int64())),
    ]
    return pa.schema(
        [pa.field(n, t) for n, t in (*META_COLUMNS, *step_columns)],
        metadata={META_KEY_SCHEMA_VERSION: str(SCHEMA_VERSION).encode()},
    )


def _nested(values: np.ndarray, lengths: Sequence[int], width: int | None) -> pa.Array:
    """list<...> array from concatenated rows ``values`` split into ``lengths``; fixed width if given."""
    offsets = np.zeros(len(lengths) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    inner: pa.Array
    if width is None:
        inner = pa.array(values)
    else:
        inner = pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), width)
    return pa.ListArray.from_arrays(pa.array(offsets), inner)


def episodes_to_table(episodes: Sequence[Episode], obs_dim: int, act_dim: int) -> pa.Table:
    """One row per episode in the chunk schema."""
    metas = [ep.meta for ep in episodes]
    steps = [ep.n_steps for ep in episodes]
    columns: list[pa.Array] = [
        pa.array([m.episode_id for m in metas], pa.string()),
        pa.array([m.source.value for m in metas], pa.string()),
        pa.array([m.robot for m in metas], pa.string()),
        pa.array([m.task for m in metas], pa.string()),
        pa.array([m.policy_version for m in metas], pa.int64()),
        pa.array([m.control_dt_s for m in metas], pa.float64()),
        pa.array([m.calib_hash for m in metas], pa.string()),
        pa.array([m.seed for m in metas], pa.int64()),
        pa.array([json.dumps(m.extra, sort_keys=True) for m in metas], pa.string()),
        pa.array(steps, pa.int64()),
        _nested(np.concatenate([ep.obs for ep in episodes]), [s + 1 for s in steps], obs_dim),
        _nested(np.concatenate([ep.action for ep in episodes]), steps, act_dim),
        _nested(np.concatenate([ep.reward for ep in episodes]), steps, None),
        _nested(np.concatenate([ep.terminated for ep in episodes]), steps, None),
        _nested(np.concatenate([ep.truncated for ep in episodes]), steps, None),
        _nested(np.concatenate([ep.t_ns for ep in episodes]), [s + 1 for s in steps], None),
    ]
    return pa.Table.from_arrays(columns, schema=arrow_schema(obs_dim, act_dim))


def write_chunk(
    episodes_dir: Path, index: int, episodes: Sequence[Episode], obs_dim: int, act_dim: int
) -> Path:
    """Write a chunk crash-safely: ``.chunk-N.parquet.tmp``, fsync, rename, fsync the directory.

    A reader never sees a half-written chunk: until the rename the data lives only under the
    temporary name (which readers ignore and writers delete), and the journals of its episodes are
    deleted by the caller only after this returns.
    """
    final = episodes_dir / chunk_name(index)
    if final.exists():
        raise FileExistsError(f"{final} already exists; refusing to overwrite a finished chunk")
    tmp = episodes_dir / f".{chunk_name(index)}.tmp"
    table = episodes_to_table(episodes, obs_dim, act_dim)
    with open(tmp, "wb") as f:
        pq.write_table(
            table,
            f,
            compression="zstd",
            row_group_size=ROWS_PER_ROW_GROUP,
            use_dictionary=list(DICTIONARY_COLUMNS),
            column_encoding=COLUMN_ENCODING,
            # Page CRCs let the reader detect flipped bytes inside the data, not only a bad footer.
            write_page_checksum=True,
        )
        f.flush()
        os.fsync(f.fileno())
    os.rename(tmp, final)
    fsync_dir(episodes_dir)
    return final


def check_chunk_footer(path: Path, obs_layout: FieldLayout, act_layout: FieldLayout) -> pq.ParquetFile:
    """Open ``path`` and check its footer schema against the layouts, reading no row data.

    Catches corrupt or truncated files (the footer is at the end, so a cut file fails here), missing
    or extra columns, wrong types and a fixed_size_list width that differs from the layout.
    """
    try:
        pf = pq.ParquetFile(path, page_checksum_verification=True)
        schema = pf.schema_arrow
    except (pa.ArrowException, OSError) as err:
        raise LogFormatError(
            path, "<parquet footer>", "a readable Parquet file", f"{type(err).__name__}: {err}"
        ) from None
    want = arrow_schema(obs_layout.size, act_layout.size)
    got_names = schema.names
    if got_names != want.names:
        missing = [n for n in want.names if n not in got_names]
        unexpected = [n for n in got_names if n not in want.names]
        raise LogFormatError(
            path,
            "<columns>",
            f"columns {want.names}",
            f"missing {missing}, unexpected {unexpected}" if missing or unexpected else f"order {got_names}",
        )
    for f in want:
        got_type = schema.field(f.name).type
        if not got_type.equals(f.type):
            raise LogFormatError(path, f.name, str(f.type), str(got_type))
    version = (schema.metadata or {}).get(META_KEY_SCHEMA_VERSION)
    if version != str(SCHEMA_VERSION).encode():
        raise LogFormatError(
            path, "schema_version", str(SCHEMA_VERSION), repr(version.decode() if version else None)
        )
    return pf


def _rows(column: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """(offsets (R+1,), flat values) of a list<fixed_size_list<x>> or list<x> column."""
    arr = column.combine_chunks()
    assert isinstance(arr, pa.ListArray)
    offsets = arr.offsets.to_numpy()
    values = arr.values
    if isinstance(values, pa.FixedSizeListArray):
        width = values.type.list_size
        flat = values.flatten().to_numpy(zero_copy_only=False).reshape(-1, width)
    else:
        flat = values.to_numpy(zero_copy_only=False)
    return offsets, flat


def _row(step_cols: dict[str, tuple[np.ndarray, np.ndarray]], name: str, r: int) -> np.ndarray:
    offsets, flat = step_cols[name]
    # copy: the Episode must not pin the whole row group's buffers in memory.
    return np.array(flat[offsets[r] : offsets[r + 1]], copy=True)


def iter_chunk_episodes(path: Path, pf: pq.ParquetFile) -> Iterator[Episode]:
    """Decode and validate the episodes of a chunk whose footer was checked; errors name the file.

    Reads one row group at a time so memory stays bounded by ROWS_PER_ROW_GROUP episodes.
    """
    for rg in range(pf.num_row_groups):
        try:
            table = pf.read_row_group(rg)
        except (pa.ArrowException, OSError) as err:
            raise LogFormatError(
                path, f"<row group {rg}>", "readable data", f"{type(err).__name__}: {err}"
            ) from None
        cols = {name: table.column(name) for name in table.column_names}
        meta_vals = {name: cols[name].to_pylist() for name, _ in META_COLUMNS}
        step_cols = {
            n: _rows(cols[n]) for n in ("obs", "action", "reward", "terminated", "truncated", "t_ns")
        }
        for r in range(table.num_rows):
            eid = meta_vals["episode_id"][r]
            try:
                extra = json.loads(meta_vals["extra"][r])
            except (TypeError, json.JSONDecodeError) as err:
                raise LogFormatError(
                    path, "extra", "a JSON object string", str(err), episode_id=eid
                ) from None
            try:
                meta = EpisodeMeta(
                    source=Source(meta_vals["source"][r]),
                    robot=meta_vals["robot"][r],
                    task=meta_vals["task"][r],
                    policy_version=meta_vals["policy_version"][r],
                    control_dt_s=meta_vals["control_dt_s"][r],
                    calib_hash=meta_vals["calib_hash"][r],
                    episode_id=eid,
                    seed=meta_vals["seed"][r],
                    extra=extra,
                )
            except ValueError as err:
                if isinstance(err, SchemaError):
                    raise LogFormatError.from_schema_error(path, err, eid) from None
                raise LogFormatError(path, "source", "real/sim/demo/eval", str(err), episode_id=eid) from None

            try:
                ep = Episode(
                    meta=meta,
                    obs=_row(step_cols, "obs", r),
                    action=_row(step_cols, "action", r),
                    reward=_row(step_cols, "reward", r),
                    terminated=_row(step_cols, "terminated", r),
                    truncated=_row(step_cols, "truncated", r),
                    t_ns=_row(step_cols, "t_ns", r),
                )
            except SchemaError as err:
                raise LogFormatError.from_schema_error(path, err, eid) from None
            if ep.n_steps != meta_vals["n_steps"][r]:
                raise LogFormatError(
                    path, "n_steps", str(ep.n_steps), str(meta_vals["n_steps"][r]), episode_id=eid
                )
            yield ep


def read_episode_ids(path: Path) -> list[str]:
    """Episode ids stored in a chunk (one small column read)."""
    try:
        return [str(v) for v in pq.read_table(path, columns=["episode_id"]).column(0).to_pylist()]
    except (pa.ArrowException, OSError) as err:
        raise LogFormatError(
            path, "episode_id", "a readable column", f"{type(err).__name__}: {err}"
        ) from None


def remove_stale_tmp(episodes_dir: Path) -> list[Path]:
    """Delete ``.*.tmp`` files left by a crash before a rename; returns what was removed."""
    removed: list[Path] = []
    if episodes_dir.is_dir():
        for p in episodes_dir.iterdir():
            if p.name.startswith(".") and p.name.endswith(".tmp"):
                p.unlink()
                removed.append(p)
        if removed:
            fsync_dir(episodes_dir)
    return removed
