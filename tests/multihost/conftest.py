"""Every test here builds network namespaces: it skips, with the reason, where that cannot be done."""

from __future__ import annotations

import pytest

from tests.multihost._netns import unavailable


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark this folder's tests ``multihost``, and skip them where namespaces cannot be built."""
    why = unavailable()
    for item in items:
        if "tests/multihost/" in item.nodeid.replace("\\", "/"):
            item.add_marker(pytest.mark.multihost)
            if why is not None:
                item.add_marker(pytest.mark.skip(reason=why))
