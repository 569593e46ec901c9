"""JSON <-> numpy for TF Serving's REST v1 and the Open Inference Protocol v2.

orjson parses, numpy converts each input in one call, and responses are written by orjson
straight from numpy arrays (OPT_SERIALIZE_NUMPY), so JSON work stays a small share of a request.
Large row-format bodies of one float input (``{"instances": [[...], ...]}``) take a faster road:
simdjson copies the numbers straight into a buffer of doubles, without a Python float for each
(about 20 us instead of 70 for 1,024 numbers); anything that road does not take plainly goes the
general way, which also says what is wrong with a bad body.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import orjson
import simdjson
import torch

from .errors import ApiError

DUMPS_OPTS = orjson.OPT_SERIALIZE_NUMPY

_TORCH_TO_NUMPY = {
    torch.float32: np.float32,
    torch.float64: np.float64,
    torch.float16: np.float32,
    torch.bfloat16: np.float32,
    torch.int64: np.int64,
    torch.int32: np.int32,
    torch.int16: np.int16,
    torch.int8: np.int8,
    torch.uint8: np.uint8,
    torch.bool: np.bool_,
}
V2_TO_NUMPY = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
}
NUMPY_TO_V2 = {np.dtype(v): k for k, v in V2_TO_NUMPY.items()}
_TF_DTYPE = {
    np.dtype(np.float32): "DT_FLOAT",
    np.dtype(np.float64): "DT_DOUBLE",
    np.dtype(np.int64): "DT_INT64",
    np.dtype(np.int32): "DT_INT32",
    np.dtype(np.int16): "DT_INT16",
    np.dtype(np.int8): "DT_INT8",
    np.dtype(np.uint8): "DT_UINT8",
    np.dtype(np.bool_): "DT_BOOL",
    np.dtype(np.float16): "DT_HALF",
}


def numpy_dtype(dtype: torch.dtype) -> np.dtype:
    """The numpy dtype JSON numbers are converted to for a model input of ``dtype``."""
    return np.dtype(_TORCH_TO_NUMPY.get(dtype, np.float32))


def tf_dtype(dtype: torch.dtype) -> str:
    return _TF_DTYPE.get(numpy_dtype(dtype), "DT_INVALID")


def v2_dtype(dtype: torch.dtype) -> str:
    return NUMPY_TO_V2.get(numpy_dtype(dtype), "FP32")


@dataclass
class Request:
    """A decoded predict/infer request: one array per model input, in the model's input order."""

    arrays: list[np.ndarray]
    rows: int | None  # shared first dimension, or None when the request cannot be batched
    columnar: bool = False
    requested_outputs: list[str] | None = None
    id: str | None = None


def loads(body: bytes) -> dict:
    if not body:
        raise ApiError(400, "JSON Parse error: the request body is empty")
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise ApiError(400, f"JSON Parse error: {e}") from None
    if not isinstance(doc, dict):
        raise ApiError(400, f"the request body must be a JSON object, got {type(doc).__name__}")
    return doc


def dumps(obj) -> bytes:
    return orjson.dumps(obj, option=DUMPS_OPTS)


def to_array(value, dtype: np.dtype, what: str) -> np.ndarray:
    """Nested JSON lists -> array of ``dtype``; strings, nulls, objects and ragged rows are 400s."""
    try:
        arr = np.array(value)
    except (ValueError, TypeError) as e:
        raise ApiError(400, f"{what}: not a rectangular array of numbers ({_first_line(e)})") from None
    kind = arr.dtype.kind
    if kind not in "fiub":
        found = {"U": "strings", "S": "bytes", "O": "null, objects or mixed types"}.get(kind, str(arr.dtype))
        raise ApiError(400, f"{what}: expected numbers for a {dtype.name} tensor, found {found}")
    if arr.dtype != dtype:
        arr = arr.astype(dtype)
    return arr


def raw_array(data: bytes, dtype: np.dtype, what: str) -> np.ndarray:
    """Little-endian row-major bytes -> a flat array (the caller checks the shape)."""
    dtype = np.dtype(dtype).newbyteorder("<")
    if len(data) % dtype.itemsize:
        raise ApiError(400, f"{what}: {len(data)} bytes is not a whole number of {dtype.name} values")
    return np.frombuffer(data, dtype=dtype)


def little_endian_bytes(a: np.ndarray) -> bytes:
    return a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes()


def _first_line(e: BaseException) -> str:
    return (str(e).splitlines() or [type(e).__name__])[0]


def _rows(arrays: list[np.ndarray]) -> int | None:
    if not arrays or any(a.ndim == 0 for a in arrays):
        return None
    n = arrays[0].shape[0]
    return n if n > 0 and all(a.shape[0] == n for a in arrays) else None


def _check_exact(model, arrays: list[np.ndarray]) -> None:
    """For torch.export programs the input shapes are known exactly: say what is wrong up front."""
    for spec, arr in zip(model.inputs, arrays, strict=False):
        if not spec.exact or spec.shape is None:
            continue
        want = spec.shape
        ok = len(want) == arr.ndim and all(w == -1 or w == g for w, g in zip(want, arr.shape, strict=False))
        if not ok:
            shown = ["N" if w == -1 else w for w in want]
            raise ApiError(400, f"input {spec.name!r} has shape {list(arr.shape)}; the model expects {shown}")


def _named(model, value: dict, what: str) -> list:
    names = [s.name for s in model.inputs]
    missing = [n for n in names if n not in value]
    extra = [k for k in value if k not in names]
    if missing or extra:
        raise ApiError(400, f"{what}: input names {sorted(value)} do not match the model's inputs {names}")
    return [value[n] for n in names]


# ---- TF Serving REST v1 --------------------------------------------------------------------
FAST_ROWS_MIN_BYTES = 1024  # below this, orjson's general road is as fast
_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def decode_v1_body(body: bytes, model) -> Request:
    """A v1 predict body -> Request: the fast road for big rows of numbers, else the general one."""
    if len(body) >= FAST_ROWS_MIN_BYTES and len(model.inputs) == 1 and not model.inputs[0].exact:
        dtype = numpy_dtype(model.inputs[0].dtype)
        if dtype in _FLOAT_DTYPES:
            arr = _rows_of_numbers(body, dtype)
            if arr is not None:
                return Request([arr], arr.shape[0], False)
    return decode_v1(loads(body), model)


def _rows_of_numbers(body: bytes, dtype: np.dtype) -> np.ndarray | None:
    """``{"instances": [[n, ...], ...]}`` with equal rows of numbers only -> a 2-D array; else None."""
    try:
        doc = simdjson.Parser().parse(body)
        if not isinstance(doc, simdjson.Object) or len(doc) != 1:
            return None
        inst = doc.get("instances")
        if not isinstance(inst, simdjson.Array):
            return None
        rows = len(inst)
        if not rows:
            return None
        first = inst[0]
        if not isinstance(first, simdjson.Array) or not len(first):
            return None
        width = len(first)
        if any(not isinstance(r, simdjson.Array) or len(r) != width for r in inst):
            return None
        # Only numbers pass (strings, null, booleans and nested arrays raise); ints become doubles.
        flat = np.frombuffer(inst.as_buffer(of_type="d"), dtype=np.float64)
    except (ValueError, TypeError, RuntimeError, IndexError):
        return None
    if flat.size != rows * width:  # an element was itself an array
        return None
    return flat.astype(dtype).reshape(rows, width)


def decode_v1(doc: dict, model) -> Request:
    sig = doc.get("signature_name")
    if sig not in (None, "", "serving_default"):
        raise ApiError(400, f'Serving signature name: "{sig}" not found in signature def; accepted: serving_default')
    specs = model.inputs
    if "instances" in doc:
        if "inputs" in doc:
            raise ApiError(400, 'use either "instances" (row format) or "inputs" (columnar format), not both')
        inst = doc["instances"]
        if not isinstance(inst, list):
            raise ApiError(400, f'"instances" must be a list of rows, got {type(inst).__name__}')
        if not inst:
            raise ApiError(400, '"instances" is empty')
        if isinstance(inst[0], dict):
            _reject_b64(inst[0])
            if not all(isinstance(r, dict) for r in inst):
                raise ApiError(400, '"instances": mix of named (objects) and unnamed rows')
            names = [sp.name for sp in specs]
            if len(specs) == 1 and len(inst[0]) == 1 and names[0] not in inst[0]:
                names = list(inst[0])  # one input, named differently by the client: accept it
            try:
                values = [[r[n] for r in inst] for n in names]
            except KeyError as e:
                raise ApiError(
                    400,
                    f'"instances": a row lacks input {e.args[0]!r}; the model\'s inputs are '
                    f"{[sp.name for sp in specs]}",
                ) from None
        else:
            if len(specs) > 1:
                raise ApiError(
                    400, f"the model has inputs {[sp.name for sp in specs]}: send each row as an object naming them"
                )
            values = [inst]
        arrays = [to_array(v, numpy_dtype(s.dtype), "instances") for v, s in zip(values, specs, strict=False)]
        columnar = False
    elif "inputs" in doc:
        val = doc["inputs"]
        if val == [] or val == {} or val is None:
            raise ApiError(400, '"inputs" is empty')
        if isinstance(val, dict):
            _reject_b64(val)
            if len(specs) == 1 and len(val) == 1:
                values = [next(iter(val.values()))]
            else:
                values = _named(model, val, "inputs")
        else:
            if len(specs) > 1:
                raise ApiError(400, f'the model has inputs {[sp.name for sp in specs]}: send "inputs" as an object')
            values = [val]
        arrays = [to_array(v, numpy_dtype(s.dtype), "inputs") for v, s in zip(values, specs, strict=False)]
        columnar = True
    else:
        raise ApiError(400, "Missing 'inputs' or 'instances' key")
    _check_exact(model, arrays)
    rows = _rows(arrays)
    if not columnar and rows is None:
        raise ApiError(400, '"instances": every named input needs the same number of rows')
    return Request(arrays, rows, columnar)


def _reject_b64(v: dict) -> None:
    if "b64" in v:
        raise ApiError(400, 'binary {"b64": ...} inputs are not supported by the PyTorch server')


def encode_v1(outputs: dict[str, np.ndarray], single: bool, columnar: bool) -> bytes:
    if columnar:
        if single:
            return orjson.dumps({"outputs": next(iter(outputs.values()))}, option=DUMPS_OPTS)
        return orjson.dumps({"outputs": outputs}, option=DUMPS_OPTS)
    if single:
        return orjson.dumps({"predictions": next(iter(outputs.values()))}, option=DUMPS_OPTS)
    n = min(a.shape[0] for a in outputs.values() if a.ndim)
    rows = [{k: a[i] for k, a in outputs.items()} for i in range(n)]
    return orjson.dumps({"predictions": rows}, option=DUMPS_OPTS)


# ---- Open Inference Protocol v2 ------------------------------------------------------------
def decode_v2(doc: dict, model) -> Request:
    inputs = doc.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise ApiError(400, '"inputs" must be a non-empty list of {name, shape, datatype, data}')
    specs = model.inputs
    if len(inputs) != len(specs):
        raise ApiError(400, f"got {len(inputs)} inputs; the model takes {len(specs)}: {[s.name for s in specs]}")
    by_name = {s.name: i for i, s in enumerate(specs)}
    ordered: list = [None] * len(specs)
    for pos, item in enumerate(inputs):
        if not isinstance(item, dict):
            raise ApiError(400, 'each entry of "inputs" must be an object')
        name = item.get("name")
        idx = by_name.get(name, pos if len(specs) == 1 or name not in by_name else None)
        if len(specs) > 1 and name not in by_name:
            raise ApiError(400, f"unknown input {name!r}; the model's inputs are {list(by_name)}")
        if ordered[idx] is not None:
            raise ApiError(400, f"input {name!r} is given twice; the model's inputs are {list(by_name)}, once each")
        ordered[idx] = item
    arrays = []
    for spec, item in zip(specs, ordered, strict=False):
        name = item.get("name", spec.name)
        dt = item.get("datatype")
        if dt not in V2_TO_NUMPY:
            raise ApiError(400, f"input {name!r}: datatype {dt!r} is not supported; accepted: {sorted(V2_TO_NUMPY)}")
        shape = item.get("shape")
        if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
            raise ApiError(400, f'input {name!r}: "shape" must be a list of non-negative integers')
        if "data" not in item:
            raise ApiError(
                400,
                f'input {name!r}: "data" is missing (or send it as binary data: the input\'s '
                '"parameters": {"binary_data_size": N} and the Inference-Header-Content-Length header)',
            )
        want = np.dtype(V2_TO_NUMPY[dt])
        model_dt = numpy_dtype(spec.dtype)
        if want.kind == "f" and model_dt.kind == "f":
            want = model_dt  # FP64 data for an FP32 model: convert rather than fail inside the model
        arr = to_array(item["data"], want, f"input {name!r}")
        if arr.size != int(np.prod(shape)):
            raise ApiError(400, f"input {name!r}: shape {shape} needs {int(np.prod(shape))} values, got {arr.size}")
        arrays.append(arr.reshape(shape))
    _check_exact(model, arrays)
    requested = doc.get("outputs")
    names = None
    if requested:
        if not isinstance(requested, list) or not all(isinstance(o, dict) and "name" in o for o in requested):
            raise ApiError(400, '"outputs" must be a list of {"name": ...}')
        names = [o["name"] for o in requested]
    rid = doc.get("id")
    return Request(arrays, _rows(arrays), True, names, rid if isinstance(rid, str) else None)


def encode_v2(model_name: str, version: int, outputs: dict[str, np.ndarray], req: Request) -> bytes:
    names = req.requested_outputs or list(outputs)
    unknown = [n for n in names if n not in outputs]
    if unknown:
        raise ApiError(400, f"unknown output(s) {unknown}; the model's outputs are {list(outputs)}")
    out = []
    for n in names:
        a = outputs[n]
        out.append(
            {"name": n, "datatype": NUMPY_TO_V2.get(a.dtype, "FP32"), "shape": list(a.shape), "data": a.reshape(-1)}
        )
    body = {"model_name": model_name, "model_version": str(version), "outputs": out}
    if req.id is not None:
        body["id"] = req.id
    return orjson.dumps(body, option=DUMPS_OPTS)


# ---- the v2 binary tensor extension --------------------------------------------------------
BINARY_HEADER = b"inference-header-content-length"


def split_binary_v2(body: bytes, header_length: bytes) -> dict:
    """A binary-extension body (JSON of ``header_length`` bytes, then each binary input's bytes in
    order of ``inputs``) -> the JSON document with those inputs' ``data`` as flat arrays."""
    try:
        n = int(header_length)
    except ValueError:
        raise ApiError(400, f"bad Inference-Header-Content-Length {header_length!r}") from None
    if not 0 < n <= len(body):
        raise ApiError(400, f"Inference-Header-Content-Length {n} is outside the body of {len(body)} bytes")
    doc = loads(body[:n])
    offset = n
    for item in doc.get("inputs") or []:
        params = item.get("parameters") if isinstance(item, dict) else None
        size = params.get("binary_data_size") if isinstance(params, dict) else None
        if size is None:
            continue
        name = item.get("name")
        if not isinstance(size, int) or size < 0 or offset + size > len(body):
            raise ApiError(
                400, f"input {name!r}: binary_data_size {size!r} does not fit the {len(body) - offset} bytes left"
            )
        if "data" in item:
            raise ApiError(400, f'input {name!r}: both "data" and binary_data_size are given; use one')
        dtype = V2_TO_NUMPY.get(item.get("datatype"))
        if dtype is not None:
            item["data"] = raw_array(body[offset : offset + size], np.dtype(dtype), f"input {name!r}")
        offset += size
    if offset != len(body):
        raise ApiError(
            400, f"{len(body) - offset} bytes after the binary inputs; binary_data_size must add up to the body"
        )
    return doc


@dataclass
class BinaryChoice:
    """Which outputs go back as binary data: each output's ``binary_data`` parameter, else the
    request's ``binary_data_output`` parameter."""

    default: bool
    per_output: dict[str, bool]

    def __bool__(self) -> bool:
        return self.default or any(self.per_output.values())

    def __call__(self, name: str) -> bool:
        return self.per_output.get(name, self.default)


def binary_outputs(doc: dict) -> BinaryChoice:
    params = doc.get("parameters")
    default = isinstance(params, dict) and params.get("binary_data_output") is True
    per_output = {}
    for o in doc.get("outputs") or []:
        p = o.get("parameters") if isinstance(o, dict) else None
        if isinstance(p, dict) and isinstance(p.get("binary_data"), bool):
            per_output[o.get("name")] = p["binary_data"]
    return BinaryChoice(default, per_output)


def encode_v2_binary(
    model_name: str, version: int, outputs: dict[str, np.ndarray], req: Request, binary: BinaryChoice
) -> tuple[bytes, int]:
    """The v2 response with the chosen outputs as binary data: (body, length of its JSON part)."""
    names = req.requested_outputs or list(outputs)
    unknown = [n for n in names if n not in outputs]
    if unknown:
        raise ApiError(400, f"unknown output(s) {unknown}; the model's outputs are {list(outputs)}")
    out, blobs = [], []
    for n in names:
        a = outputs[n]
        entry = {"name": n, "datatype": NUMPY_TO_V2.get(a.dtype, "FP32"), "shape": list(a.shape)}
        if binary(n):
            blob = little_endian_bytes(a)
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = a.reshape(-1)
        out.append(entry)
    body = {"model_name": model_name, "model_version": str(version), "outputs": out}
    if req.id is not None:
        body["id"] = req.id
    head = orjson.dumps(body, option=DUMPS_OPTS)
    return b"".join([head, *blobs]), len(head)
