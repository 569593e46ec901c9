"""s3:// end to end: the program as a subprocess, with env only, against moto's S3 server."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from tests.storage.conftest import Server, run_fetch, tree

pytestmark = pytest.mark.stores

KEYS = {"AWS_ACCESS_KEY_ID": "testing-key-id", "AWS_SECRET_ACCESS_KEY": "testing-secret-value"}


def endpoint(server: Server, scheme: str = "http") -> str:
    return f"{scheme}://127.0.0.1:{server.port}"


def client(server: Server, **kwargs: Any) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=endpoint(server),
        region_name="us-east-1",
        aws_access_key_id=KEYS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=KEYS["AWS_SECRET_ACCESS_KEY"],
        config=Config(s3={"addressing_style": "path"}, max_pool_connections=32),
        **kwargs,
    )


def env_for(server: Server, **extra: str) -> dict[str, str]:
    return {**KEYS, "AWS_ENDPOINT_URL": endpoint(server), "AWS_DEFAULT_REGION": "us-east-1", **extra}


@pytest.fixture(scope="module")
def bucket(s3_server: Server) -> str:
    s3 = client(s3_server)
    s3.create_bucket(Bucket="models")
    objects = {
        "tf/mnist/1/saved_model.pb": b"tf-graph",
        "tf/mnist/1/variables/variables.index": b"index",
        "pt/resnet/1/model.pt": b"torchscript",
        "single/model.bin": b"weights",
    }
    for key, body in objects.items():
        s3.put_object(Bucket="models", Key=key, Body=body)
    s3.put_object(Bucket="models", Key="archives/m.tar.gz", Body=_tar({"mymodel/1/saved_model.pb": b"from-archive"}))
    s3.put_object(Bucket="models", Key="archives/evil.tar.gz", Body=_tar({"../escape.txt": b"x"}))
    return "models"


def _tar(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_tensorflow_directory_keeps_its_layout(s3_server: Server, bucket: str, tmp_path: Path) -> None:
    run = run_fetch("s3://models/tf/mnist", tmp_path / "m", env_for(s3_server), "--layout", "tensorflow")
    assert run.returncode == 0, run.stderr
    assert tree(tmp_path / "m") == {"1/saved_model.pb": b"tf-graph", "1/variables/variables.index": b"index"}
    assert "2 objects" in run.stdout


def test_pytorch_directory_with_trailing_slash(s3_server: Server, bucket: str, tmp_path: Path) -> None:
    run = run_fetch("s3://models/pt/resnet/", tmp_path / "m", env_for(s3_server), "--layout", "pytorch")
    assert run.returncode == 0, run.stderr
    assert tree(tmp_path / "m") == {"1/model.pt": b"torchscript"}


def test_layout_check_fails_on_the_wrong_layout(s3_server: Server, bucket: str, tmp_path: Path) -> None:
    run = run_fetch("s3://models/pt/resnet", tmp_path / "m", env_for(s3_server), "--layout", "tensorflow")
    assert run.returncode == 1
    assert "saved_model.pb" in run.termination and run.termination == run.stderr.strip()


def test_single_archive_object_is_unpacked(s3_server: Server, bucket: str, tmp_path: Path) -> None:
    run = run_fetch("s3://models/archives/m.tar.gz", tmp_path / "m", env_for(s3_server), "--layout", "tensorflow")
    assert run.returncode == 0, run.stderr
    assert tree(tmp_path / "m") == {"1/saved_model.pb": b"from-archive"}


def test_single_plain_object_keeps_its_base_name(s3_server: Server, bucket: str, tmp_path: Path) -> None:
    run = run_fetch("s3://models/single/model.bin", tmp_path / "m", env_for(s3_server))
    assert run.returncode == 0, run.stderr
    assert tree(tmp_path / "m") == {"model.bin": b"weights"}


def test_hostile_archive_object_is_refused(s3_server: Server, bucket: str, tmp_path: Path) -> None:
    run = run_fetch("s3://models/archives/evil.tar.gz", tmp_path / "m", env_for(s3_server))
    assert run.returncode == 1
    assert "path traversal" in run.termination
    assert not (tmp_path / "escape.txt").exists() and tree(tmp_path / "m") == {}


def test_key_escaping_dest_is_refused(s3_server: Server, tmp_path: Path) -> None:
    s3 = client(s3_server)
    s3.create_bucket(Bucket="traversal")
    s3.put_object(Bucket="traversal", Key="m/1/ok.pb", Body=b"ok")
    s3.put_object(Bucket="traversal", Key="m/1/../../../escape.txt", Body=b"evil")
    listed = [o["Key"] for o in s3.list_objects_v2(Bucket="traversal")["Contents"]]
    assert "m/1/../../../escape.txt" in listed, f"the server normalised the key: {listed}"
    run = run_fetch("s3://traversal/m", tmp_path / "a" / "m", env_for(s3_server))
    assert run.returncode == 1
    assert "would land outside the model directory" in run.termination
    assert not list(tmp_path.rglob("escape.txt"))


def test_many_small_objects(s3_server: Server, tmp_path: Path) -> None:
    s3 = client(s3_server)
    s3.create_bucket(Bucket="many")
    expected = {f"1/shard-{i:04d}.bin": f"object {i}".encode() for i in range(2000)}
    with_threads(lambda item: s3.put_object(Bucket="many", Key=f"m/{item[0]}", Body=item[1]), expected.items())
    run = run_fetch("s3://many/m", tmp_path / "m", env_for(s3_server))
    assert run.returncode == 0, run.stderr
    assert tree(tmp_path / "m") == expected


def with_threads(action: Any, items: Any, workers: int = 16) -> None:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(action, items))


def test_missing_bucket_names_the_uri(s3_server: Server, tmp_path: Path) -> None:
    run = run_fetch("s3://no-such-bucket/m", tmp_path / "m", env_for(s3_server))
    assert run.returncode == 1
    assert run.termination.startswith("not found: bucket 'no-such-bucket' of s3://no-such-bucket/m")


def test_missing_prefix_names_the_uri(s3_server: Server, bucket: str, tmp_path: Path) -> None:
    run = run_fetch("s3://models/nothing/here", tmp_path / "m", env_for(s3_server))
    assert run.returncode == 1
    assert "no objects at or under s3://models/nothing/here" in run.termination


def test_secret_values_never_appear(s3_server: Server, tmp_path: Path) -> None:
    run = run_fetch("s3://no-such-bucket/m", tmp_path / "m", env_for(s3_server))
    assert KEYS["AWS_SECRET_ACCESS_KEY"] not in run.stderr + run.stdout + run.termination


def test_anonymous_public_bucket(s3_server: Server, tmp_path: Path) -> None:
    s3 = client(s3_server)
    s3.create_bucket(Bucket="public", ACL="public-read")
    s3.put_object(Bucket="public", Key="m/1/saved_model.pb", Body=b"public", ACL="public-read")
    env = {"AWS_ENDPOINT_URL": endpoint(s3_server), "ISVC_S3_ANONYMOUS": "true", "AWS_DEFAULT_REGION": "us-east-1"}
    run = run_fetch("s3://public/m", tmp_path / "m", env)
    assert run.returncode == 0, run.stderr
    assert tree(tmp_path / "m") == {"1/saved_model.pb": b"public"}


def test_stalled_server_times_out(stalled_port: int, tmp_path: Path) -> None:
    env = {
        **KEYS,
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{stalled_port}",
        "ISVC_STORAGE_CONNECT_TIMEOUT": "2",
        "ISVC_STORAGE_READ_TIMEOUT": "2",
    }
    # The subprocess timeout is the hang detector: 3 attempts x 2 s plus backoff is far below it.
    run = run_fetch("s3://models/m", tmp_path / "m", env, timeout=120)
    assert run.returncode == 1
    assert run.termination.startswith("timeout: listing s3://models/m"), run.termination
    assert "ISVC_STORAGE_READ_TIMEOUT" in run.termination


def test_tls_with_ca_bundle(s3_tls_server: Server, certificate: tuple[Path, Path], tmp_path: Path) -> None:
    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint(s3_tls_server, "https"),
        region_name="us-east-1",
        verify=str(certificate[0]),
        aws_access_key_id=KEYS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=KEYS["AWS_SECRET_ACCESS_KEY"],
    )
    s3.create_bucket(Bucket="tls")
    s3.put_object(Bucket="tls", Key="m/1/saved_model.pb", Body=b"over-tls")
    base = env_for(s3_tls_server, AWS_ENDPOINT_URL=endpoint(s3_tls_server, "https"))

    verified = run_fetch("s3://tls/m", tmp_path / "a", {**base, "AWS_CA_BUNDLE": str(certificate[0])})
    assert verified.returncode == 0, verified.stderr
    assert tree(tmp_path / "a") == {"1/saved_model.pb": b"over-tls"}

    refused = run_fetch("s3://tls/m", tmp_path / "b", base)
    assert refused.returncode == 1
    assert refused.termination.startswith("TLS verification failed"), refused.termination
    assert "AWS_CA_BUNDLE" in refused.termination and "ISVC_S3_VERIFY_SSL=0" in refused.termination

    unverified = run_fetch("s3://tls/m", tmp_path / "c", {**base, "ISVC_S3_VERIFY_SSL": "0"})
    assert unverified.returncode == 0, unverified.stderr
    assert tree(tmp_path / "c") == {"1/saved_model.pb": b"over-tls"}


def test_host_port_endpoint_with_use_https_off(s3_server: Server, bucket: str, tmp_path: Path) -> None:
    env = env_for(s3_server, AWS_ENDPOINT_URL=f"127.0.0.1:{s3_server.port}", ISVC_S3_USE_HTTPS="0")
    run = run_fetch("s3://models/pt/resnet", tmp_path / "m", env)
    assert run.returncode == 0, run.stderr


def test_wrong_key_is_access_denied_naming_the_variables(s3_auth_server: Server, tmp_path: Path) -> None:
    import json

    iam = boto3.client(
        "iam", endpoint_url=endpoint(s3_auth_server), region_name="us-east-1",
        aws_access_key_id="bootstrap", aws_secret_access_key="bootstrap",
    )  # fmt: skip
    iam.create_user(UserName="reader")
    key = iam.create_access_key(UserName="reader")["AccessKey"]
    policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
    iam.put_user_policy(UserName="reader", PolicyName="all", PolicyDocument=json.dumps(policy))
    s3 = boto3.client(
        "s3", endpoint_url=endpoint(s3_auth_server), region_name="us-east-1",
        aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"],
        config=Config(s3={"addressing_style": "path"}),
    )  # fmt: skip
    s3.create_bucket(Bucket="private")
    s3.put_object(Bucket="private", Key="m/1/saved_model.pb", Body=b"private")
    base = {"AWS_ENDPOINT_URL": endpoint(s3_auth_server), "AWS_DEFAULT_REGION": "us-east-1"}

    good = run_fetch(
        "s3://private/m",
        tmp_path / "a",
        {**base, "AWS_ACCESS_KEY_ID": key["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"]},
    )
    assert good.returncode == 0, good.stderr
    assert tree(tmp_path / "a") == {"1/saved_model.pb": b"private"}

    wrong = "not-the-secret-at-all"
    bad = run_fetch(
        "s3://private/m",
        tmp_path / "b",
        {**base, "AWS_ACCESS_KEY_ID": key["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": wrong},
    )
    assert bad.returncode == 1
    assert bad.termination.startswith("access denied: listing s3://private/m"), bad.termination
    assert "credentials from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY" in bad.termination
    assert wrong not in bad.stderr + bad.stdout + bad.termination
    assert key["AccessKeyId"] not in bad.termination


def test_empty_prefix_is_an_error(s3_server: Server, bucket: str, tmp_path: Path) -> None:
    client(s3_server).put_object(Bucket="models", Key="empty/", Body=b"")  # a console "folder", nothing in it
    run = run_fetch("s3://models/empty", tmp_path / "m", env_for(s3_server))
    assert run.returncode == 1
    assert "no objects at or under s3://models/empty" in run.termination


def test_size_limit_is_checked_before_downloading(s3_server: Server, bucket: str, tmp_path: Path) -> None:
    run = run_fetch("s3://models/tf/mnist", tmp_path / "m", env_for(s3_server), "--max-bytes", "10")
    assert run.returncode == 1
    assert run.termination.startswith("download refused: s3://models/tf/mnist holds 13 bytes in 2 objects"), (
        run.termination
    )
    assert tree(tmp_path / "m") == {}
