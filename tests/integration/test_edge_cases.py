"""Edge cases users hit: namespace deleted with isvcs inside, isvc deleted while the operator is down,
CRD re-applied (upgrade) with live objects, specs near the annotation size limits, names at the
maximum length. The operator runs as its own process (the `operator` fixture fails on a traceback)."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.conftest import ROOT, condition, wait_established, wait_until
from tests.integration.test_lifecycle import isvc, wait_ready

pytestmark = pytest.mark.cluster
CRD = ROOT / "crds/serving.isvc.dev_inferenceservices.yaml"
ANNOTATIONS_LIMIT = 262144  # bytes, all annotations of one object together (apimachinery)


def children(kube, namespace):
    """Our children in the namespace, by kind/name -> (uid, resourceVersion) (a no-op write leaves
    the resourceVersion alone: writes are counted from the audit log)."""
    out = kube.run(
        "get",
        "deployments,services,configmaps,horizontalpodautoscalers",
        "-n",
        namespace,
        "-l",
        "app.kubernetes.io/managed-by=isvc-operator",
        "-o",
        "json",
    ).stdout
    return {
        f"{o['kind']}/{o['metadata']['name']}": (o["metadata"]["uid"], o["metadata"]["resourceVersion"])
        for o in json.loads(out)["items"]
    }


def test_namespace_deleted_with_isvcs_inside(kube, operator, namespace, model_claim):
    for i in range(3):
        kube.apply(isvc(f"inside-{i}", namespace, minReplicas=1, maxReplicas=2))
    for i in range(3):
        wait_ready(kube, f"inside-{i}", namespace)
    kube.run("delete", "namespace", namespace, "--wait=false")
    # The namespace goes away completely: nothing the operator writes (re-creating children while the
    # garbage collector removes them) keeps it Terminating, and no isvc or child lingers.
    wait_until(
        lambda: kube.run("get", "namespace", namespace, check=False).returncode != 0,
        120,
        f"namespace {namespace} to be deleted",
    )
    # The operator still serves other namespaces, and did not crash on the 403s of a terminating namespace.
    assert operator.proc.poll() is None
    other = f"{namespace[:50]}-after"
    kube.run("create", "namespace", other)
    try:
        kube.apply(isvc("after", other, replicas=0))
        wait_ready(kube, "after", other)
    finally:
        kube.run("delete", "namespace", other, "--wait=false", check=False)


def test_isvc_deleted_while_the_operator_is_down(kube, operator, operator_audit, namespace, model_claim):
    kube.apply(isvc("gone", namespace, minReplicas=1, maxReplicas=2))
    kube.apply(isvc("stays", namespace))
    wait_ready(kube, "gone", namespace)
    wait_ready(kube, "stays", namespace)
    operator.stop()
    mark = operator_audit.mark()
    try:
        kube.run("delete", "isvc", "gone", "-n", namespace, "--wait=true", "--timeout=60s")
        wait_until(
            lambda: not any(k.split("/")[1].startswith("gone") for k in children(kube, namespace)),
            60,
            "the garbage collector to remove gone's children without the operator",
        )
    finally:
        operator.start()
    # A marker created after the restart is reconciled after the initial listing.
    kube.apply(isvc("marker", namespace, replicas=0))
    wait_ready(kube, "marker", namespace)
    assert not any(k.split("/")[1].startswith("gone") for k in children(kube, namespace)), (
        "a child of the deleted isvc came back"
    )
    assert kube.get("isvc", "gone", namespace) is None
    # Neither a child of the deleted isvc re-created nor the surviving one rewritten (audit log).
    writes = operator_audit.writes_besides(kube, mark, namespace, marker="marker")
    assert writes == [], f"the restarted operator wrote for 'gone' or the unchanged 'stays': {writes}"


def test_crd_reapplied_with_live_objects(kube, operator, operator_audit, namespace, model_claim):
    body = isvc("live", namespace)
    body["spec"]["predictor"]["tensorflow"]["modelVersionPolicy"] = {"latest": {"numVersions": 2}}
    kube.apply(body)
    wait_ready(kube, "live", namespace)
    mark = operator_audit.mark()
    # An "upgrade": the same CRD with a changed description and an extra printer column, applied over
    # the live objects, then the original again (a downgrade). Both really change the CRD.
    crd = yaml.safe_load(CRD.read_text())
    version = crd["spec"]["versions"][0]
    version["schema"]["openAPIV3Schema"]["description"] += " (upgraded)"
    version["additionalPrinterColumns"].append(
        {"name": "Generation", "type": "integer", "jsonPath": ".metadata.generation"}
    )
    try:
        kube.apply(crd)
        wait_established(kube, "inferenceservices.serving.isvc.dev")
        wait_until(
            lambda: "GENERATION" in kube.run("get", "isvc", "-n", namespace).stdout, 30, "the new printer column"
        )
        # Not a sleep: an isvc created now reaches the operator after whatever the CRD update made the
        # isvc watch deliver for "live", so once it is Ready, a write for "live" would be in the log.
        kube.apply(isvc("marker", namespace, replicas=0))
        wait_ready(kube, "marker", namespace)
        writes = operator_audit.writes_besides(kube, mark, namespace, marker="marker")
        assert writes == [], f"a CRD re-apply caused writes to the unchanged isvc 'live' or its children: {writes}"
    finally:
        kube.apply(CRD.read_text())
    wait_established(kube, "inferenceservices.serving.isvc.dev")
    # The watches still work after both CRD changes: a spec change and a deleted child converge.
    kube.run("patch", "isvc", "live", "-n", namespace, "--type=merge", "-p", '{"spec":{"predictor":{"replicas":2}}}')
    obj = wait_ready(kube, "live", namespace, generation=2)
    assert obj["status"]["replicas"] == 2
    kube.run("delete", "configmap", "live-model-config", "-n", namespace)
    wait_until(lambda: kube.get("configmap", "live-model-config", namespace), 30, "the ConfigMap to be restored")
    assert operator.proc.poll() is None


def _big_args(total: int) -> list[str]:
    chunk = 4000  # items may have at most 4096 characters
    return [f"--a{i}=" + "x" * (chunk - 8) for i in range(total // chunk)]


def test_spec_near_the_last_applied_annotation_limit(kube, operator, namespace, model_claim):
    """`kubectl apply` copies the whole object into an annotation (256 KiB for all annotations):
    a spec just under that limit serves; one over it is refused with a readable message and
    serves when applied server-side (no annotation), up to the CRD's own limits."""
    near = isvc("near-limit", namespace)
    near["spec"]["predictor"]["tensorflow"]["args"] = _big_args(ANNOTATIONS_LIMIT - 12_000)
    kube.apply(near)
    obj = wait_ready(kube, "near-limit", namespace)
    assert (
        len(obj["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"])
        > ANNOTATIONS_LIMIT - 16_000
    )
    deployment = kube.get("deployment", "near-limit-predictor", namespace)
    assert (
        deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        == near["spec"]["predictor"]["tensorflow"]["args"]
    )
    # The annotation is not copied to the children (bookkeeping of kubectl).
    assert "kubectl.kubernetes.io/last-applied-configuration" not in (deployment["metadata"].get("annotations") or {})

    over = isvc("over-limit", namespace)
    over["spec"]["predictor"]["tensorflow"]["args"] = _big_args(ANNOTATIONS_LIMIT + 8_000)
    result = kube.apply(over, check=False)
    assert result.returncode != 0
    assert "metadata.annotations: Too long" in result.stderr, result.stderr[-500:]
    # 256 items of 4000 characters: the CRD's maxItems x maxLength, about 1 MB.
    over["spec"]["predictor"]["tensorflow"]["args"] = _big_args(256 * 4000)
    kube.run("apply", "--server-side", "--field-manager=user", "-f", "-", input=json.dumps(over))
    wait_ready(kube, "over-limit", namespace, timeout=90)
    assert operator.proc.poll() is None


def test_user_annotations_near_the_limit(kube, operator, namespace, model_claim):
    """The isvc's own annotations are copied to the children, which also carry the operator's hash:
    an isvc whose annotations fill the limit still serves, or says which child was refused and why."""
    body = isvc("big-annotation", namespace)
    body["metadata"]["annotations"] = {"example.com/blob": "b" * (ANNOTATIONS_LIMIT - 200)}
    kube.run("create", "-f", "-", input=json.dumps(body))  # create: no last-applied copy

    def judged():
        obj = kube.get("isvc", "big-annotation", namespace)
        cond = condition(obj, "Ready")
        return cond if cond.get("status") in ("True", "False") else None

    cond = wait_until(judged, 60, "the isvc to be judged")
    assert cond["status"] == "True", f"Ready={cond['status']} {cond.get('reason')}: {cond.get('message', '')[:300]}"


def test_name_at_the_maximum_length(kube, operator, namespace, model_claim):
    name = "m" * 30 + "-" + "x" * 14  # 45 characters
    assert len(name) == 45
    body = isvc(name, namespace, minReplicas=1, maxReplicas=2)
    body["spec"]["predictor"]["tensorflow"]["modelVersionPolicy"] = {"all": {}}
    kube.apply(body)
    obj = wait_ready(kube, name, namespace)
    assert obj["status"]["url"].startswith(f"http://{name}.{namespace}.svc")
    assert kube.get("deployment", f"{name}-predictor", namespace)
    assert kube.get("service", name, namespace)
    assert kube.get("configmap", f"{name}-model-config", namespace)
    assert kube.get("hpa", f"{name}-predictor", namespace)
    pods = json.loads(
        kube.run("get", "pods", "-n", namespace, "-l", f"serving.isvc.dev/inferenceservice={name}", "-o", "json").stdout
    )["items"]
    assert pods and all(p["status"].get("phase") == "Running" for p in pods)

    too_long = isvc(name + "y", namespace)
    result = kube.apply(too_long, check=False)
    assert result.returncode != 0
    # The schema's maxLength answers first (the CEL rule's longer message is then not evaluated).
    assert "metadata.name: Too long: may not be more than 45" in result.stderr, result.stderr


def test_children_the_garbage_collector_leaves_are_deleted_after_the_grace(kube, operator, operator_audit, namespace):
    """README: children still there 30 s after their isvc is gone are deleted by the operator (the
    garbage collector's per-object backoff can hold them for minutes after an API server outage).
    On the real control plane: the isvc is deleted with --cascade=orphan, so the garbage collector
    strips the owner references and leaves the children; the operator must delete them itself."""
    kube.apply(isvc("left", namespace, replicas=0))
    wait_ready(kube, "left", namespace)
    mark = operator_audit.mark()
    kube.run("delete", "isvc", "left", "-n", namespace, "--cascade=orphan", "--wait=true", "--timeout=60s")
    left = children(kube, namespace)
    assert left, "the orphaned children were removed before the operator could be tested"
    assert all(
        not kube.get(*kind_name.split("/"), namespace)["metadata"].get("ownerReferences") for kind_name in left
    ), "--cascade=orphan must leave the children without an owner: the garbage collector will not delete them"
    wait_until(
        lambda: not children(kube, namespace), 30 + 60, f"the operator to delete {sorted(left)} after its 30 s grace"
    )
    deletes = [w for w in operator_audit.writes(mark, namespace) if w.startswith("delete ")]
    expected = {f"delete {kind.lower()}s {name}" for kind, name in (k.split("/") for k in left)}
    assert expected <= set(deletes), f"expected the operator to delete {sorted(expected)}; it deleted {deletes}"
    assert "outlived its deleted InferenceService" in operator.log()
