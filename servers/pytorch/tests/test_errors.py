"""Who is to blame: a request the model refuses is the client's (400), a failure of the server
(memory, a device, a broken invariant) is the server's (5xx), and a malformed v2 request is a 400."""

import asyncio
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from isvc_pytorch_server import codec
from isvc_pytorch_server.app import App
from isvc_pytorch_server.errors import ApiError
from isvc_pytorch_server.loader import TensorSpec


class FailingBatcher:
    def __init__(self, error: BaseException) -> None:
        self.error = error

    async def infer(self, model, arrays, rows):
        raise self.error


def status_for(error: BaseException) -> tuple[int, str]:
    app = App(versions=None, batcher=FailingBatcher(error), metrics=None)
    req = SimpleNamespace(arrays=[np.zeros((1, 4), np.float32)], rows=1)
    with pytest.raises(ApiError) as info:
        asyncio.run(app._infer(SimpleNamespace(version=1), req))
    return info.value.status, info.value.message


@pytest.mark.parametrize(
    "error, status, words",
    [
        (RuntimeError("mat1 and mat2 shapes cannot be multiplied (1x3 and 4x16)"), 400, "the model rejected the input"),
        (ValueError("expected 4 features"), 400, "the model rejected the input"),
        (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), 503, "the server failed"),
        (MemoryError(), 503, "the server failed"),
        (AssertionError("weights not on the device"), 500, "the server failed"),
    ],
)
def test_the_status_blames_whoever_failed(error, status, words):
    got_status, message = status_for(error)
    assert got_status == status and words in message, message


TWO = SimpleNamespace(inputs=[TensorSpec("a", torch.float32, None), TensorSpec("b", torch.float32, None)])


def test_two_v2_inputs_with_the_same_name_are_a_bad_request():
    doc = {
        "inputs": [
            {"name": "a", "shape": [1], "datatype": "FP32", "data": [1.0]},
            {"name": "a", "shape": [1], "datatype": "FP32", "data": [2.0]},
        ]
    }
    with pytest.raises(ApiError, match="input 'a' is given twice") as info:
        codec.decode_v2(doc, TWO)
    assert info.value.status == 400
