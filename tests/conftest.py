"""Shared fixtures and markers. Example paths live in tests/paths.py (import them as tests.paths).

Markers (pytest.ini): ``ros`` for tests that need rclpy, applied here to every
test under tests/agent/ros/ (and by hand elsewhere); ``slow`` for tests over
about 3 s, applied by hand. ``make test-fast`` runs ``-m "not ros and not slow"``.
"""

from __future__ import annotations

import os
from typing import List

import pytest

from tests.paths import ROOT

#: Every test below these folders needs rclpy.
ROS_TEST_DIRS = (os.path.join(ROOT, "tests", "agent", "ros"),)


def pytest_collection_modifyitems(config: pytest.Config, items: List[pytest.Item]) -> None:
    for item in items:
        path = str(item.path)
        if any(path.startswith(d + os.sep) for d in ROS_TEST_DIRS):
            item.add_marker(pytest.mark.ros)


@pytest.fixture
def root() -> str:
    return ROOT
