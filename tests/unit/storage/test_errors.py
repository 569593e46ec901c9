"""Sizes and the one-line messages a user reads in the pod status."""

from __future__ import annotations

from pathlib import Path

import pytest

from isvc_operator.storage import parse_size, write_termination_message

from .helpers import MiB


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
