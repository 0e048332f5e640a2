"""Tests of single-file restore from image backups (appliance/imagefs)."""
