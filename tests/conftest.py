"""Shared fixtures. Example paths live in tests/paths.py (import them as tests.paths)."""

from __future__ import annotations

import pytest

from tests.paths import ROOT


@pytest.fixture
def root() -> str:
    return ROOT
