"""Tests of the file source plugin (plugins/files)."""
