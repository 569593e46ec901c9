"""Real object-store servers on loopback for the storage program's tests (marker `stores`):
moto's S3 server, fake-gcs-server and Azurite, built or installed by hack/stores/build.sh (cached
in ~/.cache/isvc-operator), one of each per test session, stopped on teardown. A server that cannot
be built fails the tests, it never skips them."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support import ROOT, reserved_port, wait_until

STORES_VERSIONS = {
    line.split("=", 1)[0]: line.split("=", 1)[1].strip()
    for line in (ROOT / "hack/stores/versions.env").read_text().splitlines()
    if "=" in line and not line.startswith("#")
}
# Azurite's well-known development account (public, documented; not a secret).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


@pytest.fixture(scope="session")
def stores_cache() -> Path:
    """hack/stores/build.sh all: a failure to build is a test failure (no skip)."""
    proc = subprocess.run(
        ["bash", str(ROOT / "hack/stores/build.sh"), "all"], capture_output=True, text=True, timeout=1800
    )
    if proc.returncode != 0:
        pytest.fail(f"hack/stores/build.sh failed ({proc.returncode}):\n{proc.stderr[-3000:]}", pytrace=False)
    return Path(proc.stdout.strip().splitlines()[-1])


def _answers(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class Server:
    """A store server process; its log counts the requests it served."""

    name: str
    port: int
    log: Path
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self, argv: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> None:
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}, cwd=cwd
            )
        wait_until(
            lambda: _answers(self.port) or self.process is None or self.process.poll() is not None,
            60,
            f"{self.name} to listen on 127.0.0.1:{self.port}",
        )
        if self.process.poll() is not None:
            pytest.fail(f"{self.name} exited ({self.process.returncode}); log:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=20)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (its own CA): (cert PEM, key PEM)."""
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


def _moto(
    stores_cache: Path, tmp: Path, name: str, tls: tuple[Path, Path] | None = None, env: dict[str, str] | None = None
) -> Iterator[Server]:
    port = reserved_port()
    server = Server(name, port, tmp / f"{name}.log")
    argv = [str(stores_cache / f"stores/moto-{STORES_VERSIONS['MOTO_VERSION']}/bin/moto_server"), "-H", "127.0.0.1"]
    argv += ["-p", str(port)]
    if tls:
        argv += ["-c", str(tls[0]), "-k", str(tls[1])]
    try:
        server.start(argv, env={"MOTO_ALLOW_NONEXISTENT_REGION": "true", **(env or {})})
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def s3_server(stores_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from _moto(stores_cache, tmp_path_factory.mktemp("moto"), "moto")


@pytest.fixture(scope="session")
def s3_auth_server(stores_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """moto checking signatures: its first 4 requests (the IAM user, its key and policy) are free."""
    yield from _moto(
        stores_cache, tmp_path_factory.mktemp("moto-auth"), "moto-auth", env={"INITIAL_NO_AUTH_ACTION_COUNT": "4"}
    )


@pytest.fixture(scope="session")
def s3_tls_server(
    stores_cache: Path, tmp_path_factory: pytest.TempPathFactory, certificate: tuple[Path, Path]
) -> Iterator[Server]:
    yield from _moto(stores_cache, tmp_path_factory.mktemp("moto-tls"), "moto-tls", certificate)


def _fake_gcs(stores_cache: Path, tmp: Path, tls: tuple[Path, Path] | None = None) -> Iterator[Server]:
    port = reserved_port()
    scheme = "https" if tls else "http"
    server = Server(f"fake-gcs-server-{scheme}", port, tmp / "fake-gcs.log")
    binary = stores_cache / f"bin/fake-gcs-server-{STORES_VERSIONS['FAKE_GCS_SERVER_VERSION']}"
    argv = [str(binary), "-scheme", scheme, "-host", "127.0.0.1", "-port", str(port), "-backend", "filesystem",
            "-filesystem-root", str(tmp / "data"), "-public-host", f"127.0.0.1:{port}",
            "-external-url", f"{scheme}://127.0.0.1:{port}"]  # fmt: skip
    if tls:
        argv += ["-cert-location", str(tls[0]), "-private-key-location", str(tls[1])]
    try:
        server.start(argv)
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def gcs_server(stores_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from _fake_gcs(stores_cache, tmp_path_factory.mktemp("fake-gcs"))


@pytest.fixture(scope="session")
def gcs_tls_server(
    stores_cache: Path, tmp_path_factory: pytest.TempPathFactory, certificate: tuple[Path, Path]
) -> Iterator[Server]:
    yield from _fake_gcs(stores_cache, tmp_path_factory.mktemp("fake-gcs-tls"), certificate)


@pytest.fixture(scope="session")
def azure_server(stores_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("azurite")
    port = reserved_port()
    server = Server("azurite", port, tmp / "azurite.log")
    binary = stores_cache / f"stores/azurite-{STORES_VERSIONS['AZURITE_VERSION']}/node_modules/.bin/azurite-blob"
    try:
        server.start(
            [str(binary), "--blobHost", "127.0.0.1", "--blobPort", str(port), "--location", str(tmp / "data"),
             "--loose", "--skipApiVersionCheck", "--disableTelemetry", "--debug", str(tmp / "debug.log")],
            cwd=tmp,
        )  # fmt: skip
        yield server
    finally:
        server.stop()


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    termination: str
    max_rss_kib: int


_RSS_WRAPPER = (
    "import resource, subprocess, sys\n"
    "rc = subprocess.run(sys.argv[2:]).returncode\n"
    "open(sys.argv[1], 'w').write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))\n"
    "sys.exit(rc)\n"
)


def run_fetch(uri: str, dest: Path, env: dict[str, str], *args: str, timeout: float = 600) -> Run:
    """`python -m isvc_operator.storage fetch URI DEST ...` as the init container runs it, with ENV only.

    A small wrapper process reports the program's own peak RSS (getrusage(RUSAGE_CHILDREN) of a
    parent with that one child), so earlier children of the test process do not count."""
    log = dest.parent / f".termination-{dest.name}"
    rss = dest.parent / f".rss-{dest.name}"
    log.unlink(missing_ok=True)
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "ISVC_", "AZURE_", "GOOGLE_"))}
    base.pop("STORAGE_EMULATOR_HOST", None)
    # Without keys boto3's chain would ask the instance metadata address, which is off this machine.
    base["AWS_EC2_METADATA_DISABLED"] = "true"
    command = [sys.executable, "-m", "isvc_operator.storage", "fetch", uri, str(dest), "--termination-log", str(log)]
    proc = subprocess.run(
        [sys.executable, "-c", _RSS_WRAPPER, str(rss), *command, *args],
        capture_output=True,
        text=True,
        env={**base, **env},
        timeout=timeout,
    )
    termination = log.read_text() if log.exists() else ""
    return Run(proc.returncode, proc.stdout, proc.stderr, termination, int(rss.read_text() or 0))


def tree(root: Path) -> dict[str, bytes]:
    """Every regular file under ROOT (links followed), relative path -> content."""
    files: dict[str, bytes] = {}
    for directory, subdirs, names in os.walk(root, followlinks=True):
        subdirs[:] = [d for d in subdirs if not d.startswith(".isvc-")]
        for name in names:
            path = Path(directory, name)
            if not name.startswith(".isvc-"):
                files[path.relative_to(root).as_posix()] = path.read_bytes()
    return dict(sorted(files.items()))


def clear(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def stalled_port() -> Iterator[int]:
    """A server that accepts connections and never answers."""
    port = reserved_port()
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(64)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield port
    stop.set()
    thread.join()
    for conn in accepted:
        conn.close()
    listener.close()
