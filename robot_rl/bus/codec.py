"""Bytes <-> messages for the bus: pure functions, no sockets. docs/bus.md is the normative spec.

Multipart layout (every socket except CONFLATE ones)::

    frame 0   topic bytes (PUB/SUB prefix filtering matches on this frame)
    frame 1   header: a MessagePack map
              {"kind": str, "env": Envelope map, <scalar fields of the kind>...,
               "arrays": [[name, dtype, shape, nbytes], ...]}
    frame 2+i raw little-endian, C-ordered bytes of arrays[i]

Single-part layout (CONFLATE sockets, which drop multipart messages)::

    bytes 0-3   magic b"RRLB"
    bytes 4-5   u16 LE schema_version
    bytes 6-7   u16 LE topic length Lt
    bytes 8-11  u32 LE header length Lh
    12..        topic (Lt bytes), header (Lh bytes), then each array buffer in ``arrays`` order,
                each starting at the next offset that is a multiple of 8 from byte 0
                (zero padding), and nothing after the last one.

:func:`decode` and :func:`decode_single` validate everything and raise exactly one exception type,
:class:`BusDecodeError`, whose ``reason`` is one of :data:`REASONS`; nothing else escapes, whatever
the input bytes (tests/unit/bus/test_codec.py fuzzes this). Decoded arrays are read-only
zero-copy views of the received buffers (``np.frombuffer``); copy one before writing to it.
"""

from __future__ import annotations

import dataclasses
import math
import struct
from collections.abc import Sequence
from typing import Any, NamedTuple, TypeAlias, Union

import msgspec
import numpy as np

from robot_rl.bus.messages import (
    BUS_SCHEMA_VERSION,
    MAX_NAME_LEN,
    MAX_NDIM,
    MESSAGE_SPECS,
    PAYLOAD_RULE_TYPES,
    ArrayField,
    Envelope,
    Message,
    MessageSpec,
    PayloadError,
    check_payload,
)

Buffer: TypeAlias = bytes | bytearray | memoryview
"""One received frame. ``zmq.Frame`` objects are passed as ``frame.buffer``."""

REASONS = (
    "bad_frames",  # wrong number of frames, or trailing bytes in a single-part message
    "truncated",  # a frame or buffer shorter than its header or prefix says
    "bad_magic",  # single-part prefix does not start with b"RRLB"
    "bad_header",  # header is not MessagePack, not a map, or a field has the wrong type or range
    "bad_version",  # schema_version is not BUS_SCHEMA_VERSION
    "unknown_kind",  # kind not in the registry
    "bad_fields",  # a field or array missing, unexpected or duplicated
    "bad_dtype",  # dtype not allowed, or not the dtype the field declares
    "bad_shape",  # wrong ndim, nbytes != prod(shape) * itemsize, or inconsistent shapes
    "oversized",  # an array, the header or the whole message over the receiver's limits
    "nan",  # NaN or inf in a float array whose field forbids it
    "bad_value",  # a value breaks a cross-field rule of its kind (messages.check_payload)
)
"""Every reason a frame set can be rejected for; counters are named ``"rejected/<reason>"``."""

ALLOWED_DTYPES = frozenset({"<f4", "<f8", "<i4", "<i8", "|u1", "|b1"})
"""The only dtype strings accepted on the wire (little-endian; one-byte types use ``"|"``)."""

MAGIC = b"RRLB"
_PREFIX = struct.Struct("<4sHHI")
PREFIX_BYTES = _PREFIX.size  # 12
ALIGN = 8


class BusDecodeError(ValueError):
    """Frames that are not a valid bus message. ``reason`` is one of :data:`REASONS`."""

    def __init__(self, reason: str, detail: str) -> None:
        assert reason in REASONS, reason
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}")


@dataclasses.dataclass(frozen=True)
class DecodeLimits:
    """Receiver-side size limits (bytes). Anything larger is rejected as ``oversized``.

    The defaults fit a policy snapshot of a few million parameters; a receiver that only expects
    observations should pass smaller limits.
    """

    max_header_bytes: int = 1 << 20
    max_array_bytes: int = 64 << 20
    max_total_bytes: int = 256 << 20
    max_arrays: int = 4096


DEFAULT_LIMITS = DecodeLimits()


class Decoded(NamedTuple):
    """A received message: its topic, envelope and typed payload."""

    topic: bytes
    env: Envelope
    msg: Message


class ArrayDesc(msgspec.Struct, array_like=True, frozen=True, forbid_unknown_fields=True):
    """Header entry for one array frame: ``[name, dtype, shape, nbytes]`` on the wire."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    nbytes: int


@dataclasses.dataclass(frozen=True)
class _KindCodec:
    """Precomputed per-kind tables so the hot path does no reflection."""

    spec: MessageSpec
    header_cls: type[msgspec.Struct]
    scalar_names: tuple[str, ...]
    fixed_arrays: dict[str, ArrayField]
    mapping_arrays: dict[str, ArrayField]  # field name -> spec, entries named "<field>/<key>"
    n_fields: int
    has_rules: bool  # check_payload has cross-field rules for this kind


def _kind_codec(spec: MessageSpec) -> _KindCodec:
    # Every header field is required on the wire (no defaults): a client in another language sends
    # all of them, and a missing one is an error rather than a silent default.
    fields: list[tuple[str, Any]] = [("env", Envelope)]
    fields += [(f.name, f.type) for f in spec.scalars]
    fields.append(("arrays", list[ArrayDesc]))
    header_cls = msgspec.defstruct(
        f"{spec.cls.__name__}Header",
        fields,
        tag=spec.kind,
        tag_field="kind",
        forbid_unknown_fields=True,
        frozen=True,
    )
    fixed = {f.name: f.array for f in spec.arrays if f.array is not None and not f.array.mapping}
    mapping = {f.name: f.array for f in spec.arrays if f.array is not None and f.array.mapping}
    n_fields = len(spec.scalars) + len(spec.arrays)
    has_rules = spec.cls in PAYLOAD_RULE_TYPES
    return _KindCodec(
        spec, header_cls, tuple(f.name for f in spec.scalars), fixed, mapping, n_fields, has_rules
    )


_BY_KIND: dict[str, _KindCodec] = {kind: _kind_codec(spec) for kind, spec in MESSAGE_SPECS.items()}
_BY_CLS: dict[type[Message], _KindCodec] = {kc.spec.cls: kc for kc in _BY_KIND.values()}
_BY_HEADER: dict[type[msgspec.Struct], _KindCodec] = {kc.header_cls: kc for kc in _BY_KIND.values()}
_HEADER_TYPES = tuple(kc.header_cls for kc in _BY_KIND.values())

# Built once: msgspec compiles the validating decoder for the tagged union of all header types.
_ENCODER = msgspec.msgpack.Encoder()
# Union[tuple] is the union of its members; msgspec dispatches on the "kind" tag in C.
_DECODER: msgspec.msgpack.Decoder[Any] = msgspec.msgpack.Decoder(type=Union[_HEADER_TYPES])  # noqa: UP007
_NP_DTYPES: dict[str, np.dtype[Any]] = {s: np.dtype(s) for s in ALLOWED_DTYPES}
_FLOAT_DTYPES = frozenset({"<f4", "<f8"})
# msgspec raises DecodeError/ValidationError, but also UnicodeDecodeError for invalid UTF-8 strings
# (a ValueError) and RecursionError for deeply nested input (found by the fuzz tests).
_MSGPACK_ERRORS = (ValueError, RecursionError, ArithmeticError)


# ------------------------------------------------------------------------------------------ encode


def _wire_array(name: str, value: object, field: ArrayField) -> tuple[ArrayDesc, memoryview]:
    """Header entry and C-contiguous little-endian buffer for one array; TypeError if it does not fit."""
    if not isinstance(value, np.ndarray):
        raise TypeError(f"array field {name!r}: expected np.ndarray, got {type(value).__name__}")
    want = _NP_DTYPES[field.dtype]
    if value.dtype is not want and value.dtype != want:
        # Same type in the other byte order is converted; anything else is the caller's bug, and
        # silently casting (float64 -> float32, say) would change the data.
        if value.dtype.newbyteorder("=") != want.newbyteorder("="):
            raise TypeError(f"array field {name!r}: expected dtype {want}, got {value.dtype}")
        value = value.astype(want)
    if (field.ndim is not None and value.ndim != field.ndim) or value.ndim > MAX_NDIM:
        raise TypeError(f"array field {name!r}: expected {field.ndim} dimensions, got shape {value.shape}")
    if not value.flags.c_contiguous:
        value = np.ascontiguousarray(value)
    # cast("B") of a C-contiguous buffer is a flat byte view; it refuses 0-d and empty views.
    if value.ndim == 0:
        buf = value.reshape(1).data.cast("B")
    elif value.size == 0:
        buf = memoryview(b"")
    else:
        buf = value.data.cast("B")
    return ArrayDesc(name, field.dtype, value.shape, value.nbytes), buf


def _encode_parts(env: Envelope, msg: Message) -> tuple[bytes, list[memoryview]]:
    kc = _BY_CLS.get(type(msg))
    if kc is None:
        raise TypeError(f"{type(msg).__name__} is not a registered bus message type")
    if kc.has_rules:
        try:
            check_payload(msg)
        except PayloadError as err:
            raise ValueError(f"{kc.spec.kind}: {err}") from None
    descs: list[ArrayDesc] = []
    bufs: list[memoryview] = []
    for name, field in kc.fixed_arrays.items():
        desc, buf = _wire_array(name, getattr(msg, name), field)
        descs.append(desc)
        bufs.append(buf)
    for name, field in kc.mapping_arrays.items():
        mapping = getattr(msg, name)
        for key, value in mapping.items():
            desc, buf = _wire_array(f"{name}/{key}", value, field)
            descs.append(desc)
            bufs.append(buf)
    header = kc.header_cls(env, *[getattr(msg, n) for n in kc.scalar_names], descs)
    return _ENCODER.encode(header), bufs


def encode(topic: bytes, env: Envelope, msg: Message) -> list[bytes | memoryview]:
    """Multipart frames ``[topic, header, *array buffers]`` for ``msg`` stamped with ``env``.

    Array frames are memoryviews of the message's arrays (no copy); send them before mutating the
    arrays. Raises TypeError for an unregistered type or an array of the wrong dtype/ndim and
    ValueError for a payload that breaks its kind's rules. NaN is *not* checked here: receivers
    reject it, and the sender's hot path stays cheap.
    """
    header, bufs = _encode_parts(env, msg)
    return [topic, header, *bufs]


def encode_single(topic: bytes, env: Envelope, msg: Message) -> bytes:
    """The single-part form (for CONFLATE sockets): prefix, topic, header, 8-byte aligned buffers."""
    header, bufs = _encode_parts(env, msg)
    if len(topic) > 0xFFFF:
        raise ValueError("topic longer than 65535 bytes")
    out = bytearray(_PREFIX.pack(MAGIC, env.schema_version & 0xFFFF, len(topic), len(header)))
    out += topic
    out += header
    for buf in bufs:
        out += bytes(-len(out) % ALIGN)
        out += buf
    return bytes(out)


# ------------------------------------------------------------------------------------------ decode


def _diagnose(header: Buffer, err: Exception) -> BusDecodeError:
    """Slow path after the typed decode failed: find the most specific reason for the rejection."""
    try:
        raw = msgspec.msgpack.decode(header)
    except _MSGPACK_ERRORS as err2:
        return BusDecodeError("bad_header", f"not MessagePack: {err2}")
    if not isinstance(raw, dict):
        return BusDecodeError("bad_header", f"header is a {type(raw).__name__}, not a map")
    env = raw.get("env")
    if isinstance(env, dict):
        version = env.get("schema_version")
        if isinstance(version, int) and version != BUS_SCHEMA_VERSION:
            return BusDecodeError("bad_version", f"schema_version {version}, expected {BUS_SCHEMA_VERSION}")
    kind = raw.get("kind")
    kc = _BY_KIND.get(kind) if isinstance(kind, str) else None
    if kc is None:
        return BusDecodeError("unknown_kind", f"kind {kind!r} (known: {sorted(_BY_KIND)})")
    expected = {"kind", "env", "arrays", *kc.scalar_names}
    got = {k for k in raw if isinstance(k, str)}
    if len(got) != len(raw) or got != expected:
        missing, extra = sorted(expected - got), sorted(map(str, got - expected))
        return BusDecodeError("bad_fields", f"{kind}: missing {missing}, unexpected {extra}")
    return BusDecodeError("bad_header", f"{kind}: {err}")


def _decode_header(header: Buffer, limits: DecodeLimits) -> tuple[Any, _KindCodec]:
    if len(header) > limits.max_header_bytes:
        raise BusDecodeError("oversized", f"header {len(header)} B > {limits.max_header_bytes} B")
    try:
        hdr = _DECODER.decode(header)
    except _MSGPACK_ERRORS as err:
        raise _diagnose(header, err) from None
    if hdr.env.schema_version != BUS_SCHEMA_VERSION:
        raise BusDecodeError(
            "bad_version", f"schema_version {hdr.env.schema_version}, expected {BUS_SCHEMA_VERSION}"
        )
    if len(hdr.arrays) > limits.max_arrays:
        raise BusDecodeError("oversized", f"{len(hdr.arrays)} arrays > {limits.max_arrays}")
    return hdr, _BY_HEADER[type(hdr)]


def _field_of(kc: _KindCodec, name: str) -> tuple[str, str | None, ArrayField]:
    """(field name, mapping key or None, spec) for an array name from the header."""
    field = kc.fixed_arrays.get(name)
    if field is not None:
        return name, None, field
    prefix, sep, key = name.partition("/")
    field = kc.mapping_arrays.get(prefix)
    if sep and field is not None and 0 < len(key) <= MAX_NAME_LEN:
        return prefix, key, field
    raise BusDecodeError("bad_fields", f"{kc.spec.kind}: unexpected array {name!r}")


def _check_desc(desc: ArrayDesc, field: ArrayField, limits: DecodeLimits) -> np.dtype[Any]:
    """Validate one header entry against its field; return the numpy dtype."""
    dtype = _NP_DTYPES.get(desc.dtype)
    if dtype is None:
        raise BusDecodeError(
            "bad_dtype", f"{desc.name}: dtype {desc.dtype!r} not in {sorted(ALLOWED_DTYPES)}"
        )
    if desc.dtype != field.dtype:
        raise BusDecodeError(
            "bad_dtype", f"{desc.name}: dtype {desc.dtype!r}, field declares {field.dtype!r}"
        )
    ndim = len(desc.shape)
    if (field.ndim is not None and ndim != field.ndim) or ndim > MAX_NDIM:
        raise BusDecodeError("bad_shape", f"{desc.name}: {ndim} dimensions, expected {field.ndim}")
    count = 1
    for d in desc.shape:
        if d < 0:
            raise BusDecodeError("bad_shape", f"{desc.name}: negative dimension in {desc.shape}")
        count *= d  # Python int: no overflow, so a huge declared shape is caught below
    nbytes = count * dtype.itemsize
    if nbytes > limits.max_array_bytes:
        raise BusDecodeError("oversized", f"{desc.name}: {nbytes} B > {limits.max_array_bytes} B")
    if desc.nbytes != nbytes:
        raise BusDecodeError("bad_shape", f"{desc.name}: nbytes {desc.nbytes} != {desc.shape} x {dtype}")
    return dtype


def _finite(arr: np.ndarray) -> bool:
    # A dot product with itself is finite iff every element is (NaN and inf propagate), unless it
    # overflows (|x| > ~1e19 in float32), so the exact element-wise test runs only when the cheap
    # one fails. It is ~2x faster than np.isfinite(arr).all() on observation-sized arrays.
    flat = arr if arr.ndim == 1 else arr.reshape(-1)
    try:
        if math.isfinite(np.dot(flat, flat)):
            return True
    except RuntimeWarning:
        pass  # the overflow warning raised as an error (python -W error): fall through to the exact test
    return bool(np.isfinite(flat).all())


_DESC_CACHE_MAX = 4096
_Resolved: TypeAlias = tuple[str, "str | None", "np.dtype[Any]", bool]
_desc_cache: dict[tuple[str, ArrayDesc, int], _Resolved] = {}


def _resolve(kc: _KindCodec, desc: ArrayDesc, limits: DecodeLimits) -> _Resolved:
    """(field, mapping key, dtype, check finiteness) of a header entry, validated.

    Memoised on (kind, descriptor, array size limit) -- everything the checks depend on -- because
    a stream repeats the same few descriptors; bounded so a flood of distinct ones cannot grow it.
    """
    cache_key = (kc.spec.kind, desc, limits.max_array_bytes)
    hit = _desc_cache.get(cache_key)
    if hit is not None:
        return hit
    field_name, map_key, field = _field_of(kc, desc.name)
    dtype = _check_desc(desc, field, limits)
    if len(_desc_cache) >= _DESC_CACHE_MAX:
        _desc_cache.clear()
    out = (field_name, map_key, dtype, field.finite and desc.dtype in _FLOAT_DTYPES)
    _desc_cache[cache_key] = out
    return out


def _build(hdr: Any, kc: _KindCodec, buffers: Sequence[Buffer], limits: DecodeLimits) -> Message:
    """The typed message from a validated header and its array buffers (one per ``hdr.arrays``)."""
    values: dict[str, Any] = {n: getattr(hdr, n) for n in kc.scalar_names}
    for name in kc.mapping_arrays:
        values[name] = {}
    total = 0
    max_total = limits.max_total_bytes
    for i, desc in enumerate(hdr.arrays):
        buf = buffers[i]
        field_name, key, dtype, check_finite = _resolve(kc, desc, limits)
        nbytes = desc.nbytes
        total += nbytes
        if total > max_total:
            raise BusDecodeError("oversized", f"arrays total {total} B > {max_total} B")
        if len(buf) != nbytes:
            reason = "truncated" if len(buf) < nbytes else "bad_shape"
            raise BusDecodeError(reason, f"{desc.name}: {len(buf)} B, header says {nbytes} B")
        arr = np.frombuffer(buf, dtype=dtype)
        if len(desc.shape) != 1:
            arr = arr.reshape(desc.shape)
        if check_finite and not _finite(arr):
            raise BusDecodeError("nan", f"{desc.name}: non-finite values")
        if key is None:
            if field_name in values:
                raise BusDecodeError("bad_fields", f"{kc.spec.kind}: array {field_name!r} twice")
            values[field_name] = arr
        else:
            mapping = values[field_name]
            if key in mapping:
                raise BusDecodeError("bad_fields", f"{kc.spec.kind}: array {desc.name!r} twice")
            mapping[key] = arr
    if len(values) != kc.n_fields:
        missing = sorted(set(kc.fixed_arrays) - set(values))
        raise BusDecodeError("bad_fields", f"{kc.spec.kind}: missing arrays {missing}")
    msg = kc.spec.cls(**values)
    if kc.has_rules:
        try:
            check_payload(msg)
        except PayloadError as err:
            raise BusDecodeError("bad_value", f"{kc.spec.kind}: {err}") from None
    return msg


def decode(frames: Sequence[Buffer], limits: DecodeLimits = DEFAULT_LIMITS) -> Decoded:
    """Parse multipart ``frames`` (``[topic, header, *arrays]``); raises only :class:`BusDecodeError`."""
    if len(frames) < 2:
        raise BusDecodeError("bad_frames", f"{len(frames)} frames, need topic and header")
    hdr, kc = _decode_header(frames[1], limits)
    if len(frames) != 2 + len(hdr.arrays):
        raise BusDecodeError(
            "bad_frames", f"{len(frames)} frames, header lists {len(hdr.arrays)} arrays (+2 expected)"
        )
    msg = _build(hdr, kc, frames[2:], limits)
    return Decoded(bytes(frames[0]), hdr.env, msg)


def decode_single(data: Buffer, limits: DecodeLimits = DEFAULT_LIMITS) -> Decoded:
    """Parse one single-part message (see the module docstring); raises only :class:`BusDecodeError`."""
    view = memoryview(data).cast("B") if not isinstance(data, bytes) else memoryview(data)
    if len(view) < PREFIX_BYTES:
        raise BusDecodeError("truncated", f"{len(view)} B, shorter than the {PREFIX_BYTES} B prefix")
    magic, version, topic_len, header_len = _PREFIX.unpack_from(view)
    if magic != MAGIC:
        raise BusDecodeError("bad_magic", f"magic {bytes(magic)!r}, expected {MAGIC!r}")
    if version != BUS_SCHEMA_VERSION:
        raise BusDecodeError("bad_version", f"schema_version {version}, expected {BUS_SCHEMA_VERSION}")
    header_end = PREFIX_BYTES + topic_len + header_len
    if len(view) < header_end:
        raise BusDecodeError("truncated", f"{len(view)} B, prefix says topic+header end at {header_end}")
    topic = bytes(view[PREFIX_BYTES : PREFIX_BYTES + topic_len])
    hdr, kc = _decode_header(view[PREFIX_BYTES + topic_len : header_end], limits)
    buffers: list[memoryview] = []
    pos = header_end
    for desc in hdr.arrays:
        pos += -pos % ALIGN
        n = desc.nbytes if isinstance(desc.nbytes, int) and desc.nbytes >= 0 else 0
        # Slicing past the end yields a short buffer, which _build reports as truncated.
        buffers.append(view[pos : pos + n])
        pos += n
    if len(view) > pos:
        raise BusDecodeError("bad_frames", f"{len(view) - pos} trailing bytes after the last array")
    msg = _build(hdr, kc, buffers, limits)
    return Decoded(topic, hdr.env, msg)
