"""Tape media for Tapir: the on-tape format, block I/O and an emulated drive.

``format/`` knows the bytes on tape (blocks, tape files, labels, archives, the
on-tape catalog), ``blockio`` writes and reads tape files through a drive-like
object, ``emulated`` is a drive in memory or in a file for tests. The
specification is docs/format/tape.md.
"""
