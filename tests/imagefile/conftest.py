"""Fixtures for the imagefile plugin tests (helpers live in helpers.py)."""

from __future__ import annotations

import logging

import pytest

from tapir.appliance.plugin_api import PluginContext
from tapir.plugins.imagefile.role import ImageFilePlugin


@pytest.fixture
def ctx() -> PluginContext:
    return PluginContext(logger=logging.getLogger("tests.imagefile"))


@pytest.fixture
def plugin() -> ImageFilePlugin:
    return ImageFilePlugin()
