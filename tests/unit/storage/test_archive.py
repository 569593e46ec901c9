"""Archives: format by content, safe extraction, limits, publishing into DEST."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from isvc_operator import storage
from isvc_operator.storage import (
    StorageError,
    detect_archive_kind,
    extract_archive,
)

from .helpers import TF_MODEL, MiB, build, build_tar, build_zip, make_tree, own_files, tree

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


def test_a_failed_move_into_place_leaves_the_earlier_content_whole(tmp_path: Path, dest: Path, monkeypatch) -> None:
    dest.mkdir()
    make_tree(dest, ["a/old.txt", "b/old.txt"])
    before = tree(dest)
    archive = build(tmp_path / "m.tgz", "w:gz", [("file", "a/new.txt", b"new a"), ("file", "b/new.txt", b"new b")])
    real_replace = os.replace

    def replace(src, dst, *args, **kwargs):
        if ".isvc-extract-" in str(src) and Path(src).name == "b":
            raise OSError(28, "No space left on device")
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(StorageError, match="extract failed: moving b into .*No space left on device"):
        extract_archive(archive, dest, max_bytes=MiB)
    assert tree(dest) == before, "old and new files mixed"
    assert own_files(dest) == []


def test_a_write_failure_is_not_blamed_on_the_archive(tmp_path: Path, dest: Path, monkeypatch) -> None:
    archive = build(tmp_path / "m.tgz", "w:gz", TF_MODEL)

    def chmod(*args, **kwargs):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "chmod", chmod)
    with pytest.raises(StorageError) as err:
        extract_archive(archive, dest, max_bytes=MiB)
    assert str(err.value).startswith("extract failed: writing into"), str(err.value)
    assert "Operation not permitted" in str(err.value)


def test_a_bug_in_the_write_phase_is_not_reported_as_a_corrupt_archive(tmp_path: Path, dest: Path, monkeypatch) -> None:
    archive = build(tmp_path / "m.tgz", "w:gz", TF_MODEL)

    def walk(*args, **kwargs):
        raise ValueError("a bug")

    monkeypatch.setattr(os, "walk", walk)
    with pytest.raises(ValueError, match="a bug"):
        extract_archive(archive, dest, max_bytes=MiB)
