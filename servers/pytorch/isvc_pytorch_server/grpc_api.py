"""The gRPC API: the Open Inference Protocol's GRPCInferenceService, TF Serving's PredictionService
(Predict, GetModelMetadata) and ModelService (GetModelStatus), and grpc.health.v1.

It runs as a grpc.aio server in the REST app's event loop and serves the same model registry
through the same batcher, so gRPC and REST requests share forward passes. Requests are turned
into the same JSON-shaped documents the REST codec validates (with numpy arrays as the data),
so both protocols accept and refuse exactly the same inputs; an :class:`ApiError`'s HTTP status
becomes the matching gRPC status code.
"""

from __future__ import annotations

import asyncio
import logging
import time

import grpc
import numpy as np
from google.protobuf import json_format, wrappers_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from . import __version__, codec
from .errors import ApiError
from .wire import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    grpc_predict_v2_pb2,
    grpc_predict_v2_pb2_grpc,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    tensor_pb2,
)

log = logging.getLogger(__name__)

HTTP_TO_GRPC = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    404: grpc.StatusCode.NOT_FOUND,
    405: grpc.StatusCode.UNIMPLEMENTED,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    500: grpc.StatusCode.INTERNAL,
    503: grpc.StatusCode.UNAVAILABLE,
}

# TensorProto dtype -> (numpy dtype, the *_val field holding typed values)
TF_DTYPES = {
    1: (np.float32, "float_val"),
    2: (np.float64, "double_val"),
    3: (np.int32, "int_val"),
    4: (np.uint8, "int_val"),
    5: (np.int16, "int_val"),
    6: (np.int8, "int_val"),
    9: (np.int64, "int64_val"),
    10: (np.bool_, "bool_val"),
    17: (np.uint16, "int_val"),
    19: (np.float16, "half_val"),
    22: (np.uint32, "uint32_val"),
    23: (np.uint64, "uint64_val"),
}
NUMPY_TO_TF = {np.dtype(v[0]): k for k, v in TF_DTYPES.items()}
# Open Inference Protocol datatype -> InferTensorContents field (FP16 has none: raw bytes only)
V2_CONTENTS = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
}
# The one GetModelMetadataRequest.metadata_field TF Serving (and so this server) answers.
SIGNATURE_DEF = "signature_def"
SERVICE_NAMES = (
    "inference.GRPCInferenceService",
    "tensorflow.serving.PredictionService",
    "tensorflow.serving.ModelService",
)


class GrpcApi:
    """The gRPC servicers over the REST app's registry, batcher and metrics."""

    def __init__(self, app, port: int, host: str = "0.0.0.0"):
        self.app = app
        self.port = port
        self.host = host
        self.server: grpc.aio.Server | None = None
        # grpcio-health-checking's servicer: Check answers from, and Watch streams, the statuses set here.
        self.health = _Health()
        self._health_tasks: set[asyncio.Task] = set()
        self._stopping: asyncio.Task | None = None

    async def start(self) -> None:
        limit = self.app.max_request_bytes
        self.server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", limit),
                ("grpc.max_send_message_length", -1),
                ("grpc.so_reuseport", 0),
            ]
        )
        grpc_predict_v2_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(_Inference(self), self.server)
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(_Prediction(self), self.server)
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(_ModelStatus(self), self.server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        address = f"{self.host}:{self.port}"
        if self.server.add_insecure_port(address) == 0:
            raise RuntimeError(f"cannot listen for gRPC on {address}")
        loop = asyncio.get_running_loop()
        # The poller thread loads versions; health statuses are set on this loop, in order.
        self.app.versions.on_serving_changed.append(lambda: loop.call_soon_threadsafe(self._publish_health))
        await self._set_health()
        await self.server.start()
        log.info("gRPC listening on %s", address)

    def begin_shutdown(self, grace: float) -> asyncio.Task | None:
        """Stop taking new calls now; the task ends when in-flight calls finished (or grace ran out)."""
        if self.server is None:
            return None
        if self._stopping is None:
            self._stopping = asyncio.ensure_future(self._stop(grace))
        return self._stopping

    async def _stop(self, grace: float) -> None:
        self.health.draining = True
        await self.health.enter_graceful_shutdown()  # every status NOT_SERVING, and no more changes
        await self.server.stop(grace)

    def _publish_health(self) -> None:
        task = asyncio.ensure_future(self._set_health())
        self._health_tasks.add(task)
        task.add_done_callback(self._health_tasks.discard)

    async def _set_health(self) -> None:
        """Overall (""), each service and the model's name: SERVING exactly when ready()."""
        status = health_pb2.HealthCheckResponse.SERVING if self.ready() else health_pb2.HealthCheckResponse.NOT_SERVING
        for service in ("", *SERVICE_NAMES, self.app.versions.name):
            await self.health.set(service, status)

    # ---- shared by the servicers -----------------------------------------------------------
    def ready(self) -> bool:
        return self.app.versions.serving is not None and not self.app.shutting_down and self._stopping is None

    async def call(self, endpoint: str, context, work):
        """Run ``work()``, count it in /metrics, and turn an ApiError into a gRPC status."""
        t0 = time.perf_counter()
        code = grpc.StatusCode.OK
        try:
            if self._stopping is not None or self.app.shutting_down:
                raise ApiError(503, "the server is shutting down")
            return await work()
        except ApiError as e:
            code = HTTP_TO_GRPC.get(e.status, grpc.StatusCode.UNKNOWN)
            message = e.message
        except Exception as e:  # a bug here must still answer with a status
            log.exception("unhandled error in gRPC %s", endpoint)
            code = grpc.StatusCode.INTERNAL
            message = f"internal error: {type(e).__name__}: {e}"
        finally:
            self.app.metrics.observe_request(endpoint, code.name, time.perf_counter() - t0, protocol="grpc")
        await context.abort(code, message)


def _version(text: str) -> int | None:
    if not text:
        return None
    if not text.isdigit():
        raise ApiError(400, f"version must be a number, got {text!r}")
    return int(text)


# ---- Open Inference Protocol ---------------------------------------------------------------
class _Inference(grpc_predict_v2_pb2_grpc.GRPCInferenceServiceServicer):
    def __init__(self, api: GrpcApi):
        self.api = api

    async def ServerLive(self, request, context):
        return grpc_predict_v2_pb2.ServerLiveResponse(live=True)

    async def ServerReady(self, request, context):
        return grpc_predict_v2_pb2.ServerReadyResponse(ready=self.api.ready())

    async def ModelReady(self, request, context):
        async def work():
            versions = self.api.app.versions
            try:
                versions.get(request.name, _version(request.version))
                ready = not self.api.app.shutting_down
            except ApiError as e:
                if e.status == 404 and request.name != versions.name:
                    raise
                ready = False
            return grpc_predict_v2_pb2.ModelReadyResponse(ready=ready)

        return await self.api.call("v2_ready", context, work)

    async def ServerMetadata(self, request, context):
        return grpc_predict_v2_pb2.ServerMetadataResponse(name="isvc-pytorch-server", version=__version__)

    async def ModelMetadata(self, request, context):
        async def work():
            versions = self.api.app.versions
            model = versions.get(request.name, _version(request.version))
            meta = grpc_predict_v2_pb2.ModelMetadataResponse
            return meta(
                name=versions.name,
                versions=[str(model.version)],
                platform=model.platform,
                inputs=[
                    meta.TensorMetadata(name=s.name, datatype=codec.v2_dtype(s.dtype), shape=s.shape or [-1])
                    for s in model.inputs
                ],
                outputs=[meta.TensorMetadata(name=n, datatype="FP32", shape=[-1]) for n in (model.output_names or [])],
            )

        return await self.api.call("v2_metadata", context, work)

    async def ModelInfer(self, request, context):
        async def work():
            app = self.api.app
            model = app.versions.get(request.model_name, _version(request.model_version))
            raw = bool(request.raw_input_contents)
            doc = {
                "id": request.id,
                "inputs": [_v2_input(t, i, request) for i, t in enumerate(request.inputs)],
                "outputs": [{"name": o.name} for o in request.outputs],
            }
            req = codec.decode_v2(doc, model)
            outputs = await app._infer(model, req)
            names = req.requested_outputs or list(outputs)
            unknown = [n for n in names if n not in outputs]
            if unknown:
                raise ApiError(400, f"unknown output(s) {unknown}; the model's outputs are {list(outputs)}")
            reply = grpc_predict_v2_pb2.ModelInferResponse(
                model_name=app.versions.name, model_version=str(model.version), id=request.id
            )
            for n in names:
                a = outputs[n]
                dt = codec.NUMPY_TO_V2.get(a.dtype, "FP32")
                out = reply.outputs.add(name=n, datatype=dt, shape=a.shape)
                if raw or dt not in V2_CONTENTS:
                    reply.raw_output_contents.append(codec.little_endian_bytes(a))
                else:
                    getattr(out.contents, V2_CONTENTS[dt]).extend(a.reshape(-1).tolist())
            return reply

        return await self.api.call("v2_infer", context, work)


def _v2_input(tensor, index: int, request) -> dict:
    """One InferInputTensor as the JSON codec's input object, its data a numpy array."""
    item = {"name": tensor.name, "datatype": tensor.datatype, "shape": list(tensor.shape)}
    dtype = codec.V2_TO_NUMPY.get(tensor.datatype)
    if dtype is None:
        return item  # the codec names the accepted datatypes
    if request.raw_input_contents:
        if len(request.raw_input_contents) != len(request.inputs):
            raise ApiError(
                400,
                f"raw_input_contents has {len(request.raw_input_contents)} entries for "
                f"{len(request.inputs)} inputs; send one per input, or use contents",
            )
        if tensor.HasField("contents"):
            raise ApiError(400, f"input {tensor.name!r}: contents and raw_input_contents are both set; use one")
        item["data"] = codec.raw_array(request.raw_input_contents[index], np.dtype(dtype), f"input {tensor.name!r}")
        return item
    field = V2_CONTENTS.get(tensor.datatype)
    if field is None:
        raise ApiError(400, f"input {tensor.name!r}: {tensor.datatype} data must be sent in raw_input_contents")
    values = getattr(tensor.contents, field)
    item["data"] = np.asarray(values, dtype=dtype)
    return item


# ---- TF Serving ----------------------------------------------------------------------------
def _tf_version(spec) -> int | None:
    choice = spec.WhichOneof("version_choice")
    if choice == "version_label":
        raise ApiError(400, "version labels are not supported; use a version number or the latest version")
    return spec.version.value if choice == "version" else None


def tensor_to_array(t, what: str) -> np.ndarray:
    """A TensorProto (tensor_content or typed values) -> an array of its shape."""
    known = TF_DTYPES.get(t.dtype)
    if known is None:
        raise ApiError(400, f"{what}: dtype {t.dtype} is not supported; accepted: {sorted(TF_DTYPES)} (DataType)")
    dtype, field = np.dtype(known[0]), known[1]
    if t.tensor_shape.unknown_rank:
        raise ApiError(400, f"{what}: the tensor shape must be known")
    shape = [d.size for d in t.tensor_shape.dim]
    if any(d < 0 for d in shape):
        raise ApiError(400, f"{what}: shape {shape} has a negative dimension")
    if t.tensor_content:
        arr = codec.raw_array(t.tensor_content, dtype, what)
    elif field == "half_val":
        arr = np.asarray(t.half_val, dtype=np.uint16).view(np.float16)
    else:
        arr = np.asarray(getattr(t, field), dtype=dtype)
    size = int(np.prod(shape))
    if arr.size == 1 and size > 1:
        arr = np.full(size, arr[0], dtype=arr.dtype)  # TF's rule: one value fills the tensor
    if arr.size != size:
        raise ApiError(400, f"{what}: shape {shape} needs {size} values, got {arr.size}")
    return arr.reshape(shape)


def array_to_tensor(a: np.ndarray) -> tensor_pb2.TensorProto:
    t = tensor_pb2.TensorProto(dtype=NUMPY_TO_TF.get(a.dtype, 1))
    if a.dtype not in NUMPY_TO_TF:
        a = a.astype(np.float32)
    for d in a.shape:
        t.tensor_shape.dim.add(size=d)
    t.tensor_content = codec.little_endian_bytes(a)
    return t


class _Prediction(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, api: GrpcApi):
        self.api = api

    async def Predict(self, request, context):
        async def work():
            app = self.api.app
            spec = request.model_spec
            model = app.versions.get(spec.name, _tf_version(spec))
            if not request.inputs:
                raise ApiError(400, "the request has no inputs")
            inputs = {}
            for name, t in request.inputs.items():
                arr = tensor_to_array(t, f"input {name!r}")
                _check_kind(arr, model, name)
                inputs[name] = arr
            req = codec.decode_v1({"inputs": inputs, "signature_name": spec.signature_name}, model)
            outputs = await app._infer(model, req)
            wanted = list(request.output_filter) or list(outputs)
            unknown = [n for n in wanted if n not in outputs]
            if unknown:
                raise ApiError(400, f"output_filter names {unknown}; the model's outputs are {list(outputs)}")
            reply = predict_pb2.PredictResponse()
            reply.model_spec.name = app.versions.name
            reply.model_spec.version.CopyFrom(wrappers_pb2.Int64Value(value=model.version))
            reply.model_spec.signature_name = spec.signature_name or "serving_default"
            for n in wanted:
                reply.outputs[n].CopyFrom(array_to_tensor(outputs[n]))
            return reply

        return await self.api.call("tf_predict", context, work)

    async def GetModelMetadata(self, request, context):
        async def work():
            _check_metadata_request(request)
            app = self.api.app
            spec = request.model_spec
            model = app.versions.get(spec.name, _tf_version(spec))
            # The REST metadata document, parsed: both protocols describe the model identically.
            document = app.tf_metadata(model)["metadata"][SIGNATURE_DEF]
            signatures = json_format.ParseDict(document, get_model_metadata_pb2.SignatureDefMap())
            reply = get_model_metadata_pb2.GetModelMetadataResponse()
            reply.model_spec.name = app.versions.name
            reply.model_spec.version.CopyFrom(wrappers_pb2.Int64Value(value=model.version))
            reply.metadata[SIGNATURE_DEF].Pack(signatures)
            return reply

        return await self.api.call("tf_metadata", context, work)


def _check_metadata_request(request) -> None:
    """TF Serving's checks, in its order: a model_spec, then at least one field, each supported."""
    if not request.HasField("model_spec"):
        raise ApiError(400, "the request has no model_spec; name the model in model_spec.name")
    if not request.metadata_field:
        raise ApiError(
            400, f"GetModelMetadataRequest must specify at least one metadata_field; supported: {SIGNATURE_DEF!r}"
        )
    for field in request.metadata_field:
        if field != SIGNATURE_DEF:
            raise ApiError(400, f"metadata_field {field!r} is not supported; supported: {SIGNATURE_DEF!r}")


def _check_kind(arr: np.ndarray, model, name: str) -> None:
    """Integers for a floating-point model (or the reverse) are refused, as TF Serving does."""
    specs = {s.name: s for s in model.inputs}
    spec = specs.get(name) or (model.inputs[0] if len(model.inputs) == 1 else None)
    if spec is None:
        return  # the codec names the model's inputs
    want = codec.numpy_dtype(spec.dtype)
    if (want.kind == "f") != (arr.dtype.kind == "f"):
        raise ApiError(400, f"input {name!r}: expects {codec.tf_dtype(spec.dtype)} but {arr.dtype.name} was provided")


class _ModelStatus(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, api: GrpcApi):
        self.api = api

    async def GetModelStatus(self, request, context):
        async def work():
            spec = request.model_spec
            listed = self.api.app.versions.status(spec.name, _tf_version(spec))
            reply = get_model_status_pb2.GetModelStatusResponse()
            state = get_model_status_pb2.ModelVersionStatus.State
            for s in listed:
                v = reply.model_version_status.add(version=int(s["version"]), state=state.Value(s["state"]))
                v.status.error_code = _error_code(s["status"]["error_code"])
                v.status.error_message = s["status"]["error_message"]
            return reply

        return await self.api.call("tf_status", context, work)


def _error_code(name: str) -> int:
    try:
        return grpc.StatusCode[name].value[0]
    except KeyError:
        return grpc.StatusCode.UNKNOWN.value[0]


# ---- grpc.health.v1 ------------------------------------------------------------------------
class _Drained(Exception):
    pass


class _Health(health.aio.HealthServicer):
    """grpcio-health-checking's servicer, except that a Watch ends (OK) once it has sent a status
    while the server drains: an open Watch would otherwise hold the drain for its whole grace period."""

    def __init__(self):
        super().__init__()
        self.draining = False

    async def Watch(self, request, context):
        try:
            await super().Watch(request, _EndsWhenDraining(self, context))
        except _Drained:
            pass


class _EndsWhenDraining:
    """A Watch's context whose write ends the stream after sending, once the server drains."""

    def __init__(self, health: _Health, context):
        self._health = health
        self._context = context

    async def write(self, message) -> None:
        await self._context.write(message)
        if self._health.draining:
            raise _Drained

    def __getattr__(self, name):
        return getattr(self._context, name)
