"""Shared pytest set-up: doctests see every schedule constructor, as after
`from lrkit.schedules import *`."""

from __future__ import annotations

from typing import Any

import pytest

import lrkit.schedules


@pytest.fixture(autouse=True)
def _doctest_names(doctest_namespace: dict[str, Any]) -> None:
    for name in lrkit.schedules.__all__:
        doctest_namespace[name] = getattr(lrkit.schedules, name)
