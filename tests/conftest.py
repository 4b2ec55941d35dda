"""Test-session order: the Ray engine's tests run first, in a process nothing else has touched yet.

A local Ray started in the pytest process after a thousand other tests once failed to bring its raylet
up within Ray's 30 s (the same module passes on its own); starting it first keeps the suite one process.
"""

from __future__ import annotations

import pytest

FIRST = ("tests/fedcore/test_ray_engine.py",)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: not item.nodeid.startswith(FIRST))  # stable: the rest keep their order
