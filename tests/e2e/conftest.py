"""End-to-end fixtures: the whole system in the local cloud, on real dockerd hosts.

Each cloud is named after its own prefix, cleaned before (a crashed run's leftovers) and after.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

from localcloud.cloud import CloudConfig, LocalCloud
from localcloud.hosts import cleanup_all, prefix_lock


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if os.geteuid() != 0 or shutil.which("dockerd") is None:
        skip = pytest.mark.skip(reason="end-to-end tests need root and dockerd (make setup installs docker.io)")
        for item in items:
            if "tests/e2e/" in str(item.fspath):
                item.add_marker(skip)


def start_cloud(prefix: str, **config: object) -> Iterator[LocalCloud]:
    """A started local cloud that is always closed and cleaned, even when the test fails."""
    with prefix_lock(prefix):
        cloud = LocalCloud(CloudConfig(prefix=prefix, **config))  # type: ignore[arg-type]
        try:
            yield cloud.start()
        finally:
            cloud.close()
            cleanup_all(prefix)
