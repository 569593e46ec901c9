"""The v2 binary tensor extension over REST, with Triton's HTTP client (binary and JSON both ways)
and raw requests for what a client gets wrong: 400 with a message, and the server keeps serving."""

import numpy as np
import orjson
import pytest
import tritonclient.http as triton_http
from conftest import IRIS_BODY, expected, serving_iris
from tritonclient.utils import InferenceServerException

ROWS = np.array(IRIS_BODY["instances"], dtype=np.float32)


@pytest.fixture(scope="module")
def served(iris_net, tmp_path_factory):
    with serving_iris(iris_net, tmp_path_factory.mktemp("binary-models"), "eager") as server:
        yield server


@pytest.fixture(scope="module")
def triton(served):
    client = triton_http.InferenceServerClient(f"127.0.0.1:{served.port}")
    yield client
    client.close()


def _input(x: np.ndarray, binary: bool, datatype: str = "FP32"):
    i = triton_http.InferInput("input-0", list(x.shape), datatype)
    i.set_data_from_numpy(x, binary_data=binary)
    return i


def test_triton_http_client_health_and_metadata(triton):
    assert triton.is_server_live() and triton.is_server_ready() and triton.is_model_ready("iris")
    assert triton.get_server_metadata()["name"] == "isvc-pytorch-server"
    meta = triton.get_model_metadata("iris")
    assert meta["name"] == "iris" and meta["versions"] == ["1"] and meta["platform"] == "pytorch_eager"


@pytest.mark.parametrize("binary_in", [True, False], ids=["binary-in", "json-in"])
@pytest.mark.parametrize("binary_out", [True, False, None], ids=["binary-out", "json-out", "default-out"])
def test_triton_http_client_infer_matches_direct_call(triton, iris_net, binary_in, binary_out):
    """binary_out None: no outputs named, so tritonclient asks binary_data_output for all."""
    outputs = None if binary_out is None else [triton_http.InferRequestedOutput("output-0", binary_data=binary_out)]
    result = triton.infer("iris", [_input(ROWS, binary_in)], outputs=outputs, request_id="b1")
    np.testing.assert_allclose(result.as_numpy("output-0"), expected(iris_net, ROWS), rtol=1e-5, atol=1e-6)
    out = result.get_output("output-0")
    assert ("binary_data_size" in out.get("parameters", {})) == (binary_out is not False), out
    assert result.get_response()["id"] == "b1"


def test_fp64_binary_input_is_converted(triton, iris_net):
    result = triton.infer("iris", [_input(ROWS.astype(np.float64), True, "FP64")])
    np.testing.assert_allclose(result.as_numpy("output-0"), expected(iris_net, ROWS), rtol=1e-5, atol=1e-6)


def _binary_request(served, header: dict, blob: bytes, header_length=None):
    head = orjson.dumps(header)
    length = len(head) if header_length is None else header_length
    return served.request(
        "POST",
        "/v2/models/iris/infer",
        head + blob,
        headers={"Inference-Header-Content-Length": str(length), "Content-Type": "application/octet-stream"},
    )


def _header(size: int, shape=(2, 4), datatype="FP32") -> dict:
    return {
        "inputs": [
            {"name": "input-0", "shape": list(shape), "datatype": datatype, "parameters": {"binary_data_size": size}}
        ]
    }


BLOB = ROWS.tobytes()


@pytest.mark.parametrize(
    "case, header, blob, header_length, message",
    [
        ("size_past_the_body", _header(len(BLOB) + 4), BLOB, None, "does not fit"),
        ("bytes_left_over", _header(len(BLOB) - 4), BLOB, None, "bytes after the binary inputs"),
        ("not_whole_values", _header(len(BLOB) - 2), BLOB[:-2], None, "not a whole number"),
        ("shape_mismatch", _header(len(BLOB), shape=(3, 4)), BLOB, None, "needs 12 values"),
        ("bad_datatype", _header(len(BLOB), datatype="FP8"), BLOB, None, "datatype"),
        ("header_length_past_body", _header(len(BLOB)), BLOB, 10**6, "outside the body"),
        ("header_length_not_a_number", _header(len(BLOB)), BLOB, "abc", "Inference-Header-Content-Length"),
        ("header_length_cuts_json", _header(len(BLOB)), BLOB, 5, "JSON Parse error"),
    ],
)
def test_bad_binary_request_is_400_and_server_keeps_serving(
    served, triton, iris_net, case, header, blob, header_length, message
):
    status, doc = _binary_request(served, header, blob, header_length)
    assert status == 400, doc
    assert message in doc["error"], doc
    result = triton.infer("iris", [_input(ROWS, True)])
    np.testing.assert_allclose(result.as_numpy("output-0"), expected(iris_net, ROWS), rtol=1e-5, atol=1e-6)


def test_triton_http_client_sees_the_error(triton):
    with pytest.raises(InferenceServerException) as err:
        triton.infer("iris", [_input(ROWS[:, :3].copy(), True)])
    assert "shapes cannot be multiplied" in err.value.message()
