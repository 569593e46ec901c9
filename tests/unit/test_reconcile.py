"""One pass over a fake API: apply what differs, report what is rejected, retry what is transient,
prune what is no longer wanted, and write the status only over the version the pass read."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import pytest

from isvc_operator.api_errors import ApiConflict, ApiError, ApiInvalid, ApiNotFound, ApiServerError, ApiTransportError
from isvc_operator.kinds import AUTOSCALER, DEPLOYMENT, SERVICE, object_key
from isvc_operator.reconcile import ChildrenRejected, IsvcGone, reconcile
from isvc_operator.runtimes import load_catalog

CATALOG = load_catalog()
NOW = "2026-01-01T00:00:00Z"


def isvc(rv: str = "10", **predictor: Any) -> dict[str, Any]:
    return {
        "apiVersion": "serving.isvc.dev/v1alpha1",
        "kind": "InferenceService",
        "metadata": {"name": "iris", "namespace": "ns", "uid": "uid-1", "generation": 1, "resourceVersion": rv},
        "spec": {"predictor": {"tensorflow": {"storageUri": "pvc://models"}, **predictor}},
    }


class FakeApi:
    """The calls reconcile makes, against a dict of objects with resourceVersions, as the API server
    keeps them; `fail` maps a kind to the error its apply raises."""

    def __init__(self, isvc_body: dict[str, Any]) -> None:
        self.isvc = copy.deepcopy(isvc_body)
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.fail: dict[str, BaseException] = {}
        self.fail_status: BaseException | None = None
        self.calls: list[tuple[str, str]] = []
        self.rv = 100

    def _next_rv(self) -> str:
        self.rv += 1
        return str(self.rv)

    def apply_or_replace(self, obj: dict[str, Any], *, exists: bool) -> dict[str, Any]:
        self.calls.append(("apply", obj["kind"]))
        if obj["kind"] in self.fail:
            raise self.fail[obj["kind"]]
        stored = copy.deepcopy(obj)
        stored["metadata"]["resourceVersion"] = self._next_rv()
        self.objects[object_key(obj)] = stored
        return stored

    def delete(self, api_version: str, kind: str, namespace: str, name: str, uid: str | None = None) -> None:
        self.calls.append(("delete", kind))
        self.objects.pop((api_version, kind, name), None)

    def patch_status(
        self, namespace: str, name: str, status: dict[str, Any], resource_version: str | None = None
    ) -> dict[str, Any]:
        self.calls.append(("status", ""))
        if self.fail_status is not None:
            raise self.fail_status
        if resource_version is not None and resource_version != self.isvc["metadata"]["resourceVersion"]:
            raise ApiConflict(
                409, "Conflict", "the object has been modified; please apply your changes to the latest version"
            )
        self.isvc["status"] = copy.deepcopy(status)
        self.isvc["metadata"]["resourceVersion"] = self._next_rv()
        return copy.deepcopy(self.isvc)


def run(body: dict[str, Any], api: FakeApi, children: dict | None = None, **kwargs: Any):
    return asyncio.run(reconcile(body, children or {}, api, CATALOG, now=lambda: NOW, **kwargs))  # type: ignore[arg-type]


def test_a_new_isvc_gets_its_children_and_a_status():
    api = FakeApi(isvc())
    outcome = run(isvc(), api)
    assert outcome.result == "applied"
    assert sorted(kind for _, kind, _ in outcome.applied) == ["Deployment", "Service"]
    assert outcome.status_written and api.isvc["status"]["observedGeneration"] == 1
    assert outcome.writes == 3


def test_an_unchanged_isvc_costs_no_request():
    api = FakeApi(isvc())
    first = run(isvc(), api)
    body = first.isvc_response
    api.calls.clear()
    again = run(body, api, dict(first.responses))
    assert (again.result, again.writes, api.calls) == ("unchanged", 0, [])


def test_a_child_no_longer_wanted_is_pruned():
    api = FakeApi(isvc())
    scaled = run(isvc(minReplicas=1, maxReplicas=3), api)
    assert AUTOSCALER.key("iris-predictor") in scaled.applied
    body = copy.deepcopy(scaled.isvc_response)
    body["spec"]["predictor"] = {"tensorflow": {"storageUri": "pvc://models"}}
    outcome = run(body, api, dict(scaled.responses))
    assert [kind for _, kind, _ in outcome.deleted] == ["HorizontalPodAutoscaler"]
    assert ("delete", "HorizontalPodAutoscaler") in api.calls


def test_a_rejected_child_is_on_the_status_and_the_pass_is_retried():
    api = FakeApi(isvc())
    api.fail["Service"] = ApiInvalid(
        422, "Unprocessable Entity", 'Service "iris" is invalid: nodePort: provided port is already allocated'
    )
    with pytest.raises(ChildrenRejected, match="already allocated"):
        run(isvc(), api)
    service_ready = next(c for c in api.isvc["status"]["conditions"] if c["type"] == SERVICE.condition)
    assert service_ready["status"] == "False" and "already allocated" in service_ready["message"]
    assert DEPLOYMENT.key("iris-predictor") in api.objects, "the other children are still written"


@pytest.mark.parametrize(
    "error",
    [
        ApiTransportError("ConnectionRefusedError", "connection refused"),
        ApiServerError(503, "Service Unavailable", "etcd is down"),
        ApiConflict(409, "Conflict", "try again"),
    ],
)
def test_a_transient_error_is_raised_for_a_retry_and_written_nowhere(error: ApiError):
    api = FakeApi(isvc())
    api.fail["Deployment"] = error
    with pytest.raises(type(error)):
        run(isvc(), api)
    assert "status" not in api.isvc, "no condition blames the spec for the API server's trouble"


def test_a_status_patch_is_guarded_by_the_resource_version_the_pass_read():
    """A pass abandoned after its timeout may still have its status patch in flight: when it lands
    after a newer pass wrote, it must not overwrite the newer status."""
    api = FakeApi(isvc())
    stale = isvc()  # what the abandoned pass read
    newer = run(isvc(), api)  # a newer pass wrote the status meanwhile
    assert newer.status_written
    written = copy.deepcopy(api.isvc["status"])
    stale["metadata"]["generation"] = 7  # the abandoned pass computed something else
    with pytest.raises(ApiConflict):
        run(stale, api, dict(newer.responses))
    assert api.isvc["status"] == written


def test_a_404_on_the_status_means_the_isvc_is_gone_whatever_the_message():
    api = FakeApi(isvc())
    api.fail_status = ApiNotFound(404, "Not Found", "")  # e.g. a proxy's answer without a Status body
    with pytest.raises(IsvcGone):
        run(isvc(), api)


def test_a_programming_error_in_the_request_path_is_not_an_api_error():
    api = FakeApi(isvc())
    api.fail["Deployment"] = TypeError("unhashable type: 'dict'")
    with pytest.raises(TypeError):
        run(isvc(), api)


class AccountsApi(FakeApi):
    """FakeApi plus the reads of the predictor's ServiceAccount and Secrets (get: None when absent)."""

    def __init__(self, isvc_body: dict[str, Any], stored: dict[tuple[str, str], dict[str, Any]]) -> None:
        super().__init__(isvc_body)
        self.stored = stored

    def get(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        self.calls.append(("get", kind))
        return copy.deepcopy(self.stored.get((kind, name)))


S3_ISVC = isvc(serviceAccountName="reader", tensorflow={"storageUri": "s3://models/dogs"})
READER = {"metadata": {"name": "reader"}, "secrets": [{"name": "s3"}]}
S3_SECRET = {"metadata": {"name": "s3"}, "data": {"AWS_ACCESS_KEY_ID": "QUtJQQ==", "AWS_SECRET_ACCESS_KEY": "c2VjcmV0"}}


@pytest.mark.parametrize(
    ("stored", "message"),
    [
        ({}, "ServiceAccount reader (spec.predictor.serviceAccountName) not found in namespace ns"),
        (
            {("ServiceAccount", "reader"): READER},
            "Secret s3, listed by ServiceAccount reader, not found in namespace ns",
        ),
    ],
)
def test_missing_credentials_are_named_no_child_is_touched_and_the_pass_is_retried(stored, message):
    api = AccountsApi(S3_ISVC, stored)
    outcome = run(S3_ISVC, api)
    ready = next(c for c in api.isvc["status"]["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "StorageCredentialsNotFound")
    assert ready["message"].startswith(message)
    assert outcome.retry and not outcome.applied
    assert [call for call in api.calls if call[0] == "apply"] == []


def test_found_credentials_reach_the_init_container_as_secret_refs():
    api = AccountsApi(S3_ISVC, {("ServiceAccount", "reader"): READER, ("Secret", "s3"): S3_SECRET})
    outcome = run(S3_ISVC, api)
    assert not outcome.retry and DEPLOYMENT.key("iris-predictor") in outcome.applied
    init = api.objects[DEPLOYMENT.key("iris-predictor")]["spec"]["template"]["spec"]["initContainers"][0]
    assert {
        "name": "AWS_SECRET_ACCESS_KEY",
        "valueFrom": {"secretKeyRef": {"name": "s3", "key": "AWS_SECRET_ACCESS_KEY"}},
    } in init["env"]
    assert "c2VjcmV0" not in str(api.objects) and "c2VjcmV0" not in str(api.isvc)


def test_no_account_is_read_for_a_claim_or_without_serviceaccountname():
    for body in (isvc(serviceAccountName="reader"), isvc(tensorflow={"storageUri": "s3://models/dogs"})):
        api = AccountsApi(body, {})
        run(body, api)
        assert ("get", "ServiceAccount") not in api.calls
