"""Spec parsing: what the schema lets through but cannot be served becomes InvalidSpec with a clear message."""

from __future__ import annotations

import pytest

from isvc_operator.spec import InvalidSpec, parse_inferenceservice, parse_storage_uri, storage_account


def body(spec, name="m"):
    return {"metadata": {"name": name, "namespace": "ns", "uid": "u", "generation": 3}, "spec": spec}


TF = {"predictor": {"tensorflow": {"storageUri": "pvc://models"}}}


def test_valid_tensorflow_spec_is_typed():
    isvc = parse_inferenceservice(body(TF))
    assert (isvc.name, isvc.namespace, isvc.generation) == ("m", "ns", 3)
    assert isvc.predictor.framework == "tensorflow"
    assert isvc.predictor.storage.claim == "models"
    assert isvc.service.type == "NodePort"
    assert isvc.authorization.mode == "Auto"


@pytest.mark.parametrize(
    ("uri", "claim", "sub_path", "scheme"),
    [
        ("pvc://models", "models", None, "pvc"),
        ("pvc://models/", "models", None, "pvc"),
        ("pvc://models/a//b/", "models", "a/b", "pvc"),
        ("https://example.com/m.tar.gz", None, None, "https"),
        ("http://10.0.0.1:8080/m.zip", None, None, "http"),
    ],
)
def test_storage_uris(uri, claim, sub_path, scheme):
    storage = parse_storage_uri(uri)
    assert (storage.scheme, storage.claim, storage.sub_path) == (scheme, claim, sub_path)


@pytest.mark.parametrize(
    ("uri", "scheme", "store", "bucket", "fetched"),
    [
        ("pvc://models", "pvc", "pvc", None, False),
        ("s3://my-models/iris/v1", "s3", "s3", "my-models", True),
        ("s3://my.models", "s3", "s3", "my.models", True),
        ("gs://kfserving-examples/models/tensorflow/flowers", "gs", "gs", "kfserving-examples", True),
        ("https://kfserving.blob.core.windows.net/triton/simple_string/", "https", "azure", "triton", True),
        ("https://example.com/m.tar.gz", "https", "http", None, True),
        # Only the Azure Blob host suffix makes an https URL an Azure container; anything else is an archive.
        ("https://blob.core.windows.net.example.com/c/m.tgz", "https", "http", None, True),
        ("http://acct.blob.core.windows.net/c/m.tgz", "http", "http", None, True),
    ],
)
def test_object_store_uris_are_typed_with_their_store(uri, scheme, store, bucket, fetched):
    storage = parse_storage_uri(uri)
    assert (storage.scheme, storage.store, storage.bucket, storage.fetched) == (scheme, store, bucket, fetched)


def test_model_cache_is_typed():
    spec = {"predictor": {"pytorch": {"storageUri": "s3://models/iris"}, "storage": {"cache": {"claimName": "cache"}}}}
    assert parse_inferenceservice(body(spec)).predictor.cache.claim_name == "cache"
    assert (
        parse_inferenceservice(body({"predictor": {"pytorch": {"storageUri": "s3://models/i"}}})).predictor.cache
        is None
    )


@pytest.mark.parametrize(
    ("predictor", "message"),
    [
        (
            {"pytorch": {"storageUri": "pvc://models"}, "storage": {"cache": {"claimName": "cache"}}},
            r"caches what the storage init container downloads, but the model comes from pvc://models",
        ),
        (
            {"containers": [{"image": "x", "ports": [{"containerPort": 1}]}], "storage": {"cache": {"claimName": "c"}}},
            r"the model comes from no storageUri",
        ),
        (
            {"pytorch": {"storageUri": "s3://models/i"}, "storage": {"cache": {"claimName": "Bad_Claim"}}},
            r"cache.claimName: 'Bad_Claim' is not a valid PersistentVolumeClaim name",
        ),
    ],
)
def test_model_cache_needs_a_fetched_model_and_a_claim_name(predictor, message):
    with pytest.raises(InvalidSpec, match=message):
        parse_inferenceservice(body({"predictor": predictor}))


@pytest.mark.parametrize(
    ("predictor", "account"),
    [
        ({"serviceAccountName": "sa", "pytorch": {"storageUri": "s3://bkt/m"}}, "sa"),
        ({"serviceAccountName": "sa", "tensorflow": {"storageUri": "gs://bkt/m"}}, "sa"),
        (
            {"serviceAccountName": "sa", "containers": [{"storageUri": "https://acct.blob.core.windows.net/models/m"}]},
            "sa",
        ),
        # Nothing to read: no account named, or no object store behind the URI.
        ({"pytorch": {"storageUri": "s3://bkt/m"}}, None),
        ({"serviceAccountName": "sa", "pytorch": {"storageUri": "pvc://models"}}, None),
        ({"serviceAccountName": "sa", "pytorch": {"storageUri": "https://example.com/m.tgz"}}, None),
        ({"serviceAccountName": "sa", "pytorch": {"storageUri": "ftp://x/m"}}, None),
        (
            {
                "serviceAccountName": "sa",
                "pytorch": {"storageUri": "s3://bkt/m"},
                "tensorflow": {"storageUri": "s3://bkt2/m"},
            },
            None,
        ),
    ],
)
def test_storage_account_names_the_account_only_for_object_stores(predictor, account):
    assert storage_account(body({"predictor": predictor})) == account


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        (
            "ftp://host/model",
            r"unsupported scheme ftp://; supported: pvc://CLAIM\[/PATH\], s3://BUCKET\[/PREFIX\], "
            r"gs://BUCKET\[/PREFIX\], https://ACCOUNT.blob.core.windows.net/CONTAINER\[/PREFIX\], http\(s\)://",
        ),
        ("s3://Bucket_1/m", r"'Bucket_1' is not a bucket name .*expected s3://BUCKET\[/PREFIX\]"),
        ("s3:///m", r"'' is not a bucket name"),
        ("gs://a/m", r"'a' is not a bucket name .*expected gs://BUCKET\[/PREFIX\]"),
        ("https://acct.blob.core.windows.net/", r"expected https://ACCOUNT.blob.core.windows.net/CONTAINER"),
        ("https://Not_An_Account.blob.core.windows.net/c1c/m", r"account: 3-24 lower-case letters and digits"),
        ("/models", r"unsupported scheme \(none\)"),
        ("pvc://Models", r"'Models' is not a valid PersistentVolumeClaim name"),
        ("pvc://models/../etc", r"may not contain '.' or '..'"),
        ("https://", r"no host after https://"),
    ],
)
def test_bad_storage_uris_say_what_is_accepted(uri, message):
    with pytest.raises(InvalidSpec, match=message):
        parse_storage_uri(uri)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"predictor": {}}, r"set exactly one of tensorflow, pytorch, containers \(found: none\)"),
        (
            {"predictor": {"tensorflow": {"storageUri": "pvc://a"}, "pytorch": {"storageUri": "pvc://a"}}},
            r"found: tensorflow, pytorch",
        ),
        ({"predictor": {"tensorflow": {}}}, r"spec.predictor.tensorflow.storageUri is required"),
        (
            {"predictor": {"tensorflow": {"storageUri": "pvc://a"}, "replicas": 1, "maxReplicas": 3}},
            r"either replicas or minReplicas/maxReplicas",
        ),
        (
            {"predictor": {"tensorflow": {"storageUri": "pvc://a"}, "minReplicas": 4, "maxReplicas": 3}},
            r"minReplicas 4 is greater than maxReplicas 3",
        ),
        ({**TF, "service": {"type": "ClusterIP", "httpNodePort": 31000}}, r"need type NodePort or LoadBalancer"),
        ({**TF, "service": {"httpNodePort": 31000, "grpcNodePort": 31000}}, r"both 31000; they must differ"),
        (
            {**TF, "service": {"type": "ExternalName"}},
            r"'ExternalName' is not one of NodePort, ClusterIP, LoadBalancer",
        ),
        ({**TF, "authorization": {"mode": "Sometimes"}}, r"'Sometimes' is not one of Auto, Enabled, Disabled"),
    ],
)
def test_invalid_specs(spec, message):
    with pytest.raises(InvalidSpec, match=message):
        parse_inferenceservice(body(spec))


@pytest.mark.parametrize("name", ["a" * 46, "1model", "Model", "my.model"])
def test_names_that_cannot_name_every_child(name):
    with pytest.raises(InvalidSpec, match="must be a DNS label of at most 45 characters"):
        parse_inferenceservice(body(TF, name=name))


def test_name_at_the_maximum_length_is_accepted():
    assert parse_inferenceservice(body(TF, name="a" * 45)).name == "a" * 45


@pytest.mark.parametrize(
    ("ports", "message"),
    [
        (
            [{"name": "http", "containerPort": 8080}, {"name": "http", "containerPort": 8081}],
            "two ports with name 'http'",
        ),
        (
            [{"name": "http", "containerPort": 8080}, {"name": "grpc", "containerPort": 8080}],
            "two ports with containerPort 8080",
        ),
    ],
)
def test_duplicate_container_ports_are_invalid_not_silently_dropped(ports, message):
    spec = {"predictor": {"containers": [{"image": "registry.local/m:2", "ports": ports}]}}
    with pytest.raises(InvalidSpec, match=message):
        parse_inferenceservice(body(spec))


@pytest.mark.parametrize("value", ["lots", "1.5.5", "ü", " 1", "1 Gi", True])
def test_a_resource_quantity_the_api_server_cannot_convert_is_invalid(value):
    """The API server answers such an apply with a 500, which would otherwise be retried forever."""
    spec = {"predictor": {"tensorflow": {"storageUri": "pvc://models", "resources": {"limits": {"cpu": value}}}}}
    with pytest.raises(InvalidSpec, match=r"resources\.limits\.cpu: .* is not a quantity"):
        parse_inferenceservice(body(spec))


@pytest.mark.parametrize("value", ["500m", "2", 2, 0.5, "1Gi", "1e3", "-1", 1073741824])
def test_quantities_the_api_server_converts_pass(value):
    spec = {"predictor": {"tensorflow": {"storageUri": "pvc://models", "resources": {"requests": {"memory": value}}}}}
    assert parse_inferenceservice(body(spec)).predictor.resources == {"requests": {"memory": value}}


@pytest.mark.parametrize("version", ["2.19.0 ", "2.19.0\n", "ü", "../../x", ":", "latest@sha256:zz", "-x"])
def test_a_runtime_version_that_is_no_image_tag_is_invalid(version):
    """Otherwise the Deployment is stored but its pods are refused, and the rollout never ends."""
    spec = {"predictor": {"tensorflow": {"storageUri": "pvc://models", "runtimeVersion": version}}}
    with pytest.raises(InvalidSpec, match="runtimeVersion: .* is not an image tag"):
        parse_inferenceservice(body(spec))


@pytest.mark.parametrize("version", ["2.19.0", "2.19.0-gpu", "latest", "v1_2", "2.19.0@sha256:" + "a" * 64])
def test_image_tags_and_digests_are_runtime_versions(version):
    spec = {"predictor": {"pytorch": {"storageUri": "pvc://models", "runtimeVersion": version}}}
    assert parse_inferenceservice(body(spec)).predictor.runtime_version == version
