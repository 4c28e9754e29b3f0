"""Metadata inside a .tflite file: one JSON record stored in the flatbuffer's own `metadata` table.

The model stays one self-describing file (no sidecar): input spec, sex input, output meaning, quantisation,
source-model validation MAE. Reading needs only `flatbuffers` + the schema module that ai-edge-litert ships
(no TensorFlow), so edge boxes and the demo apps' tooling can read it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from edge_boneage import EdgeBoneageError

METADATA_NAME = "edge_boneage"
SCHEMA_VERSION = 1


def _schema():
    try:
        from ai_edge_litert import schema_py_generated as schema
    except ImportError:  # pragma: no cover - tflite-runtime-only boxes
        from tflite_runtime import schema_py_generated as schema  # type: ignore
    return schema


def _as_bytes(model: bytes | str | os.PathLike) -> tuple[bytes, str]:
    if isinstance(model, (bytes, bytearray)):
        return bytes(model), "<bytes>"
    path = Path(model)
    try:
        return path.read_bytes(), str(path)
    except OSError as exc:
        raise EdgeBoneageError(f"{path}: cannot read model file ({exc.strerror or exc})") from None


def _check_identifier(buf: bytes, where: str) -> None:
    if len(buf) < 8 or buf[4:8] != b"TFL3":
        raise EdgeBoneageError(f"{where}: not a TFLite/LiteRT flatbuffer (missing 'TFL3' identifier)")


def add_metadata(model: bytes, record: dict, name: str = METADATA_NAME) -> bytes:
    """Return a copy of the flatbuffer `model` with `record` (JSON) stored under metadata `name` (replacing one)."""
    import flatbuffers

    _check_identifier(model, "<model bytes>")
    schema = _schema()
    mt = schema.ModelT.InitFromPackedBuf(bytearray(model), 0)
    _inline_buffers(mt, model)
    payload = json.dumps({"schema_version": SCHEMA_VERSION, **record}, sort_keys=True).encode()
    buf = schema.BufferT()
    buf.data = np.frombuffer(payload, dtype=np.uint8)
    mt.buffers = list(mt.buffers or []) + [buf]
    entry = schema.MetadataT()
    entry.name = name
    entry.buffer = len(mt.buffers) - 1
    keep = [m for m in (mt.metadata or []) if _name(m.name) != name]
    mt.metadata = keep + [entry]
    builder = flatbuffers.Builder(len(model) + len(payload) + 1024)
    builder.Finish(mt.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _inline_buffers(mt, model: bytes) -> None:
    """Buffers stored after the flatbuffer (``offset`` / ``size``, as ai-edge-quantizer writes them) are copied
    inline: the offsets would point at the wrong place once the flatbuffer is rebuilt."""
    for buf in mt.buffers or []:
        off, size = int(getattr(buf, "offset", 0) or 0), int(getattr(buf, "size", 0) or 0)
        if off > 1 and size > 0:
            buf.data = np.frombuffer(model[off:off + size], dtype=np.uint8)
            buf.offset, buf.size = 0, 0


def _name(raw) -> str:
    return raw.decode() if isinstance(raw, (bytes, bytearray)) else str(raw)


def list_metadata(model: bytes | str | os.PathLike) -> dict[str, bytes]:
    """All metadata entries of a .tflite as {name: raw bytes} (includes the converter's own entries)."""
    buf, where = _as_bytes(model)
    _check_identifier(buf, where)
    schema = _schema()
    try:
        m = schema.Model.GetRootAs(buf, 0)
        out = {}
        for i in range(m.MetadataLength()):
            md = m.Metadata(i)
            b = m.Buffers(md.Buffer())
            if b.DataLength():
                data = b.DataAsNumpy().tobytes()
            elif b.Offset() and b.Size():  # large models keep buffers after the flatbuffer
                data = buf[b.Offset(): b.Offset() + b.Size()]
            else:
                data = b""
            out[_name(md.Name())] = data
        return out
    except EdgeBoneageError:
        raise
    except Exception as exc:  # a corrupt flatbuffer raises anything from struct/IndexError
        raise EdgeBoneageError(f"{where}: corrupt LiteRT flatbuffer ({type(exc).__name__}: {exc})") from None


def read_metadata(model: bytes | str | os.PathLike, name: str = METADATA_NAME) -> dict | None:
    """The edge-boneage metadata record of a .tflite, or None if the file has none."""
    raw = list_metadata(model).get(name)
    if raw is None:
        return None
    try:
        return json.loads(raw.decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        where = model if not isinstance(model, (bytes, bytearray)) else "<bytes>"
        raise EdgeBoneageError(f"{where}: metadata '{name}' is not valid JSON ({exc})") from None
