"""Readiness follows loading; new version directories are picked up without a restart."""

import os
import shutil
import textwrap

import numpy as np
from conftest import IRIS_BODY, IRIS_MODEL_PY, expected, save_model


def _gated_model(directory, net, gate_file):
    """model.py whose constructor blocks until ``gate_file`` exists: loading lasts as long as we want."""
    save_model(net, directory, "eager")
    gate = textwrap.dedent(f"""
        import os as _os, time as _time
        _orig_init = Net.__init__
        def _gated_init(self):
            while not _os.path.exists({str(gate_file)!r}):
                _time.sleep(0.05)
            _orig_init(self)
        Net.__init__ = _gated_init
    """)
    with open(os.path.join(directory, "model.py"), "w") as f:
        f.write(IRIS_MODEL_PY + gate)


def test_readiness_then_new_versions(start_server, tmp_path, iris_net, iris_net_b):
    base = tmp_path / "models"
    base.mkdir()
    s = start_server(str(base))

    # Nothing under the base path: 404 with a JSON error, as TF Serving does.
    s.wait_listening()
    status, doc = s.request("GET", "/v1/models/iris")
    assert status == 404 and "Could not find any versions of model iris" in doc["error"]
    assert s.request("GET", "/v2/health/ready") == (503, {"ready": False})
    status, doc = s.predict(IRIS_BODY)
    assert status == 404

    # Version 1 appears but loads slowly: 503 + LOADING until it is done.
    gate = tmp_path / "release-v1"
    _gated_model(str(tmp_path / "staging"), iris_net, gate)
    os.rename(tmp_path / "staging", base / "1")
    doc = s.wait_status(503, check=lambda d: "is LOADING" in d["error"])
    assert s.request("GET", "/v1/models/iris")[0] == 503  # still loading: not ready
    assert s.request("GET", "/v2/models/iris/ready")[0] == 503
    gate.touch()
    doc = s.wait_status(200)
    assert doc["model_version_status"] == [
        {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
    ]
    status, doc = s.predict(IRIS_BODY)
    assert status == 200
    np.testing.assert_allclose(doc["predictions"], expected(iris_net, IRIS_BODY["instances"]), rtol=1e-5, atol=1e-6)
    assert not (base / "1" / "__pycache__").exists()  # model.py imported without writing bytecode

    # Version 2 (another format, other weights) is picked up and served; version 1 is retired.
    save_model(iris_net_b, str(tmp_path / "staging2"), "torchscript")
    os.rename(tmp_path / "staging2", base / "2")
    s.wait_status(
        200,
        check=lambda d: d["model_version_status"][0]["version"] == "2"
        and d["model_version_status"][0]["state"] == "AVAILABLE",
    )
    status, doc = s.predict(IRIS_BODY)
    np.testing.assert_allclose(doc["predictions"], expected(iris_net_b, IRIS_BODY["instances"]), rtol=1e-5, atol=1e-6)
    assert s.predict(IRIS_BODY, version=2)[0] == 200
    status, doc = s.predict(IRIS_BODY, version=1)
    assert status == 404 and "served version is 2" in doc["error"]
    states = {v["version"]: v["state"] for v in s.request("GET", "/v1/models/iris")[1]["model_version_status"]}
    assert states == {"2": "AVAILABLE", "1": "END"}

    # A broken version 3 is reported, naming the files found; version 2 keeps serving.
    (base / "3").mkdir()
    (base / "3" / "weights.onnx").write_bytes(b"not a torch model")
    doc = s.wait_status(
        200, check=lambda d: any(v["version"] == "3" and v["state"] == "END" for v in d["model_version_status"])
    )
    v3 = next(v for v in doc["model_version_status"] if v["version"] == "3")
    assert v3["state"] == "END" and v3["status"]["error_code"] == "INVALID_ARGUMENT"
    assert "found ['weights.onnx']" in v3["status"]["error_message"] and "model.pt" in v3["status"]["error_message"]
    status, doc = s.predict(IRIS_BODY)
    assert status == 200
    np.testing.assert_allclose(doc["predictions"], expected(iris_net_b, IRIS_BODY["instances"]), rtol=1e-5, atol=1e-6)

    # Fixing version 3 in place (its files change) is retried and served.
    shutil.rmtree(base / "3")
    save_model(iris_net, str(tmp_path / "staging3"), "export")
    os.rename(tmp_path / "staging3", base / "3")
    s.wait_status(
        200,
        check=lambda d: d["model_version_status"][0]
        == {"version": "3", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}},
    )
    np.testing.assert_allclose(
        s.predict(IRIS_BODY)[1]["predictions"], expected(iris_net, IRIS_BODY["instances"]), rtol=1e-5, atol=1e-6
    )


def test_flat_base_path_is_version_1(start_server, tmp_path, iris_net):
    """Users of KServe's pytorchserver put model.py + model.pth straight into the base path."""
    save_model(iris_net, str(tmp_path), "eager")
    s = start_server(str(tmp_path), name="flat", use_env_port=True)  # port from $PORT (Cloud Run / Knative)
    doc = s.wait_status(200)
    assert doc["model_version_status"][0]["version"] == "1"
    status, doc = s.predict(IRIS_BODY)
    assert status == 200
    np.testing.assert_allclose(doc["predictions"], expected(iris_net, IRIS_BODY["instances"]), rtol=1e-5, atol=1e-6)
    assert "serving them as version 1" in s.output()


def test_a_model_that_never_loads_exits_with_the_error_as_termination_message(start_server, tmp_path):
    """Nothing was ever served and the latest version fails: exit 1, the error in the termination
    message (Kubernetes reports CrashLoopBackOff with it instead of a pod that is never ready)."""
    base = tmp_path / "models"
    (base / "1").mkdir(parents=True)
    (base / "1" / "model.pt").write_bytes(b"this is not a TorchScript archive")
    message = tmp_path / "termination-log"
    message.write_text("")
    s = start_server(str(base), extra=[f"--termination_message_path={message}"])
    assert s.proc.wait(60) == 1, s.output()
    assert "version 1 of model iris failed to load" in message.read_text()
    assert "model.pt" in message.read_text()


def test_with_exit_on_load_failure_off_a_model_that_never_loads_answers_503(start_server, tmp_path):
    base = tmp_path / "models"
    (base / "1").mkdir(parents=True)
    (base / "1" / "model.pt").write_bytes(b"this is not a TorchScript archive")
    s = start_server(str(base), extra=["--exit_on_load_failure=false"])
    doc = s.wait_status(503, check=lambda d: "failed" in str(d) or "END" in str(d))
    assert s.proc.poll() is None, "the server exited although --exit_on_load_failure=false"
    assert doc
