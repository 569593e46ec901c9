"""Archives built member by member (hostile ones included), a local HTTP server, tree helpers."""

from __future__ import annotations

import io
import socket
import stat
import tarfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

MiB = 1024 * 1024
TF_MODEL = [("file", "1/saved_model.pb", b"graph"), ("file", "1/variables/variables.index", b"index")]


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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def own_files(dest: Path) -> list[str]:
    return [p.name for p in dest.iterdir() if p.name.startswith(".isvc-")] if dest.exists() else []
