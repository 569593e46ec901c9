"""The init container's command line: one summary line, or one failure line in the pod status."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from isvc_operator import storage
from isvc_operator.storage import (
    main,
)

from .helpers import TF_MODEL, Server, build_tar, make_tree, own_files, tree

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


@pytest.mark.parametrize("exists", [True, False], ids=["mounted", "absent"])
def test_default_termination_log_is_written_only_when_the_kubelet_mounted_it(
    tmp_path: Path, monkeypatch, capsys, exists: bool
) -> None:
    log = tmp_path / "termination-log"
    if exists:
        log.write_text("")
    monkeypatch.setattr(storage.cli, "DEFAULT_TERMINATION_LOG", str(log))

    assert main(["fetch", "ftp://host/m.tgz", str(tmp_path / "d")]) == 1

    line = capsys.readouterr().err.rstrip("\n")
    assert line.startswith("download failed: unsupported URI scheme 'ftp'")
    assert (log.read_text() if exists else log.exists()) == (line if exists else False)


def test_python_dash_m_runs_the_cli(tmp_path: Path) -> None:
    log = tmp_path / "log"
    proc = subprocess.run(
        [sys.executable, "-m", "isvc_operator.storage", "fetch", "ftp://host/m.tgz", str(tmp_path / "d")]
        + ["--termination-log", str(log)],
        capture_output=True,
        text=True,
        timeout=60,
    )

    expected = (
        "download failed: unsupported URI scheme 'ftp' in ftp://host/m.tgz; accepted: http(s)://HOST/ARCHIVE, "
        "s3://BUCKET/PREFIX, gs://BUCKET/PREFIX, https://ACCOUNT.blob.core.windows.net/CONTAINER/PREFIX"
    )
    assert (proc.returncode, proc.stderr, proc.stdout) == (1, expected + "\n", "")
    assert log.read_text() == expected
