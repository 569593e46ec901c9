"""Tests for the storage init container: real archives, a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import io
import os
import socket
import stat
import subprocess
import sys
import tarfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from isvc_operator import storage
from isvc_operator.storage import (
    StorageError,
    check_layout,
    detect_archive_kind,
    extract_archive,
    fetch_archive,
    main,
    parse_size,
    write_termination_message,
)

MiB = 1024 * 1024
TF_MODEL = [("file", "1/saved_model.pb", b"graph"), ("file", "1/variables/variables.index", b"index")]


# --------------------------------------------------------------------------- archive builders


def build_tar(path: Path, entries: list[tuple], mode: str = "w:gz") -> Path:
    """Write a tar with exactly the members given, hostile ones included."""
    with tarfile.open(path, mode) as archive:
        for kind, name, *rest in entries:
            info = tarfile.TarInfo(name)
            info.mode = 0o644
            if kind == "file":
                info.size = len(rest[0])
                archive.addfile(info, io.BytesIO(rest[0]))
                continue
            info.type = {
                "dir": tarfile.DIRTYPE,
                "symlink": tarfile.SYMTYPE,
                "hardlink": tarfile.LNKTYPE,
                "fifo": tarfile.FIFOTYPE,
                "chr": tarfile.CHRTYPE,
            }[kind]
            if kind in ("symlink", "hardlink"):
                info.linkname = rest[0]
            archive.addfile(info)
    return path


def build_zip(path: Path, entries: list[tuple]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for kind, name, *rest in entries:
            if kind == "file":
                archive.writestr(name, rest[0])
            elif kind == "dir":
                archive.writestr(name.rstrip("/") + "/", b"")
            else:
                info = zipfile.ZipInfo(name)
                file_type = {"symlink": stat.S_IFLNK, "fifo": stat.S_IFIFO}[kind]
                info.external_attr = (file_type | 0o644) << 16
                archive.writestr(info, rest[0] if rest else b"")
    return path


def build(path: Path, fmt: str, entries: list[tuple]) -> Path:
    return build_zip(path, entries) if fmt == "zip" else build_tar(path, entries, fmt)


def tree(dest: Path) -> dict[str, bytes]:
    """Every regular file under DEST (links followed), as relative path -> content."""
    return {p.relative_to(dest).as_posix(): p.read_bytes() for p in sorted(dest.rglob("*")) if p.is_file()}


def make_tree(root: Path, paths: list[str]) -> Path:
    for rel in paths:
        target = root / rel
        if rel.endswith("/"):
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(b"x")
    root.mkdir(parents=True, exist_ok=True)
    return root


# --------------------------------------------------------------------------- local HTTP server


class _Handler(BaseHTTPRequestHandler):
    routes: dict[str, tuple[int, bytes, str]] = {}

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        status, body, mode = self.routes.get(urlsplit(self.path).path, (404, b"", "normal"))
        self.send_response(status)
        if mode == "truncate":
            self.send_header("Content-Length", str(len(body) + 1000))  # promise more than we send
        elif mode == "normal":
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()  # "no-length": HTTP/1.0, the body ends when the connection closes
        self.wfile.write(body)
        self.wfile.flush()
        self.close_connection = True

    def log_message(self, *args: object) -> None:
        pass


class Server:
    def __init__(self) -> None:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def serve(self, path: str, body: bytes, status: int = 200, mode: str = "normal") -> str:
        _Handler.routes[path] = (status, body, mode)
        return f"http://127.0.0.1:{self.httpd.server_port}{path}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def server():
    srv = Server()
    yield srv
    srv.close()


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    return tmp_path / "models"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def own_files(dest: Path) -> list[str]:
    return [p.name for p in dest.iterdir() if p.name.startswith(".isvc-")] if dest.exists() else []


# --------------------------------------------------------------------------- content detection


@pytest.mark.parametrize(
    ("head", "kind"),
    [
        (b"\x1f\x8b\x08\x00rest", "tar.gz"),
        (b"BZh91AY&SY", "tar.bz2"),
        (b"\xfd7zXZ\x00\x00", "tar.xz"),
        (b"PK\x03\x04\x14\x00", "zip"),
        (b"PK\x05\x06" + b"\x00" * 18, "zip"),
        (b"1/saved_model.pb".ljust(257, b"\x00") + b"ustar\x0000", "tar"),
        (b"1/saved_model.pb".ljust(257, b"\x00") + b"ustar  \x00", "tar"),
    ],
    ids=["gzip", "bzip2", "xz", "zip", "empty-zip", "posix-tar", "gnu-tar"],
)
def test_detect_archive_kind_by_magic_bytes(head: bytes, kind: str) -> None:
    assert detect_archive_kind(head) == kind
    assert kind in storage.ARCHIVE_FORMATS


@pytest.mark.parametrize(
    ("head", "fragments"),
    [
        (b"<!DOCTYPE html><html>", ["3c 21 44 4f", "'<!DOCTYPE html><'", "HTML"]),
        (b"\x28\xb5\x2f\xfd\x00", ["28 b5 2f fd", "zstd"]),
        (b"\x00\x01\x02\x03", ["00 01 02 03"]),
        (b"", ["empty"]),
    ],
    ids=["html", "zstd", "garbage", "empty"],
)
def test_detect_unknown_content_names_what_was_seen(head: bytes, fragments: list[str]) -> None:
    with pytest.raises(StorageError) as err:
        detect_archive_kind(head)
    message = str(err.value)
    assert message.startswith("unsupported archive: ")
    for fragment in fragments:
        assert fragment in message
    if head:
        assert "accepted by content: tar.gz/tgz (1f 8b)" in message


# --------------------------------------------------------------------------- extraction


@pytest.mark.parametrize(
    ("fmt", "filename", "kind"),
    [
        ("w:gz", "model.tar.gz", "tar.gz"),
        ("zip", "model.tgz", "zip"),  # the name lies; the content decides
        ("w:", "model.tar", "tar"),
        ("w:bz2", "model.tar.bz2", "tar.bz2"),
        ("w:xz", "download", "tar.xz"),
        ("zip", "model.zip", "zip"),
        ("w:", "model.zip", "tar"),
    ],
)
def test_extracts_every_format_detected_by_content(
    tmp_path: Path, dest: Path, fmt: str, filename: str, kind: str
) -> None:
    archive = build(tmp_path / filename, fmt, TF_MODEL)

    result = extract_archive(archive, dest, max_bytes=MiB)

    assert tree(dest) == {"1/saved_model.pb": b"graph", "1/variables/variables.index": b"index"}
    assert (result.kind, result.files, result.symlinks, result.bytes, result.stripped) == (kind, 2, 0, 10, None)
    assert own_files(dest) == []  # the staging directory is gone


@pytest.mark.parametrize(
    ("fmt", "names", "expected", "stripped"),
    [
        ("w:gz", ["mymodel/1/saved_model.pb"], ["1/saved_model.pb"], "mymodel"),
        ("w:gz", ["./mymodel/", "./mymodel/1/saved_model.pb"], ["1/saved_model.pb"], "mymodel"),
        ("zip", ["mymodel/1/saved_model.pb", "__MACOSX/mymodel/._1"], ["1/saved_model.pb"], "mymodel"),
        ("w:gz", ["0001/saved_model.pb", "0001/v/v.index"], ["0001/saved_model.pb", "0001/v/v.index"], None),
        ("zip", ["1/model.pt"], ["1/model.pt"], None),
        ("w:gz", ["1/saved_model.pb", "2/saved_model.pb"], ["1/saved_model.pb", "2/saved_model.pb"], None),
        ("w:gz", ["model.pt"], ["model.pt"], None),
        ("w:gz", ["a/b/1/model.pt"], ["b/1/model.pt"], "a"),  # one level only
        ("w:gz", ["./model.pt", "./config.json"], ["config.json", "model.pt"], None),
    ],
    ids=[
        "named-top",
        "dot-slash",
        "macosx-junk",
        "numeric-top",
        "numeric-zip",
        "two-versions",
        "lone-file",
        "one-level",
        "dot-root",
    ],
)
def test_single_top_level_directory_rule(
    tmp_path: Path, dest: Path, fmt: str, names: list[str], expected: list[str], stripped: str | None
) -> None:
    entries = [("dir", n) if n.endswith("/") else ("file", n, n.encode()) for n in names]
    archive = build(tmp_path / "archive", fmt, entries)

    result = extract_archive(archive, dest, max_bytes=MiB)

    assert sorted(tree(dest)) == expected
    assert result.stripped == stripped


def test_links_that_stay_inside_dest_are_kept(tmp_path: Path, dest: Path) -> None:
    archive = build_tar(
        tmp_path / "m.tar.gz",
        [
            ("file", "m/1/saved_model.pb", b"graph"),
            ("hardlink", "m/2/saved_model.pb", "m/1/saved_model.pb"),  # tar names the member, pre-strip
            ("symlink", "m/latest", "2"),
            ("symlink", "m/1/shared", "../2"),
        ],
    )

    result = extract_archive(archive, dest, max_bytes=MiB)

    assert (result.files, result.symlinks, result.stripped) == (2, 2, "m")
    assert (dest / "2" / "saved_model.pb").read_bytes() == b"graph"
    assert os.readlink(dest / "latest") == "2"
    assert (dest / "latest" / "saved_model.pb").read_bytes() == b"graph"
    assert (dest / "1" / "shared").resolve() == (dest / "2").resolve()


@pytest.mark.parametrize(
    ("fmt", "entries", "fragment"),
    [
        ("w:gz", [("file", "../evil", b"x")], "'../evil' contains '..' (path traversal)"),
        ("w:gz", [("file", "1/../../evil", b"x")], "path traversal"),
        ("zip", [("file", "../evil", b"x")], "path traversal"),
        ("zip", [("file", "..\\evil", b"x")], "path traversal"),
        ("w:gz", [("file", "/tmp/evil", b"x")], "'/tmp/evil' has an absolute path"),
        ("zip", [("file", "/evil", b"x")], "absolute path"),
        (
            "w:gz",
            [("file", "1/model.pt", b""), ("symlink", "1/link", "../../evil")],
            "symlink '1/link' -> '../../evil' points outside",
        ),
        ("w:gz", [("symlink", "passwd", "/etc/passwd")], "symlink 'passwd' -> '/etc/passwd' points outside"),
        ("zip", [("symlink", "link", "../evil")], "symlink 'link' -> '../evil' points outside"),
        # Harmless before stripping m/, an escape after it: checked on the final path.
        (
            "w:gz",
            [("file", "m/model.pt", b""), ("symlink", "m/link", "../evil")],
            "symlink 'link' -> '../evil' points outside",
        ),
        # Each link alone looks inside; chained they climb out. Caught on the real resolved path.
        (
            "w:gz",
            [("file", "keep", b""), ("dir", "x/y"), ("symlink", "x/y/up", "../.."), ("symlink", "x/out", "y/up/..")],
            "symlink 'x/out' -> 'y/up/..' resolves outside",
        ),
        (
            "w:gz",
            [("dir", "sub"), ("symlink", "lnk", "sub"), ("file", "lnk/evil", b"x")],
            "'lnk/evil' is inside 'lnk', which is a symlink",
        ),
        ("w:gz", [("hardlink", "1/h", "../evil")], "hardlink '1/h' -> '../evil' points outside"),
        ("w:gz", [("hardlink", "h", "/etc/passwd")], "hardlink 'h' -> '/etc/passwd' points outside"),
        ("w:gz", [("hardlink", "h", "missing")], "does not point to a regular file in the archive"),
        ("w:gz", [("fifo", "1/pipe")], "'1/pipe' is a fifo"),
        ("w:", [("chr", "dev/null")], "'dev/null' is a character device"),
        ("zip", [("fifo", "pipe")], "'pipe' is a fifo or socket"),
    ],
    ids=[
        "tar-traversal",
        "tar-nested-traversal",
        "zip-traversal",
        "zip-backslash-traversal",
        "tar-absolute",
        "zip-absolute",
        "symlink-escape",
        "symlink-absolute",
        "zip-symlink-escape",
        "symlink-escape-after-strip",
        "symlink-chain-escape",
        "write-through-symlink",
        "hardlink-escape",
        "hardlink-absolute",
        "hardlink-dangling",
        "fifo",
        "char-device",
        "zip-fifo",
    ],
)
def test_refuses_unsafe_members(tmp_path: Path, dest: Path, fmt: str, entries: list[tuple], fragment: str) -> None:
    archive = build(tmp_path / "hostile", fmt, entries)

    with pytest.raises(StorageError) as err:
        extract_archive(archive, dest, max_bytes=MiB)

    assert str(err.value).startswith("archive refused: ")
    assert fragment in str(err.value)
    assert list(dest.iterdir()) == []  # nothing published, staging removed
    assert not (tmp_path / "evil").exists()


def _patch_zip_sizes(path: Path, declared: int) -> None:
    """Make the only member lie about its uncompressed size, in both headers."""
    data = bytearray(path.read_bytes())
    local = data.index(b"PK\x03\x04")
    central = data.index(b"PK\x01\x02")
    data[local + 22 : local + 26] = declared.to_bytes(4, "little")
    data[central + 24 : central + 28] = declared.to_bytes(4, "little")
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("fmt", "entries", "fragment"),
    [
        ("zip", [("file", "1/model.pt", bytes(4 * MiB))], "members declare more than 1048576 bytes uncompressed"),
        ("w:gz", [("file", "1/model.pt", bytes(4 * MiB))], "members declare more than 1048576 bytes uncompressed"),
        ("w:xz", [("file", f"1/part{i}.bin", bytes(MiB // 2)) for i in range(3)], "(at '1/part2.bin')"),
    ],
    ids=["zip", "tar.gz", "tar.xz-total"],
)
def test_refuses_archives_over_the_uncompressed_limit(
    tmp_path: Path, dest: Path, fmt: str, entries: list[tuple], fragment: str
) -> None:
    archive = build(tmp_path / "bomb", fmt, entries)
    assert archive.stat().st_size < 64 * 1024  # highly compressible: a bomb, not a big download

    with pytest.raises(StorageError) as err:
        extract_archive(archive, dest, max_bytes=MiB)

    assert fragment in str(err.value)
    assert "--max-bytes or ISVC_STORAGE_MAX_BYTES" in str(err.value)
    assert list(dest.iterdir()) == []


def test_zip_member_lying_about_its_size_is_refused(tmp_path: Path, dest: Path) -> None:
    archive = build_zip(tmp_path / "liar.zip", [("file", "1/model.pt", bytes(4 * MiB))])
    _patch_zip_sizes(archive, declared=10)  # declares 10 bytes, inflates to 4 MiB

    with pytest.raises(StorageError) as err:
        extract_archive(archive, dest, max_bytes=MiB)

    assert str(err.value).startswith("archive corrupt: cannot read zip archive")
    assert list(dest.iterdir()) == []


def test_gzip_that_is_not_a_tar_is_explained(tmp_path: Path, dest: Path) -> None:
    import gzip

    path = tmp_path / "model.pt.gz"
    path.write_bytes(gzip.compress(b"not a tar" * 100))

    with pytest.raises(StorageError, match=r"archive corrupt: cannot read tar.gz archive: .*single compressed file"):
        extract_archive(path, dest, max_bytes=MiB)


def test_extraction_replaces_entries_of_an_earlier_attempt(tmp_path: Path, dest: Path) -> None:
    make_tree(dest, ["1/stale.txt", "keep.txt"])
    archive = build_tar(tmp_path / "m.tgz", TF_MODEL)

    extract_archive(archive, dest, max_bytes=MiB)

    assert sorted(tree(dest)) == ["1/saved_model.pb", "1/variables/variables.index", "keep.txt"]


# --------------------------------------------------------------------------- download


def test_fetch_streams_into_a_hidden_file_in_dest(server: Server, dest: Path) -> None:
    body = os.urandom(3 * 1024 * 1024 + 7)  # several chunks
    url = server.serve("/ok.bin", body)

    path = fetch_archive(url, dest, max_bytes=10 * MiB)

    assert path.parent == dest and path.name.startswith(".isvc-download-")
    assert path.read_bytes() == body


@pytest.mark.parametrize(
    ("mode", "fragment"),
    [
        ("normal", "Content-Length 4096 bytes is over the limit of 1000 bytes"),
        ("no-length", "more than 1000 bytes received, over the limit of 1000 bytes"),
    ],
    ids=["content-length", "streamed-count"],
)
def test_fetch_refuses_downloads_over_max_bytes(server: Server, dest: Path, mode: str, fragment: str) -> None:
    url = server.serve(f"/big-{mode}.tgz", bytes(4096), mode=mode)

    with pytest.raises(StorageError) as err:
        fetch_archive(url, dest, max_bytes=1000)

    assert str(err.value).startswith(f"download failed: GET {url}: ")
    assert fragment in str(err.value)
    assert own_files(dest) == []


def test_fetch_reports_a_truncated_download(server: Server, dest: Path) -> None:
    url = server.serve("/short.tgz", b"x" * 100, mode="truncate")

    with pytest.raises(StorageError) as err:
        fetch_archive(url, dest, max_bytes=MiB)

    assert str(err.value) == (
        f"download failed: GET {url}: connection closed after 100 of 1100 bytes (truncated download)"
    )
    assert own_files(dest) == []


@pytest.mark.parametrize(("status", "reason"), [(404, "Not Found"), (500, "Internal Server Error"), (403, "Forbidden")])
def test_fetch_reports_http_errors(server: Server, dest: Path, status: int, reason: str) -> None:
    url = server.serve(f"/status-{status}.tar.gz", b"<Error/>", status=status)

    with pytest.raises(StorageError) as err:
        fetch_archive(url, dest, max_bytes=MiB)

    assert str(err.value) == f"download failed: GET {url} returned {status} {reason}"
    assert own_files(dest) == []


def test_fetch_reports_connection_refused(dest: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/m.tgz"

    with pytest.raises(StorageError) as err:
        fetch_archive(url, dest, max_bytes=MiB)

    assert str(err.value) == f"download failed: GET {url}: Connection refused"


@pytest.mark.parametrize("uri", ["s3://bucket/model.tgz", "file:///etc/passwd", "gs://b/m.tgz", "model.tgz"])
def test_fetch_refuses_other_schemes(dest: Path, uri: str) -> None:
    with pytest.raises(StorageError, match=r"unsupported URI scheme .* accepted: http://, https://"):
        fetch_archive(uri, dest, max_bytes=MiB)


def test_messages_redact_credentials_in_the_url(server: Server, dest: Path) -> None:
    url = server.serve("/private.tgz", b"", status=403)
    port = urlsplit(url).port
    signed = f"http://user:hunter2@127.0.0.1:{port}/private.tgz?X-Amz-Signature=topsecret"

    with pytest.raises(StorageError) as err:
        fetch_archive(signed, dest, max_bytes=MiB)

    assert str(err.value) == (
        f"download failed: GET http://***@127.0.0.1:{port}/private.tgz?<redacted> returned 403 Forbidden"
    )
    assert "hunter2" not in str(err.value) and "topsecret" not in str(err.value)


# --------------------------------------------------------------------------- layout checks


@pytest.mark.parametrize(
    ("layout", "paths", "expected"),
    [
        ("tensorflow", ["1/saved_model.pb", "1/variables/v.index"], "layout tensorflow: version 1 with saved_model.pb"),
        (
            "tensorflow",
            ["2/saved_model.pb", "10/saved_model.pb", "3/README"],
            "layout tensorflow: versions 2, 10 with saved_model.pb (warning: no saved_model.pb in 3/)",
        ),
        ("pytorch", ["1/model.pt"], "layout pytorch: version 1 (TorchScript model.pt)"),
        ("pytorch", ["1/resnet.pt2"], "layout pytorch: version 1 (exported program resnet.pt2)"),
        ("pytorch", ["2/model.py", "2/model.pth"], "layout pytorch: version 2 (model.py + state dict model.pth)"),
        (
            "pytorch",
            ["1/model.py", "1/pytorch_model.bin"],
            "layout pytorch: version 1 (model.py + state dict pytorch_model.bin)",
        ),
        (
            "pytorch",
            ["model.pt", "labels.txt"],
            "layout pytorch: TorchScript model.pt at the root, no version directory: accepted, served as version 1",
        ),
    ],
)
def test_check_layout_accepts(tmp_path: Path, layout: str, paths: list[str], expected: str) -> None:
    assert check_layout(make_tree(tmp_path / "m", paths), layout) == expected


@pytest.mark.parametrize(
    ("layout", "paths", "tail"),
    [
        (
            "tensorflow",
            ["saved_model.pb", "variables/variables.index"],
            "found: saved_model.pb, variables/ (put them in a directory named 1/)",
        ),
        ("tensorflow", ["1/variables/variables.index"], "found: 1/ (1/ holds: variables/)"),
        (
            "tensorflow",
            ["a/b/1/saved_model.pb"],
            "found: a/ (saved_model.pb is at a/b/1/saved_model.pb: the archive must hold 1/saved_model.pb",
        ),
        ("tensorflow", [], "found: nothing (empty) (expected e.g. 1/saved_model.pb and 1/variables/)"),
        (
            "pytorch",
            ["1/model.py"],
            "found: 1/ (1/model.py needs a state-dict file next to it: model.pth, model.pt or *.bin)",
        ),
        (
            "pytorch",
            ["pytorch_model.bin", "config.json"],
            "found: config.json, pytorch_model.bin (pytorch_model.bin is a state dict: add model.py defining the model",
        ),
        ("pytorch", ["1/model.onnx"], "found: 1/ (1/ holds: model.onnx)"),
        ("pytorch", ["m/x/1/model.pt"], "(m/x/1/model.pt is too deep: the archive must hold 1/model.pt"),
    ],
)
def test_check_layout_rejects_and_says_what_was_found(tmp_path: Path, layout: str, paths: list[str], tail: str) -> None:
    dest = make_tree(tmp_path / "m", paths)

    with pytest.raises(StorageError) as err:
        check_layout(dest, layout)

    message = str(err.value)
    head = {
        "tensorflow": f"layout tensorflow: no numeric version directory with saved_model.pb under {dest}; ",
        "pytorch": (
            "layout pytorch: no numeric version directory with model.pt (TorchScript), *.pt2, "
            "or model.py + a state dict"
        ),
    }[layout]
    assert message.startswith(head)
    assert tail in message


def test_check_layout_rejects_unknown_layouts(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="unknown layout 'onnx'; accepted: tensorflow, pytorch"):
        check_layout(tmp_path, "onnx")


# --------------------------------------------------------------------------- command line


def test_cli_fetch_success_prints_one_summary_line(server: Server, tmp_path: Path, dest: Path, capsys) -> None:
    archive = build_tar(tmp_path / "m.tgz", [("file", f"mymodel/{name}", data) for _, name, data in TF_MODEL])
    url = server.serve("/cli-ok.tar.gz", archive.read_bytes())
    log = tmp_path / "termination-log"

    code = main(["fetch", url, str(dest), "--layout", "tensorflow", "--termination-log", str(log)])

    out = capsys.readouterr().out
    assert code == 0
    assert out.count("\n") == 1
    assert f"fetched {url} into {dest}: downloaded {archive.stat().st_size} bytes (tar.gz)" in out
    assert "extracted 2 files and 0 symlinks (10 bytes), top-level directory mymodel/ stripped" in out
    assert out.rstrip().endswith("layout tensorflow: version 1 with saved_model.pb")
    assert sorted(tree(dest)) == ["1/saved_model.pb", "1/variables/variables.index"]
    assert own_files(dest) == [] and not log.exists()


def test_cli_failure_writes_the_same_line_to_stderr_and_termination_log(
    server: Server, tmp_path: Path, dest: Path, capsys
) -> None:
    archive = build_tar(tmp_path / "m.tgz", [("file", "saved_model.pb", b"g"), ("dir", "variables")])
    url = server.serve("/cli-flat.tgz", archive.read_bytes())
    log = tmp_path / "termination-log"

    code = main(["fetch", url, str(dest), "--layout", "tensorflow", "--termination-log", str(log)])

    err = capsys.readouterr().err
    expected = (
        f"layout tensorflow: no numeric version directory with saved_model.pb under {dest}; "
        "found: saved_model.pb, variables/ (put them in a directory named 1/)"
    )
    assert code == 1
    assert err == expected + "\n"
    assert log.read_text() == expected


def test_cli_corrupt_gzip_is_reported(server: Server, tmp_path: Path, dest: Path) -> None:
    archive = build_tar(tmp_path / "m.tgz", [("file", "1/model.pt", os.urandom(256 * 1024))])
    # An honest Content-Length for half a gzip stream: the download succeeds, the archive is broken.
    url = server.serve("/cli-cut.tgz", archive.read_bytes()[: archive.stat().st_size // 2])
    log = tmp_path / "log"

    assert main(["fetch", url, str(dest), "--termination-log", str(log)]) == 1
    assert log.read_text().startswith("archive corrupt: cannot read tar.gz archive: ")
    assert list(dest.iterdir()) == []


@pytest.mark.parametrize(
    ("route", "extra", "env", "code", "fragment"),
    [
        ("/cli-404.tgz", [], {}, 1, "returned 404 Not Found"),
        ("/cli-model.tgz", ["--layout", "pytorch"], {}, 1, "layout pytorch: no numeric version directory"),
        ("/cli-model.tgz", ["--max-bytes", "100"], {}, 1, "over the limit of 100 bytes"),
        ("/cli-model.tgz", [], {"ISVC_STORAGE_MAX_BYTES": "100"}, 1, "over the limit of 100 bytes"),
        ("/cli-model.tgz", [], {"ISVC_STORAGE_MAX_BYTES": "lots"}, 1, "ISVC_STORAGE_MAX_BYTES: 'lots' is not a size"),
        ("/cli-model.tgz", ["--max-bytes", "1Mi"], {"ISVC_STORAGE_MAX_BYTES": "100"}, 0, None),  # the flag wins
        ("/cli-model.tgz", ["--layout", "onnx"], {}, 2, "argument --layout: invalid choice: 'onnx'"),
        ("/cli-model.tgz", ["--max-bytes", "ten"], {}, 2, "argument --max-bytes: 'ten' is not a size"),
        (None, [], {}, 2, "the following arguments are required: DEST"),
    ],
    ids=[
        "http-404",
        "wrong-layout",
        "flag-limit",
        "env-limit",
        "env-invalid",
        "flag-over-env",
        "bad-layout",
        "bad-size",
        "missing-dest",
    ],
)
def test_cli_exit_codes(
    server: Server, tmp_path: Path, dest: Path, monkeypatch, capsys, route, extra, env, code, fragment
) -> None:
    server.serve("/cli-model.tgz", build_tar(tmp_path / "m.tgz", TF_MODEL).read_bytes())
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    log = tmp_path / "log"
    url = f"http://127.0.0.1:{server.httpd.server_port}{route}"
    argv = ["fetch", url, str(dest)] if route else ["fetch", "http://127.0.0.1/x"]

    assert main([*argv, *extra, "--termination-log", str(log)]) == code

    err = capsys.readouterr().err
    if fragment is None:
        assert not log.exists()
    else:
        assert fragment in err
        assert fragment in log.read_text()
        assert "\n" not in log.read_text()


def test_cli_removes_leftovers_of_a_killed_attempt(server: Server, tmp_path: Path, dest: Path) -> None:
    make_tree(dest, [".isvc-download-old.part", ".isvc-extract-old/1/half.pb", "1/stale.pb"])
    url = server.serve("/cli-rerun.tgz", build_tar(tmp_path / "m.tgz", TF_MODEL).read_bytes())

    assert main(["fetch", url, str(dest), "--termination-log", str(tmp_path / "log")]) == 0
    assert sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*")) == [
        "1",
        "1/saved_model.pb",
        "1/variables",
        "1/variables/variables.index",
    ]


def test_termination_message_is_one_line_of_at_most_4096_bytes(tmp_path: Path) -> None:
    log = tmp_path / "log"

    write_termination_message("é" * 3000 + "\nsecond line", log)

    data = log.read_bytes()
    assert len(data) <= 4096 and b"\n" not in data
    assert data.decode("utf-8") == "é" * 2048  # cut on a character boundary


def test_termination_message_ignores_an_unwritable_path(tmp_path: Path) -> None:
    write_termination_message("boom", tmp_path)  # a directory: cannot be opened for writing
    write_termination_message("boom", tmp_path / "missing" / "log")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("exists", [True, False], ids=["mounted", "absent"])
def test_default_termination_log_is_written_only_when_the_kubelet_mounted_it(
    tmp_path: Path, monkeypatch, capsys, exists: bool
) -> None:
    log = tmp_path / "termination-log"
    if exists:
        log.write_text("")
    monkeypatch.setattr(storage, "DEFAULT_TERMINATION_LOG", str(log))

    assert main(["fetch", "ftp://host/m.tgz", str(tmp_path / "d")]) == 1

    line = capsys.readouterr().err.rstrip("\n")
    assert line.startswith("download failed: unsupported URI scheme 'ftp'")
    assert (log.read_text() if exists else log.exists()) == (line if exists else False)


@pytest.mark.parametrize(
    ("text", "value"),
    [("1048576", MiB), ("1Mi", MiB), ("10Gi", 10 * 1024**3), ("500M", 500_000_000), ("2k", 2000), (" 7 ", 7)],
)
def test_parse_size(text: str, value: int) -> None:
    assert parse_size(text) == value


@pytest.mark.parametrize("text", ["", "0", "-5", "1.5Gi", "10GB", "lots"])
def test_parse_size_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_size(text)


def test_python_dash_m_runs_the_cli(tmp_path: Path) -> None:
    log = tmp_path / "log"
    proc = subprocess.run(
        [sys.executable, "-m", "isvc_operator.storage", "fetch", "s3://bucket/m.tgz", str(tmp_path / "d")]
        + ["--termination-log", str(log)],
        capture_output=True,
        text=True,
        timeout=60,
    )

    expected = "download failed: unsupported URI scheme 's3' in s3://bucket/m.tgz; accepted: http://, https://"
    assert (proc.returncode, proc.stderr, proc.stdout) == (1, expected + "\n", "")
    assert log.read_text() == expected
