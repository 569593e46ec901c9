"""Request decoding and response encoding, without a server."""

from types import SimpleNamespace

import numpy as np
import orjson
import pytest
import torch

from isvc_pytorch_server import codec
from isvc_pytorch_server.errors import ApiError
from isvc_pytorch_server.loader import TensorSpec


def model(*specs):
    return SimpleNamespace(inputs=list(specs))


ONE = model(TensorSpec("x", torch.float32, [-1, 4]))
TWO = model(TensorSpec("a", torch.float32, None), TensorSpec("b", torch.int64, None))


def test_row_format_converts_ints_to_the_model_dtype():
    req = codec.decode_v1({"instances": [[1, 2, 3, 4], [5, 6, 7, 8]]}, ONE)
    (arr,) = req.arrays
    assert arr.dtype == np.float32 and arr.shape == (2, 4) and req.rows == 2 and not req.columnar


def test_named_rows_and_columns_for_two_inputs():
    req = codec.decode_v1({"instances": [{"a": [1.5], "b": 3}, {"a": [2.5], "b": 4}]}, TWO)
    assert [a.dtype for a in req.arrays] == [np.float32, np.int64]
    assert req.arrays[1].tolist() == [3, 4] and req.rows == 2
    req = codec.decode_v1({"inputs": {"b": [1, 2, 3], "a": [[1.0], [2.0], [3.0]]}}, TWO)
    assert req.arrays[0].shape == (3, 1) and req.arrays[1].tolist() == [1, 2, 3] and req.columnar
    with pytest.raises(ApiError, match=r"do not match the model's inputs \['a', 'b'\]"):
        codec.decode_v1({"inputs": {"a": [1.0], "c": [1]}}, TWO)
    with pytest.raises(ApiError, match="lacks input 'b'"):
        codec.decode_v1({"instances": [{"a": [1.5]}]}, TWO)


def test_single_input_under_another_name_is_accepted():
    req = codec.decode_v1({"instances": [{"input": [1, 2, 3, 4]}]}, ONE)
    assert req.arrays[0].shape == (1, 4)


@pytest.mark.parametrize(
    "value,words",
    [
        ([["1", "2"]], "found strings"),
        ([[1, None]], "found null"),
        ([[1, 2], [3]], "not a rectangular array"),
        ([[{"a": 1}]], "found null, objects or mixed types"),
    ],
)
def test_non_numbers_are_rejected(value, words):
    with pytest.raises(ApiError, match=words) as e:
        codec.decode_v1({"instances": value}, ONE)
    assert e.value.status == 400


def test_exact_specs_are_checked_before_running():
    exact = model(TensorSpec("x", torch.float32, [-1, 4], exact=True))
    with pytest.raises(ApiError, match=r"'x' has shape \[2, 3\]; the model expects \['N', 4\]"):
        codec.decode_v1({"instances": [[1, 2, 3], [4, 5, 6]]}, exact)


def test_encode_v1_single_and_multi_output():
    out = {"output-0": np.array([[0.5, 0.25]], dtype=np.float32)}
    assert orjson.loads(codec.encode_v1(out, True, False)) == {"predictions": [[0.5, 0.25]]}
    assert orjson.loads(codec.encode_v1(out, True, True)) == {"outputs": [[0.5, 0.25]]}
    multi = {"scores": np.array([[1.0], [2.0]], dtype=np.float32), "label": np.array([3, 4])}
    assert orjson.loads(codec.encode_v1(multi, False, False)) == {
        "predictions": [{"scores": [1.0], "label": 3}, {"scores": [2.0], "label": 4}]
    }
    assert orjson.loads(codec.encode_v1(multi, False, True)) == {"outputs": {"scores": [[1.0], [2.0]], "label": [3, 4]}}


def test_v2_decode_reshapes_and_converts_fp64_to_model_dtype():
    doc = {"id": "7", "inputs": [{"name": "input-0", "shape": [2, 4], "datatype": "FP64", "data": list(range(8))}]}
    req = codec.decode_v2(doc, ONE)
    assert req.arrays[0].shape == (2, 4) and req.arrays[0].dtype == np.float32 and req.rows == 2 and req.id == "7"
    body = orjson.loads(codec.encode_v2("iris", 3, {"output-0": np.zeros((2, 3), np.float32)}, req))
    assert body == {
        "model_name": "iris",
        "model_version": "3",
        "id": "7",
        "outputs": [{"name": "output-0", "datatype": "FP32", "shape": [2, 3], "data": [0.0] * 6}],
    }


def test_v2_nested_data_and_int_inputs():
    doc = {
        "inputs": [
            {"name": "b", "shape": [2], "datatype": "INT64", "data": [1, 2]},
            {"name": "a", "shape": [2, 1], "datatype": "FP32", "data": [[1.0], [2.0]]},
        ]
    }
    req = codec.decode_v2(doc, TWO)
    assert req.arrays[0].shape == (2, 1) and req.arrays[1].dtype == np.int64
    with pytest.raises(ApiError, match="unknown input 'c'"):
        codec.decode_v2(
            {
                "inputs": [
                    {"name": "c", "shape": [1], "datatype": "FP32", "data": [1]},
                    {"name": "a", "shape": [1], "datatype": "FP32", "data": [1]},
                ]
            },
            TWO,
        )


def test_loads_errors():
    with pytest.raises(ApiError, match="JSON Parse error"):
        codec.loads(b"{nope")
    with pytest.raises(ApiError, match="must be a JSON object"):
        codec.loads(b"3")


def _padded(doc_text: str) -> bytes:
    """A body long enough for the fast road (trailing whitespace is valid JSON)."""
    body = doc_text.encode()
    return body + b" " * max(0, codec.FAST_ROWS_MIN_BYTES - len(body))


def test_big_rows_take_the_fast_road_and_decode_as_the_general_road_does(monkeypatch):
    rng = np.random.default_rng(0)
    rows = rng.uniform(-1e3, 1e3, size=(3, 300)).round(4).tolist()
    rows[1][7] = 12  # an int among floats
    body = orjson.dumps({"instances": rows})
    general = codec.decode_v1(orjson.loads(body), ONE_WIDE)
    seen = []
    real = codec._rows_of_numbers
    monkeypatch.setattr(codec, "_rows_of_numbers", lambda *a: seen.append(real(*a)) or seen[-1])
    fast = codec.decode_v1_body(body, ONE_WIDE)
    assert len(seen) == 1 and seen[0] is not None and fast.rows == general.rows == 3 and not fast.columnar
    assert fast.arrays[0].dtype == np.float32 and fast.arrays[0].flags.writeable
    np.testing.assert_array_equal(fast.arrays[0], general.arrays[0])


ONE_WIDE = model(TensorSpec("x", torch.float32, None))


@pytest.mark.parametrize(
    "doc_text",
    [
        '{"instances": [[1, "a"]]}',
        '{"instances": [[1, null]]}',
        '{"instances": [[1, 2], [3]]}',
        '{"instances": [[1, 2], [3, 4, 5]]}',
        '{"instances": [[[1, 2]], [3, 4]]}',
        '{"instances": [[1, {"b64": "AA=="}]]}',
        '{"instances": []}',
        '{"instances": [[1, 2]], "signature_name": "other"}',
        '{"instances": [[1, 2]], "inputs": [[1, 2]]}',
        '{"instances": [[1, 2]]',
        "[[1, 2]]",
    ],
)
def test_a_big_body_the_fast_road_cannot_take_gets_the_general_roads_answer(doc_text):
    body = _padded(doc_text)
    with pytest.raises(ApiError) as general:
        codec.decode_v1(codec.loads(body), ONE_WIDE)
    with pytest.raises(ApiError) as fast:
        codec.decode_v1_body(body, ONE_WIDE)
    assert (fast.value.status, fast.value.message) == (general.value.status, general.value.message)


@pytest.mark.parametrize("doc_text", ['{"instances": [[true, 2]]}', '{"instances": [1, 2, 3]}'])
def test_a_big_body_of_odd_numbers_decodes_the_same_either_way(doc_text):
    body = _padded(doc_text)
    general = codec.decode_v1(codec.loads(body), ONE_WIDE)
    fast = codec.decode_v1_body(body, ONE_WIDE)
    assert fast.rows == general.rows
    np.testing.assert_array_equal(fast.arrays[0], general.arrays[0])
