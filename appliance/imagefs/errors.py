"""The error every image file operation raises for an operator."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from ..plugin_api.errors import TapirError


class ImageFsError(TapirError):
    """A disk, volume or path inside an image cannot be found or read."""


class ImageNotFound(ImageFsError):
    """No such disk, volume, file or folder in the recovery point."""


def _tapir_cause(exc: BaseException) -> TapirError | None:
    # dissect wraps what a read raised; a damaged chunk must surface as itself.
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, TapirError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


@contextmanager
def reading(where: str) -> Iterator[None]:
    """Turn a file system library's failure into an :class:`ImageFsError` naming ``where``.

    Errors of the data path (a missing or corrupt chunk) pass through unchanged.
    """
    try:
        yield
    except ImageFsError:
        raise
    except Exception as exc:
        cause = _tapir_cause(exc)
        if cause is not None:
            raise cause from exc
        detail = str(exc) or type(exc).__name__
        raise ImageFsError(
            f"{where}: the file system is damaged or not readable ({type(exc).__name__}: {detail})"
        ) from exc
