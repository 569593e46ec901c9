"""Kubernetes API errors as types: the class says what happened, the Status details are kept, and a
bug in the request path is not disguised as an API error."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import urllib3
from kubernetes import client

from isvc_operator.api_errors import (
    ApiConflict,
    ApiError,
    ApiForbidden,
    ApiInvalid,
    ApiNotFound,
    ApiServerError,
    ApiTooManyRequests,
    ApiTransportError,
    api_error,
)
from isvc_operator.kube_api import KubeApi


@pytest.mark.parametrize(
    "status, cls, transient",
    [
        (403, ApiForbidden, False),
        (404, ApiNotFound, False),
        (409, ApiConflict, True),
        (422, ApiInvalid, False),
        (429, ApiTooManyRequests, True),
        (500, ApiServerError, True),
        (504, ApiServerError, True),
        (418, ApiError, False),
    ],
)
def test_a_class_per_meaning(status: int, cls: type, transient: bool):
    error = api_error(status, "Reason", json.dumps({"kind": "Status", "message": "m"}))
    assert type(error) is cls and error.transient is transient and error.status == status


def test_the_status_details_are_kept():
    status = {
        "kind": "Status",
        "reason": "Invalid",
        "message": 'Service "a" is invalid',
        "details": {"name": "a", "kind": "services", "causes": [{"field": "spec.ports[0].nodePort"}]},
    }
    error = api_error(422, "Unprocessable Entity", json.dumps(status).encode())
    assert error.message == 'Service "a" is invalid'
    assert error.details["causes"][0]["field"] == "spec.ports[0].nodePort"


def test_a_body_that_is_no_status_is_the_message():
    assert api_error(502, "Bad Gateway", b"<html>bad gateway</html>").message == "<html>bad gateway</html>"


class FakeClient:
    def __init__(self, raises: BaseException) -> None:
        self.raises = raises

    def param_serialize(self, method, resource_path, header_params, auth_settings):
        return method, "https://api" + resource_path, header_params, None, None

    def call_api(self, *args, **kwargs):
        raise self.raises


@pytest.mark.parametrize(
    "raised",
    [
        urllib3.exceptions.MaxRetryError(None, "/", "connection refused"),
        urllib3.exceptions.ReadTimeoutError(None, "/", "read timed out"),
        ConnectionResetError(104, "Connection reset by peer"),
        client.ApiException(status=0, reason="SSLError"),
    ],
)
def test_no_answer_is_a_transport_error(raised: BaseException):
    with pytest.raises(ApiTransportError) as info:
        KubeApi(FakeClient(raised)).request("GET", "/api/v1/namespaces")  # type: ignore[arg-type]
    assert info.value.transient and info.value.status == 0


def test_an_api_exception_becomes_its_typed_error():
    response = SimpleNamespace(status=404, reason="Not Found", data=b'{"message": "not here"}', headers={})
    raised = client.ApiException(http_resp=response)
    with pytest.raises(ApiNotFound, match="not here"):
        KubeApi(FakeClient(raised)).request("GET", "/api/v1/namespaces/x")  # type: ignore[arg-type]


def test_a_bug_in_the_request_path_is_raised_as_it_is():
    with pytest.raises(TypeError):
        KubeApi(FakeClient(TypeError("Object of type set is not JSON serializable"))).request("GET", "/x")  # type: ignore[arg-type]
