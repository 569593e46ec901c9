"""Bad requests get a 4xx with a message saying what was wrong, and the server keeps serving."""

import http.client

import numpy as np
import pytest
from conftest import IRIS_BODY, Server, expected, save_model

LIMIT = 64 * 1024


@pytest.fixture(scope="module")
def server(iris_net, tmp_path_factory):
    base = tmp_path_factory.mktemp("bad-payloads")
    save_model(iris_net, str(base / "1"), "torchscript")
    s = Server(str(base), extra=[f"--max_request_bytes={LIMIT}"])
    try:
        s.wait_status(200)
        yield s
    finally:
        s.stop()


CASES = [
    # (name, method, path, body, status, words the error must contain)
    (
        "wrong shape",
        "POST",
        "/v1/models/iris:predict",
        {"instances": [[1.0, 2.0, 3.0]]},
        400,
        "the model rejected the input: RuntimeError: addmm: mat1 and mat2 shapes cannot be multiplied (1x3 and 4x16)",
    ),
    (
        "ragged rows",
        "POST",
        "/v1/models/iris:predict",
        {"instances": [[1, 2, 3, 4], [1, 2]]},
        400,
        "not a rectangular array",
    ),
    ("wrong dtype", "POST", "/v1/models/iris:predict", {"instances": [["a", "b", "c", "d"]]}, 400, "found strings"),
    ("nulls", "POST", "/v1/models/iris:predict", {"instances": [[1, None, 3, 4]]}, 400, "found null"),
    ("not JSON", "POST", "/v1/models/iris:predict", b"{instances: [[1,2,3,4]]", 400, "JSON Parse error"),
    ("empty body", "POST", "/v1/models/iris:predict", b"", 400, "empty"),
    ("JSON list", "POST", "/v1/models/iris:predict", b"[1, 2]", 400, "must be a JSON object"),
    (
        "no instances",
        "POST",
        "/v1/models/iris:predict",
        {"rows": [[1, 2, 3, 4]]},
        400,
        "Missing 'inputs' or 'instances'",
    ),
    ("empty instances", "POST", "/v1/models/iris:predict", {"instances": []}, 400, "empty"),
    (
        "both formats",
        "POST",
        "/v1/models/iris:predict",
        {"instances": [[1, 2, 3, 4]], "inputs": [[1, 2, 3, 4]]},
        400,
        "not both",
    ),
    (
        "unknown signature",
        "POST",
        "/v1/models/iris:predict",
        {"signature_name": "other", **IRIS_BODY},
        400,
        "not found in signature def",
    ),
    ("b64", "POST", "/v1/models/iris:predict", {"instances": [{"b64": "AAAA"}]}, 400, "b64"),
    ("unknown model", "POST", "/v1/models/nope:predict", IRIS_BODY, 404, "Servable not found"),
    ("unknown version", "POST", "/v1/models/iris/versions/7:predict", IRIS_BODY, 404, "Specific(iris, 7)"),
    ("bad version", "GET", "/v1/models/iris/versions/x", None, 400, "version must be a number"),
    ("classify", "POST", "/v1/models/iris:classify", IRIS_BODY, 400, "use :predict"),
    ("GET predict", "GET", "/v1/models/iris:predict", None, 405, "use POST"),
    ("unknown path", "GET", "/v3/foo", None, 404, "no route"),
    (
        "v2 wrong size",
        "POST",
        "/v2/models/iris/infer",
        {"inputs": [{"name": "x", "shape": [2, 4], "datatype": "FP32", "data": [1, 2, 3]}]},
        400,
        "needs 8 values, got 3",
    ),
    (
        "v2 bad datatype",
        "POST",
        "/v2/models/iris/infer",
        {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "BYTES", "data": ["a", "b", "c", "d"]}]},
        400,
        "datatype 'BYTES' is not supported",
    ),
    ("v2 no inputs", "POST", "/v2/models/iris/infer", {"inputs": []}, 400, "non-empty list"),
    (
        "v2 unknown output",
        "POST",
        "/v2/models/iris/infer",
        {
            "inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}],
            "outputs": [{"name": "nope"}],
        },
        400,
        "unknown output",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_request_is_4xx_with_message(server, iris_net, case):
    _, method, path, body, want, words = case
    status, doc = server.request(method, path, body)
    assert status == want, doc
    assert isinstance(doc, dict) and words in doc["error"], doc
    # ... and the next good request is answered correctly
    status, doc = server.predict(IRIS_BODY)
    assert status == 200
    np.testing.assert_allclose(
        np.array(doc["predictions"], dtype=np.float32), expected(iris_net, IRIS_BODY["instances"]), rtol=1e-5, atol=1e-6
    )


def test_huge_body_declared_is_413(server):
    body = b'{"instances": [' + b"[1.0, 2.0, 3.0, 4.0]," * (LIMIT // 20) + b"[1.0, 2.0, 3.0, 4.0]]}"
    assert len(body) > LIMIT
    status, doc = server.request("POST", "/v1/models/iris:predict", body)
    assert status == 413
    assert f"exceeds the limit of {LIMIT} bytes" in doc["error"]
    assert server.predict(IRIS_BODY)[0] == 200


def test_huge_body_chunked_is_413(server):
    """No Content-Length: the limit is enforced while the body streams in."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    chunks = (b"[1.0, 2.0, 3.0, 4.0]," * 500 for _ in range(20))
    try:
        conn.request(
            "POST",
            "/v1/models/iris:predict",
            body=chunks,
            encode_chunked=True,
            headers={"Transfer-Encoding": "chunked"},
        )
        resp = conn.getresponse()
        data = resp.read()
    except (TimeoutError, BrokenPipeError, ConnectionResetError) as e:  # server may stop reading early
        pytest.fail(f"no 413 answer: {e}")
    finally:
        conn.close()
    assert resp.status == 413, data
    assert b"exceeds the limit" in data
    assert server.predict(IRIS_BODY)[0] == 200
