"""TF Serving's PredictionService/GetModelMetadata over gRPC, called by a client built from
modules generated from TensorFlow's and TF Serving's own .proto files (tf_serving_client.py, in a
process of its own): the signature equals the REST metadata's, bad requests get TF Serving's
status codes with a message and the server keeps answering, and our wire/*.proto agree with
upstream's field numbers."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import serving_iris
from test_grpc import _scrape

from isvc_pytorch_server.wire import get_model_metadata_pb2, prediction_service_pb2

CLIENT = Path(__file__).resolve().parent / "tf_serving_client.py"
SIGNATURE_DEF_MAP_URL = "type.googleapis.com/tensorflow.serving.SignatureDefMap"


def upstream_client(*args: str, stdin) -> object:
    """Run tf_serving_client.py with ``args``; its JSON answer."""
    done = subprocess.run(
        [sys.executable, str(CLIENT), *args],
        input=json.dumps(stdin),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, f"tf_serving_client.py {args} failed:\n{done.stderr}"
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def served(iris_net, tmp_path_factory):
    with serving_iris(iris_net, tmp_path_factory.mktemp("metadata-models"), "torchscript", grpc=True) as server:
        yield server


def test_signature_def_equals_rest_metadata(served):
    status, rest = served.request("GET", "/v1/models/iris/metadata")
    assert status == 200, rest
    latest, pinned = upstream_client(
        "call",
        f"127.0.0.1:{served.grpc_port}",
        stdin=[
            {"name": "iris", "fields": ["signature_def"]},
            {"name": "iris", "version": 1, "fields": ["signature_def"]},
        ],
    )
    for result in (latest, pinned):
        assert "reply" in result, result
        reply = result["reply"]
        assert result["type_urls"] == {"signature_def": SIGNATURE_DEF_MAP_URL}
        assert reply["model_spec"]["name"] == "iris" and reply["model_spec"]["version"] == "1"
        packed = dict(reply["metadata"]["signature_def"])
        assert packed.pop("@type") == SIGNATURE_DEF_MAP_URL
        assert packed == rest["metadata"]["signature_def"], "gRPC and REST describe the model differently"
        sig = packed["signature_def"]["serving_default"]
        assert sig["method_name"] == "tensorflow/serving/predict"
        assert sig["inputs"] == {
            "x": {
                "name": "x",
                "dtype": "DT_FLOAT",
                "tensor_shape": {"dim": [{"size": "-1", "name": ""}, {"size": "4", "name": ""}], "unknown_rank": False},
            }
        }
        assert list(sig["outputs"]) == ["output-0"] and sig["outputs"]["output-0"]["dtype"] == "DT_FLOAT"


@pytest.mark.parametrize(
    "call, code, quoted",
    [
        ({"name": "nope", "fields": ["signature_def"]}, "NOT_FOUND", "nope"),
        ({"name": "iris", "version": 7, "fields": ["signature_def"]}, "NOT_FOUND", "7"),
        ({"name": "iris", "fields": ["signature_def", "graph_def"]}, "INVALID_ARGUMENT", "graph_def"),
        ({"name": "iris", "fields": []}, "INVALID_ARGUMENT", "at least one metadata_field"),
        ({"no_spec": True, "fields": ["signature_def"]}, "INVALID_ARGUMENT", "model_spec"),
    ],
    ids=["unknown_model", "unknown_version", "unsupported_field", "no_field", "no_model_spec"],
)
def test_bad_request_gets_status_and_server_keeps_serving(served, call, code, quoted):
    before = _scrape(served)
    failed, after = upstream_client(
        "call", f"127.0.0.1:{served.grpc_port}", stdin=[call, {"name": "iris", "fields": ["signature_def"]}]
    )
    assert failed.get("code") == code, failed
    assert quoted in failed["details"], f"the message should quote {quoted!r}: {failed['details']!r}"
    assert "reply" in after, f"a good call after {code} failed: {after}"
    assert after["reply"]["model_spec"]["name"] == "iris"
    counted = _scrape(served)
    for status in (code, "OK"):
        key = ("isvc_pytorch_requests_total", (("code", status), ("endpoint", "tf_metadata"), ("protocol", "grpc")))
        assert counted.get(key, 0) - before.get(key, 0) == 1, f"/metrics should count one {status} call: {key}"


def _reachable_messages(descriptor, seen: dict) -> dict:
    """``descriptor`` and every message type its fields use, transitively: name -> descriptor."""
    if descriptor.full_name in seen:
        return seen
    seen[descriptor.full_name] = descriptor
    for f in descriptor.fields:
        if f.message_type is not None:
            _reachable_messages(f.message_type, seen)
    return seen


def test_wire_protos_agree_with_upstream():
    """Every field our subset declares has upstream's number, type, repetition, type name and oneof; every
    method of our PredictionService is upstream's with the same request and reply types."""
    ours: dict = {}
    for message in ("GetModelMetadataRequest", "GetModelMetadataResponse", "SignatureDefMap"):
        _reachable_messages(get_model_metadata_pb2.DESCRIPTOR.message_types_by_name[message], ours)
    service = prediction_service_pb2.DESCRIPTOR.services_by_name["PredictionService"]
    upstream = upstream_client("describe", stdin={"messages": sorted(ours), "services": [service.full_name]})
    assert "tensorflow.TensorInfo" in ours and "tensorflow.SignatureDef" in ours
    for name, d in ours.items():
        theirs = upstream["messages"][name]
        for f in d.fields:
            kind = f.message_type or f.enum_type
            oneof = f.containing_oneof.name if f.containing_oneof else ""
            facts = [f.number, f.type, f.is_repeated, kind.full_name if kind else "", oneof]
            assert theirs.get(f.name) == facts, f"{name}.{f.name}: ours {facts}, upstream {theirs.get(f.name)}"
    their_methods = upstream["services"][service.full_name]
    for m in service.methods:
        assert their_methods.get(m.name) == [m.input_type.full_name, m.output_type.full_name], m.name
    assert "GetModelMetadata" in [m.name for m in service.methods]
