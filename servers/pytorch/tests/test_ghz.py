"""ghz, a gRPC load generator nobody here wrote, drives short bursts at the server from a protoset
compiled from our protos: every call answers OK, for the Open Inference Protocol (typed and raw
tensors) and for TF Serving's Predict, with the same numbers /metrics counts."""

import base64
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import IRIS_BODY, serving_iris
from prometheus_client.parser import text_string_to_metric_families

HERE = Path(__file__).resolve().parent
SERVER_DIR = HERE.parent
REPO = SERVER_DIR.parent.parent
ROWS = np.array(IRIS_BODY["instances"], dtype=np.float32)
CALLS = 400


def ghz_path() -> Path:
    """ghz at the version hack/cluster/versions.env pins, built by hack/cluster/build.sh on first use."""
    versions = dict(
        line.split("=", 1) for line in (REPO / "hack/cluster/versions.env").read_text().splitlines() if "=" in line
    )
    out = subprocess.run(
        ["bash", str(REPO / "hack/cluster/build.sh"), "ghz"], capture_output=True, text=True, check=True, timeout=1800
    ).stdout
    return Path(out.strip().splitlines()[-1]) / f"ghz-{versions['GHZ_VERSION'].strip()}"


def protoset(path: Path) -> Path:
    """A descriptor set of the server's protos and their imports, as protoc writes it."""
    protos = sorted(str(p.relative_to(SERVER_DIR)) for p in (SERVER_DIR / "isvc_pytorch_server/wire").glob("*.proto"))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            "-I.",
            f"--descriptor_set_out={path}",
            "--include_imports",
            *protos,
        ],
        cwd=SERVER_DIR,
        check=True,
    )
    return path


@pytest.fixture(scope="module")
def served(iris_net, tmp_path_factory):
    with serving_iris(iris_net, tmp_path_factory.mktemp("ghz-models"), "torchscript", grpc=True) as server:
        yield server


@pytest.fixture(scope="module")
def ghz(tmp_path_factory):
    binary = ghz_path()
    descriptors = protoset(tmp_path_factory.mktemp("protoset") / "server.protoset")

    def run(port: int, call: str, data: dict) -> dict:
        proc = subprocess.run(
            [
                str(binary),
                "--insecure",
                f"--protoset={descriptors}",
                f"--call={call}",
                f"--data={json.dumps(data)}",
                f"--total={CALLS}",
                "--concurrency=8",
                "--connections=2",
                "--timeout=30s",
                "--format=json",
                f"127.0.0.1:{port}",
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)

    return run


def _requests_total(server, endpoint: str, code: str) -> float:
    want = {"protocol": "grpc", "endpoint": endpoint, "code": code}
    for family in text_string_to_metric_families(server.request("GET", "/metrics")[1].decode()):
        for sample in family.samples:
            if sample.name == "isvc_pytorch_requests_total" and sample.labels == want:
                return sample.value
    return 0.0


def _assert_all_ok(report: dict) -> None:
    assert report["count"] == CALLS, report
    assert not report.get("errorDistribution"), report["errorDistribution"]
    assert report["statusCodeDistribution"] == {"OK": CALLS}, report["statusCodeDistribution"]


@pytest.mark.parametrize("raw", [False, True], ids=["typed", "raw"])
def test_ghz_model_infer_burst_has_no_errors(served, ghz, raw):
    tensor = {"name": "input-0", "datatype": "FP32", "shape": [2, 4]}
    data = {"model_name": "iris", "inputs": [tensor]}
    if raw:
        data["raw_input_contents"] = [base64.b64encode(ROWS.tobytes()).decode()]
    else:
        tensor["contents"] = {"fp32_contents": ROWS.reshape(-1).tolist()}
    before = _requests_total(served, "v2_infer", "OK")
    _assert_all_ok(ghz(served.grpc_port, "inference.GRPCInferenceService.ModelInfer", data))
    assert _requests_total(served, "v2_infer", "OK") - before == CALLS


def test_ghz_tf_predict_burst_has_no_errors(served, ghz):
    tensor = {
        "dtype": "DT_FLOAT",
        "tensor_shape": {"dim": [{"size": 2}, {"size": 4}]},
        "tensor_content": base64.b64encode(ROWS.tobytes()).decode(),
    }
    data = {"model_spec": {"name": "iris"}, "inputs": {"x": tensor}}
    before = _requests_total(served, "tf_predict", "OK")
    _assert_all_ok(ghz(served.grpc_port, "tensorflow.serving.PredictionService.Predict", data))
    assert _requests_total(served, "tf_predict", "OK") - before == CALLS
