"""Every pod the operator creates passes the Pod Security "restricted" profile."""

from __future__ import annotations

import time

import pytest

from tests.integration.test_lifecycle import wait_ready

pytestmark = pytest.mark.cluster


def body(name, namespace, predictor):
    return {
        "apiVersion": "serving.isvc.dev/v1alpha1",
        "kind": "InferenceService",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"predictor": predictor},
    }


def test_pods_are_admitted_in_a_restricted_namespace(kube, operator, namespace, model_claim):
    kube.run(
        "label",
        "namespace",
        namespace,
        "pod-security.kubernetes.io/enforce=restricted",
        "pod-security.kubernetes.io/enforce-version=latest",
    )
    kube.apply(
        [
            body("tf", namespace, {"tensorflow": {"storageUri": "pvc://models"}}),
            body("torch", namespace, {"pytorch": {"storageUri": "pvc://models/iris"}}),
            body("fetched", namespace, {"tensorflow": {"storageUri": "https://models.example.com/dogs.tar.gz"}}),
        ]
    )
    for name in ("tf", "torch", "fetched"):
        wait_ready(kube, name, namespace)
    pods = kube.run("get", "pods", "-n", namespace, "-o", "jsonpath={.items[*].metadata.name}").stdout.split()
    assert len(pods) == 3, pods

    # The same pod, loosened explicitly to root, is refused by the admission controller.
    loose = body("root", namespace, {"tensorflow": {"storageUri": "pvc://models", "securityContext": {"runAsUser": 0}}})
    kube.apply(loose)
    events = kube.run(
        "get",
        "events",
        "-n",
        namespace,
        "--field-selector",
        "reason=FailedCreate",
        "-o",
        "jsonpath={.items[*].message}",
        check=False,
    )
    deadline = time.monotonic() + 30
    while "violates PodSecurity" not in events.stdout and time.monotonic() < deadline:
        time.sleep(0.5)
        events = kube.run(
            "get",
            "events",
            "-n",
            namespace,
            "--field-selector",
            "reason=FailedCreate",
            "-o",
            "jsonpath={.items[*].message}",
            check=False,
        )
    assert 'violates PodSecurity "restricted:latest"' in events.stdout and "runAsUser=0" in events.stdout
