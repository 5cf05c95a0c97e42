"""Fixtures for the durable storage tests: every directory lives under pytest's
``tmp_path``, and every storage opened through ``open_storage`` is closed afterwards
(so a failing test never leaves a lock held for the next one)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from storage_helpers import CONFIG, OpenStorage

from nodes.storage import DiskStorage


@pytest.fixture
def node_dir(tmp_path: Path) -> Path:
    return tmp_path / "n1"


@pytest.fixture
def open_storage(node_dir: Path) -> Iterator[OpenStorage]:
    opened: list[DiskStorage] = []

    def _open(path: Path | None = None, **kwargs: Any) -> DiskStorage:
        kwargs.setdefault("node_id", "n1")
        kwargs.setdefault("cluster_id", "arena-test")
        kwargs.setdefault("initial_config", CONFIG)
        storage = DiskStorage(path or node_dir, **kwargs)
        opened.append(storage)
        return storage

    yield _open
    for storage in opened:
        storage.close()
