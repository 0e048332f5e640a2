"""Fixtures for the file source tests."""

from __future__ import annotations

import pytest

from tapir.appliance.plugin_api import PluginContext
from tapir.plugins.files.plugin import FilesPlugin

from .helpers import RecordingProgress, make_ctx


@pytest.fixture
def progress() -> RecordingProgress:
    return RecordingProgress()


@pytest.fixture
def ctx(progress: RecordingProgress) -> PluginContext:
    return make_ctx(progress)


@pytest.fixture
def plugin() -> FilesPlugin:
    return FilesPlugin()
