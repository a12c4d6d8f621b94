"""Every test here builds network namespaces: it skips, with the reason, where that cannot be done."""

from __future__ import annotations

import pytest

from tests.multihost._netns import unavailable


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Skip this folder's tests (marked ``multihost``) where namespaces cannot be built."""
    why = unavailable()
    for item in items:
        if why is not None and item.get_closest_marker("multihost") is not None:
            item.add_marker(pytest.mark.skip(reason=why))
