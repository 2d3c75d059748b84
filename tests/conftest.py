from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from . import procs


@pytest.fixture
def origin(tmp_path: Path) -> Iterator[procs.Origin]:
    proc = procs.start_origin(tmp_path)
    yield proc
    proc.stop()
