"""Each accepted format served for real: answers equal calling the model directly."""

import numpy as np
import pytest
from conftest import IRIS_BODY, Server, expected, save_model
from prometheus_client.parser import text_string_to_metric_families

FORMATS = ["torchscript", "export", "eager"]


@pytest.fixture(scope="module", params=FORMATS)
def served(request, iris_net, tmp_path_factory):
    base = tmp_path_factory.mktemp(f"models-{request.param}")
    save_model(iris_net, str(base / "1"), request.param)
    server = Server(str(base))
    try:
        server.wait_status(200)
        yield request.param, server
    finally:
        server.stop()


def test_status_is_available(served):
    _, s = served
    status, doc = s.request("GET", "/v1/models/iris")
    assert status == 200
    assert doc["model_version_status"][0]["version"] == "1"
    assert doc["model_version_status"][0]["state"] == "AVAILABLE"


def test_row_format_matches_direct_call(served, iris_net):
    _, s = served
    status, doc = s.predict(IRIS_BODY)
    assert status == 200, doc
    got = np.array(doc["predictions"], dtype=np.float32)
    np.testing.assert_allclose(got, expected(iris_net, IRIS_BODY["instances"]), rtol=1e-5, atol=1e-6)


def test_columnar_and_versioned_predict(served, iris_net):
    _, s = served
    rows = [[5.1, 3.5, 1.4, 0.2], [6.3, 3.3, 6.0, 2.5], [5.7, 2.8, 4.1, 1.3]]
    status, doc = s.predict({"inputs": rows, "signature_name": "serving_default"}, version=1)
    assert status == 200, doc
    np.testing.assert_allclose(
        np.array(doc["outputs"], dtype=np.float32), expected(iris_net, rows), rtol=1e-5, atol=1e-6
    )


def test_v2_infer_matches_direct_call(served, iris_net):
    _, s = served
    rows = IRIS_BODY["instances"]
    body = {
        "id": "r1",
        "inputs": [{"name": "input-0", "shape": [2, 4], "datatype": "FP32", "data": [v for r in rows for v in r]}],
    }
    status, doc = s.request("POST", "/v2/models/iris/infer", body)
    assert status == 200, doc
    assert doc["id"] == "r1" and doc["model_name"] == "iris" and doc["model_version"] == "1"
    out = doc["outputs"][0]
    assert out["shape"] == [2, 3] and out["datatype"] == "FP32"
    np.testing.assert_allclose(
        np.array(out["data"], dtype=np.float32).reshape(2, 3), expected(iris_net, rows), rtol=1e-5, atol=1e-6
    )
    assert s.request("GET", "/v2/health/ready")[0] == 200
    assert s.request("GET", "/v2/models/iris/ready") == (200, {"name": "iris", "ready": True})


def test_metadata(served):
    fmt, s = served
    status, doc = s.request("GET", "/v1/models/iris/metadata")
    assert status == 200, doc
    sig = doc["metadata"]["signature_def"]["signature_def"]["serving_default"]
    (inp,) = sig["inputs"].values()
    assert inp["dtype"] == "DT_FLOAT"
    assert [d["size"] for d in inp["tensor_shape"]["dim"]] == ["-1", "4"]
    assert (
        doc["pytorch"]["format"]
        == {"torchscript": "torchscript", "export": "torch_export", "eager": "pytorch_eager"}[fmt]
    )
    status, v2 = s.request("GET", "/v2/models/iris")
    assert status == 200
    assert v2["versions"] == ["1"] and v2["inputs"][0]["datatype"] == "FP32" and v2["inputs"][0]["shape"] == [-1, 4]


def scrape(s) -> dict:
    """/metrics as {(name, sorted labels): value}."""
    status, text = s.request("GET", "/metrics")
    assert status == 200
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text.decode())
        for sample in family.samples
    }


def test_metrics_count_requests(served):
    """Each counter moves by exactly what was sent: 5 predictions of 2 rows, one after another (a
    forward pass each), and 2 bodies refused before any pass."""
    _, s = served
    before = scrape(s)
    for _ in range(5):
        assert s.predict(IRIS_BODY)[0] == 200
    for _ in range(2):
        assert s.predict({"not": "instances"})[0] == 400
    after = scrape(s)

    def moved(name, **labels):
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0) - before.get(key, 0)

    assert moved("isvc_pytorch_requests_total", protocol="rest", endpoint="v1_predict", code="200") == 5
    # A refused request is counted under endpoint "other" today (the endpoint is named on success).
    refused = [k for k in after if k[0] == "isvc_pytorch_requests_total" and ("code", "400") in k[1]]
    assert sum(after[k] - before.get(k, 0) for k in refused) == 2, refused
    assert moved("isvc_pytorch_request_duration_seconds_count", endpoint="v1_predict") == 5
    assert moved("isvc_pytorch_batch_requests_count") == 5, "one forward pass per prediction"
    assert moved("isvc_pytorch_batch_requests_sum") == 5, "one request per forward pass"
    assert moved("isvc_pytorch_batch_size_sum") == 5 * len(IRIS_BODY["instances"]), "rows through the model"
    assert moved("isvc_pytorch_inference_duration_seconds_count") == 5
    assert moved("isvc_pytorch_queue_wait_seconds_count") == 5
    assert after[("isvc_pytorch_model_version", ())] == 1.0
    assert after[("process_resident_memory_bytes", ())] > 0


def test_export_rejects_wrong_shape_up_front(served):
    fmt, s = served
    status, doc = s.predict({"instances": [[1.0, 2.0, 3.0]]})
    assert status == 400
    if fmt == "export":  # exact input spec known: the message names both shapes
        assert "has shape [1, 3]; the model expects ['N', 4]" in doc["error"]
    else:
        assert "the model rejected the input" in doc["error"]
    assert s.predict(IRIS_BODY)[0] == 200
