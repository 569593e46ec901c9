"""Bad input: generated InferenceService documents, valid and invalid, applied to the real API server.

Every document is either rejected by the API server with a message that names the offending field,
or accepted and then `Ready=False` with a reason and message, or (the valid ones) `Ready=True`.
The operator never crashes or logs a traceback (the `operator` fixture checks its log at the end),
and a healthy isvc in the same namespace stays Ready throughout.

Documents come from a hypothesis strategy: a valid base (random predictor kind, sizing, service,
authorization, unicode annotations/env/args) plus zero to two *mutations* (wrong types, unknown
fields, huge strings, unicode names, out-of-range numbers, conflicting fields, malicious
storageUris and paths...). Each mutation says which outcome it must have (only where both are
right, as for a name that the API server or the operator may refuse, does it allow two); a document
must have the outcome of its strictest mutation. Generation is separate from application (no
shrinking against a live cluster): hypothesis draws N documents deterministically, then they are
applied in batches. The test runs with Istio's AuthorizationPolicy CRD installed, so every accepted
document's policy is built and applied, and checked against the spec's authorization.
`bench/chaos.py` runs the same generator with 1000+ documents.
"""

from __future__ import annotations

import json
import random
import string
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.conftest import operator_tracebacks, wait_until

pytestmark = pytest.mark.cluster

API_VERSION = "serving.isvc.dev/v1alpha1"
REJECTED, READY_FALSE, READY_TRUE = "rejected", "ready_false", "accepted_ready"
# A mutation's allowed outcomes; a document allows the intersection-by-strictness of its mutations.
MUST_REJECT = frozenset({REJECTED})
MUST_FAIL = frozenset({READY_FALSE})
INVALID = frozenset({REJECTED, READY_FALSE})
VALID = frozenset({READY_TRUE})

SAFE_TEXT = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=40)
UNICODE_WORDS = ["modèle", "模型", "мадэль", "🐶🐱", "ﷺ", "e\u0301", "\u202eevil", "Ωmega"]


@dataclass(frozen=True)
class Mutation:
    name: str
    allowed: frozenset[str]
    hint: str  # a word the API server's message must contain when it rejects the document
    frameworks: tuple[str, ...] = ("tensorflow", "pytorch", "containers")
    group: str = ""  # mutations of one group touch the same fields: at most one per document
    # Accepted here (VALID: Ready=True is the one right outcome on this cluster) and refused only by
    # something this cluster does not run, named here; counted in the report as runtime_only_ready.
    refused_by: str = ""


def _body(doc: dict[str, Any]) -> dict[str, Any]:
    """The framework body (tensorflow/pytorch) or the container."""
    predictor = doc["spec"]["predictor"]
    for kind in ("tensorflow", "pytorch"):
        if kind in predictor:
            return predictor[kind]
    return predictor["containers"][0]


def _framework(doc: dict[str, Any]) -> str:
    return next(k for k in ("tensorflow", "pytorch", "containers") if k in doc["spec"]["predictor"])


def _set_uri(doc: dict[str, Any], uri: Any) -> None:
    _body(doc)["storageUri"] = uri


# Each mutation: (Mutation, apply(doc, draw)).
MUTATIONS: dict[str, tuple[Mutation, Callable[[dict[str, Any], Any], None]]] = {}


GROUPS = {
    "storage": (
        "wrong_type_storage_uri",
        "huge_storage_uri",
        "unicode_storage_claim",
        "unsupported_scheme",
        "pvc_traversal",
        "pvc_dot_segment",
        "http_without_host",
        "malicious_http_uri",
        "odd_but_legal_pvc_path",
        "missing_claim",
    ),
    "sizing": (
        "wrong_type_replicas",
        "replicas_out_of_range",
        "scale_target_out_of_range",
        "replicas_and_autoscaling",
        "min_above_max",
        "min_without_max",
        "missing_claim",
        "unschedulable",
        "no_predictor",
        "conflicting_predictors",
    ),
    "service": ("wrong_type_service", "node_port_out_of_range", "cluster_ip_with_node_port", "same_node_ports"),
    "authorization": ("authorization_paths", "bad_service_account_ref", "bad_authorization_mode", "unknown_field"),
    "env": ("wrong_type_env", "unicode_values", "bad_env_name", "env_without_name"),
    "name": ("unicode_name", "name_too_long"),
    "annotations": ("huge_annotation", "big_but_allowed_strings", "unicode_values"),
    "args": ("huge_arg", "big_but_allowed_strings"),
    "versions": (
        "num_versions_out_of_range",
        "two_version_policies",
        "pytorch_version_labels",
        "label_outside_specific_versions",
        "version_label_injection",
    ),
    "ports": ("container_port_out_of_range", "duplicate_port_names", "wrong_type_containers"),
    "predictor": ("no_predictor", "conflicting_predictors", "wrong_type_containers", "storage_and_predictor"),
}


def mutation(
    name: str,
    allowed: frozenset[str],
    hint: str,
    frameworks: tuple[str, ...] = ("tensorflow", "pytorch", "containers"),
    refused_by: str = "",
):
    def register(fn: Callable[[dict[str, Any], Any], None]) -> Callable[[dict[str, Any], Any], None]:
        MUTATIONS[name] = (Mutation(name, allowed, hint, frameworks, refused_by=refused_by), fn)
        return fn

    return register


def _drop_sizing(doc: dict[str, Any]) -> dict[str, Any]:
    predictor = doc["spec"]["predictor"]
    for key in ("replicas", "minReplicas", "maxReplicas", "scaleTarget"):
        predictor.pop(key, None)
    return predictor


# --- wrong types -----------------------------------------------------------------------------
@mutation("wrong_type_replicas", MUST_REJECT, "replicas")
def _(doc, draw):
    _drop_sizing(doc)["replicas"] = draw(st.sampled_from(["three", 1.5, True, [1], {"n": 1}, "1"]))


@mutation("wrong_type_storage_uri", MUST_REJECT, "storageUri")
def _(doc, draw):
    _set_uri(doc, draw(st.sampled_from([123, ["pvc://models"], {"pvc": "models"}, True, 1.0])))


@mutation("wrong_type_service", MUST_REJECT, "type")
def _(doc, draw):
    doc["spec"]["service"] = {"type": draw(st.sampled_from([5, "Headless", "nodeport", "", ["NodePort"]]))}


@mutation("wrong_type_containers", MUST_REJECT, "containers", ("containers",))
def _(doc, draw):
    doc["spec"]["predictor"]["containers"] = draw(st.sampled_from([{"image": "x", "ports": []}, "my-image", []]))


@mutation("wrong_type_env", MUST_REJECT, "env", ("tensorflow", "pytorch"))
def _(doc, draw):
    _body(doc)["env"] = draw(st.sampled_from(["A=B", {"name": "A"}, [["A", "B"]], [5]]))


# --- unknown fields --------------------------------------------------------------------------
@mutation("unknown_field", MUST_REJECT, "unknown field")
def _(doc, draw):
    key = "x" + draw(st.from_regex(r"[A-Za-z0-9]{1,20}", fullmatch=True))
    where = draw(st.sampled_from(["spec", "predictor", "service", "authorization", "root"]))
    target = {
        "spec": doc["spec"],
        "predictor": doc["spec"]["predictor"],
        "root": doc,
        "service": doc["spec"].setdefault("service", {}),
        "authorization": doc["spec"].setdefault("authorization", {}),
    }[where]
    target[key] = draw(st.sampled_from([1, "v", {"a": 1}, [1, 2]]))


# --- huge strings ----------------------------------------------------------------------------
@mutation("huge_storage_uri", MUST_REJECT, "storageUri")
def _(doc, draw):
    _set_uri(doc, "pvc://models/" + "a" * draw(st.integers(2040, 20000)))


@mutation("huge_image", MUST_REJECT, "image")
def _(doc, draw):
    _body(doc)["image"] = "registry.example/" + "i" * draw(st.integers(500, 5000))


@mutation("huge_arg", MUST_REJECT, "args")
def _(doc, draw):
    _body(doc)["args"] = ["--x=" + "y" * draw(st.integers(4093, 10000))]


@mutation("huge_annotation", MUST_REJECT, "annotations")
def _(doc, draw):
    # Past the 256 KiB limit on all annotations together.
    doc["metadata"].setdefault("annotations", {})["fuzz.isvc.dev/big"] = "z" * draw(st.integers(270_000, 400_000))


@mutation("big_but_allowed_strings", VALID, "")
def _(doc, draw):
    body = _body(doc)
    body["args"] = ["--a=" + "y" * 4000 for _ in range(draw(st.integers(1, 8)))]
    doc["metadata"].setdefault("annotations", {})["fuzz.isvc.dev/big"] = "z" * draw(st.integers(10_000, 60_000))


# --- unicode and names -----------------------------------------------------------------------
@mutation("unicode_name", MUST_REJECT, "name")
def _(doc, draw):
    doc["metadata"]["name"] = draw(
        st.sampled_from(["modèle", "模型", "Dogs-vs-cats", "dogs_vs_cats", "-dogs", "dogs-", "1dogs", "dogs.cats"])
    )


@mutation("name_too_long", MUST_REJECT, "name")
def _(doc, draw):
    n = draw(st.integers(46, 63))
    doc["metadata"]["name"] = "n" * n


@mutation("unicode_storage_claim", INVALID, "storageUri")
def _(doc, draw):
    _set_uri(doc, "pvc://" + draw(st.sampled_from(UNICODE_WORDS)))


@mutation("unicode_values", VALID, "")
def _(doc, draw):
    body = _body(doc)
    body["env"] = [
        {"name": "GREETING", "value": draw(SAFE_TEXT)},
        {"name": "WORD", "value": draw(st.sampled_from(UNICODE_WORDS))},
    ]
    doc["metadata"].setdefault("annotations", {})["fuzz.isvc.dev/unicode"] = draw(SAFE_TEXT)


# --- out of range ----------------------------------------------------------------------------
@mutation("replicas_out_of_range", MUST_REJECT, "replicas")
def _(doc, draw):
    predictor = _drop_sizing(doc)
    key, value = draw(
        st.sampled_from(
            [
                ("replicas", -1),
                ("replicas", 1001),
                ("replicas", 2**40),
                ("minReplicas", 0),
                ("maxReplicas", 1001),
                ("maxReplicas", 0),
            ]
        )
    )
    if key == "minReplicas":
        predictor["maxReplicas"] = 2
    predictor[key] = value


@mutation("scale_target_out_of_range", MUST_REJECT, "scaleTarget")
def _(doc, draw):
    predictor = _drop_sizing(doc)
    predictor.update(minReplicas=1, maxReplicas=2, scaleTarget=draw(st.sampled_from([0, 101, -5])))


@mutation("node_port_out_of_range", MUST_REJECT, "NodePort")
def _(doc, draw):
    doc["spec"]["service"] = {
        "type": "NodePort",
        draw(st.sampled_from(["httpNodePort", "grpcNodePort"])): draw(
            st.sampled_from([0, 80, 29999, 32768, 65536, -1])
        ),
    }


@mutation("container_port_out_of_range", MUST_REJECT, "containerPort", ("containers",))
def _(doc, draw):
    _body(doc)["ports"] = [{"name": "http", "containerPort": draw(st.sampled_from([0, -1, 65536, 100000]))}]


@mutation("num_versions_out_of_range", MUST_REJECT, "numVersions", ("tensorflow",))
def _(doc, draw):
    _body(doc)["modelVersionPolicy"] = {"latest": {"numVersions": draw(st.sampled_from([0, -1, 101]))}}


@mutation("too_many_items", MUST_REJECT, "tolerations")
def _(doc, draw):
    doc["spec"]["predictor"]["tolerations"] = [{"key": f"k{i}", "operator": "Exists"} for i in range(65)]


# --- conflicting fields ----------------------------------------------------------------------
@mutation("conflicting_predictors", MUST_REJECT, "spec.predictor")
def _(doc, draw):
    predictor = doc["spec"]["predictor"]
    extra = draw(st.sampled_from([k for k in ("tensorflow", "pytorch", "containers") if k not in predictor]))
    predictor[extra] = (
        [{"image": "example/server:1", "ports": [{"name": "http", "containerPort": 8080}]}]
        if extra == "containers"
        else {"storageUri": "pvc://models"}
    )


@mutation("no_predictor", MUST_REJECT, "predictor")
def _(doc, draw):
    doc["spec"]["predictor"] = draw(st.sampled_from([{}, {"replicas": 1}]))


@mutation("replicas_and_autoscaling", MUST_REJECT, "replicas")
def _(doc, draw):
    _drop_sizing(doc).update(replicas=1, maxReplicas=2)


@mutation("min_above_max", MUST_REJECT, "minReplicas")
def _(doc, draw):
    _drop_sizing(doc).update(minReplicas=3, maxReplicas=2)


@mutation("min_without_max", MUST_REJECT, "minReplicas")
def _(doc, draw):
    _drop_sizing(doc).update(minReplicas=1)


@mutation("cluster_ip_with_node_port", MUST_REJECT, "NodePort")
def _(doc, draw):
    doc["spec"]["service"] = {"type": "ClusterIP", "httpNodePort": 31999}


@mutation("same_node_ports", MUST_REJECT, "NodePort")
def _(doc, draw):
    port = draw(st.integers(30000, 32767))
    doc["spec"]["service"] = {"type": "NodePort", "httpNodePort": port, "grpcNodePort": port}


@mutation("two_version_policies", MUST_REJECT, "modelVersionPolicy", ("tensorflow",))
def _(doc, draw):
    _body(doc)["modelVersionPolicy"] = {"latest": {"numVersions": 1}, "all": {}}


@mutation("pytorch_version_labels", MUST_REJECT, "versionLabels", ("pytorch",))
def _(doc, draw):
    _body(doc)["versionLabels"] = {"stable": 1}


@mutation("label_outside_specific_versions", MUST_FAIL, "versionLabels", ("tensorflow",))
def _(doc, draw):
    _body(doc)["modelVersionPolicy"] = {"specific": {"versions": [1]}}
    _body(doc)["versionLabels"] = {"canary": 2}


# --- malicious storage URIs and paths --------------------------------------------------------
@mutation("unsupported_scheme", MUST_REJECT, "storageUri")
def _(doc, draw):
    _set_uri(
        doc,
        draw(
            st.sampled_from(
                [
                    "s3:/bucket/model",
                    "gs://b/m",
                    "s3://Bucket/m",
                    "https://x.blob.core.windows.net/c/m",
                    "file:///etc/passwd",
                    "ftp://host/m.tar.gz",
                    "",
                    "models",
                    "/mnt/models",
                    "PVC://models",
                    "javascript:alert(1)",
                    "hdfs://nn/m",
                    " pvc://models",
                ]
            )
        ),
    )


@mutation("pvc_traversal", MUST_REJECT, "storageUri", ("tensorflow", "pytorch"))
def _(doc, draw):
    _set_uri(
        doc,
        draw(
            st.sampled_from(
                [
                    "pvc://models/../../etc",
                    "pvc://../etc",
                    "pvc://models/a/../../b",
                    "pvc://models/..",
                    "pvc://Models",
                    "pvc://mo_dels",
                    "pvc://",
                    "pvc:///etc",
                    "pvc://models/a\nb",
                    "pvc://-models",
                ]
            )
        ),
    )


@mutation("pvc_dot_segment", MUST_FAIL, "storageUri")
def _(doc, draw):
    # The CRD bans '..' only; the operator also refuses '.' segments: InvalidSpec, no child touched.
    _set_uri(doc, draw(st.sampled_from(["pvc://models/./1", "pvc://models/a/.", "pvc://models/."])))


@mutation("http_without_host", MUST_FAIL, "storageUri")
def _(doc, draw):
    _set_uri(doc, draw(st.sampled_from(["http:///model.tar.gz", "https://", "https:////etc/passwd"])))


@mutation(
    "malicious_http_uri", VALID, "", refused_by="the storage initializer, when it downloads (kwok runs no container)"
)
def _(doc, draw):
    # Admission and the operator accept any http(s) URL: whether it serves a safe archive shows only
    # when it is fetched (tests/unit/storage: traversal members, schemes, sizes).
    _set_uri(
        doc,
        draw(
            st.sampled_from(
                [
                    "https://evil.example/../../etc/passwd.tar.gz",
                    "http://127.0.0.1:1/m.zip?x=$(rm -rf /)",
                    "https://models.example/%2e%2e/%2e%2e/m.tgz",
                    "http://169.254.169.254/latest/meta-data/",
                    "https://模型.example/m.tar.gz",
                    "http://user:pass@host/m.tar",
                ]
            )
        ),
    )


@mutation("odd_but_legal_pvc_path", VALID, "", ("tensorflow", "pytorch"))
def _(doc, draw):
    _set_uri(
        doc,
        draw(
            st.sampled_from(
                [
                    "pvc://models/%2e%2e/x",
                    "pvc://models/a..b",
                    "pvc://models//1//",
                    "pvc://models/...",
                    "pvc://models/" + "d" * 1000,
                ]
            )
        ),
    )


@mutation(
    "authorization_paths", VALID, "", refused_by="istiod's validating webhook, for some paths (not on this cluster)"
)
def _(doc, draw):
    # Istio's CRD takes any strings here: the policy is applied as written (checked by
    # `policy_problem`) and Ready=True.
    doc["spec"]["authorization"] = {
        "mode": draw(st.sampled_from(["Auto", "Disabled"])),
        "paths": draw(
            st.lists(
                st.sampled_from(["../../*", "/ü", "*", "/v1/models/*/../../admin", "", "/" + "p" * 1000]), max_size=4
            )
        ),
        "methods": draw(st.lists(st.sampled_from(["DELETE", "ü", "", "GET POST"]), max_size=3)),
        "principals": draw(st.lists(st.sampled_from(["*", "cluster.local/ns/*/sa/*", "ü"]), max_size=2)),
    }


@mutation("bad_service_account_ref", MUST_FAIL, "serviceAccounts")
def _(doc, draw):
    doc["spec"]["authorization"] = {"serviceAccounts": [draw(st.sampled_from(["nobody", "/x", "ns/", "/"]))]}


@mutation("bad_authorization_mode", MUST_REJECT, "mode")
def _(doc, draw):
    doc["spec"]["authorization"] = {"mode": draw(st.sampled_from(["Sometimes", "enabled", "", 1]))}


# --- accepted by the schema, refused by the operator or by the API server for a child ---------
@mutation("unknown_runtime", MUST_FAIL, "runtime", ("tensorflow", "pytorch"))
def _(doc, draw):
    _body(doc)["runtime"] = draw(st.sampled_from(["triton", "pytorch-server", "tensorflow-serving", "模型", "x" * 63]))
    if _body(doc)["runtime"] == {"tensorflow": "tensorflow-serving", "pytorch": "pytorch-server"}[_framework(doc)]:
        _body(doc)["runtime"] = "triton"


@mutation("bad_quantity", MUST_FAIL, "resources")
def _(doc, draw):
    _body(doc)["resources"] = {"limits": {"cpu": draw(st.sampled_from(["lots", "1.5.5", "-1", "ü"]))}}


@mutation("bad_env_name", MUST_FAIL, "env")
def _(doc, draw):
    _body(doc)["env"] = [{"name": draw(st.sampled_from(["A=B", ""])), "value": "x"}]


@mutation("env_without_name", MUST_REJECT, "name")
def _(doc, draw):
    _body(doc)["env"] = [{"value": "x"}]


@mutation("duplicate_port_names", MUST_FAIL, "ports", ("containers",))
def _(doc, draw):
    _body(doc)["ports"] = [{"name": "http", "containerPort": 8080}, {"name": "http", "containerPort": 8081}]


@mutation("unschedulable", MUST_FAIL, "nodeSelector")
def _(doc, draw):
    doc["spec"]["predictor"]["nodeSelector"] = {"fuzz.isvc.dev/no-such-node": draw(st.sampled_from(["x", "yes"]))}
    _drop_sizing(doc)  # replicas 0 would ask for no pod, and so for none that cannot be scheduled


@mutation("missing_claim", MUST_FAIL, "storageUri", ("tensorflow", "pytorch"))
def _(doc, draw):
    _set_uri(doc, "pvc://no-such-claim-" + draw(st.from_regex(r"[a-z0-9]{1,8}", fullmatch=True)))
    _drop_sizing(doc)  # replicas 0 would never schedule a pod, and so never notice the claim


@mutation("odd_runtime_version", MUST_FAIL, "runtimeVersion", ("tensorflow", "pytorch"))
def _(doc, draw):
    _body(doc)["runtimeVersion"] = draw(
        st.sampled_from(["2.19.0 ", "ü", "latest@sha256:zz", "../../x", ":", "2.19.0\n"])
    )


@mutation("version_label_injection", MUST_REJECT, "versionLabels", ("tensorflow",))
def _(doc, draw):
    # Rendered into TF Serving's text config; quotes/newlines there break (or rewrite) the config.
    _body(doc)["versionLabels"] = {
        draw(st.sampled_from(['a" } } model_config_list { config { name: "x', "line\nbreak", "ü", "sp ace"])): 1
    }


MUTATION_NAMES = sorted(MUTATIONS)


@st.composite
def base_documents(draw: Any) -> dict[str, Any]:
    """A valid InferenceService (Ready=True on the test cluster, which has the claim `models`)."""
    framework = draw(st.sampled_from(["tensorflow", "pytorch", "containers"]))
    predictor: dict[str, Any] = {}
    if framework == "containers":
        container: dict[str, Any] = {
            "image": draw(st.sampled_from(["example/server:1", "registry.local/m:2"])),
            "ports": [{"name": "http", "containerPort": draw(st.integers(1, 65535))}],
        }
        if draw(st.booleans()):
            container["ports"].append(
                {"name": "grpc", "containerPort": container["ports"][0]["containerPort"] % 65535 + 1}
            )
        if draw(st.booleans()):
            container["storageUri"] = draw(st.sampled_from(["pvc://models", "https://models.example/m.tar.gz"]))
        predictor["containers"] = [container]
    else:
        body: dict[str, Any] = {
            "storageUri": draw(
                st.sampled_from(
                    ["pvc://models", "pvc://models/1", "pvc://models/a/b", "https://models.example/m.tar.gz"]
                )
            )
        }
        if draw(st.booleans()):
            body["runtimeVersion"] = draw(st.sampled_from(["2.18.0", "2.19.0", "0.1.0"]))
        if framework == "tensorflow" and draw(st.booleans()):
            versions = sorted(draw(st.sets(st.integers(0, 20), min_size=1, max_size=3)))
            body["modelVersionPolicy"] = draw(
                st.sampled_from([{"latest": {"numVersions": 2}}, {"all": {}}, {"specific": {"versions": versions}}])
            )
            body["versionLabels"] = {"stable": versions[0]}
        if draw(st.booleans()):
            body["resources"] = {
                "requests": {"cpu": "100m", "memory": "128Mi"},
                "limits": {"memory": draw(st.sampled_from(["1Gi", 2**30]))},
            }
        predictor[framework] = body
    sizing = draw(st.sampled_from(["none", "replicas", "autoscale"]))
    if sizing == "replicas":
        predictor["replicas"] = draw(st.integers(0, 2))
    elif sizing == "autoscale":
        low = draw(st.integers(1, 2))
        predictor.update(minReplicas=low, maxReplicas=draw(st.integers(low, 3)), scaleTarget=draw(st.integers(1, 100)))
    spec: dict[str, Any] = {"predictor": predictor}
    if draw(st.booleans()):
        spec["service"] = {"type": draw(st.sampled_from(["NodePort", "ClusterIP"]))}
    if draw(st.booleans()):
        spec["authorization"] = {
            "mode": draw(st.sampled_from(["Auto", "Disabled"])),
            "sourceNamespaces": draw(st.lists(st.sampled_from(["apps", "default"]), max_size=2)),
            "serviceAccounts": draw(st.lists(st.sampled_from(["apps/client", "default/default"]), max_size=2)),
        }
    metadata: dict[str, Any] = {"name": "placeholder", "labels": {"fuzz.isvc.dev/doc": "1"}}
    if draw(st.booleans()):
        metadata["annotations"] = {"fuzz.isvc.dev/note": draw(SAFE_TEXT)}
    return {"apiVersion": API_VERSION, "kind": "InferenceService", "metadata": metadata, "spec": spec}


@dataclass
class Case:
    doc: dict[str, Any]
    mutations: tuple[str, ...]
    allowed: frozenset[str]
    hints: tuple[str, ...]
    outcome: str = ""
    detail: str = ""
    problem: str = ""  # non-empty: a contract violation


@st.composite
def cases(draw: Any) -> Case:
    doc = draw(base_documents())
    framework = _framework(doc)
    applicable = [n for n in MUTATION_NAMES if framework in MUTATIONS[n][0].frameworks]
    count = draw(st.sampled_from([0, 0, 1, 1, 1, 2]))
    chosen: list[str] = []
    for _ in range(count):
        taken = {g for g, members in GROUPS.items() for c in chosen if c in members}
        free = [n for n in applicable if n not in chosen and not any(n in GROUPS[g] for g in taken)]
        chosen.append(draw(st.sampled_from(free)))
    for name in chosen:
        MUTATIONS[name][1](doc, draw)
    # A document allows what its strictest mutation allows.
    specs = [MUTATIONS[n][0] for n in chosen]
    if any(m.allowed == MUST_REJECT for m in specs):
        allowed = MUST_REJECT
    elif any(m.allowed == INVALID for m in specs):
        allowed = INVALID
    elif any(m.allowed == MUST_FAIL for m in specs):
        allowed = MUST_FAIL
    else:
        allowed = VALID
    hints = tuple(m.hint for m in specs if REJECTED in m.allowed and m.hint)
    return Case(doc=doc, mutations=tuple(chosen), allowed=allowed, hints=hints)


def generate(n: int, seed: int = 0) -> list[Case]:
    """`n` cases, the same ones for the same (n, seed): hypothesis' derandomized generation only."""
    out: list[Case] = []

    @settings(
        max_examples=n,
        derandomize=True,
        database=None,
        phases=[Phase.generate],
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(cases())
    def collect(case: Case) -> None:
        out.append(case)

    for attempt in range(50):
        collect()
        if len(out) >= n:
            break
        # derandomize seeds from the test's name: vary it to draw more documents
        collect.__qualname__ = f"collect_{seed}_{attempt}"
    rng = random.Random(seed)
    rng.shuffle(out)
    return out[:n]


# --- applying and classifying -------------------------------------------------------------------


def _ready(obj: dict[str, Any]) -> dict[str, Any]:
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c.get("type") == "Ready"), {})


def settled(obj: dict[str, Any]) -> str | None:
    """READY_TRUE / READY_FALSE once the operator has judged the current generation, else None."""
    status = obj.get("status") or {}
    if status.get("observedGeneration") != obj["metadata"].get("generation"):
        return None
    cond = _ready(obj)
    return {"True": READY_TRUE, "False": READY_FALSE}.get(cond.get("status"))


@dataclass
class Tally:
    cases: list[Case] = field(default_factory=list)
    sentinel_not_ready: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        counter = Counter(c.outcome for c in self.cases)
        return {
            "documents": len(self.cases),
            "rejected_by_apiserver": counter[REJECTED],
            "ready_false_with_reason": counter[READY_FALSE],
            "accepted_ready": counter[READY_TRUE],
            "unsettled": counter["unsettled"],
            "runtime_only_ready": sum(
                1
                for c in self.cases
                if c.outcome == READY_TRUE and any(MUTATIONS[m][0].refused_by for m in c.mutations)
            ),
            "contract_violations": sum(1 for c in self.cases if c.problem),
        }

    def by_mutation(self) -> dict[str, Counter]:
        table: dict[str, Counter] = {}
        for c in self.cases:
            for m in c.mutations or ("(valid)",):
                table.setdefault(m, Counter())[c.outcome] += 1
        return table

    def problems(self) -> list[Case]:
        return [c for c in self.cases if c.problem]


def check(case: Case) -> None:
    """Set `case.problem` when the outcome breaks the contract."""
    if case.outcome not in case.allowed:
        case.problem = f"outcome {case.outcome} not in {sorted(case.allowed)}: {case.detail[:300]}"
    elif case.outcome == REJECTED:
        message = case.detail
        if not message.strip():
            case.problem = "rejected without a message"
        elif case.hints and not any(h.lower() in message.lower() for h in case.hints):
            case.problem = f"rejection does not name the field ({' or '.join(case.hints)}): {message[:300]}"
    elif case.outcome == READY_FALSE and not case.detail.strip(" :"):
        case.problem = "Ready=False without a reason and message"


def run_cases(
    cases_: list[Case],
    namespace: str,
    submit: Callable[[dict[str, Any]], tuple[bool, str]],
    list_isvcs: Callable[[], list[dict[str, Any]]],
    delete_batch: Callable[[], None],
    *,
    batch: int = 50,
    settle_s: float = 90,
    prefix: str = "f",
    sentinel: str = "sentinel",
    on_batch: Callable[[int, Tally], None] | None = None,
    inspect_ready: Callable[[list[Case]], None] | None = None,
) -> Tally:
    """Apply the cases in batches; wait until each accepted one is Ready True/False; classify.

    `submit(doc)` -> (accepted, message). `list_isvcs()` lists the namespace's isvcs (dicts).
    `delete_batch()` deletes the batch's isvcs (label fuzz.isvc.dev/doc=1) and waits for them.
    `inspect_ready(cases)` checks the children of the batch's Ready=True cases before they go (it
    sets `case.problem`).
    """
    tally = Tally()
    for start in range(0, len(cases_), batch):
        chunk = cases_[start : start + batch]
        pending: dict[str, Case] = {}
        for i, case in enumerate(chunk, start):
            doc = json.loads(json.dumps(case.doc))
            if doc["metadata"]["name"] == "placeholder":
                doc["metadata"]["name"] = (
                    f"{prefix}{i}-{''.join(random.Random(i).choices(string.ascii_lowercase, k=4))}"
                )
            doc["metadata"]["namespace"] = namespace
            case.doc = doc
            accepted, message = submit(doc)
            if not accepted:
                case.outcome, case.detail = REJECTED, message
            else:
                pending[doc["metadata"]["name"]] = case
        deadline = time.monotonic() + settle_s
        while True:
            items = {o["metadata"]["name"]: o for o in list_isvcs()}
            sentinel_obj = items.get(sentinel)
            if sentinel_obj is None or settled(sentinel_obj) != READY_TRUE:
                tally.sentinel_not_ready.append(f"batch {start // batch}: {_ready(sentinel_obj or {})}")
            for name in list(pending):
                obj = items.get(name)
                state = settled(obj) if obj else None
                if state:
                    cond = _ready(obj)
                    case = pending.pop(name)
                    case.outcome = state
                    case.detail = f"{cond.get('reason', '')}: {cond.get('message', '')}"
            if not pending or time.monotonic() > deadline:
                break
            time.sleep(1)
        for name, case in pending.items():
            obj = items.get(name) or {}
            case.outcome, case.detail = "unsettled", f"{_ready(obj)}"
        for case in chunk:
            check(case)
            tally.cases.append(case)
        if inspect_ready:
            inspect_ready([c for c in chunk if c.outcome == READY_TRUE and not c.problem])
        delete_batch()
        if on_batch:
            on_batch(start // batch, tally)
    return tally


def kubectl_submit(kube: Any) -> Callable[[dict[str, Any]], tuple[bool, str]]:
    """`kubectl apply` as a user would (server-side field validation Strict: unknown fields are errors)."""

    def submit(doc: dict[str, Any]) -> tuple[bool, str]:
        result = kube.run("apply", "-f", "-", input=json.dumps(doc), check=False)
        return result.returncode == 0, result.stderr.strip()

    return submit


def format_report(tally: Tally) -> str:
    lines = [json.dumps(tally.counts())]
    for name, counter in sorted(tally.by_mutation().items()):
        lines.append(f"  {name:34} " + " ".join(f"{k}={v}" for k, v in sorted(counter.items())))
    for case in tally.problems()[:20]:
        lines.append(f"PROBLEM {case.mutations}: {case.problem}\n    doc: {json.dumps(case.doc)[:600]}")
    return "\n".join(lines)


FUZZ_DOCUMENTS = 150
POLICIES = "authorizationpolicies.security.istio.io"


def policy_problem(case: Case, policy: dict[str, Any] | None) -> str:
    """What is wrong with the AuthorizationPolicy of a Ready=True document while Istio is installed
    (empty: nothing): Disabled has none; otherwise it allows the spec's paths, methods and principals."""
    authorization = case.doc["spec"].get("authorization") or {}
    if authorization.get("mode", "Auto") == "Disabled":
        return "authorization mode Disabled, yet it has an AuthorizationPolicy" if policy else ""
    if policy is None:
        return "Ready=True with Istio installed, yet no AuthorizationPolicy"
    rule = policy["spec"]["rules"][0]
    operation = rule["to"][0]["operation"]
    source = (rule.get("from") or [{}])[0].get("source") or {}
    missing = (
        [f"path {p!r}" for p in authorization.get("paths") or () if p not in operation.get("paths", [])]
        + [f"method {m!r}" for m in authorization.get("methods") or () if m not in operation.get("methods", [])]
        + [f"principal {p!r}" for p in authorization.get("principals") or () if p not in source.get("principals", [])]
    )
    return f"the AuthorizationPolicy lacks {', '.join(missing)}: {json.dumps(policy['spec'])[:300]}" if missing else ""


@pytest.fixture
def istio(kube):
    """Istio's AuthorizationPolicy CRD, installed for the test and removed after it."""
    from tests.conftest import wait_established
    from tests.integration.test_authorization import ISTIO_CRD

    kube.run("apply", "-f", str(ISTIO_CRD))
    wait_established(kube, POLICIES)
    yield
    kube.run("delete", "crd", POLICIES, "--ignore-not-found", "--wait=true")


def test_generated_documents_are_rejected_failed_or_ready(kube, operator, namespace, model_claim, istio):
    from tests.integration.test_lifecycle import isvc, wait_ready

    kube.apply(isvc("sentinel", namespace))
    wait_ready(kube, "sentinel", namespace)
    # The operator sees Istio (it restarts its watches when the CRD appears): the sentinel gets its policy.
    wait_until(lambda: kube.get(POLICIES, "sentinel", namespace), 60, "the sentinel's AuthorizationPolicy")

    def list_isvcs() -> list[dict[str, Any]]:
        return json.loads(kube.run("get", "isvc", "-n", namespace, "-o", "json").stdout)["items"]

    def delete_batch() -> None:
        kube.run(
            "delete", "isvc", "-n", namespace, "-l", "fuzz.isvc.dev/doc=1", "--wait=true", "--timeout=60s", check=False
        )

    def inspect_ready(ready: list[Case]) -> None:
        items = json.loads(kube.run("get", POLICIES, "-n", namespace, "-o", "json").stdout)["items"]
        policies = {p["metadata"]["name"]: p for p in items}
        for case in ready:
            case.problem = policy_problem(case, policies.get(case.doc["metadata"]["name"]))

    tally = run_cases(
        generate(FUZZ_DOCUMENTS),
        namespace,
        kubectl_submit(kube),
        list_isvcs,
        delete_batch,
        batch=50,
        settle_s=60,
        inspect_ready=inspect_ready,
    )
    print(format_report(tally))
    counts = tally.counts()
    assert counts["documents"] == FUZZ_DOCUMENTS
    # Each outcome shows up: the generator really covers valid, rejected and Ready=False documents.
    assert counts["rejected_by_apiserver"] and counts["ready_false_with_reason"] and counts["accepted_ready"], counts
    by_mutation = tally.by_mutation()
    assert by_mutation.get("authorization_paths"), f"no document had authorization_paths: {sorted(by_mutation)}"
    assert not tally.problems(), format_report(tally)
    assert not tally.sentinel_not_ready, tally.sentinel_not_ready
    assert operator.proc.poll() is None, "the operator exited"
    assert not operator_tracebacks(operator.log()), "the operator logged a traceback"
    wait_ready(kube, "sentinel", namespace)
