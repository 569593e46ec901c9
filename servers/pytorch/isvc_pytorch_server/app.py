"""The HTTP API as a bare ASGI app: TF Serving REST v1, Open Inference Protocol v2, /metrics.

No web framework: a dozen fixed routes are matched by hand, which keeps the per-request cost
close to uvicorn's own (a framework's request/response objects cost more than the model does
for small models). Every error is ``{"error": "..."}`` with the status TF Serving would use.
"""

from __future__ import annotations

import asyncio
import logging
import time

from . import __version__, codec
from .errors import ApiError
from .loader import OUT_OF_MEMORY, SERVER_FAILURES

log = logging.getLogger(__name__)

JSON_HEADERS = [(b"content-type", b"application/json")]
V1_MODELS = "/v1/models/"
V2_MODELS = "/models/"  # after /v2
# What a model raises on input it cannot take (torch's shape errors are RuntimeErrors).
MODEL_INPUT_ERRORS = (RuntimeError, ValueError, TypeError, IndexError, KeyError)


class _Disconnected(Exception):
    pass


class App:
    def __init__(self, versions, batcher, metrics, *, max_request_bytes: int = 64 << 20):
        self.versions = versions
        self.batcher = batcher
        self.metrics = metrics
        self.max_request_bytes = max_request_bytes
        self.shutting_down = False
        self.grpc = None  # a grpc_api.GrpcApi started and drained with this app, when --grpc_port is set
        self.graceful_shutdown_seconds = 30.0

    async def __call__(self, scope, receive, send):
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    # ---- lifespan ------------------------------------------------------------------------------
    async def _lifespan(self, receive, send):
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                try:
                    self.batcher.start(asyncio.get_running_loop())
                    self.versions.start()
                    if self.grpc is not None:
                        await self.grpc.start()
                except Exception as e:
                    await send({"type": "lifespan.startup.failed", "message": str(e)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                # uvicorn calls this after in-flight requests finished (or the grace period ran out);
                # in-flight gRPC calls finish too before the batcher stops.
                if self.grpc is not None:
                    draining = self.grpc.begin_shutdown(self.graceful_shutdown_seconds)
                    if draining is not None:
                        await draining
                self.shutting_down = True
                self.versions.stop()
                await asyncio.get_running_loop().run_in_executor(None, self.batcher.stop)
                await send({"type": "lifespan.shutdown.complete"})
                return

    # ---- HTTP ----------------------------------------------------------------------------------
    async def _http(self, scope, receive, send):
        t0 = time.perf_counter()
        method = scope["method"]
        path = scope["path"]
        endpoint = "other"
        content_type = JSON_HEADERS
        try:
            if path.startswith(V1_MODELS):
                endpoint, status, body = await self._v1(method, path[len(V1_MODELS) :], scope, receive)
            elif path.startswith("/v2"):
                endpoint, status, body = await self._v2(method, path[3:], scope, receive)
            elif path == "/metrics":
                endpoint = "metrics"
                _want(method, "GET")
                status, body = 200, self.metrics.render()
                content_type = [(b"content-type", self.metrics.content_type.encode())]
            elif path in ("/", "/healthz", "/livez"):
                _want(method, "GET")
                status, body = 200, codec.dumps({"status": "alive"})
            else:
                raise ApiError(404, f"no route for {method} {path}; see /v1/models/NAME, /v2/models/NAME, /metrics")
        except ApiError as e:
            status, body = e.status, codec.dumps({"error": e.message})
            content_type = JSON_HEADERS
        except _Disconnected:
            return
        except Exception as e:  # a bug here must not kill the connection without an answer
            log.exception("unhandled error on %s %s", method, path)
            status, body = 500, codec.dumps({"error": f"internal error: {type(e).__name__}: {e}"})
        if isinstance(body, tuple):  # a body with its own headers (v2 binary data)
            body, content_type = body
        headers = content_type + [(b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        self.metrics.observe_request(endpoint, status, time.perf_counter() - t0)

    async def _read_body(self, scope, receive) -> bytes:
        limit = self.max_request_bytes
        for k, v in scope["headers"]:
            if k == b"content-length":
                try:
                    declared = int(v)
                except ValueError:
                    raise ApiError(400, f"bad Content-Length {v!r}") from None
                if declared > limit:
                    raise ApiError(
                        413,
                        f"request body of {declared} bytes exceeds the limit of {limit} bytes (--max_request_bytes)",
                    )
                break
        msg = await receive()
        if msg["type"] == "http.disconnect":
            raise _Disconnected()
        body = msg.get("body", b"")
        if not msg.get("more_body"):
            return body
        chunks = [body]
        size = len(body)
        while True:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                raise _Disconnected()
            part = msg.get("body", b"")
            size += len(part)
            if size > limit:
                raise ApiError(413, f"request body exceeds the limit of {limit} bytes (--max_request_bytes)")
            chunks.append(part)
            if not msg.get("more_body"):
                return b"".join(chunks)

    async def _infer(self, model, req):
        try:
            return await self.batcher.infer(model, req.arrays, req.rows)
        except SERVER_FAILURES as e:
            # The server's failure, not the client's: 503 (retry, perhaps elsewhere) when memory
            # ran out, else 500; the traceback goes to the log.
            log.error("running version %s failed on the server's side", getattr(model, "version", "?"), exc_info=e)
            status = 503 if isinstance(e, OUT_OF_MEMORY) else 500
            raise ApiError(
                status, f"the server failed to run the model: {type(e).__name__}: {_first_line(e)}"
            ) from None
        except MODEL_INPUT_ERRORS as e:
            raise ApiError(400, f"the model rejected the input: {_first_line(e)}") from None

    # ---- TF Serving REST v1 --------------------------------------------------------------------
    async def _v1(self, method, rest, scope, receive):
        verb = None
        if ":" in rest:
            rest, verb = rest.rsplit(":", 1)
        name, version, tail = _model_path(rest)
        if len(tail) >= 2 and tail[0] == "labels":
            raise ApiError(400, "version labels are not supported; use /versions/N or the latest version")
        if verb is not None:
            if tail:
                raise ApiError(404, f"no route for {method} /v1/models/{rest}:{verb}")
            if verb != "predict":
                raise ApiError(400, f":{verb} is not supported by the PyTorch server; use :predict")
            _want(method, "POST")
            model = self.versions.get(name, version)
            body = await self._read_body(scope, receive)
            req = codec.decode_v1_body(body, model)
            outputs = await self._infer(model, req)
            return "v1_predict", 200, codec.encode_v1(outputs, model.single_output, req.columnar)
        if tail == ["metadata"]:
            _want(method, "GET")
            model = self.versions.get(name, version)
            return "v1_metadata", 200, codec.dumps(self.tf_metadata(model))
        if not tail:
            _want(method, "GET")
            return "v1_status", 200, codec.dumps({"model_version_status": self.versions.status(name, version)})
        raise ApiError(404, f"no route for {method} /v1/models/{rest}")

    def tf_metadata(self, model) -> dict:
        """TF Serving's model metadata (GetModelMetadataResponse as JSON): REST answers this
        document, gRPC's GetModelMetadata parses its signature_def into the protobuf messages."""

        def shape(dims):
            if dims is None:
                return {"dim": [], "unknown_rank": True}
            return {"dim": [{"size": str(d), "name": ""} for d in dims], "unknown_rank": False}

        inputs = {
            s.name: {"dtype": codec.tf_dtype(s.dtype), "tensor_shape": shape(s.shape), "name": s.name}
            for s in model.inputs
        }
        outputs = {n: {"dtype": "DT_FLOAT", "tensor_shape": shape(None), "name": n} for n in (model.output_names or [])}
        sig = {"inputs": inputs, "outputs": outputs, "method_name": "tensorflow/serving/predict"}
        return {
            "model_spec": {"name": self.versions.name, "signature_name": "", "version": str(model.version)},
            "metadata": {"signature_def": {"signature_def": {"serving_default": sig}}},
            "pytorch": {
                "format": model.format,
                "files": model.files,
                "device": str(model.device),
                "batching": model.batchable,
            },
        }

    # ---- Open Inference Protocol v2 ------------------------------------------------------------
    async def _v2(self, method, rest, scope, receive):
        if rest in ("", "/"):
            _want(method, "GET")
            return (
                "v2_server",
                200,
                codec.dumps({"name": "isvc-pytorch-server", "version": __version__, "extensions": []}),
            )
        if rest == "/health/live":
            _want(method, "GET")
            return "v2_health", 200, codec.dumps({"live": True})
        if rest == "/health/ready":
            _want(method, "GET")
            ready = self.versions.serving is not None and not self.shutting_down
            return "v2_health", (200 if ready else 503), codec.dumps({"ready": ready})
        if not rest.startswith(V2_MODELS):
            raise ApiError(404, f"no route for {method} /v2{rest}")
        name, version, tail = _model_path(rest[len(V2_MODELS) :])
        if tail == ["infer"]:
            _want(method, "POST")
            model = self.versions.get(name, version)
            body = await self._read_body(scope, receive)
            header_length = _header(scope, codec.BINARY_HEADER)
            doc = codec.loads(body) if header_length is None else codec.split_binary_v2(body, header_length)
            binary = codec.binary_outputs(doc)
            req = codec.decode_v2(doc, model)
            outputs = await self._infer(model, req)
            if not binary:
                return "v2_infer", 200, codec.encode_v2(self.versions.name, model.version, outputs, req)
            payload, json_length = codec.encode_v2_binary(self.versions.name, model.version, outputs, req, binary)
            headers = [(b"content-type", b"application/octet-stream"), (codec.BINARY_HEADER, b"%d" % json_length)]
            return "v2_infer", 200, (payload, headers)
        if tail == ["ready"]:
            _want(method, "GET")
            try:
                self.versions.get(name, version)
                ready = True
            except ApiError as e:
                if e.status == 404 and name != self.versions.name:
                    raise
                ready = False
            return "v2_ready", (200 if ready else 503), codec.dumps({"name": name, "ready": ready})
        if not tail:
            _want(method, "GET")
            model = self.versions.get(name, version)
            return (
                "v2_metadata",
                200,
                codec.dumps(
                    {
                        "name": self.versions.name,
                        "versions": [str(model.version)],
                        "platform": model.platform,
                        "inputs": [
                            {"name": s.name, "datatype": codec.v2_dtype(s.dtype), "shape": s.shape or [-1]}
                            for s in model.inputs
                        ],
                        "outputs": [{"name": n, "datatype": "FP32", "shape": [-1]} for n in (model.output_names or [])],
                    }
                ),
            )
        raise ApiError(404, f"no route for {method} /v2{rest}")


def _model_path(rest: str) -> tuple[str, int | None, list[str]]:
    """NAME[/versions/N][/TAIL...] -> (name, version or None for the latest, tail)."""
    name, *tail = rest.split("/")
    if len(tail) >= 2 and tail[0] == "versions":
        return name, _version(tail[1]), tail[2:]
    return name, None, tail


def _header(scope, name: bytes) -> bytes | None:
    for k, v in scope["headers"]:
        if k == name:
            return v
    return None


def _want(method: str, allowed: str) -> None:
    if method != allowed:
        raise ApiError(405, f"method {method} not allowed here; use {allowed}")


def _version(text: str) -> int:
    if not text.isdigit():
        raise ApiError(400, f"version must be a number, got {text!r}")
    return int(text)


def _first_line(e: BaseException) -> str:
    """The line that says what went wrong: TorchScript puts a traceback first and the cause last."""
    lines = [ln.strip() for ln in str(e).strip().splitlines() if ln.strip()]
    if not lines:
        return type(e).__name__
    if "TorchScript interpreter" in lines[0]:
        return lines[-1]
    return lines[0]
