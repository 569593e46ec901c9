"""Layout checks: what each model server loads, and what the error says when it is missing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from isvc_operator.storage import (
    StorageError,
    check_layout,
)

from .helpers import make_tree

# --------------------------------------------------------------------------- layout checks


@pytest.mark.parametrize(
    ("layout", "paths", "expected"),
    [
        ("tensorflow", ["1/saved_model.pb", "1/variables/v.index"], "layout tensorflow: version 1 with saved_model.pb"),
        (
            "tensorflow",
            ["2/saved_model.pb", "10/saved_model.pb", "3/README"],
            "layout tensorflow: versions 2, 10 with saved_model.pb (warning: no saved_model.pb in 3/)",
        ),
        ("pytorch", ["1/model.pt"], "layout pytorch: version 1 (TorchScript model.pt)"),
        ("pytorch", ["1/resnet.pt2"], "layout pytorch: version 1 (exported program resnet.pt2)"),
        ("pytorch", ["2/model.py", "2/model.pth"], "layout pytorch: version 2 (model.py + state dict model.pth)"),
        (
            "pytorch",
            ["1/model.py", "1/pytorch_model.bin"],
            "layout pytorch: version 1 (model.py + state dict pytorch_model.bin)",
        ),
        (
            "pytorch",
            ["model.pt", "labels.txt"],
            "layout pytorch: TorchScript model.pt at the root, no version directory: accepted, served as version 1",
        ),
    ],
)
def test_check_layout_accepts(tmp_path: Path, layout: str, paths: list[str], expected: str) -> None:
    assert check_layout(make_tree(tmp_path / "m", paths), layout) == expected


@pytest.mark.parametrize(
    ("layout", "paths", "tail"),
    [
        (
            "tensorflow",
            ["saved_model.pb", "variables/variables.index"],
            "found: saved_model.pb, variables/ (put them in a directory named 1/)",
        ),
        ("tensorflow", ["1/variables/variables.index"], "found: 1/ (1/ holds: variables/)"),
        (
            "tensorflow",
            ["a/b/1/saved_model.pb"],
            "found: a/ (saved_model.pb is at a/b/1/saved_model.pb: the archive must hold 1/saved_model.pb",
        ),
        ("tensorflow", [], "found: nothing (empty) (expected e.g. 1/saved_model.pb and 1/variables/)"),
        (
            "pytorch",
            ["1/model.py"],
            "found: 1/ (1/model.py needs a state-dict file next to it: model.pth, model.pt or *.bin)",
        ),
        (
            "pytorch",
            ["pytorch_model.bin", "config.json"],
            "found: config.json, pytorch_model.bin (pytorch_model.bin is a state dict: add model.py defining the model",
        ),
        ("pytorch", ["1/model.onnx"], "found: 1/ (1/ holds: model.onnx)"),
        ("pytorch", ["m/x/1/model.pt"], "(m/x/1/model.pt is too deep: the archive must hold 1/model.pt"),
    ],
)
def test_check_layout_rejects_and_says_what_was_found(tmp_path: Path, layout: str, paths: list[str], tail: str) -> None:
    dest = make_tree(tmp_path / "m", paths)

    with pytest.raises(StorageError) as err:
        check_layout(dest, layout)

    message = str(err.value)
    head = {
        "tensorflow": f"layout tensorflow: no numeric version directory with saved_model.pb under {dest}; ",
        "pytorch": (
            "layout pytorch: no numeric version directory with model.pt (TorchScript), *.pt2, "
            "or model.py + a state dict"
        ),
    }[layout]
    assert message.startswith(head)
    assert tail in message


def test_check_layout_rejects_unknown_layouts(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="unknown layout 'onnx'; accepted: tensorflow, pytorch"):
        check_layout(tmp_path, "onnx")


LAYOUT_CASES = json.loads((Path(__file__).resolve().parents[2] / "fixtures/pytorch_layouts.json").read_text())["cases"]
DESCRIPTION = {
    "torchscript": "TorchScript model.pt",
    "torch_export": "exported program",
    "pytorch_eager": "model.py + state dict",
}


@pytest.mark.parametrize("case", LAYOUT_CASES, ids=lambda case: "+".join(case["files"]) or "empty")
def test_pytorch_layout_agrees_with_the_servers_loader(tmp_path: Path, case: dict) -> None:
    """The init container accepts exactly what the PyTorch server loads, and names the same format."""
    dest = make_tree(tmp_path / "m", [f"1/{name}" for name in case["files"]] or ["1/"])
    if case["format"] is None:
        with pytest.raises(StorageError, match="layout pytorch: no numeric version directory"):
            check_layout(dest, "pytorch")
    else:
        assert check_layout(dest, "pytorch").startswith(f"layout pytorch: version 1 ({DESCRIPTION[case['format']]}")
