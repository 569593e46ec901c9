"""Loading each format in-process, and the errors for layouts that are not accepted."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import IRIS_BODY, IRIS_MODEL_PY, expected, save_model

from isvc_pytorch_server import loader
from isvc_pytorch_server.errors import ModelLoadError

CPU = torch.device("cpu")


@pytest.mark.parametrize("fmt", ["torchscript", "export", "eager"])
def test_each_format_runs_like_the_model(tmp_path, iris_net, fmt):
    save_model(iris_net, str(tmp_path / "1"), fmt)
    m = loader.load_version(1, str(tmp_path / "1"), CPU)
    rows = np.array(IRIS_BODY["instances"], dtype=np.float32)
    out = m.run([rows])
    assert list(out) == ["output-0"] and m.single_output
    np.testing.assert_allclose(out["output-0"], expected(iris_net, rows.tolist()), rtol=1e-6)
    assert m.inputs[0].shape == [-1, 4] and m.inputs[0].dtype == torch.float32
    assert m.inputs[0].exact == (fmt == "export")
    assert m.batchable


def test_unknown_files_error_names_them(tmp_path):
    (tmp_path / "model.onnx").write_bytes(b"x")
    (tmp_path / "README").write_text("hi")
    with pytest.raises(ModelLoadError) as e:
        loader.load_version(1, str(tmp_path), CPU)
    assert "found ['README', 'model.onnx']" in str(e.value)
    assert "model.pt (TorchScript)" in str(e.value) and "*.pt2" in str(e.value)


def test_state_dict_saved_as_model_pt_without_model_py(tmp_path, iris_net):
    torch.save(iris_net.state_dict(), tmp_path / "model.pt")
    with pytest.raises(ModelLoadError, match="is not a TorchScript archive .*needs model.py beside it"):
        loader.load_version(1, str(tmp_path), CPU)


def test_model_py_with_state_dict_named_model_pt_and_bin(tmp_path, iris_net):
    (tmp_path / "model.py").write_text(IRIS_MODEL_PY)
    torch.save(iris_net.state_dict(), tmp_path / "pytorch_model.bin")
    m = loader.load_version(1, str(tmp_path), CPU)
    np.testing.assert_allclose(
        m.run([np.ones((1, 4), np.float32)])["output-0"], expected(iris_net, [[1, 1, 1, 1]]), rtol=1e-6
    )
    assert not (tmp_path / "__pycache__").exists()


def test_model_py_without_state_dict(tmp_path):
    (tmp_path / "model.py").write_text(IRIS_MODEL_PY)
    with pytest.raises(ModelLoadError, match=r"model.py but no state dict .*found \['model.py'\]"):
        loader.load_version(1, str(tmp_path), CPU)


def test_model_py_with_two_classes_needs_a_name(tmp_path, iris_net):
    (tmp_path / "model.py").write_text(IRIS_MODEL_PY + "\n\nclass Other(nn.Module):\n    pass\n")
    torch.save(iris_net.state_dict(), tmp_path / "model.pth")
    with pytest.raises(ModelLoadError, match=r"several nn.Module classes \['Net', 'Other'\]"):
        loader.load_version(1, str(tmp_path), CPU)
    m = loader.load_version(1, str(tmp_path), CPU, model_class_name="Net")
    assert m.format == "pytorch_eager"


def test_state_dict_that_does_not_fit(tmp_path):
    (tmp_path / "model.py").write_text(IRIS_MODEL_PY)
    torch.save({"fc1.weight": torch.zeros(2, 2)}, tmp_path / "model.pth")
    with pytest.raises(ModelLoadError, match="does not fit Net"):
        loader.load_version(1, str(tmp_path), CPU)


def test_pickled_module_is_refused(tmp_path, iris_net):
    (tmp_path / "model.py").write_text(IRIS_MODEL_PY)
    torch.save(torch.nn.Linear(4, 3), tmp_path / "model.pth")  # a whole pickled module, not a state dict
    with pytest.raises(ModelLoadError, match="is not a plain state dict"):
        loader.load_version(1, str(tmp_path), CPU)


def test_export_with_static_batch_is_not_batched(tmp_path, iris_net):
    ep = torch.export.export(iris_net, (torch.randn(2, 4),))
    torch.export.save(ep, tmp_path / "iris.pt2")
    m = loader.load_version(1, str(tmp_path), CPU)
    assert not m.batchable and m.inputs[0].shape == [2, 4]


def test_list_versions(tmp_path, iris_net):
    assert loader.list_versions(str(tmp_path / "missing")) == ({}, False)
    for v in ("1", "10", "2"):
        (tmp_path / v).mkdir()
    (tmp_path / "tmp-3").mkdir()
    (tmp_path / "4").write_text("a file, not a version directory")
    versions, flat = loader.list_versions(str(tmp_path))
    assert sorted(versions) == [1, 2, 10] and not flat

    flat_dir = tmp_path / "flat"
    save_model(iris_net, str(flat_dir), "eager")
    versions, flat = loader.list_versions(str(flat_dir))
    assert versions == {1: str(flat_dir)} and flat


def test_device_choice():
    assert loader.resolve_device("cpu").type == "cpu"
    assert loader.resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ModelLoadError, match="CUDA is not available"):
            loader.resolve_device("cuda")
    with pytest.raises(ModelLoadError, match="unknown device"):
        loader.resolve_device("tpu")


LAYOUT_CASES = json.loads((Path(__file__).resolve().parents[3] / "tests/fixtures/pytorch_layouts.json").read_text())[
    "cases"
]


@pytest.mark.parametrize("case", LAYOUT_CASES, ids=lambda case: "+".join(case["files"]) or "empty")
def test_the_format_loaded_agrees_with_the_storage_init_container(tmp_path, case):
    """The table the init container's layout check runs too: what it accepts, this loads."""
    for name in case["files"]:
        (tmp_path / name).write_bytes(b"x")
    assert loader.model_format(case["files"]) == case["format"]
    if case["format"] is None:
        with pytest.raises(ModelLoadError):
            loader.load_version(1, str(tmp_path), CPU)


def test_an_exported_program_beside_model_pt_is_what_is_loaded(tmp_path, iris_net):
    save_model(iris_net, str(tmp_path), "export")
    torch.save(iris_net.state_dict(), tmp_path / "model.pt")  # not TorchScript: never read
    assert loader.load_version(1, str(tmp_path), CPU).format == "torch_export"


def test_model_py_without_a_state_dict_beside_an_exported_program_loads_the_program(tmp_path, iris_net):
    save_model(iris_net, str(tmp_path), "export")
    (tmp_path / "model.py").write_text(IRIS_MODEL_PY)
    assert loader.load_version(1, str(tmp_path), CPU).format == "torch_export"
