"""Tapir's core engine: knows backups, not vendors."""

__version__ = "0.1.0"
