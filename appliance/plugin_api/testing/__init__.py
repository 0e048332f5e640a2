"""Helpers for testing plugins and the engine against real, in-process components."""
