"""Tests of the imagefile source plugin."""
