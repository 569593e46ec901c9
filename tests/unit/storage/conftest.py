from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .helpers import Server


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    srv = Server()
    yield srv
    srv.close()


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    return tmp_path / "models"
