"""gRPC for real: Triton's own client (tritonclient) and TF Serving stubs compiled from our protos
call a served model; answers equal the model called in-process, bad input gets the right status
and the server keeps serving, /metrics counts each protocol, SIGTERM drains in-flight calls."""

import os
import signal
import threading

import grpc
import numpy as np
import pytest
import torch
import tritonclient.grpc as triton_grpc
from conftest import IRIS_BODY, Server, expected, save_model, serving_iris
from google.protobuf import wrappers_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families
from test_batching import GATED_MODEL_PY, _refuses_connections, _wait
from tritonclient.utils import InferenceServerException

from isvc_pytorch_server.wire import (
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    tensor_pb2,
)

ROWS = np.array(IRIS_BODY["instances"], dtype=np.float32)
DT_FLOAT, DT_INT32, DT_STRING = 1, 3, 7


@pytest.fixture(scope="module")
def served(iris_net, tmp_path_factory):
    with serving_iris(
        iris_net, tmp_path_factory.mktemp("grpc-models"), "torchscript", grpc=True, extra=["--max_request_bytes=100000"]
    ) as server:
        yield server


@pytest.fixture(scope="module")
def triton(served):
    client = triton_grpc.InferenceServerClient(f"127.0.0.1:{served.grpc_port}")
    yield client
    client.close()


@pytest.fixture(scope="module")
def channel(served):
    ch = grpc.insecure_channel(f"127.0.0.1:{served.grpc_port}")
    yield ch
    ch.close()


def _triton_input(x: np.ndarray, datatype: str = "FP32", name: str = "input-0"):
    i = triton_grpc.InferInput(name, list(x.shape), datatype)
    i.set_data_from_numpy(x)
    return i


def _tensor(x: np.ndarray, dtype: int = DT_FLOAT, typed: bool = False) -> tensor_pb2.TensorProto:
    t = tensor_pb2.TensorProto(dtype=dtype)
    for d in x.shape:
        t.tensor_shape.dim.add(size=d)
    if typed:
        t.float_val.extend(x.reshape(-1).tolist())
    else:
        t.tensor_content = x.tobytes()
    return t


def _predict(channel, inputs: dict, name="iris", version=None):
    req = predict_pb2.PredictRequest()
    req.model_spec.name = name
    if version is not None:
        req.model_spec.version.CopyFrom(wrappers_pb2.Int64Value(value=version))
    for k, t in inputs.items():
        req.inputs[k].CopyFrom(t)
    return prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(req, timeout=30)


def _as_array(t: tensor_pb2.TensorProto) -> np.ndarray:
    shape = [d.size for d in t.tensor_shape.dim]
    assert t.dtype == DT_FLOAT
    data = np.frombuffer(t.tensor_content, dtype="<f4") if t.tensor_content else np.array(t.float_val, np.float32)
    return data.reshape(shape)


# ---- Open Inference Protocol through Triton's client -------------------------------------------
def test_triton_client_health_and_metadata(triton):
    assert triton.is_server_live()
    assert triton.is_server_ready()
    assert triton.is_model_ready("iris")
    assert triton.is_model_ready("iris", "1")
    assert not triton.is_model_ready("iris", "7")
    meta = triton.get_server_metadata(as_json=True)
    assert meta["name"] == "isvc-pytorch-server"
    model = triton.get_model_metadata("iris", as_json=True)
    assert model["name"] == "iris" and model["versions"] == ["1"] and model["platform"] == "pytorch_torchscript"
    assert model["inputs"] == [{"name": "x", "datatype": "FP32", "shape": ["-1", "4"]}]


def test_triton_client_infer_raw_matches_direct_call(triton, iris_net):
    """tritonclient sends raw_input_contents and reads raw_output_contents."""
    result = triton.infer("iris", [_triton_input(ROWS)], request_id="r1")
    np.testing.assert_allclose(result.as_numpy("output-0"), expected(iris_net, ROWS), rtol=1e-5, atol=1e-6)
    response = result.get_response()
    assert response.id == "r1" and response.model_name == "iris" and response.model_version == "1"
    assert len(response.raw_output_contents) == 1


def test_typed_contents_answer_with_typed_contents(triton, iris_net):
    """The same call with InferTensorContents (no raw bytes), built on tritonclient's own messages."""
    service_pb2 = triton_grpc.service_pb2
    req = service_pb2.ModelInferRequest(model_name="iris", model_version="1")
    tensor = req.inputs.add(name="input-0", datatype="FP32", shape=[2, 4])
    tensor.contents.fp32_contents.extend(ROWS.reshape(-1).tolist())
    reply = triton._client_stub.ModelInfer(req, timeout=30)
    assert not reply.raw_output_contents
    out = reply.outputs[0]
    assert out.name == "output-0" and out.datatype == "FP32" and list(out.shape) == [2, 3]
    got = np.array(out.contents.fp32_contents, dtype=np.float32).reshape(2, 3)
    np.testing.assert_allclose(got, expected(iris_net, ROWS), rtol=1e-5, atol=1e-6)


def test_fp64_input_is_converted_for_an_fp32_model(triton, iris_net):
    result = triton.infer("iris", [_triton_input(ROWS.astype(np.float64), "FP64")])
    np.testing.assert_allclose(result.as_numpy("output-0"), expected(iris_net, ROWS), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "case, code",
    [
        ("wrong_width", grpc.StatusCode.INVALID_ARGUMENT),
        ("shape_mismatch", grpc.StatusCode.INVALID_ARGUMENT),
        ("bad_dtype", grpc.StatusCode.INVALID_ARGUMENT),
        ("no_inputs", grpc.StatusCode.INVALID_ARGUMENT),
        ("unknown_output", grpc.StatusCode.INVALID_ARGUMENT),
        ("unknown_model", grpc.StatusCode.NOT_FOUND),
        ("unknown_version", grpc.StatusCode.NOT_FOUND),
        ("version_not_a_number", grpc.StatusCode.INVALID_ARGUMENT),
        ("oversize", grpc.StatusCode.RESOURCE_EXHAUSTED),
    ],
)
def test_triton_client_bad_input_gets_status_and_server_keeps_serving(triton, iris_net, case, code):
    service_pb2 = triton_grpc.service_pb2
    req = service_pb2.ModelInferRequest(model_name="iris")
    x = ROWS
    if case == "wrong_width":
        x = ROWS[:, :3].copy()
    if case == "oversize":
        x = np.zeros((64, 1024), np.float32)  # 256 KiB > --max_request_bytes=100000
    if case != "no_inputs":
        req.inputs.add(name="input-0", datatype="BF32" if case == "bad_dtype" else "FP32", shape=list(x.shape))
        req.raw_input_contents.append(x.tobytes())
    if case == "shape_mismatch":
        req.inputs[0].shape[:] = [3, 4]
    if case == "unknown_output":
        req.outputs.add(name="logits")
    if case == "unknown_model":
        req.model_name = "nope"
    if case == "unknown_version":
        req.model_version = "7"
    if case == "version_not_a_number":
        req.model_version = "latest"
    with pytest.raises(grpc.RpcError) as err:
        triton._client_stub.ModelInfer(req, timeout=30)
    assert err.value.code() == code, err.value.details()
    assert err.value.details(), "every error says what went wrong"
    result = triton.infer("iris", [_triton_input(ROWS)])
    np.testing.assert_allclose(result.as_numpy("output-0"), expected(iris_net, ROWS), rtol=1e-5, atol=1e-6)


def test_triton_client_error_is_an_inference_server_exception(triton):
    with pytest.raises(InferenceServerException) as err:
        triton.infer("iris", [_triton_input(ROWS[:, :3].copy())])
    assert "INVALID_ARGUMENT" in str(err.value.status()) and "shapes cannot be multiplied" in err.value.message()


# ---- TF Serving's PredictionService / ModelService --------------------------------------------
@pytest.mark.parametrize("typed", [False, True], ids=["tensor_content", "float_val"])
def test_tf_predict_matches_direct_call(channel, iris_net, typed):
    reply = _predict(channel, {"x": _tensor(ROWS, typed=typed)}, version=1)
    assert reply.model_spec.name == "iris" and reply.model_spec.version.value == 1
    assert reply.model_spec.signature_name == "serving_default"
    np.testing.assert_allclose(_as_array(reply.outputs["output-0"]), expected(iris_net, ROWS), rtol=1e-5, atol=1e-6)


def test_tf_get_model_status(channel):
    stub = model_service_pb2_grpc.ModelServiceStub(channel)
    req = get_model_status_pb2.GetModelStatusRequest()
    req.model_spec.name = "iris"
    reply = stub.GetModelStatus(req, timeout=30)
    [status] = reply.model_version_status
    assert status.version == 1
    assert status.state == get_model_status_pb2.ModelVersionStatus.AVAILABLE
    assert status.status.error_code == 0
    req.model_spec.name = "nope"
    with pytest.raises(grpc.RpcError) as err:
        stub.GetModelStatus(req, timeout=30)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize(
    "case, code",
    [
        ("string_dtype", grpc.StatusCode.INVALID_ARGUMENT),
        ("int_for_float_model", grpc.StatusCode.INVALID_ARGUMENT),
        ("too_few_values", grpc.StatusCode.INVALID_ARGUMENT),
        ("no_inputs", grpc.StatusCode.INVALID_ARGUMENT),
        ("unknown_model", grpc.StatusCode.NOT_FOUND),
        ("unknown_version", grpc.StatusCode.NOT_FOUND),
    ],
)
def test_tf_predict_bad_input_gets_status_and_server_keeps_serving(channel, iris_net, case, code):
    inputs = {"x": _tensor(ROWS)}
    name, version = "iris", None
    if case == "string_dtype":
        inputs = {"x": tensor_pb2.TensorProto(dtype=DT_STRING, string_val=[b"a"])}
    if case == "int_for_float_model":
        inputs = {"x": _tensor(ROWS.astype(np.int32), dtype=DT_INT32)}
    if case == "too_few_values":
        inputs["x"].tensor_content = ROWS.tobytes()[:-4]
    if case == "no_inputs":
        inputs = {}
    if case == "unknown_model":
        name = "nope"
    if case == "unknown_version":
        version = 7
    with pytest.raises(grpc.RpcError) as err:
        _predict(channel, inputs, name=name, version=version)
    assert err.value.code() == code, err.value.details()
    assert err.value.details()
    reply = _predict(channel, {"x": _tensor(ROWS)})
    np.testing.assert_allclose(_as_array(reply.outputs["output-0"]), expected(iris_net, ROWS), rtol=1e-5, atol=1e-6)


# ---- health, metrics, shutdown -----------------------------------------------------------------
def test_grpc_health_check(channel):
    stub = health_pb2_grpc.HealthStub(channel)
    serving = health_pb2.HealthCheckResponse.SERVING
    assert stub.Check(health_pb2.HealthCheckRequest(), timeout=10).status == serving
    for service in ("iris", "inference.GRPCInferenceService", "tensorflow.serving.PredictionService"):
        assert stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10).status == serving
    with pytest.raises(grpc.RpcError) as err:
        stub.Check(health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=10)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_grpc_health_watch_follows_readiness(iris_net, tmp_path):
    """Watch streams the truth: NOT_SERVING while no version is loaded, SERVING once one is
    (overall and for the model's name), and NOT_SERVING again once SIGTERM starts the drain; then
    the streams end, so they do not hold the drain for its (here long) grace period."""
    base = tmp_path / "models"
    base.mkdir()
    s = Server(str(base), grpc=True, extra=["--graceful_shutdown_seconds=600"])
    not_serving, serving = health_pb2.HealthCheckResponse.NOT_SERVING, health_pb2.HealthCheckResponse.SERVING
    try:
        s.wait_status(404)  # up, nothing to serve yet
        with grpc.insecure_channel(f"127.0.0.1:{s.grpc_port}") as ch:
            stub = health_pb2_grpc.HealthStub(ch)
            overall = stub.Watch(health_pb2.HealthCheckRequest(), timeout=60)
            model = stub.Watch(health_pb2.HealthCheckRequest(service="iris"), timeout=60)
            assert next(overall).status == not_serving
            assert next(model).status == not_serving
            assert stub.Check(health_pb2.HealthCheckRequest(service="iris"), timeout=10).status == not_serving
            save_model(iris_net, str(tmp_path / "staged"), "torchscript")
            os.rename(tmp_path / "staged", base / "1")  # the poller sees the whole version at once
            assert next(overall).status == serving
            assert next(model).status == serving
            s.proc.send_signal(signal.SIGTERM)
            assert [r.status for r in overall] == [not_serving]  # then the stream ends with OK
            assert [r.status for r in model] == [not_serving]
        assert s.proc.wait(60) == 0
    finally:
        s.stop()


def _scrape(server) -> dict:
    status, text = server.request("GET", "/metrics")
    assert status == 200
    out = {}
    for family in text_string_to_metric_families(text.decode()):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def test_metrics_count_each_protocol(served, triton, channel):
    before = _scrape(served)
    for _ in range(3):
        triton.infer("iris", [_triton_input(ROWS)])
    for _ in range(2):
        _predict(channel, {"x": _tensor(ROWS)})
    with pytest.raises(InferenceServerException):
        triton.infer("iris", [_triton_input(ROWS[:, :3].copy())])
    for _ in range(4):
        assert served.predict(IRIS_BODY)[0] == 200
    after = _scrape(served)

    def moved(**labels):
        key = ("isvc_pytorch_requests_total", tuple(sorted(labels.items())))
        return after.get(key, 0) - before.get(key, 0)

    assert moved(protocol="grpc", endpoint="v2_infer", code="OK") == 3
    assert moved(protocol="grpc", endpoint="v2_infer", code="INVALID_ARGUMENT") == 1
    assert moved(protocol="grpc", endpoint="tf_predict", code="OK") == 2
    assert moved(protocol="rest", endpoint="v1_predict", code="200") == 4
    moved_passes = after[("isvc_pytorch_batch_requests_sum", ())] - before[("isvc_pytorch_batch_requests_sum", ())]
    assert moved_passes == 3 + 1 + 2 + 4, "every call of both protocols goes through the one batcher"


def test_sigterm_finishes_in_flight_grpc_calls(tmp_path):
    """A call is in its forward pass; SIGTERM; gRPC stops taking calls; the pass finishes, the
    answer still arrives, and the server exits 0."""
    base = tmp_path / "m"
    os.makedirs(base / "1")
    (base / "1" / "model.py").write_text(GATED_MODEL_PY)
    torch.save({"scale": torch.tensor(2.0)}, base / "1" / "model.pth")
    s = Server(str(base), name="gated", grpc=True)
    result = {}
    try:
        s.wait_status(200)
        client = triton_grpc.InferenceServerClient(f"127.0.0.1:{s.grpc_port}")
        x = np.array([[11.5, 1.0]], np.float32)

        def call():
            try:
                result["r"] = client.infer("gated", [_triton_input(x)], client_timeout=60).as_numpy("output-0")
            except InferenceServerException as e:
                result["r"] = e

        t = threading.Thread(target=call)
        t.start()
        _wait((base / "1" / "in-flight").exists, 60, "the call to reach the forward pass")
        s.proc.send_signal(signal.SIGTERM)
        _wait(lambda: _refuses_connections(s.port), 30, "the server to stop listening after SIGTERM")
        assert s.proc.poll() is None, "the server exited with a call in flight"
        (base / "1" / "release").touch()
        t.join(60)
        rc = s.proc.wait(60)
        client.close()
    finally:
        s.stop()
    assert isinstance(result["r"], np.ndarray), result
    assert result["r"].tolist() == [[23.0, 2.0]]
    assert rc == 0


def test_not_ready_is_unavailable_on_every_grpc_path(tmp_path):
    """A version that fails to load (and no earlier one): calls get UNAVAILABLE with the load
    error, readiness and health say not serving, liveness stays true."""
    (tmp_path / "1").mkdir()
    (tmp_path / "1" / "weights.onnx").write_bytes(b"not a model")
    s = Server(str(tmp_path), grpc=True, extra=["--exit_on_load_failure=false"])
    try:
        s.wait_status(503)
        client = triton_grpc.InferenceServerClient(f"127.0.0.1:{s.grpc_port}")
        assert client.is_server_live()
        assert not client.is_server_ready()
        assert not client.is_model_ready("iris")
        with pytest.raises(InferenceServerException) as err:
            client.infer("iris", [_triton_input(ROWS)])
        assert "UNAVAILABLE" in str(err.value.status()) and "weights.onnx" in err.value.message()
        with grpc.insecure_channel(f"127.0.0.1:{s.grpc_port}") as ch:
            with pytest.raises(grpc.RpcError) as tf_err:
                _predict(ch, {"x": _tensor(ROWS)})
            assert tf_err.value.code() == grpc.StatusCode.UNAVAILABLE
            health = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=10)
            assert health.status == health_pb2.HealthCheckResponse.NOT_SERVING
        client.close()
    finally:
        s.stop()
